//! OAuth clients: applications (authorization code) and machine-to-machine
//! clients (client credentials) share one table and one authentication path.
//! Names are unique per org and kind; secrets are stored as digests only.

use serde::Serialize;

use super::{parse_scope, OAuthError, Overlap};
use crate::audit::{self, Actor, Event};
use crate::crypto::token::{self, TokenKind};
use crate::identity::{validate_name, Permission};
use crate::state::Core;
use crate::store::keyset::{self, Cursor, Page};
use crate::store::{is_unique_violation, new_id, AsEx, Db, Tx};
use crate::{exec, fetch_all, fetch_optional};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    App,
    M2m,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::App => "app",
            ClientKind::M2m => "m2m",
        }
    }
    pub fn noun(self) -> &'static str {
        match self {
            ClientKind::App => "application",
            ClientKind::M2m => "machine client",
        }
    }
}

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct Client {
    pub id: String,
    pub org_id: String,
    pub kind: String,
    pub name: String,
    pub client_id: String,
    pub secret_digest: String,
    pub prev_secret_digest: Option<String>,
    pub prev_secret_expires_at: Option<i64>,
    pub scope: String,
    pub callbacks: String,
    pub user_id: Option<String>,
    pub access_ttl_ms: i64,
    pub refresh_ttl_ms: i64,
    pub refresh_grace_ms: i64,
    pub active: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub revoked_before: Option<i64>,
    /// May introspect other clients' tokens of its org (a resource server).
    pub may_introspect: bool,
    /// Why every token issued before `revoked_before` was cut off.
    pub revoked_reason: Option<String>,
}

pub const COLS: &str = "id, org_id, kind, name, client_id, secret_digest, prev_secret_digest, prev_secret_expires_at, \
    scope, callbacks, user_id, access_ttl_ms, refresh_ttl_ms, refresh_grace_ms, active, created_at, updated_at, revoked_before, \
    may_introspect, revoked_reason";

impl Client {
    pub fn scope(&self) -> Permission {
        self.scope.parse().unwrap_or(Permission::Read)
    }
    pub fn callbacks(&self) -> Vec<String> {
        serde_json::from_str(&self.callbacks).unwrap_or_default()
    }
    pub fn status(&self) -> &'static str {
        if self.active {
            "active"
        } else {
            "deactivated"
        }
    }
    pub fn kind(&self) -> ClientKind {
        if self.kind == "m2m" {
            ClientKind::M2m
        } else {
            ClientKind::App
        }
    }
    /// The previous secret still works (a regeneration's overlap, or held
    /// by a rotation until it retires it).
    pub fn previous_live(&self, now: i64) -> bool {
        self.prev_secret_digest.is_some() && self.prev_secret_expires_at.is_none_or(|t| t > now)
    }
    /// The previous secret is held by a rotation until its cut-over
    /// retires it.
    pub fn previous_held(&self) -> bool {
        self.prev_secret_digest.is_some() && self.prev_secret_expires_at.is_none()
    }
}

