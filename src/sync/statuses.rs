//! Deliveries' statuses, read a page at a time: the page's deliveries with
//! their connections in one query, then what their statuses count (the
//! org's head, the records behind each cursor that pass its filter, the
//! oldest of them, what a full backfill would send, each latest backfill)
//! in a fixed number more, whatever the page's size. One delivery's status
//! is a page of one, so a connection's section and the list agree.

use std::collections::HashMap;

use super::delivery::{self, CatchUp, Delivery, Lag, Parked, Retention, Status};
use super::{backfill, outbox, SyncError};
use crate::connectors::connections::Connection;
use crate::state::Core;
use crate::store::keyset::{self, Cursor, Page};
use crate::store::sql::{fetch_all_args, json_table, Arg, JsonCol};
use crate::store::AsEx;
use crate::{fetch_all, scalar_optional};

/// A delivery with what its status names of its connection.
#[derive(sqlx::FromRow)]
struct Listed {
    #[sqlx(flatten)]
    d: Delivery,
    connection: String,
    kind: String,
    connection_status: String,
}

/// What the outbox holds for one delivery, up to the head: the records
/// that pass its filter (`kept`), those of them after its cursor (`lag`),
/// and when the oldest of those was written.
#[derive(sqlx::FromRow)]
struct Counted {
    id: String,
    kept: i64,
    lag: Option<i64>,
    oldest: Option<i64>,
}

