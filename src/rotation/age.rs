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
use crate::store::sql::{fetch_all_args, param_list, Arg};
use crate::store::Tx;
use crate::{exec, fetch_all};

pub mod paged;

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
    pub(super) since_ms: i64,
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

/// The ids the detail queries of `gather` are limited to: those of one
/// page (`paged`), by the table they live in.
#[derive(Default)]
pub(super) struct Only {
    pub connections: Vec<String>,
    pub keys: Vec<String>,
    pub clients: Vec<String>,
    pub providers: Vec<String>,
}

/// `sql` run with `$1` = `org` (`''` for every org), limited with
/// `AND {col} IN (…)` to `only` when a page names its ids; `None` when the
/// page names none of this table's.
async fn detail<T>(
    c: &mut crate::store::Conn,
    sql: &str,
    org: &str,
    col: &str,
    only: Option<&[String]>,
) -> Result<Vec<T>, RotationError>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    let mut args = vec![Arg::Text(org.to_string())];
    let sql = match only {
        None => sql.to_string(),
        Some([]) => return Ok(vec![]),
        Some(ids) => {
            args.extend(ids.iter().cloned().map(Arg::Text));
            format!("{sql} AND {col} IN ({})", param_list(2, ids.len()))
        }
    };
    Ok(fetch_all_args(c, &sql, args).await?)
}

/// The credentials rekey holds in tables (every kind but master keys) of
/// `org` (`''`: every org), all of them or only `only`'s, unordered.
pub(super) async fn gather(
    c: &mut crate::store::Conn,
    now: i64,
    org: &str,
    only: Option<&Only>,
) -> Result<Vec<AgeRow>, RotationError> {
    let mut out = Vec::new();
    let conns: Vec<ConnRow> = detail(
        c,
        "SELECT c.id, o.slug AS org, c.name, c.kind, c.auth,
                COALESCE(s.created_at, c.last_rotated_at, c.created_at) AS since,
                s.last_read_at, s.verified_at, c.last_test_at, c.last_test_outcome, c.rotation_interval_ms,
                COALESCE(c.last_rotated_at, c.created_at) AS scheduled_from,
                c.rotation_waiting, c.rotation_waiting_at
         FROM connections c JOIN orgs o ON o.id = c.org_id
         LEFT JOIN credential_slots s ON s.connection_id = c.id AND s.slot = 'current'
         WHERE c.has_credentials = TRUE AND ($1 = '' OR c.org_id = $1)",
        org,
        "c.id",
        only.map(|o| o.connections.as_slice()),
    )
    .await?;
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
    let keys: Vec<SecretRow> = detail(
        c,
        "SELECT k.id, o.slug AS org, k.name, k.scope AS detail,
                COALESCE(s.rotated_at, k.created_at) AS since, k.last_used_at, s.rotation_interval_ms
         FROM access_keys k JOIN orgs o ON o.id = k.org_id
         LEFT JOIN secret_schedules s ON s.target_type = 'key' AND s.target_id = k.id
         WHERE k.revoked_at IS NULL AND ($1 = '' OR k.org_id = $1)",
        org,
        "k.id",
        only.map(|o| o.keys.as_slice()),
    )
    .await?;
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
    let clients: Vec<SecretRow> = detail(
        c,
        "SELECT cl.id, o.slug AS org, cl.name, cl.kind AS detail,
                COALESCE(s.rotated_at, cl.created_at) AS since,
                (SELECT MAX(g.last_used_at) FROM oauth_grants g WHERE g.client_pk = cl.id) AS last_used_at,
                s.rotation_interval_ms
         FROM oauth_clients cl JOIN orgs o ON o.id = cl.org_id
         LEFT JOIN secret_schedules s ON s.target_type = cl.kind AND s.target_id = cl.id
         WHERE ($1 = '' OR cl.org_id = $1)",
        org,
        "cl.id",
        only.map(|o| o.clients.as_slice()),
    )
    .await?;
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
    if org.is_empty() {
        let providers: Vec<ProviderRow> = detail(
            c,
            "SELECT kind, client_id, updated_at FROM connector_clients WHERE $1 = ''",
            org,
            "kind",
            only.map(|o| o.providers.as_slice()),
        )
        .await?;
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
    }
    Ok(out)
}

