//! Each connection's activity log: authorizations, refreshes, probe
//! results, rotations, status changes, credentials set, deliveries — each
//! recorded by [`record`] in the transaction of what it reports, with the
//! provider's own message where there is one and never a secret. Read
//! newest first, a page at a time ([`page`]), by time and by type.

use serde::Serialize;
use serde_json::Value;

use crate::clock::rfc3339;
use crate::store::{new_id, Db, StoreError, Tx};
use crate::{exec, fetch_all};

/// What an activity entry is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActivityType {
    /// An OAuth grant completed (authorize or re-authenticate).
    Authorization,
    /// Tokens refreshed, or a refresh that failed (with the provider's answer).
    Refresh,
    /// A connection test's outcome.
    Probe,
    /// A rotation ended: completed, failed, stalled or cancelled.
    Rotation,
    /// Records delivered to the connection.
    Delivery,
    /// Delivery paused.
    Pause,
    /// Delivery resumed.
    Resume,
    /// A backfill started, progressed or ended.
    Backfill,
    /// The connection broke (`needs_reauth` or `error`), with why.
    Error,
    /// Settings or endpoints changed.
    Settings,
    /// A credential was set by a person.
    Credential,
    /// Any other change of the connection's status.
    Status,
}

impl ActivityType {
    pub const ALL: &'static [ActivityType] = &[
        ActivityType::Authorization,
        ActivityType::Refresh,
        ActivityType::Probe,
        ActivityType::Rotation,
        ActivityType::Delivery,
        ActivityType::Pause,
        ActivityType::Resume,
        ActivityType::Backfill,
        ActivityType::Error,
        ActivityType::Settings,
        ActivityType::Credential,
        ActivityType::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActivityType::Authorization => "authorization",
            ActivityType::Refresh => "refresh",
            ActivityType::Probe => "probe",
            ActivityType::Rotation => "rotation",
            ActivityType::Delivery => "delivery",
            ActivityType::Pause => "pause",
            ActivityType::Resume => "resume",
            ActivityType::Backfill => "backfill",
            ActivityType::Error => "error",
            ActivityType::Settings => "settings",
            ActivityType::Credential => "credential",
            ActivityType::Status => "status",
        }
    }

    /// The type named `s`; the error lists the valid names.
    pub fn parse(s: &str) -> Result<ActivityType, ActivityError> {
        ActivityType::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == s.trim())
            .ok_or_else(|| {
                ActivityError::Invalid(format!(
                    "unknown activity type {s:?} (types: {})",
                    ActivityType::ALL
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ActivityError {
    fn from(e: sqlx::Error) -> Self {
        ActivityError::Store(e.into())
    }
}

/// Appends an entry to `connection_id`'s log in the caller's transaction.
/// `message` is for a person (a provider's error may be in it, cut to
/// [`super::MESSAGE_MAX`]); `detail` is structured and never holds a secret.
pub async fn record(
    tx: &mut Tx,
    org_id: &str,
    connection_id: &str,
    kind: ActivityType,
    message: &str,
    detail: Value,
    now: i64,
) -> Result<(), StoreError> {
    exec!(
        tx,
        "INSERT INTO connection_activity (id, org_id, connection_id, type, message, detail, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        new_id(),
        org_id,
        connection_id,
        kind.as_str(),
        super::truncate(message),
        detail.to_string(),
        now
    )?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    #[sqlx(rename = "type")]
    kind: String,
    message: String,
    detail: String,
    at: i64,
}

/// One entry as the CLI and the admin API show it.
#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct Entry {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[schema(value_type = Object)]
    pub detail: Value,
    pub at: String,
}

/// A page, newest first; `next` is the cursor of the page after it.
#[derive(Serialize, Debug, utoipa::ToSchema)]
#[schema(example = json!({"items": [{"id": "01j9z3q4w5e6r7t8y9u0i1o2p3", "type": "probe", "message": "ok: 200 from GET /v1/me", "detail": {"outcome": "ok"}, "at": "2026-01-02T03:04:05.000Z"}], "total": 1, "next": null}))]
pub struct Page {
    pub items: Vec<Entry>,
    /// Entries of the whole filter (every page), counted exactly.
    pub total: i64,
    pub next: Option<String>,
}

/// Where a page starts: strictly older than (`at`, `id`). Written as
/// `AT.ID`, which says nothing a reader may not see.
fn parse_cursor(s: &str) -> Result<(i64, String), ActivityError> {
    s.split_once('.')
        .and_then(|(at, id)| Some((at.parse().ok()?, id.to_string())))
        .filter(|(_, id)| !id.is_empty())
        .ok_or_else(|| ActivityError::Invalid(format!("{s:?} is not a page cursor (use `next`)")))
}

/// Most entries in one page.
pub const PAGE_MAX: i64 = 1_000;

/// Up to `limit` entries of `connection_id`, newest first: only those at
/// or after `since`, only of `types` (all when empty), and older than the
/// cursor `before` (the `next` of the page before).
pub async fn page(
    db: &Db,
    org_id: &str,
    connection_id: &str,
    since: Option<i64>,
    types: &[ActivityType],
    before: Option<&str>,
    limit: i64,
) -> Result<Page, ActivityError> {
    let cursor = before.map(parse_cursor).transpose()?;
    let limit = limit.clamp(1, PAGE_MAX);
    let (c_at, c_id) = match &cursor {
        Some((at, id)) => (Some(*at), Some(id.as_str())),
        None => (None, None),
    };
    // The types as one JSON list: one SQL text whatever their number.
    let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
    let type_list = (!names.is_empty()).then(|| format!(",{},", names.join(",")));
    let mut c = db.read().await?;
    let rows = fetch_all!(
        &mut c,
        Row,
        "SELECT id, type, message, detail, at FROM connection_activity
         WHERE connection_id = $1 AND org_id = $2
           AND ($3 IS NULL OR at >= $3)
           AND ($4 IS NULL OR ($4 || '') LIKE '%,' || type || ',%')
           AND ($5 IS NULL OR at < $5 OR (at = $5 AND id < $6))
         ORDER BY at DESC, id DESC
         LIMIT $7",
        connection_id,
        org_id,
        since,
        &type_list,
        c_at,
        c_id,
        limit + 1
    )?;
    // The same filter without the cursor, counted (the connection's
    // entries are indexed by connection and time).
    let total = crate::scalar_optional!(
        &mut c,
        i64,
        "SELECT COUNT(*) FROM connection_activity
         WHERE connection_id = $1 AND org_id = $2
           AND ($3 IS NULL OR at >= $3)
           AND ($4 IS NULL OR ($4 || '') LIKE '%,' || type || ',%')",
        connection_id,
        org_id,
        since,
        &type_list
    )?
    .unwrap_or(0);
    let more = rows.len() as i64 > limit;
    let rows: Vec<Row> = rows.into_iter().take(limit as usize).collect();
    let next = rows
        .last()
        .filter(|_| more)
        .map(|r| format!("{}.{}", r.at, r.id));
    let items = rows
        .into_iter()
        .map(|r| Entry {
            detail: serde_json::from_str(&r.detail).unwrap_or(Value::Null),
            id: r.id,
            kind: r.kind,
            message: r.message,
            at: rfc3339(r.at),
        })
        .collect();
    Ok(Page { items, total, next })
}

/// The filters as people type them (`--type probe --type error`, `?type=probe,error`).
pub fn parse_types<S: AsRef<str>>(given: &[S]) -> Result<Vec<ActivityType>, ActivityError> {
    let mut out = Vec::new();
    for s in given {
        for part in s.as_ref().split(',').filter(|p| !p.trim().is_empty()) {
            let t = ActivityType::parse(part)?;
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    Ok(out)
}

/// `since` as people type it: RFC 3339, or a duration meaning "that long
/// ago" (`2h`).
pub fn parse_since(s: &str, now: i64) -> Result<i64, ActivityError> {
    crate::clock::parse_instant(s.trim(), now).ok_or_else(|| {
        ActivityError::Invalid(format!(
            "since {s:?} is neither an RFC 3339 time nor a duration (2h, 7d)"
        ))
    })
}
