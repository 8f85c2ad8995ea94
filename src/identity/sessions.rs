//! Admin sessions: an org admin or an operator logs in with email and
//! password and gets a session token (cookie) and a CSRF token. Both are
//! issued secrets: the session token is stored as a digest; the CSRF token is
//! held sealed, since it must be compared and shown again.

use serde::Serialize;

use super::operators::{self, Operator};
use super::orgs::{self, Org};
use super::users::{self, User};
use super::{normalize_email, throttle, IdentityError};
use crate::audit::{self, Actor, Event};
use crate::crypto::keyring::Place;
use crate::crypto::sealed;
use crate::crypto::token::{self, TokenKind};
use crate::state::Core;
use crate::store::new_id;
use crate::{exec, fetch_optional};

#[derive(Clone, Debug)]
pub enum Principal {
    Operator(Operator),
    OrgAdmin { user: User, org: Org },
}

impl Principal {
    /// The audit name of the principal.
    pub fn actor_name(&self) -> String {
        match self {
            Principal::Operator(o) => format!("operator:{}", o.email),
            Principal::OrgAdmin { user, org } => format!("user:{}@{}", user.email, org.slug),
        }
    }

    /// May this principal act on `org_id`?
    pub fn can_act_on(&self, org_id: &str) -> bool {
        match self {
            Principal::Operator(_) => true,
            Principal::OrgAdmin { org, .. } => org.id == org_id,
        }
    }

    pub fn is_operator(&self) -> bool {
        matches!(self, Principal::Operator(_))
    }
}

#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub principal: Principal,
    pub csrf: String,
    pub expires_at: i64,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct SessionView {
    pub kind: &'static str,
    pub email: String,
    pub org: Option<String>,
    pub expires_at: i64,
}

impl Session {
    pub fn view(&self) -> SessionView {
        match &self.principal {
            Principal::Operator(o) => SessionView {
                kind: "operator",
                email: o.email.clone(),
                org: None,
                expires_at: self.expires_at,
            },
            Principal::OrgAdmin { user, org } => SessionView {
                kind: "org_admin",
                email: user.email.clone(),
                org: Some(org.slug.clone()),
                expires_at: self.expires_at,
            },
        }
    }
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    principal_kind: String,
    principal_id: String,
    org_id: Option<String>,
    expires_at: i64,
    revoked_at: Option<i64>,
}

fn csrf_place(id: &str) -> Place<'_> {
    Place {
        table: "admin_sessions",
        column: "csrf",
        row: id,
    }
}

