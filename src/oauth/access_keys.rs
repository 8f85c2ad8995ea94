//! Org access keys, sent in an `Accesskey` header. Stored as digests only;
//! a reset keeps the previous digest for an optional overlap. `last used` is
//! kept in memory and flushed in batches, so a request is not a write.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use super::guard::{AuthMethod, Caller, GuardError};
use super::{parse_scope, OAuthError};
use crate::audit::{self, Actor, Event};
use crate::clock::rfc3339;
use crate::crypto::token::{self, ct_eq, TokenKind};
use crate::identity::{validate_name, Permission};
use crate::state::Core;
use crate::store::{is_unique_violation, new_id, AsEx, Db, Tx};
use crate::{exec, fetch_all, fetch_optional};

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct AccessKey {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub scope: String,
    pub digest: String,
    pub prev_digest: Option<String>,
    pub prev_expires_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

const COLS: &str = "id, org_id, name, scope, digest, prev_digest, prev_expires_at, expires_at, created_at, updated_at, last_used_at, revoked_at";

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub scope: String,
    pub status: &'static str,
    pub created: String,
    pub last_used: Option<String>,
    pub expires: Option<String>,
    pub previous_key_valid_until: Option<String>,
}

impl AccessKey {
    pub fn status(&self, now: i64) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|t| t <= now) {
            "expired"
        } else {
            "active"
        }
    }

    pub fn view(&self, now: i64) -> KeyView {
        KeyView {
            id: self.id.clone(),
            name: self.name.clone(),
            scope: self.scope.clone(),
            status: self.status(now),
            created: rfc3339(self.created_at),
            last_used: self.last_used_at.map(rfc3339),
            expires: self.expires_at.map(rfc3339),
            previous_key_valid_until: self
                .prev_expires_at
                .filter(|t| *t > now && self.revoked_at.is_none())
                .map(rfc3339),
        }
    }
}

async fn record(
    tx: &mut Tx,
    now: i64,
    actor: &Actor,
    k: &AccessKey,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), OAuthError> {
    audit::record(
        tx,
        now,
        actor,
        Event {
            org_id: Some(&k.org_id),
            action,
            target: Some(&k.name),
            detail,
        },
    )
    .await?;
    Ok(())
}

/// Creates a key; returns it and the key itself (shown once).
pub async fn create(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    name: &str,
    scope: &str,
    expires_in_ms: Option<i64>,
) -> Result<(AccessKey, String), OAuthError> {
    let name = validate_name("key name", name)?;
    let scope = parse_scope(scope)?;
    if let Some(ms) = expires_in_ms {
        if ms < 1000 {
            return Err(OAuthError::InvalidRequest(
                "--expires must be at least 1s".into(),
            ));
        }
    }
    let secret = token::mint(TokenKind::AccessKey);
    let now = core.now();
    let k = AccessKey {
        id: new_id(),
        org_id: org_id.to_string(),
        name,
        scope: scope.as_str().to_string(),
        digest: core.pepper.digest(&secret),
        prev_digest: None,
        prev_expires_at: None,
        expires_at: expires_in_ms.map(|ms| now + ms),
        created_at: now,
        updated_at: now,
        last_used_at: None,
        revoked_at: None,
    };
    let mut tx = core.db.begin_write().await?;
    let r = exec!(
        &mut tx,
        "INSERT INTO access_keys (id, org_id, name, scope, digest, expires_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &k.id,
        &k.org_id,
        &k.name,
        &k.scope,
        &k.digest,
        k.expires_at,
        now,
        now
    );
    match r {
        Err(e) if is_unique_violation(&e) => {
            return Err(OAuthError::Conflict(format!("access key {:?}", k.name)))
        }
        r => r?,
    };
    record(
        &mut tx,
        now,
        actor,
        &k,
        "key.create",
        serde_json::json!({"scope": k.scope, "expires_at": k.expires_at}),
    )
    .await?;
    tx.commit().await?;
    Ok((k, secret))
}