/// The public view (never a secret or digest).
#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct ClientView {
    pub id: String,
    pub name: String,
    pub client_id: String,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callbacks: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub status: &'static str,
    /// Machine clients: may introspect other clients' tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspect: Option<bool>,
    pub access_token_ttl: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token_ttl: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_grace: Option<i64>,
    pub previous_secret_valid_until: Option<i64>,
    /// The previous secret still works: until `previous_secret_valid_until`,
    /// or, when that is null, until the rotation that replaced it retires it.
    pub previous_secret_live: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Client {
    pub fn view(&self, user_email: Option<String>, now: i64) -> ClientView {
        let app = self.kind() == ClientKind::App;
        ClientView {
            id: self.id.clone(),
            name: self.name.clone(),
            client_id: self.client_id.clone(),
            scope: self.scope.clone(),
            callbacks: app.then(|| self.callbacks()),
            user: user_email,
            status: self.status(),
            introspect: (!app).then_some(self.may_introspect),
            access_token_ttl: self.access_ttl_ms / 1000,
            refresh_token_ttl: app.then_some(self.refresh_ttl_ms / 1000),
            refresh_grace: app.then_some(self.refresh_grace_ms / 1000),
            previous_secret_valid_until: self.prev_secret_expires_at.filter(|t| *t > now),
            previous_secret_live: self.previous_live(now),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Lifetimes, each optional on update.
#[derive(Default, Debug, Clone, Copy)]
pub struct Lifetimes {
    pub access_ms: Option<i64>,
    pub refresh_ms: Option<i64>,
    pub grace_ms: Option<i64>,
}

pub const DEFAULT_ACCESS_MS: i64 = 3_600_000;
pub const DEFAULT_REFRESH_MS: i64 = 3_600_000;

pub struct NewClient<'a> {
    pub org_id: &'a str,
    pub kind: ClientKind,
    pub name: &'a str,
    pub scope: &'a str,
    pub callbacks: &'a [String],
    pub user_id: Option<&'a str>,
    pub lifetimes: Lifetimes,
    /// Machine clients only: may introspect other clients' tokens.
    pub may_introspect: bool,
}

/// Checks a callback URL: absolute https, or http on a loopback host; no fragment.
pub fn validate_callback(raw: &str) -> Result<String, OAuthError> {
    let bad = |why: &str| OAuthError::InvalidRequest(format!("callback {raw:?}: {why}"));
    let u = url::Url::parse(raw).map_err(|_| bad("not an absolute URL"))?;
    if u.fragment().is_some() {
        return Err(bad("must not contain a fragment"));
    }
    match u.scheme() {
        "https" => {}
        "http" => {
            let loopback = match u.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if !loopback {
                return Err(bad("http is allowed only for loopback hosts; use https"));
            }
        }
        _ => return Err(bad("must be https (or http on a loopback host)")),
    }
    if u.host().is_none() {
        return Err(bad("has no host"));
    }
    // Stored exactly as given: matching is character for character.
    Ok(raw.to_string())
}

/// Machine clients hold their secret on a server: a leaked token must not
/// outlive a rotation by long, so their tokens are capped.
fn check_m2m_ttl(access_ms: Option<i64>, max_ms: i64) -> Result<(), OAuthError> {
    match access_ms {
        Some(ms) if ms > max_ms => Err(OAuthError::InvalidRequest(format!(
            "a machine client's access tokens live at most {}s (m2m_token_ttl_max)",
            max_ms / 1000
        ))),
        _ => Ok(()),
    }
}

fn validate_lifetimes(l: &Lifetimes) -> Result<(), OAuthError> {
    for (what, v) in [
        ("access token ttl", l.access_ms),
        ("refresh token ttl", l.refresh_ms),
    ] {
        if let Some(ms) = v {
            if !(1000..=366 * 86_400_000).contains(&ms) {
                return Err(OAuthError::InvalidRequest(format!(
                    "{what} must be between 1s and 366d"
                )));
            }
        }
    }
    if let Some(g) = l.grace_ms {
        if !(0..=3_600_000).contains(&g) {
            return Err(OAuthError::InvalidRequest(
                "refresh grace must be between 0s and 1h".into(),
            ));
        }
    }
    Ok(())
}

/// Creates a client; returns it and its secret (shown once).
pub async fn create(
    core: &Core,
    actor: &Actor,
    new: NewClient<'_>,
) -> Result<(Client, String), OAuthError> {
    let name = validate_name(&format!("{} name", new.kind.noun()), new.name)?;
    let scope = parse_scope(new.scope)?;
    validate_lifetimes(&new.lifetimes)?;
    let m2m_max = core.config.m2m_token_ttl_max.ms();
    if new.kind == ClientKind::M2m {
        check_m2m_ttl(new.lifetimes.access_ms, m2m_max)?;
    }
    let callbacks = match new.kind {
        ClientKind::App => {
            if new.callbacks.is_empty() {
                return Err(OAuthError::InvalidRequest(
                    "an application needs at least one --callback URL".into(),
                ));
            }
            new.callbacks
                .iter()
                .map(|c| validate_callback(c))
                .collect::<Result<Vec<_>, _>>()?
        }
        ClientKind::M2m => Vec::new(),
    };
    let secret = token::mint(TokenKind::ClientSecret);
    let now = core.now();
    let prefix = match new.kind {
        ClientKind::App => "app_",
        ClientKind::M2m => "m2m_",
    };
    let c = Client {
        id: new_id(),
        org_id: new.org_id.to_string(),
        kind: new.kind.as_str().to_string(),
        name,
        client_id: format!("{prefix}{}", new_id()),
        secret_digest: core.pepper.digest(&secret),
        prev_secret_digest: None,
        prev_secret_expires_at: None,
        scope: scope.as_str().to_string(),
        callbacks: serde_json::to_string(&callbacks).unwrap_or_else(|_| "[]".into()),
        user_id: new.user_id.map(str::to_string),
        access_ttl_ms: new.lifetimes.access_ms.unwrap_or(match new.kind {
            ClientKind::M2m => DEFAULT_ACCESS_MS.min(m2m_max),
            ClientKind::App => DEFAULT_ACCESS_MS,
        }),
        refresh_ttl_ms: new.lifetimes.refresh_ms.unwrap_or(DEFAULT_REFRESH_MS),
        refresh_grace_ms: new.lifetimes.grace_ms.unwrap_or(0),
        active: true,
        created_at: now,
        updated_at: now,
        revoked_before: None,
        may_introspect: new.may_introspect && new.kind == ClientKind::M2m,
        revoked_reason: None,
    };
    let mut tx = core.db.begin_write().await?;
    let r = exec!(
        &mut tx,
        "INSERT INTO oauth_clients (id, org_id, kind, name, client_id, secret_digest, scope, callbacks, user_id,
            access_ttl_ms, refresh_ttl_ms, refresh_grace_ms, active, created_at, updated_at, may_introspect)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        &c.id,
        &c.org_id,
        &c.kind,
        &c.name,
        &c.client_id,
        &c.secret_digest,
        &c.scope,
        &c.callbacks,
        &c.user_id,
        c.access_ttl_ms,
        c.refresh_ttl_ms,
        c.refresh_grace_ms,
        c.active,
        c.created_at,
        c.updated_at,
        c.may_introspect
    );
    match r {
        Err(e) if is_unique_violation(&e) => {
            return Err(OAuthError::Conflict(format!(
                "{} {:?}",
                new.kind.noun(),
                c.name
            )))
        }
        r => r?,
    };
    record(&mut tx, now, actor, &c, &format!("{}.create", c.kind), serde_json::json!({
        "client_id": c.client_id, "scope": c.scope, "callbacks": callbacks, "user_id": c.user_id,
    }))
    .await?;
    tx.commit().await?;
    Ok((c, secret))
}

async fn record(
    tx: &mut Tx,
    now: i64,
    actor: &Actor,
    c: &Client,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), OAuthError> {
    audit::record(
        tx,
        now,
        actor,
        Event {
            org_id: Some(&c.org_id),
            action,
            target: Some(&c.name),
            detail,
        },
    )
    .await?;
    Ok(())
}

pub async fn list(db: &Db, org_id: &str, kind: ClientKind) -> Result<Vec<Client>, OAuthError> {
    let mut c = db.read().await?;
    Ok(fetch_all!(
        &mut c,
        Client,
        &format!("SELECT {COLS} FROM oauth_clients WHERE org_id = $1 AND kind = $2 ORDER BY name"),
        org_id,
        kind.as_str()
    )?)
}

/// One page of an org's clients of `kind` by name (keyset `NAME.ID` after
/// `after`, the `next` of the page before), with the exact total.
pub async fn page(
    db: &Db,
    org_id: &str,
    kind: ClientKind,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<Client>, OAuthError> {
    let after = Cursor::opt(after).map_err(|e| OAuthError::InvalidRequest(e.to_string()))?;
    let (a_name, a_id) = after.map(|c| (c.key, c.id)).unwrap_or_default();
    let limit = keyset::limit(limit);
    let mut c = db.read().await?;
    let total = crate::scalar_optional!(
        &mut c,
        i64,
        "SELECT COUNT(*) FROM oauth_clients WHERE org_id = $1 AND kind = $2",
        org_id,
        kind.as_str()
    )?
    .unwrap_or(0);
    let rows = fetch_all!(
        &mut c,
        Client,
        &format!(
            "SELECT {COLS} FROM oauth_clients WHERE org_id = $1 AND kind = $2
               AND (name > $3 OR (name = $3 AND id > $4))
             ORDER BY name, id LIMIT $5"
        ),
        org_id,
        kind.as_str(),
        &a_name,
        &a_id,
        limit + 1
    )?;
    Ok(Page::from_rows(rows, limit, total, |c| {
        Cursor::of(&c.name, &c.id)
    }))
}

/// Finds a client of `org_id` by name, id or client id.
pub async fn find<C: AsEx>(
    c: &mut C,
    org_id: &str,
    kind: ClientKind,
    key: &str,
) -> Result<Client, OAuthError> {
    fetch_optional!(
        c,
        Client,
        &format!(
            "SELECT {COLS} FROM oauth_clients WHERE org_id = $1 AND kind = $2 AND (name = $3 OR id = $3 OR client_id = $3)"
        ),
        org_id,
        kind.as_str(),
        key.trim()
    )?
    .ok_or_else(|| OAuthError::NotFound(format!("{} {key:?}", kind.noun())))
}

pub async fn find_in(
    db: &Db,
    org_id: &str,
    kind: ClientKind,
    key: &str,
) -> Result<Client, OAuthError> {
    let mut c = db.read().await?;
    find(&mut c, org_id, kind, key).await
}

/// Looks a client up by its public client id (any org).
pub async fn by_client_id<C: AsEx>(
    c: &mut C,
    client_id: &str,
) -> Result<Option<Client>, OAuthError> {
    Ok(fetch_optional!(
        c,
        Client,
        &format!("SELECT {COLS} FROM oauth_clients WHERE client_id = $1"),
        client_id
    )?)
}

#[derive(Default)]
pub struct Update {
    pub name: Option<String>,
    pub scope: Option<String>,
    pub callbacks: Option<Vec<String>>,
    pub lifetimes: Lifetimes,
}

pub async fn update(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    kind: ClientKind,
    key: &str,
    u: Update,
) -> Result<Client, OAuthError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let mut c = find(&mut tx, org_id, kind, key).await?;
    let mut changed = serde_json::Map::new();
    if let Some(n) = &u.name {
        c.name = validate_name(&format!("{} name", kind.noun()), n)?;
        changed.insert("name".into(), c.name.clone().into());
    }
    if let Some(s) = &u.scope {
        c.scope = parse_scope(s)?.as_str().to_string();
        changed.insert("scope".into(), c.scope.clone().into());
    }
    if let Some(cbs) = &u.callbacks {
        if kind == ClientKind::App {
            if cbs.is_empty() {
                return Err(OAuthError::InvalidRequest(
                    "an application needs at least one callback URL".into(),
                ));
            }
            let v = cbs
                .iter()
                .map(|c| validate_callback(c))
                .collect::<Result<Vec<_>, _>>()?;
            c.callbacks = serde_json::to_string(&v).unwrap_or_else(|_| "[]".into());
            changed.insert("callbacks".into(), v.into());
        }
    }
    validate_lifetimes(&u.lifetimes)?;
    if kind == ClientKind::M2m {
        check_m2m_ttl(u.lifetimes.access_ms, core.config.m2m_token_ttl_max.ms())?;
    }
    if let Some(v) = u.lifetimes.access_ms {
        c.access_ttl_ms = v;
        changed.insert("access_token_ttl".into(), (v / 1000).into());
    }
    if let Some(v) = u.lifetimes.refresh_ms {
        c.refresh_ttl_ms = v;
        changed.insert("refresh_token_ttl".into(), (v / 1000).into());
    }
    if let Some(v) = u.lifetimes.grace_ms {
        c.refresh_grace_ms = v;
        changed.insert("refresh_grace".into(), (v / 1000).into());
    }
    c.updated_at = now;
    let r = exec!(
        &mut tx,
        "UPDATE oauth_clients SET name = $1, scope = $2, callbacks = $3, access_ttl_ms = $4, refresh_ttl_ms = $5,
            refresh_grace_ms = $6, updated_at = $7 WHERE id = $8",
        &c.name,
        &c.scope,
        &c.callbacks,
        c.access_ttl_ms,
        c.refresh_ttl_ms,
        c.refresh_grace_ms,
        now,
        &c.id
    );
    match r {
        Err(e) if is_unique_violation(&e) => {
            return Err(OAuthError::Conflict(format!(
                "{} {:?}",
                kind.noun(),
                c.name
            )))
        }
        r => r?,
    };
    record(
        &mut tx,
        now,
        actor,
        &c,
        &format!("{}.update", c.kind),
        changed.into(),
    )
    .await?;
    tx.commit().await?;
    Ok(c)
}

pub async fn set_active(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    kind: ClientKind,
    key: &str,
    active: bool,
) -> Result<Client, OAuthError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let mut c = find(&mut tx, org_id, kind, key).await?;
    exec!(
        &mut tx,
        "UPDATE oauth_clients SET active = $1, updated_at = $2 WHERE id = $3",
        active,
        now,
        &c.id
    )?;
    c.active = active;
    c.updated_at = now;
    let action = format!(
        "{}.{}",
        c.kind,
        if active { "activate" } else { "deactivate" }
    );
    record(&mut tx, now, actor, &c, &action, serde_json::json!({})).await?;
    tx.commit().await?;
    Ok(c)
}

