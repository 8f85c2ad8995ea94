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

#[derive(Serialize, Debug)]
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
/// `BadCredentials` after the same amount of work.
pub async fn login(
    core: &Core,
    email: &str,
    password: &str,
    org: Option<&str>,
    ip: Option<&str>,
) -> Result<(String, Session), IdentityError> {
    let now = core.now();
    let cfg = &core.config;
    let email = normalize_email(email).unwrap_or_else(|_| email.trim().to_lowercase());
    throttle_gate(core, &email, ip, now).await?;

    let mut candidates: Vec<(String, Principal)> = Vec::new();
    match org {
        Some(slug) => {
            if let Ok(o) = orgs::find_in(&core.db, slug).await {
                let mut c = core.db.read().await?;
                if let Some(u) = users::find_by_email(&mut c, &o.id, &email).await? {
                    candidates.push((
                        u.password_hash.clone(),
                        Principal::OrgAdmin { user: u, org: o },
                    ));
                }
            }
        }
        None => {
            if let Some(op) = operators::find_by_email(&core.db, &email).await? {
                candidates.push((op.password_hash.clone(), Principal::Operator(op)));
            }
            for u in users::admins_by_email(&core.db, &email).await? {
                let o = orgs::find_in(&core.db, &u.org_id).await?;
                candidates.push((
                    u.password_hash.clone(),
                    Principal::OrgAdmin { user: u, org: o },
                ));
            }
        }
    }

    let mut found = None;
    if candidates.is_empty() {
        users::verify_password(core, password, None).await;
    }
    for (hash, principal) in candidates {
        if users::verify_password(core, password, Some(hash)).await {
            found = Some(principal);
            break;
        }
    }
    let principal = match found {
        Some(Principal::OrgAdmin { user, .. }) if !user.is_admin || !user.active => None,
        other => other,
    };
    let Some(principal) = principal else {
        record_failure(core, &email, ip, now).await?;
        return Err(IdentityError::BadCredentials);
    };
    throttle::clear(&core.db, &account_key(&email)).await?;

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
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Ok(None);
    }
    let principal = match (row.principal_kind.as_str(), &row.org_id) {
        ("operator", _) => match operators::get(&core.db, &row.principal_id).await? {
            Some(o) => Principal::Operator(o),
            None => return Ok(None),
        },
        ("user", Some(org_id)) => {
            let Some(user) = users::get(&mut c, org_id, &row.principal_id).await? else {
                return Ok(None);
            };
            if !user.active || !user.is_admin {
                return Ok(None);
            }
            let org = orgs::find(&mut c, org_id).await?;
            Principal::OrgAdmin { user, org }
        }
        _ => return Ok(None),
    };
    let csrf = sealed::get(&mut c, &core.keyring, csrf_place(&row.id))
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

fn account_key(email: &str) -> String {
    format!("login:acct:{email}")
}

/// Refuses while the account or the client IP has used up its failures.
async fn throttle_gate(
    core: &Core,
    email: &str,
    ip: Option<&str>,
    now: i64,
) -> Result<(), IdentityError> {
    let cfg = &core.config;
    let window = cfg.login_window.ms();
    let ip_key = ip.map(|ip| format!("login:ip:{ip}"));
    for (key, limit) in [
        (Some(account_key(email)), cfg.login_max_failures_per_account),
        (ip_key, cfg.login_max_failures_per_ip),
    ] {
        if let Some(key) = key {
            if let Some(secs) = throttle::blocked(&core.db, &key, limit, window, now).await? {
                return Err(IdentityError::Throttled {
                    retry_after_secs: secs,
                });
            }
        }
    }
    Ok(())
}

/// Counts a failed login against the account and the IP, and audits it.
async fn record_failure(
    core: &Core,
    email: &str,
    ip: Option<&str>,
    now: i64,
) -> Result<(), IdentityError> {
    let window = core.config.login_window.ms();
    throttle::hit(&core.db, &account_key(email), window, now).await?;
    if let Some(ip) = ip {
        throttle::hit(&core.db, &format!("login:ip:{ip}"), window, now).await?;
    }
    let mut tx = core.db.begin_write().await?;
    audit::record(
        &mut tx,
        now,
        &Actor::new(format!("login:{email}"), ip.map(str::to_string)),
        Event {
            org_id: None,
            action: "session.login_failed",
            target: Some(email),
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
    let email = normalize_email(email).unwrap_or_else(|_| email.trim().to_lowercase());
    throttle_gate(core, &email, ip, now).await?;
    let mut c = core.db.read().await?;
    let user = users::find_by_email(&mut c, org_id, &email).await?;
    drop(c);
    let ok = users::verify_password(
        core,
        password,
        user.as_ref().map(|u| u.password_hash.clone()),
    )
    .await;
    let Some(user) = user.filter(|u| ok && u.active) else {
        record_failure(core, &email, ip, now).await?;
        return Err(IdentityError::BadCredentials);
    };
    throttle::clear(&core.db, &account_key(&email)).await?;
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