pub async fn list(db: &Db, org_id: &str) -> Result<Vec<AccessKey>, OAuthError> {
    let mut c = db.read().await?;
    Ok(fetch_all!(
        &mut c,
        AccessKey,
        &format!("SELECT {COLS} FROM access_keys WHERE org_id = $1 ORDER BY name"),
        org_id
    )?)
}

pub async fn find<C: AsEx>(c: &mut C, org_id: &str, key: &str) -> Result<AccessKey, OAuthError> {
    fetch_optional!(
        c,
        AccessKey,
        &format!("SELECT {COLS} FROM access_keys WHERE org_id = $1 AND (name = $2 OR id = $2)"),
        org_id,
        key.trim()
    )?
    .ok_or_else(|| OAuthError::NotFound(format!("access key {key:?}")))
}

/// A new key for the same name and scope; the old one dies at once, or
/// when `overlap_ms` has passed.
pub async fn reset(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    name: &str,
    overlap_ms: i64,
) -> Result<(AccessKey, String), OAuthError> {
    if !(0..=crate::rotation::limits::MAX_OVERLAP_MS).contains(&overlap_ms) {
        return Err(OAuthError::InvalidRequest(
            "overlap must be between 0s and 30d".into(),
        ));
    }
    let now = core.now();
    let secret = token::mint(TokenKind::AccessKey);
    let mut tx = core.db.begin_write().await?;
    let mut k = find(&mut tx, org_id, name).await?;
    if k.revoked_at.is_some() {
        return Err(OAuthError::InvalidRequest(format!(
            "access key {:?} is revoked; create a new one",
            k.name
        )));
    }
    let (prev, until) = if overlap_ms > 0 {
        (Some(k.digest.clone()), Some(now + overlap_ms))
    } else {
        (None, None)
    };
    k.digest = core.pepper.digest(&secret);
    k.prev_digest = prev;
    k.prev_expires_at = until;
    k.updated_at = now;
    exec!(
        &mut tx,
        "UPDATE access_keys SET digest = $1, prev_digest = $2, prev_expires_at = $3, updated_at = $4 WHERE id = $5",
        &k.digest,
        &k.prev_digest,
        k.prev_expires_at,
        now,
        &k.id
    )?;
    crate::rotation::age::secret_rotated(&mut tx, "key", &k.id, now).await?;
    record(
        &mut tx,
        now,
        actor,
        &k,
        "key.reset",
        serde_json::json!({"overlap_seconds": overlap_ms / 1000}),
    )
    .await?;
    tx.commit().await?;
    Ok((k, secret))
}

/// Ends a reset's overlap at once: the previous value (perhaps leaked)
/// stops working, the current one goes on. Nothing to end is not an error.
pub async fn end_overlap(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    name: &str,
) -> Result<AccessKey, OAuthError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let mut k = find(&mut tx, org_id, name).await?;
    let ended = end_overlap_in(&mut tx, &k.id, now).await?;
    k.prev_digest = None;
    k.prev_expires_at = None;
    record(
        &mut tx,
        now,
        actor,
        &k,
        "key.end_overlap",
        serde_json::json!({"ended": ended}),
    )
    .await?;
    tx.commit().await?;
    Ok(k)
}

/// [`end_overlap`]'s write, in the caller's transaction; true when an
/// overlap was live.
pub async fn end_overlap_in(tx: &mut Tx, id: &str, now: i64) -> Result<bool, OAuthError> {
    let n = exec!(
        tx,
        "UPDATE access_keys SET prev_digest = NULL, prev_expires_at = NULL, updated_at = $1
         WHERE id = $2 AND prev_digest IS NOT NULL",
        now,
        id
    )?;
    Ok(n == 1)
}

pub async fn revoke(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    name: &str,
) -> Result<AccessKey, OAuthError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let mut k = find(&mut tx, org_id, name).await?;
    exec!(
        &mut tx,
        "UPDATE access_keys SET revoked_at = COALESCE(revoked_at, $1), updated_at = $1 WHERE id = $2",
        now,
        &k.id
    )?;
    k.revoked_at = k.revoked_at.or(Some(now));
    record(&mut tx, now, actor, &k, "key.revoke", serde_json::json!({})).await?;
    tx.commit().await?;
    Ok(k)
}

