//! Org access keys, sent in an `Accesskey` header. Stored as digests only;
//! a reset keeps the previous digest for an optional overlap, or until the
//! rotation that reset it retires it. Each use is noted per secret in
//! memory and written in batches (`super::usage`), so a request is not a
//! write.

use serde::Serialize;

use super::guard::{AuthMethod, Caller, GuardError};
use super::usage::{self, Owner, UsedBy};
use super::{parse_scope, OAuthError, Overlap};
use crate::audit::{self, Actor, Event};
use crate::clock::rfc3339;
use crate::crypto::token::{self, ct_eq, TokenKind};
use crate::identity::{validate_name, Permission};
use crate::state::Core;
use crate::store::keyset::{self, Cursor, Page};
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
    /// The previous key still works: until `previous_key_valid_until`, or,
    /// when that is null, until the rotation that replaced it retires it.
    pub previous_key_live: bool,
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
            previous_key_live: self.revoked_at.is_none() && self.previous_live(now),
        }
    }

    /// The previous key still works (a reset's overlap, or held by a
    /// rotation until it retires it).
    pub fn previous_live(&self, now: i64) -> bool {
        self.prev_digest.is_some() && self.prev_expires_at.is_none_or(|t| t > now)
    }

    /// The previous key is held by a rotation: it works until the
    /// rotation's cut-over retires it.
    pub fn previous_held(&self) -> bool {
        self.prev_digest.is_some() && self.prev_expires_at.is_none()
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

/// The live keys (not revoked) whose expiry falls between `from` and `to`,
/// soonest first, at most `limit`: of `org_id`, or every org's with
/// `None` (the landing page's "expires soon").
pub async fn expiring(
    db: &Db,
    org_id: Option<&str>,
    from: i64,
    to: i64,
    limit: i64,
) -> Result<Vec<AccessKey>, OAuthError> {
    let mut c = db.read().await?;
    Ok(fetch_all!(
        &mut c,
        AccessKey,
        &format!(
            "SELECT {COLS} FROM access_keys
             WHERE revoked_at IS NULL AND expires_at IS NOT NULL AND expires_at >= $1 AND expires_at <= $2
               AND ($3 = '' OR org_id = $3)
             ORDER BY expires_at, id LIMIT $4"
        ),
        from,
        to,
        org_id.unwrap_or(""),
        limit
    )?)
}

/// One page of an org's access keys by name (keyset `NAME.ID` after
/// `after`, the `next` of the page before), with the exact total.
pub async fn page(
    db: &Db,
    org_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<AccessKey>, OAuthError> {
    let after = Cursor::opt(after).map_err(|e| OAuthError::InvalidRequest(e.to_string()))?;
    let (a_name, a_id) = after.map(|c| (c.key, c.id)).unwrap_or_default();
    let limit = keyset::limit(limit);
    let mut c = db.read().await?;
    let total = crate::scalar_optional!(
        &mut c,
        i64,
        "SELECT COUNT(*) FROM access_keys WHERE org_id = $1",
        org_id
    )?
    .unwrap_or(0);
    let rows = fetch_all!(
        &mut c,
        AccessKey,
        &format!(
            "SELECT {COLS} FROM access_keys WHERE org_id = $1
               AND (name > $2 OR (name = $2 AND id > $3))
             ORDER BY name, id LIMIT $4"
        ),
        org_id,
        &a_name,
        &a_id,
        limit + 1
    )?;
    Ok(Page::from_rows(rows, limit, total, |k| {
        Cursor::of(&k.name, &k.id)
    }))
}

pub async fn find<C: AsEx>(c: &mut C, org_id: &str, key: &str) -> Result<AccessKey, OAuthError> {
    fetch_optional!(
        c,
        AccessKey,
        // By name, then by id: each half is one index probe, where `name =
        // $2 OR id = $2` read every row of the org (0.5 ms a lookup at a
        // thousand connections, growing with the org).
        &format!(
            "SELECT {COLS} FROM access_keys WHERE org_id = $1 AND name = $2
             UNION ALL SELECT {COLS} FROM access_keys WHERE id = $2 AND org_id = $1 LIMIT 1"
        ),
        org_id,
        key.trim()
    )?
    .ok_or_else(|| OAuthError::NotFound(format!("access key {key:?}")))
}

/// A new key for the same name and scope; the old one dies at once, or
/// when `overlap_ms` has passed. A previous key that a rotation holds
/// (until its cut-over retires it) is not overwritten unless `supersede`
/// (an incident's campaign, which presumes both leaked).
pub async fn reset(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    name: &str,
    overlap_ms: i64,
    supersede: bool,
) -> Result<(AccessKey, String), OAuthError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let k = find(&mut tx, org_id, name).await?;
    if k.previous_held() && !supersede {
        return Err(super::previous_held("access key", &k.name, &k.id, &mut tx).await?);
    }
    let out = reset_in(&mut tx, core, actor, k, Overlap::For(overlap_ms), now).await?;
    tx.commit().await?;
    Ok(out)
}

/// [`reset`]'s writes in the caller's transaction, for key `k` as read in
/// it: the new key (returned, to show once) becomes current, the current
/// one previous for `overlap`, with the audit event.
pub async fn reset_in(
    tx: &mut Tx,
    core: &Core,
    actor: &Actor,
    k: AccessKey,
    overlap: Overlap,
    now: i64,
) -> Result<(AccessKey, String), OAuthError> {
    let secret = token::mint(TokenKind::AccessKey);
    let k = set_value_in(tx, actor, k, core.pepper.digest(&secret), overlap, now).await?;
    Ok((k, secret))
}

/// [`reset_in`] for a value minted elsewhere, given by its `digest`: a
/// connection that holds the key mints the new value and seals it before
/// the key changes (`connectors::drivers::rekey`).
pub async fn set_value_in(
    tx: &mut Tx,
    actor: &Actor,
    mut k: AccessKey,
    digest: String,
    overlap: Overlap,
    now: i64,
) -> Result<AccessKey, OAuthError> {
    if k.revoked_at.is_some() {
        return Err(OAuthError::InvalidRequest(format!(
            "access key {:?} is revoked; create a new one",
            k.name
        )));
    }
    let (prev, until) = overlap.previous(&k.digest, now)?;
    k.digest = digest;
    k.prev_digest = prev;
    k.prev_expires_at = until;
    k.updated_at = now;
    exec!(
        tx,
        "UPDATE access_keys SET digest = $1, prev_digest = $2, prev_expires_at = $3, updated_at = $4 WHERE id = $5",
        &k.digest,
        &k.prev_digest,
        k.prev_expires_at,
        now,
        &k.id
    )?;
    let keep = [k.digest.as_str(), k.prev_digest.as_deref().unwrap_or("")];
    usage::forget_others(tx, &k.id, &keep).await?;
    crate::rotation::age::secret_rotated(tx, "key", &k.id, now).await?;
    record(
        tx,
        now,
        actor,
        &k,
        "key.reset",
        serde_json::json!({"overlap_seconds": overlap.seconds()}),
    )
    .await?;
    Ok(k)
}

/// The key of `org_id` whose current or previous value has `digest`.
pub async fn by_digest<C: AsEx>(
    c: &mut C,
    org_id: &str,
    digest: &str,
) -> Result<Option<AccessKey>, OAuthError> {
    Ok(fetch_optional!(
        c,
        AccessKey,
        &format!(
            "SELECT {COLS} FROM access_keys WHERE org_id = $1 AND (digest = $2 OR prev_digest = $2)"
        ),
        org_id,
        digest
    )?)
}

/// Ends key `k`'s previous value if it is still the one with `digest` (a
/// rotation retires the value it kept, not a later reset's), with the
/// audit event; true when it did.
pub async fn retire_previous_in(
    tx: &mut Tx,
    actor: &Actor,
    k: &AccessKey,
    digest: &str,
    now: i64,
) -> Result<bool, OAuthError> {
    let ended = end_overlap_in(tx, &k.id, Some(digest), now).await?;
    if ended {
        record(
            tx,
            now,
            actor,
            k,
            "key.end_overlap",
            serde_json::json!({"ended": true}),
        )
        .await?;
    }
    Ok(ended)
}

/// Puts key `before` back as it was before a reset that issued the digest
/// `issued` (a rotation whose new key did not authenticate), in the
/// caller's transaction; false when the key changed since.
pub async fn restore_in(tx: &mut Tx, before: &AccessKey, issued: &str) -> Result<bool, OAuthError> {
    let n = exec!(
        tx,
        "UPDATE access_keys SET digest = $1, prev_digest = $2, prev_expires_at = $3, updated_at = $4
         WHERE id = $5 AND digest = $6",
        &before.digest,
        &before.prev_digest,
        before.prev_expires_at,
        before.updated_at,
        &before.id,
        issued
    )?;
    Ok(n == 1)
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
    let ended = end_overlap_in(&mut tx, &k.id, None, now).await?;
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
        "UPDATE access_keys SET prev_digest = NULL, prev_expires_at = NULL, updated_at = $1
         WHERE id = $2 AND prev_digest IS NOT NULL AND ($3 IS NULL OR prev_digest = $3)",
        now,
        id,
        only
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
        // A previous key without an end is held by its rotation until the
        // cut-over retires it.
        let previous = self
            .prev_digest
            .as_deref()
            .is_some_and(|d| ct_eq(d.as_bytes(), digest.as_bytes()))
            && self.prev_expires_at.is_none_or(|t| t > now);
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
/// A use is noted for the secret presented (`by`; `None` for rekey's own
/// check of a key it just issued, which is no use).
pub async fn authenticate(
    core: &Core,
    presented: &str,
    by: Option<&UsedBy<'_>>,
) -> Result<Caller, GuardError> {
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
    if let Some(by) = by {
        core.usage.touch(Owner::AccessKey, &k.id, &digest, now, by);
    }
    Ok(k.caller())
}