/// The master keys of the keyring, newest first, each with when the
/// oldest value still sealed under it was sealed (`None`: no value is).
pub(super) async fn master_keys(
    c: &mut crate::store::Conn,
    core: &Core,
    now: i64,
) -> Result<Vec<(AgeRow, Option<i64>)>, RotationError> {
    // A master key's age is that of the oldest value still sealed under
    // it: what a key rotation would have to re-seal.
    let uses = fetch_all!(
        c,
        KeyUse,
        "SELECT key_id, COUNT(*) AS \"values\", MIN(updated_at) AS oldest, MAX(updated_at) AS newest
         FROM sealed GROUP BY key_id"
    )?;
    let mut out = Vec::new();
    for (i, key_id) in core.keyring.key_ids().into_iter().enumerate() {
        let u = uses.iter().find(|u| u.key_id == key_id);
        let role = if i == 0 {
            "newest: seals new values"
        } else {
            "older: opens values not yet re-sealed"
        };
        let r = row(
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
        );
        out.push((r, u.map(|u| u.oldest)));
    }
    Ok(out)
}

/// The kinds of credential in the order that breaks a tie of time (the
/// number the ranking query gives each table's rows).
pub(super) const KINDS: [&str; 6] = [
    "connection",
    "access_key",
    "m2m_secret",
    "app_secret",
    "provider_client",
    "master_key",
];

/// Where a credential stands in the worst-first order, as of `asof`: past
/// due (segment 0) by due date, most overdue first; then the rest
/// (segment 1) by since when the value in force has been set, oldest
/// first; a tie broken by kind and id, so the order is total and a page
/// cursor can resume it (`paged`). The ranking query computes the same in
/// SQL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Rank {
    pub seg: i64,
    pub t: i64,
    pub kind: i64,
    pub id: String,
}

impl Rank {
    /// `due_ms`: since plus the rotation interval, when it has one.
    pub(super) fn of(kind: i64, id: &str, since_ms: i64, due_ms: Option<i64>, asof: i64) -> Rank {
        let (seg, t) = match due_ms {
            Some(due) if due <= asof => (0, due),
            _ => (1, since_ms),
        };
        Rank {
            seg,
            t,
            kind,
            id: id.to_string(),
        }
    }

    /// `row`'s rank; `sealed_since` for a master key (`master_keys`),
    /// whose row says `now` when nothing is sealed under it: it ranks as
    /// of `asof`, so a walk's pages agree on where it stands.
    pub(super) fn of_row(r: &AgeRow, asof: i64, sealed_since: Option<Option<i64>>) -> Rank {
        let kind = KINDS
            .iter()
            .position(|k| *k == r.kind)
            .and_then(|i| i64::try_from(i).ok())
            .unwrap_or(i64::MAX);
        let since = match sealed_since {
            Some(s) => s.unwrap_or(asof),
            None => r.since_ms,
        };
        Rank::of(kind, &r.id, since, r.due_ms, asof)
    }
}

/// Every credential of `org_id` (or of every org and the platform's own,
/// with `None`) at least `older_than_ms` old, worst first (`Rank`): those
/// past due (most overdue first), then the rest, oldest first. One page of
/// it at a time: `paged::page`.
pub async fn list(
    core: &Core,
    org_id: Option<&str>,
    older_than_ms: Option<i64>,
) -> Result<Vec<AgeRow>, RotationError> {
    let now = core.now();
    let mut c = core.db.read().await?;
    let mut ranked: Vec<(Rank, AgeRow)> = gather(&mut c, now, org_id.unwrap_or(""), None)
        .await?
        .into_iter()
        .map(|r| (Rank::of_row(&r, now, None), r))
        .collect();
    if org_id.is_none() {
        for (r, sealed) in master_keys(&mut c, core, now).await? {
            ranked.push((Rank::of_row(&r, now, Some(sealed)), r));
        }
    }
    if let Some(min) = older_than_ms {
        ranked.retain(|(_, r)| now.saturating_sub(r.since_ms) >= min);
    }
    ranked.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(ranked.into_iter().map(|(_, r)| r).collect())
}