/// Deletes a client with every code, grant and token it has (cascade).
pub async fn delete(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    kind: ClientKind,
    key: &str,
) -> Result<Client, OAuthError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let c = find(&mut tx, org_id, kind, key).await?;
    let grants = crate::scalar_optional!(
        &mut tx,
        i64,
        "SELECT COUNT(*) FROM oauth_grants WHERE client_pk = $1",
        &c.id
    )?
    .unwrap_or(0);
    exec!(
        &mut tx,
        "DELETE FROM oauth_access_tokens WHERE client_pk = $1",
        &c.id
    )?;
    exec!(
        &mut tx,
        "DELETE FROM oauth_codes WHERE client_pk = $1",
        &c.id
    )?;
    exec!(
        &mut tx,
        "DELETE FROM oauth_refresh_tokens WHERE grant_id IN (SELECT id FROM oauth_grants WHERE client_pk = $1)",
        &c.id
    )?;
    exec!(
        &mut tx,
        "DELETE FROM oauth_grants WHERE client_pk = $1",
        &c.id
    )?;
    exec!(&mut tx, "DELETE FROM oauth_clients WHERE id = $1", &c.id)?;
    super::usage::forget_others(&mut tx, &c.id, &[]).await?;
    record(
        &mut tx,
        now,
        actor,
        &c,
        &format!("{}.delete", c.kind),
        serde_json::json!({
            "client_id": c.client_id, "authorizations_invalidated": grants,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(c)
}

/// A new secret; the old one dies at once, or after `overlap_ms`. A
/// previous secret that a rotation holds (until its cut-over retires it)
/// is not overwritten unless `supersede` (an incident's campaign, which
/// presumes both leaked).
pub async fn regenerate_secret(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    kind: ClientKind,
    key: &str,
    overlap_ms: i64,
    supersede: bool,
) -> Result<(Client, String), OAuthError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let c = find(&mut tx, org_id, kind, key).await?;
    if c.previous_held() && !supersede {
        return Err(super::previous_held(kind.noun(), &c.name, &c.id, &mut tx).await?);
    }
    let out = regenerate_secret_in(&mut tx, core, actor, c, Overlap::For(overlap_ms), now).await?;
    tx.commit().await?;
    Ok(out)
}

/// [`regenerate_secret`]'s writes in the caller's transaction, for client
/// `c` as read in it: the new secret (returned, to show once) becomes
/// current, the current one previous for `overlap`, with the audit event.
pub async fn regenerate_secret_in(
    tx: &mut Tx,
    core: &Core,
    actor: &Actor,
    c: Client,
    overlap: Overlap,
    now: i64,
) -> Result<(Client, String), OAuthError> {
    let secret = token::mint(TokenKind::ClientSecret);
    let c = set_secret_in(tx, actor, c, core.pepper.digest(&secret), overlap, now).await?;
    Ok((c, secret))
}

/// [`regenerate_secret_in`] for a secret minted elsewhere, given by its
/// `digest`: a connection that holds the client's secret mints the new one
/// and seals it before the client changes (`connectors::drivers::rekey`).
pub async fn set_secret_in(
    tx: &mut Tx,
    actor: &Actor,
    mut c: Client,
    digest: String,
    overlap: Overlap,
    now: i64,
) -> Result<Client, OAuthError> {
    let (prev, prev_until) = overlap.previous(&c.secret_digest, now)?;
    c.secret_digest = digest;
    c.prev_secret_digest = prev;
    c.prev_secret_expires_at = prev_until;
    c.updated_at = now;
    exec!(
        tx,
        "UPDATE oauth_clients SET secret_digest = $1, prev_secret_digest = $2, prev_secret_expires_at = $3, updated_at = $4 WHERE id = $5",
        &c.secret_digest,
        &c.prev_secret_digest,
        c.prev_secret_expires_at,
        now,
        &c.id
    )?;
    let keep = [
        c.secret_digest.as_str(),
        c.prev_secret_digest.as_deref().unwrap_or(""),
    ];
    super::usage::forget_others(tx, &c.id, &keep).await?;
    crate::rotation::age::secret_rotated(tx, &c.kind, &c.id, now).await?;
    record(
        tx,
        now,
        actor,
        &c,
        &format!("{}.regenerate_secret", c.kind),
        serde_json::json!({
            "overlap_seconds": overlap.seconds(),
        }),
    )
    .await?;
    Ok(c)
}

/// Ends client `c`'s previous secret if it is still the one with `digest`
/// (a rotation retires the secret it kept, not a later regeneration's),
/// with the audit event; true when it did.
pub async fn retire_previous_in(
    tx: &mut Tx,
    actor: &Actor,
    c: &Client,
    digest: &str,
    now: i64,
) -> Result<bool, OAuthError> {
    let ended = end_overlap_in(tx, &c.id, Some(digest), now).await?;
    if ended {
        record(
            tx,
            now,
            actor,
            c,
            &format!("{}.end_overlap", c.kind),
            serde_json::json!({"ended": true}),
        )
        .await?;
    }
    Ok(ended)
}

/// Puts client `before`'s secrets back as they were before a regeneration
/// that issued the digest `issued` (a rotation whose new secret did not
/// authenticate), in the caller's transaction; false when they changed since.
pub async fn restore_in(tx: &mut Tx, before: &Client, issued: &str) -> Result<bool, OAuthError> {
    let n = exec!(
        tx,
        "UPDATE oauth_clients SET secret_digest = $1, prev_secret_digest = $2, prev_secret_expires_at = $3, updated_at = $4
         WHERE id = $5 AND secret_digest = $6",
        &before.secret_digest,
        &before.prev_secret_digest,
        before.prev_secret_expires_at,
        before.updated_at,
        &before.id,
        issued
    )?;
    Ok(n == 1)
}

/// Ends a regenerated secret's overlap at once: the previous secret
/// (perhaps leaked) stops working, the new one goes on.
pub async fn end_overlap(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    kind: ClientKind,
    name: &str,
) -> Result<Client, OAuthError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let mut c = find(&mut tx, org_id, kind, name).await?;
    let ended = end_overlap_in(&mut tx, &c.id, None, now).await?;
    c.prev_secret_digest = None;
    c.prev_secret_expires_at = None;
    record(
        &mut tx,
        now,
        actor,
        &c,
        &format!("{}.end_overlap", c.kind),
        serde_json::json!({"ended": ended}),
    )
    .await?;
    tx.commit().await?;
    Ok(c)
}

