//! One age view over every credential rekey issues or holds — connection
//! credentials, access keys, machine-client and application secrets,
//! provider OAuth clients, master keys — with its age, last use, last
//! verification, rotation mode and next due date, worst first
//! (`rekey credentials age`); and the rotation schedule of rekey's own
//! secrets (`key|m2m|app update --rotation-interval`).
//!
//! Own secrets that fall due are flagged, not rotated by themselves: a new
//! access key or client secret is shown once to whoever rotates it, and a
//! rotation nobody watches would hand it to no one. The scheduler raises
//! `credential.expiring` and `rotation.due` for them (`schedule::note_own`).

use serde::Serialize;
use serde_json::json;

use super::RotationError;
use crate::audit::{self, Actor, Event};
use crate::clock::rfc3339;
use crate::connectors::catalog::Rotation as Mode;
use crate::state::Core;
use crate::store::Tx;
use crate::{exec, fetch_all};

const DAY: i64 = 86_400_000;

/// Records that the secret of `target_type` (`key`, `m2m`, `app`) `id` was
/// replaced now, in the caller's transaction.
pub async fn secret_rotated(
    tx: &mut Tx,
    target_type: &str,
    id: &str,
    now: i64,
) -> Result<(), crate::store::StoreError> {
    exec!(
        tx,
        "INSERT INTO secret_schedules (target_type, target_id, rotated_at) VALUES ($1, $2, $3)
         ON CONFLICT (target_type, target_id) DO UPDATE SET rotated_at = excluded.rotated_at",
        target_type,
        id,
        now
    )?;
    Ok(())
}

/// What an own secret's schedule names.
pub enum Own {
    Key,
    M2m,
    App,
}

impl Own {
    fn as_str(&self) -> &'static str {
        match self {
            Own::Key => "key",
            Own::M2m => "m2m",
            Own::App => "app",
        }
    }
}

/// Sets (or with `None` clears) the rotation interval of an access key,
/// machine client or application, found by name in `org_id`.
pub async fn set_interval(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    what: Own,
    name: &str,
    interval_ms: Option<i64>,
) -> Result<AgeRow, RotationError> {
    if let Some(ms) = interval_ms {
        if !(3_600_000..=3650 * DAY).contains(&ms) {
            return Err(RotationError::Invalid(
                "the rotation interval must be between 1h and 3650d (0 turns the schedule off)"
                    .into(),
            ));
        }
    }
    let id = match what {
        Own::Key => {
            crate::oauth::access_keys::find(&mut core.db.read().await?, org_id, name)
                .await?
                .id
        }
        Own::M2m => {
            crate::oauth::clients::find_in(
                &core.db,
                org_id,
                crate::oauth::clients::ClientKind::M2m,
                name,
            )
            .await?
            .id
        }
        Own::App => {
            crate::oauth::clients::find_in(
                &core.db,
                org_id,
                crate::oauth::clients::ClientKind::App,
                name,
            )
            .await?
            .id
        }
    };
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    exec!(
        &mut tx,
        "INSERT INTO secret_schedules (target_type, target_id, rotation_interval_ms) VALUES ($1, $2, $3)
         ON CONFLICT (target_type, target_id) DO UPDATE SET rotation_interval_ms = excluded.rotation_interval_ms",
        what.as_str(),
        &id,
        interval_ms
    )?;
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: Some(org_id),
            action: "rotation.schedule",
            target: Some(&id),
            detail: json!({"type": what.as_str(), "name": name, "interval_seconds": interval_ms.map(|ms| ms / 1000)}),
        },
    )
    .await?;
    tx.commit().await?;
    let rows = list(core, Some(org_id), None).await?;
    rows.into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| RotationError::NotFound(format!("{} {name}", what.as_str())))
}

/// One credential in the age view.
#[derive(Serialize, Debug, Clone, utoipa::ToSchema)]
pub struct AgeRow {
    /// `connection`, `access_key`, `m2m_secret`, `app_secret`,
    /// `provider_client`, `master_key`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip)]
    pub id: String,
    /// The org's slug; none for the platform's own (provider clients,
    /// master keys).
    pub org: Option<String>,
    pub name: String,
    /// What it is for (a connection's kind and method, a client's scope).
    pub detail: String,
    pub age_s: i64,
    /// Since when the value in force has been set.
    pub since: String,
    pub last_used_at: Option<String>,
    pub last_verified_at: Option<String>,
    /// `automatic` (rekey rotates it), `reauthorize`, `manual`.
    pub rotation: String,
    pub rotation_interval_s: Option<i64>,
    pub next_due_at: Option<String>,
    pub due: bool,
    /// A due connection whose scheduled rotation cannot start by itself:
    /// why, and what a person must do (`rotation::schedule`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    #[serde(skip)]
    since_ms: i64,
    #[serde(skip)]
    pub due_ms: Option<i64>,
}