/// `delivery::COLS`, each column of `deliveries d`.
fn d_cols() -> String {
    delivery::COLS
        .split(',')
        .map(|c| format!("d.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The status of delivery `id`, whose connection is `conn`.
pub async fn status_of(core: &Core, conn: &Connection, id: &str) -> Result<Status, SyncError> {
    let mut c = core.db.read().await?;
    let d = delivery::get(&mut c, id)
        .await?
        .ok_or_else(|| SyncError::NotFound(format!("delivery {id}")))?;
    let org_id = d.org_id.clone();
    let row = Listed {
        d,
        connection: conn.name.clone(),
        kind: conn.kind.clone(),
        connection_status: conn.status.clone(),
    };
    statuses(&mut c, core, &org_id, vec![row])
        .await?
        .pop()
        .ok_or_else(|| SyncError::NotFound(format!("delivery {id}")))
}

/// One page of the org's deliveries by their connection's name (keyset
/// `NAME.DELIVERY_ID` after `after`, the `next` of the page before), with
/// the exact total.
pub async fn page(
    core: &Core,
    org_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<Status>, SyncError> {
    let after = Cursor::opt(after).map_err(|e| SyncError::Invalid(e.to_string()))?;
    let (a_name, a_id) = after.map(|c| (c.key, c.id)).unwrap_or_default();
    let limit = keyset::limit(limit);
    let mut c = core.db.read().await?;
    let total = scalar_optional!(
        &mut c,
        i64,
        "SELECT COUNT(*) FROM deliveries WHERE org_id = $1",
        org_id
    )?
    .unwrap_or(0);
    let rows = fetch_all!(
        &mut c,
        Listed,
        &format!(
            "SELECT {}, c.name AS connection, c.kind, c.status AS connection_status
             FROM deliveries d JOIN connections c ON c.id = d.connection_id
             WHERE d.org_id = $1 AND (c.name > $2 OR (c.name = $2 AND d.id > $3))
             ORDER BY c.name, d.id LIMIT $4",
            d_cols()
        ),
        org_id,
        &a_name,
        &a_id,
        limit + 1
    )?;
    let rows = Page::from_rows(rows, limit, total, |r| Cursor::of(&r.connection, &r.d.id));
    let items = statuses(&mut c, core, org_id, rows.items).await?;
    Ok(Page {
        items,
        total: rows.total,
        next: rows.next,
    })
}

/// Every delivery of an org, by connection name: the pages walked, each
/// read as `page` reads one.
pub async fn list(core: &Core, org_id: &str) -> Result<Vec<Status>, SyncError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let p = page(core, org_id, after.as_deref(), keyset::MAX).await?;
        out.extend(p.items);
        match p.next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}

/// The statuses of `rows` (deliveries of `org_id`), in their order: three
/// queries for any number of them.
async fn statuses<C: AsEx>(
    c: &mut C,
    core: &Core,
    org_id: &str,
    rows: Vec<Listed>,
) -> Result<Vec<Status>, SyncError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let head = outbox::head(c, org_id).await?;
    let mut counted = count(c, org_id, head, &rows).await?;
    let ids: Vec<&str> = rows.iter().map(|r| r.d.id.as_str()).collect();
    let now = core.now();
    let mut latest = backfill::latest_of(c, &ids, now).await?;
    let retention_ms =
        i64::try_from(core.config.outbox_retention.0.as_millis()).unwrap_or(i64::MAX);
    Ok(rows
        .into_iter()
        .map(|r| {
            let n = counted.remove(&r.d.id);
            let b = latest.remove(&r.d.id);
            build(r, head, n, b, now, retention_ms)
        })
        .collect())
}

/// Counts the outbox (up to `head`) for every delivery of `rows` in one
/// statement: each delivery's filter becomes rows of a derived table
/// (delivery, cursor, `LIKE` pattern: `%@domain` per domain, `%` for no
/// filter). A record matches at most one pattern of a delivery (a domain
/// holds no `@`, so no `@domain` is a suffix of another), so nothing is
/// counted twice. The email is lower-cased as `outbox::passes` compares.
async fn count<C: AsEx>(
    c: &mut C,
    org_id: &str,
    head: i64,
    rows: &[Listed],
) -> Result<HashMap<String, Counted>, SyncError> {
    let mut table: Vec<serde_json::Value> = Vec::new();
    for r in rows {
        let filter = r.d.filter();
        if filter.is_empty() {
            table.push(serde_json::json!([r.d.id, r.d.cursor_seq, "%"]));
        }
        for d in filter {
            // Domains are checked host names (letters, digits, '-', '.'):
            // no LIKE wildcard can be among them.
            table.push(serde_json::json!([
                r.d.id,
                r.d.cursor_seq,
                format!("%@{}", d.to_ascii_lowercase())
            ]));
        }
    }
    let sql = format!(
        "SELECT f.c0 AS id, COUNT(o.seq) AS kept,
                SUM(CASE WHEN o.seq > f.c1 THEN 1 ELSE 0 END) AS lag,
                MIN(CASE WHEN o.seq > f.c1 THEN o.at END) AS oldest
         FROM {} JOIN outbox o ON o.org_id = $1 AND o.seq <= $3 AND LOWER(o.email) LIKE f.c2
         GROUP BY f.c0",
        json_table(c, 2, &[JsonCol::Text, JsonCol::Int, JsonCol::Text], "f")
    );
    let found: Vec<Counted> = fetch_all_args(
        c,
        &sql,
        vec![
            Arg::Text(org_id.to_string()),
            Arg::Text(serde_json::Value::Array(table).to_string()),
            Arg::Int(head),
        ],
    )
    .await?;
    Ok(found.into_iter().map(|n| (n.id.clone(), n)).collect())
}

fn build(
    r: Listed,
    head: i64,
    n: Option<Counted>,
    backfill: Option<delivery::BackfillProgress>,
    now: i64,
    retention_ms: i64,
) -> Status {
    let d = r.d;
    let (kept, lag_records, oldest) = n
        .map(|n| (n.kept, n.lag.unwrap_or(0), n.oldest))
        .unwrap_or((0, 0, None));
    let lag_s = oldest
        .map(|at| (now.saturating_sub(at) / 1000).max(0))
        .unwrap_or(0);
    let state = d.state();
    Status {
        connection: r.connection,
        kind: r.kind,
        state,
        connection_status: r.connection_status,
        last_delivered_seq: d.cursor_seq,
        head_seq: head,
        lag: Lag {
            records: lag_records,
            seconds: lag_s,
        },
        lag_records,
        lag_s,
        delivered: d.delivered,
        last_delivered_at: d.last_delivered_at,
        last_error_at: d.last_error_at,
        parked: match (d.parked_from, d.parked_to) {
            (Some(from_seq), Some(to_seq)) => Some(Parked {
                from_seq,
                to_seq,
                message: d.last_error.clone().unwrap_or_default(),
            }),
            _ => None,
        },
        last_error: d.last_error.clone(),
        filter_domains: d.filter(),
        batch: d.batch,
        paused_at: state.paused().then_some(d.paused_at).flatten(),
        last_catch_up: match (d.caught_up_records, d.caught_up_paused_ms) {
            (Some(records), Some(ms)) => Some(CatchUp {
                records,
                paused_s: ms / 1000,
            }),
            _ => None,
        },
        backfill,
        retention: Retention {
            retention_s: retention_ms / 1000,
            behind: oldest.is_some_and(|at| now.saturating_sub(at) > retention_ms),
            // Every record kept that passes the filter, delivered or not.
            full_backfill_records: kept,
        },
        created_at: d.created_at,
        id: d.id,
    }
}