/// Logs in; returns the session token (shown once, as a cookie) and the session.
/// Unknown email, wrong password, non-admin and deactivated users all answer
/// `BadCredentials` after the same work: exactly one password hash, against
/// the one account the email (and `org`) names — the operator first, else
/// the oldest admin membership — or a dummy hash when there is none.
pub async fn login(
    core: &Core,
    email: &str,
    password: &str,
    org: Option<&str>,
    ip: Option<&str>,
) -> Result<(String, Session), IdentityError> {
    let now = core.now();
    let cfg = &core.config;
    let email = login_email(email)?;
    let attempt = Attempt::take(core, &email, ip, now).await?;

    let candidate: Option<(String, Principal)> = match org {
        Some(slug) => match orgs::find_in(&core.db, slug).await {
            Ok(o) => {
                let mut c = core.db.read().await?;
                users::find_by_email(&mut c, &o.id, &email).await?.map(|u| {
                    (
                        u.password_hash.clone(),
                        Principal::OrgAdmin { user: u, org: o },
                    )
                })
            }
            Err(_) => None,
        },
        None => match operators::find_by_email(&core.db, &email).await? {
            Some(op) => Some((op.password_hash.clone(), Principal::Operator(op))),
            None => match users::admins_by_email(&core.db, &email)
                .await?
                .into_iter()
                .next()
            {
                Some(u) => {
                    let o = orgs::find_in(&core.db, &u.org_id).await?;
                    Some((
                        u.password_hash.clone(),
                        Principal::OrgAdmin { user: u, org: o },
                    ))
                }
                None => None,
            },
        },
    };
    let known = candidate.is_some();
    let (stored, principal) = match candidate {
        Some((h, p)) => (Some(h), Some(p)),
        None => (None, None),
    };
    let ok = attempt.verify(core, password, stored).await?;
    let principal = match principal.filter(|_| ok) {
        Some(Principal::OrgAdmin { user, .. }) if !user.is_admin || !user.active => None,
        other => other,
    };
    let Some(principal) = principal else {
        record_failure(core, &email, known, ip, now).await?;
        return Err(IdentityError::BadCredentials);
    };
    attempt.succeeded(core).await?;

    let token = token::mint(TokenKind::AdminSession);
    let csrf = token::mint(TokenKind::Csrf);
    let id = new_id();
    let expires_at = now + cfg.session_ttl.ms();
    let (kind, pid, org_id) = match &principal {
        Principal::Operator(o) => ("operator", o.id.clone(), None),
        Principal::OrgAdmin { user, org } => ("user", user.id.clone(), Some(org.id.clone())),
    };
    let mut tx = core.db.begin_write().await?;
    exec!(
        &mut tx,
        "INSERT INTO admin_sessions (id, token_digest, principal_kind, principal_id, org_id, ip, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &id,
        core.pepper.digest(&token),
        kind,
        &pid,
        &org_id,
        ip,
        now,
        expires_at
    )?;
    sealed::put(
        &mut tx,
        &core.keyring,
        csrf_place(&id),
        csrf.as_bytes(),
        now,
    )
    .await?;
    audit::record(
        &mut tx,
        now,
        &Actor::new(principal.actor_name(), ip.map(str::to_string)),
        Event {
            org_id: org_id.as_deref(),
            action: "session.login",
            target: Some(&id),
            detail: serde_json::json!({"kind": kind}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((
        token,
        Session {
            id,
            principal,
            csrf,
            expires_at,
        },
    ))
}

/// The live session for a presented token, with its principal re-read (a
/// demoted or deactivated admin loses the session at once).
pub async fn authenticate(core: &Core, presented: &str) -> Result<Option<Session>, IdentityError> {
    if !token::well_formed(TokenKind::AdminSession, presented) {
        return Ok(None);
    }
    let now = core.now();
    let mut c = core.db.read().await?;
    let Some(row) = fetch_optional!(
        &mut c,
        SessionRow,
        "SELECT id, principal_kind, principal_id, org_id, expires_at, revoked_at FROM admin_sessions WHERE token_digest = $1",
        core.pepper.digest(presented)
    )?
    else {
        return Ok(None);
    };
    resolve(core, &mut c, row, now).await
}

/// Session `id`, if it is still live (not logged out, not expired, its
/// admin still an active admin): for work a session started that finishes
/// in a request that cannot carry the session cookie (an OAuth callback
/// after the provider's cross-site redirect).
pub async fn live(core: &Core, id: &str) -> Result<Option<Session>, IdentityError> {
    let now = core.now();
    let mut c = core.db.read().await?;
    let Some(row) = fetch_optional!(
        &mut c,
        SessionRow,
        "SELECT id, principal_kind, principal_id, org_id, expires_at, revoked_at FROM admin_sessions WHERE id = $1",
        id
    )?
    else {
        return Ok(None);
    };
    resolve(core, &mut c, row, now).await
}

async fn resolve(
    core: &Core,
    c: &mut crate::store::Conn,
    row: SessionRow,
    now: i64,
) -> Result<Option<Session>, IdentityError> {
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Ok(None);
    }
    let principal = match (row.principal_kind.as_str(), &row.org_id) {
        ("operator", _) => match operators::get(&core.db, &row.principal_id).await? {
            Some(o) => Principal::Operator(o),
            None => return Ok(None),
        },
        ("user", Some(org_id)) => {
            let Some(user) = users::get(&mut *c, org_id, &row.principal_id).await? else {
                return Ok(None);
            };
            if !user.active || !user.is_admin {
                return Ok(None);
            }
            let org = orgs::find(&mut *c, org_id).await?;
            Principal::OrgAdmin { user, org }
        }
        _ => return Ok(None),
    };
    let csrf = sealed::get(&mut *c, &core.keyring, csrf_place(&row.id))
        .await?
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    Ok(Some(Session {
        id: row.id,
        principal,
        csrf,
        expires_at: row.expires_at,
    }))
}

pub async fn logout(core: &Core, session: &Session, ip: Option<&str>) -> Result<(), IdentityError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    exec!(
        &mut tx,
        "UPDATE admin_sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        now,
        &session.id
    )?;
    sealed::delete(&mut tx, csrf_place(&session.id)).await?;
    audit::record(
        &mut tx,
        now,
        &Actor::new(session.principal.actor_name(), ip.map(str::to_string)),
        Event {
            org_id: None,
            action: "session.logout",
            target: Some(&session.id),
            detail: serde_json::json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The email of a login attempt, checked before anything is counted or
/// recorded; the message does not echo what was typed (it may be a password).
fn login_email(raw: &str) -> Result<String, IdentityError> {
    normalize_email(raw)
        .map_err(|_| IdentityError::Invalid("email is not a valid email address".into()))
}

/// A short, keyed digest naming an email without storing it: the throttle
/// keys and the audit of attempts on unknown accounts use it.
fn email_digest(core: &Core, email: &str) -> String {
    let d = core.pepper.digest(email);
    d[d.len().saturating_sub(16)..].to_string()
}

/// One login attempt, already counted against the account and the client IP.
struct Attempt {
    account_key: String,
    ip_key: Option<String>,
}

impl Attempt {
    /// Counts the attempt and refuses it when the account or the IP has
    /// used up its attempts in the window (see [`throttle::take`]).
    async fn take(
        core: &Core,
        email: &str,
        ip: Option<&str>,
        now: i64,
    ) -> Result<Attempt, IdentityError> {
        let cfg = &core.config;
        let window = cfg.login_window.ms();
        let attempt = Attempt {
            account_key: format!("login:acct:{}", email_digest(core, email)),
            ip_key: ip.map(|ip| format!("login:ip:{ip}")),
        };
        let mut wait = throttle::take(
            &core.db,
            &attempt.account_key,
            cfg.login_max_failures_per_account,
            window,
            now,
        )
        .await?;
        if let Some(key) = &attempt.ip_key {
            let ip_wait =
                throttle::take(&core.db, key, cfg.login_max_failures_per_ip, window, now).await?;
            wait = wait.max(ip_wait);
        }
        match wait {
            Some(retry_after_secs) => Err(IdentityError::Throttled { retry_after_secs }),
            None => Ok(attempt),
        }
    }

    /// The one password check of the attempt. When the hashing pool is
    /// full the attempt is given back: nothing was tried.
    async fn verify(
        &self,
        core: &Core,
        password: &str,
        stored: Option<String>,
    ) -> Result<bool, IdentityError> {
        match users::verify_password(core, password, stored).await {
            Err(e @ IdentityError::Busy(_)) => {
                throttle::give_back(&core.db, &self.account_key).await?;
                if let Some(k) = &self.ip_key {
                    throttle::give_back(&core.db, k).await?;
                }
                Err(e)
            }
            other => other,
        }
    }

    /// A success clears the account's count and does not count against the IP.
    async fn succeeded(&self, core: &Core) -> Result<(), IdentityError> {
        throttle::clear(&core.db, &self.account_key).await?;
        if let Some(k) = &self.ip_key {
            throttle::give_back(&core.db, k).await?;
        }
        Ok(())
    }
}

/// Audits a failed login. An email that names no account is recorded by
/// its digest: whatever was typed into the field stays out of the log.
async fn record_failure(
    core: &Core,
    email: &str,
    known: bool,
    ip: Option<&str>,
    now: i64,
) -> Result<(), IdentityError> {
    let who = if known {
        email.to_string()
    } else {
        format!("unknown:{}", email_digest(core, email))
    };
    let mut tx = core.db.begin_write().await?;
    audit::record(
        &mut tx,
        now,
        &Actor::new(format!("login:{who}"), ip.map(str::to_string)),
        Event {
            org_id: None,
            action: "session.login_failed",
            target: Some(&who),
            detail: serde_json::json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// End-user sign-in on the authorization page: any active user of `org_id`.
/// Returns a short-lived session token for the consent step.
pub async fn login_enduser(
    core: &Core,
    org_id: &str,
    email: &str,
    password: &str,
    ip: Option<&str>,
) -> Result<(String, User), IdentityError> {
    let now = core.now();
    let email = login_email(email)?;
    let attempt = Attempt::take(core, &email, ip, now).await?;
    let mut c = core.db.read().await?;
    let user = users::find_by_email(&mut c, org_id, &email).await?;
    drop(c);
    let ok = attempt
        .verify(
            core,
            password,
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await?;
    let known = user.is_some();
    let Some(user) = user.filter(|u| ok && u.active) else {
        record_failure(core, &email, known, ip, now).await?;
        return Err(IdentityError::BadCredentials);
    };
    attempt.succeeded(core).await?;
    let token = token::mint(TokenKind::AdminSession);
    let mut tx = core.db.begin_write().await?;
    exec!(
        &mut tx,
        "INSERT INTO admin_sessions (id, token_digest, principal_kind, principal_id, org_id, ip, created_at, expires_at)
         VALUES ($1, $2, 'authn', $3, $4, $5, $6, $7)",
        new_id(),
        core.pepper.digest(&token),
        &user.id,
        org_id,
        ip,
        now,
        now + ENDUSER_SESSION_MS
    )?;
    audit::record(
        &mut tx,
        now,
        &Actor::new(format!("user:{}", user.email), ip.map(str::to_string)),
        Event {
            org_id: Some(org_id),
            action: "session.authorize_login",
            target: Some(&user.email),
            detail: serde_json::json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((token, user))
}

/// End-user sessions last an hour: long enough to consent, short enough
/// that a shared browser does not stay signed in.
const ENDUSER_SESSION_MS: i64 = 3_600_000;

/// The active user of `org_id` behind an end-user session token.
pub async fn authenticate_enduser(
    core: &Core,
    presented: &str,
    org_id: &str,
) -> Result<Option<User>, IdentityError> {
    if !token::well_formed(TokenKind::AdminSession, presented) {
        return Ok(None);
    }
    let mut c = core.db.read().await?;
    let row = fetch_optional!(
        &mut c,
        SessionRow,
        "SELECT id, principal_kind, principal_id, org_id, expires_at, revoked_at FROM admin_sessions
         WHERE token_digest = $1 AND principal_kind = 'authn'",
        core.pepper.digest(presented)
    )?;
    let Some(row) = row.filter(|r| {
        r.revoked_at.is_none() && r.expires_at > core.now() && r.org_id.as_deref() == Some(org_id)
    }) else {
        return Ok(None);
    };
    Ok(users::get(&mut c, org_id, &row.principal_id)
        .await?
        .filter(|u| u.active))
}