#[allow(clippy::too_many_arguments)]
fn row(
    now: i64,
    kind: &str,
    id: String,
    org: Option<String>,
    name: String,
    detail: String,
    since_ms: i64,
    last_used: Option<i64>,
    last_verified: Option<i64>,
    rotation: &str,
    interval_ms: Option<i64>,
) -> AgeRow {
    let due_ms = interval_ms.map(|i| since_ms.saturating_add(i));
    AgeRow {
        kind: kind.into(),
        id,
        org,
        name,
        detail,
        age_s: now.saturating_sub(since_ms).max(0) / 1000,
        since: rfc3339(since_ms),
        last_used_at: last_used.map(rfc3339),
        last_verified_at: last_verified.map(rfc3339),
        rotation: rotation.into(),
        rotation_interval_s: interval_ms.map(|ms| ms / 1000),
        next_due_at: due_ms.map(rfc3339),
        due: due_ms.is_some_and(|d| d <= now),
        waiting: None,
        since_ms,
        due_ms,
    }
}

#[derive(sqlx::FromRow)]
struct ConnRow {
    id: String,
    org: String,
    name: String,
    kind: String,
    auth: String,
    since: i64,
    last_read_at: Option<i64>,
    verified_at: Option<i64>,
    last_test_at: Option<i64>,
    last_test_outcome: Option<String>,
    rotation_interval_ms: Option<i64>,
    /// When the scheduler's due period began (`rotation::schedule`).
    scheduled_from: i64,
    rotation_waiting: Option<String>,
    rotation_waiting_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct SecretRow {
    id: String,
    org: String,
    name: String,
    detail: String,
    since: i64,
    last_used_at: Option<i64>,
    rotation_interval_ms: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct ProviderRow {
    kind: String,
    client_id: String,
    updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct KeyUse {
    key_id: String,
    values: i64,
    oldest: i64,
    newest: i64,
}

/// Every credential of `org_id` (or of every org and the platform's own,
/// with `None`) at least `older_than_ms` old, worst first: those past due
/// (most overdue first), then the rest, oldest first.
pub async fn list(
    core: &Core,
    org_id: Option<&str>,
    older_than_ms: Option<i64>,
) -> Result<Vec<AgeRow>, RotationError> {
    let now = core.now();
    let org = org_id.unwrap_or("");
    let mut c = core.db.read().await?;
    let mut out = Vec::new();
    let conns = fetch_all!(
        &mut c,
        ConnRow,
        "SELECT c.id, o.slug AS org, c.name, c.kind, c.auth,
                COALESCE(s.created_at, c.last_rotated_at, c.created_at) AS since,
                s.last_read_at, s.verified_at, c.last_test_at, c.last_test_outcome, c.rotation_interval_ms,
                COALESCE(c.last_rotated_at, c.created_at) AS scheduled_from,
                c.rotation_waiting, c.rotation_waiting_at
         FROM connections c JOIN orgs o ON o.id = c.org_id
         LEFT JOIN credential_slots s ON s.connection_id = c.id AND s.slot = 'current'
         WHERE c.has_credentials = TRUE AND ($1 = '' OR c.org_id = $1)",
        org
    )?;
    for r in conns {
        let mode = crate::connectors::catalog::kind(&r.kind)
            .and_then(|k| k.method(&r.auth))
            .map(|m| match m.rotation {
                Mode::Automatic => "automatic",
                Mode::Reauthorize => "reauthorize",
                _ => "manual",
            })
            .unwrap_or("manual");
        let tested_ok = r
            .last_test_at
            .filter(|_| r.last_test_outcome.as_deref() == Some("ok"));
        let verified = r.verified_at.max(tested_ok);
        let waiting = crate::connectors::connections::waiting_now(
            r.rotation_waiting.as_deref(),
            r.rotation_waiting_at,
            r.rotation_interval_ms
                .map(|i| r.scheduled_from.saturating_add(i)),
            now,
        )
        .map(str::to_string);
        let mut a = row(
            now,
            "connection",
            r.id,
            Some(r.org),
            r.name,
            format!("{} ({})", r.kind, r.auth),
            r.since,
            r.last_read_at,
            verified,
            mode,
            r.rotation_interval_ms,
        );
        a.waiting = waiting;
        out.push(a);
    }
    let keys = fetch_all!(
        &mut c,
        SecretRow,
        "SELECT k.id, o.slug AS org, k.name, k.scope AS detail,
                COALESCE(s.rotated_at, k.created_at) AS since, k.last_used_at, s.rotation_interval_ms
         FROM access_keys k JOIN orgs o ON o.id = k.org_id
         LEFT JOIN secret_schedules s ON s.target_type = 'key' AND s.target_id = k.id
         WHERE k.revoked_at IS NULL AND ($1 = '' OR k.org_id = $1)",
        org
    )?;
    for r in keys {
        out.push(row(
            now,
            "access_key",
            r.id,
            Some(r.org),
            r.name,
            format!("scope {}", r.detail),
            r.since,
            r.last_used_at,
            None,
            "automatic",
            r.rotation_interval_ms,
        ));
    }
    let clients = fetch_all!(
        &mut c,
        SecretRow,
        "SELECT cl.id, o.slug AS org, cl.name, cl.kind AS detail,
                COALESCE(s.rotated_at, cl.created_at) AS since,
                (SELECT MAX(g.last_used_at) FROM oauth_grants g WHERE g.client_pk = cl.id) AS last_used_at,
                s.rotation_interval_ms
         FROM oauth_clients cl JOIN orgs o ON o.id = cl.org_id
         LEFT JOIN secret_schedules s ON s.target_type = cl.kind AND s.target_id = cl.id
         WHERE ($1 = '' OR cl.org_id = $1)",
        org
    )?;
    for r in clients {
        let kind = if r.detail == "m2m" {
            "m2m_secret"
        } else {
            "app_secret"
        };
        out.push(row(
            now,
            kind,
            r.id,
            Some(r.org),
            r.name,
            format!("{} client", r.detail),
            r.since,
            r.last_used_at,
            None,
            "automatic",
            r.rotation_interval_ms,
        ));
    }
    if org_id.is_none() {
        let providers = fetch_all!(
            &mut c,
            ProviderRow,
            "SELECT kind, client_id, updated_at FROM connector_clients"
        )?;
        for p in providers {
            out.push(row(
                now,
                "provider_client",
                p.kind.clone(),
                None,
                p.kind,
                format!("OAuth client {} at the provider", p.client_id),
                p.updated_at,
                None,
                None,
                "manual",
                None,
            ));
        }
        // A master key's age is that of the oldest value still sealed
        // under it: what a key rotation would have to re-seal.
        let uses = fetch_all!(
            &mut c,
            KeyUse,
            "SELECT key_id, COUNT(*) AS \"values\", MIN(updated_at) AS oldest, MAX(updated_at) AS newest
             FROM sealed GROUP BY key_id"
        )?;
        for (i, key_id) in core.keyring.key_ids().into_iter().enumerate() {
            let u = uses.iter().find(|u| u.key_id == key_id);
            let role = if i == 0 {
                "newest: seals new values"
            } else {
                "older: opens values not yet re-sealed"
            };
            out.push(row(
                now,
                "master_key",
                key_id.clone(),
                None,
                key_id,
                format!(
                    "{role}; {} values sealed under it",
                    u.map(|u| u.values).unwrap_or(0)
                ),
                u.map(|u| u.oldest).unwrap_or(now),
                u.map(|u| u.newest),
                None,
                "manual",
                None,
            ));
        }
    }
    if let Some(min) = older_than_ms {
        out.retain(|r| now.saturating_sub(r.since_ms) >= min);
    }
    // Worst first: overdue (most overdue first), then the oldest.
    out.sort_by(|a, b| {
        let overdue = |r: &AgeRow| r.due_ms.filter(|_| r.due);
        match (overdue(a), overdue(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.since_ms.cmp(&b.since_ms),
        }
    });
    Ok(out)
}