#[derive(sqlx::FromRow, Debug)]
pub struct KeyAuthRow {
    id: String,
    org_id: String,
    org_slug: String,
    scope: String,
    digest: String,
    prev_digest: Option<String>,
    prev_expires_at: Option<i64>,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    org_cutoff: Option<i64>,
    updated_at: i64,
}

impl KeyAuthRow {
    /// True when `digest` is one of this key's live digests and the key is live.
    fn live(&self, digest: &str, well_formed: bool, now: i64) -> bool {
        let current = ct_eq(self.digest.as_bytes(), digest.as_bytes());
        let previous = self
            .prev_digest
            .as_deref()
            .is_some_and(|d| ct_eq(d.as_bytes(), digest.as_bytes()))
            && self.prev_expires_at.is_some_and(|t| t > now);
        // An org-wide cut-off kills keys last set before it.
        let cut = self.org_cutoff.is_some_and(|t| self.updated_at < t);
        well_formed
            && (current || previous)
            && self.revoked_at.is_none()
            && self.expires_at.is_none_or(|t| t > now)
            && !cut
    }

    fn caller(&self) -> Caller {
        Caller {
            org_id: self.org_id.clone(),
            org: self.org_slug.clone(),
            user_id: None,
            user: None,
            client_id: None,
            scope: self.scope.parse().unwrap_or(Permission::Read),
            method: AuthMethod::AccessKey,
        }
    }
}

/// Authenticates an `Accesskey` header. Malformed, unknown, revoked and
/// expired keys take the same path (one lookup by digest) and the same
/// answer: only live keys are served from the validation cache, and a
/// cached key that is no longer live is looked up again like any other.
pub async fn authenticate(core: &Core, presented: &str) -> Result<Caller, GuardError> {
    let digest = core.pepper.digest(presented.trim());
    let well_formed = token::well_formed(TokenKind::AccessKey, presented.trim());
    let now = core.now();
    let load = async {
        let mut c = core.db.read().await?;
        let row = fetch_optional!(
            &mut c,
            KeyAuthRow,
            "SELECT k.id, k.org_id, o.slug AS org_slug, k.scope, k.digest, k.prev_digest, k.prev_expires_at, k.expires_at,
                    k.revoked_at, o.revoked_before AS org_cutoff, k.updated_at
             FROM access_keys k JOIN orgs o ON o.id = k.org_id
             WHERE k.digest = $1 OR k.prev_digest = $1",
            &digest
        )?;
        Ok::<_, GuardError>(row.map(std::sync::Arc::new))
    };
    let live = |k: &std::sync::Arc<KeyAuthRow>| k.live(&digest, well_formed, now);
    let k = core
        .cache
        .keys
        .get_or_load(core.db.epoch(), &digest, live, load)
        .await?
        .filter(|k| live(k))
        .ok_or(GuardError::Invalid)?;
    core.key_usage.touch(&k.id, now);
    Ok(k.caller())
}

/// Last-used times noted in memory and written in batches.
#[derive(Debug, Default)]
pub struct UsageTracker {
    pending: Mutex<HashMap<String, i64>>,
}

impl UsageTracker {
    pub fn touch(&self, key_id: &str, now: i64) {
        let mut m = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        // The common case, a key already noted, allocates nothing.
        match m.get_mut(key_id) {
            Some(e) => *e = (*e).max(now),
            None => {
                m.insert(key_id.to_string(), now);
            }
        }
    }

    /// Writes what was noted since the last flush; returns how many keys.
    pub async fn flush(&self, db: &Db) -> Result<usize, crate::store::StoreError> {
        let batch: Vec<(String, i64)> = {
            let mut m = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            m.drain().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let mut tx = db.begin_write().await?;
        for (id, at) in &batch {
            exec!(
                &mut tx,
                "UPDATE access_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
                *at,
                id
            )?;
        }
        tx.commit().await?;
        Ok(batch.len())
    }
}