/// [`end_overlap`]'s write, in the caller's transaction; true when an
/// overlap was live. With `only`, only while the previous digest is that
/// one (a rotation retires the secret it kept, not a later reset's).
pub async fn end_overlap_in(
    tx: &mut Tx,
    id: &str,
    only: Option<&str>,
    now: i64,
) -> Result<bool, OAuthError> {
    let n = exec!(
        tx,
        "UPDATE oauth_clients SET prev_secret_digest = NULL, prev_secret_expires_at = NULL, updated_at = $1
         WHERE id = $2 AND prev_secret_digest IS NOT NULL AND ($3 IS NULL OR prev_secret_digest = $3)",
        now,
        id,
        only
    )?;
    Ok(n == 1)
}

/// Bulk revocation of one client: every token it was issued before `cutoff`
/// stops working (one write, checked at validation).
pub async fn revoke_tokens_before(
    core: &Core,
    actor: &Actor,
    c: &Client,
    cutoff: i64,
    reason: Option<&str>,
) -> Result<(), OAuthError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    exec!(
        &mut tx,
        "UPDATE oauth_clients SET revoked_before = $1, revoked_reason = $2, updated_at = $3 WHERE id = $4",
        // Past whatever the old secret may still mint on an instance that
        // has not seen this change yet (`epoch::cutoff`).
        crate::store::epoch::cutoff(now.max(cutoff)),
        reason,
        now,
        &c.id
    )?;
    record(
        &mut tx,
        now,
        actor,
        c,
        &format!("{}.revoke_tokens", c.kind),
        serde_json::json!({"issued_before": crate::clock::rfc3339(cutoff)}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
