//! Reading the outbox: every People change of an org, in sequence order
//! (People writes append to it in their own transaction, `crate::people`).
//! Deliveries and backfills read windows of it after a cursor; compaction
//! keeps it from growing without bound once every delivery has passed.
//!
//! A domain filter is applied in memory to what a window read (the cursor
//! still moves past records filtered out), and in SQL when counting, with
//! one rule: the email's domain is exactly one of the filter's, in any case.

use serde_json::{Map, Value};

use super::target::{Op, Record};
use crate::store::sql::{fetch_all_args, Arg};
use crate::store::{AsEx, Db, StoreError};
use crate::{exec, fetch_all, scalar_optional};

#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    email: String,
    op: String,
    record: Option<String>,
    at: i64,
}

impl Row {
    fn into_record(self) -> Record {
        Record {
            seq: self.seq,
            email: self.email,
            op: if self.op == "delete" {
                Op::Delete
            } else {
                Op::Upsert
            },
            fields: self
                .record
                .and_then(|r| serde_json::from_str::<Map<String, Value>>(&r).ok()),
            at: self.at,
        }
    }
}

/// True when `email` passes the domain filter (empty: everything passes).
pub fn passes(filter: &[String], email: &str) -> bool {
    filter.is_empty()
        || email
            .rsplit_once('@')
            .is_some_and(|(_, d)| filter.iter().any(|f| f.eq_ignore_ascii_case(d)))
}

/// A window: up to `limit` records of `org_id` after `after`, up to and
/// including `upto` when given. Returns the records that pass `filter` and
/// the last sequence read (the cursor may move there even when every record
/// read was filtered out); `None` when there was nothing to read.
pub async fn window<C: AsEx>(
    c: &mut C,
    org_id: &str,
    after: i64,
    upto: Option<i64>,
    filter: &[String],
    limit: i64,
) -> Result<(Vec<Record>, Option<i64>), StoreError> {
    let rows = fetch_all!(
        c,
        Row,
        "SELECT seq, email, op, record, at FROM outbox
         WHERE org_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
        org_id,
        after,
        upto.unwrap_or(i64::MAX),
        limit
    )?;
    let last = rows.last().map(|r| r.seq);
    let records = rows
        .into_iter()
        .filter(|r| passes(filter, &r.email))
        .map(Row::into_record)
        .collect();
    Ok((records, last))
}

/// The org's last sequence (0 when it has written nothing).
pub async fn head<C: AsEx>(c: &mut C, org_id: &str) -> Result<i64, StoreError> {
    Ok(scalar_optional!(
        c,
        Option<i64>,
        "SELECT MAX(seq) FROM outbox WHERE org_id = $1",
        org_id
    )?
    .flatten()
    .unwrap_or(0))
}

/// The first sequence of `org_id` written at or after `since` (unix ms),
/// minus one: the cursor a backfill "since" starts from.
pub async fn before_time<C: AsEx>(c: &mut C, org_id: &str, since: i64) -> Result<i64, StoreError> {
    let first = scalar_optional!(
        c,
        Option<i64>,
        "SELECT MIN(seq) FROM outbox WHERE org_id = $1 AND at >= $2",
        org_id,
        since
    )?
    .flatten();
    match first {
        Some(s) => Ok(s.saturating_sub(1)),
        // Nothing written since: start at the head (an empty window).
        None => head(c, org_id).await,
    }
}

/// How many records in (after, upto] pass `filter`, and when the first of
/// them was written (for the lag in seconds).
pub async fn count<C: AsEx>(
    c: &mut C,
    org_id: &str,
    after: i64,
    upto: i64,
    filter: &[String],
) -> Result<(i64, Option<i64>), StoreError> {
    let mut sql = String::from(
        "SELECT COUNT(*), MIN(at) FROM outbox WHERE org_id = $1 AND seq > $2 AND seq <= $3",
    );
    let mut args = vec![
        Arg::Text(org_id.to_string()),
        Arg::Int(after),
        Arg::Int(upto),
    ];
    if !filter.is_empty() {
        let likes: Vec<String> = (0..filter.len())
            .map(|i| format!("LOWER(email) LIKE ${}", i + 4))
            .collect();
        sql.push_str(&format!(" AND ({})", likes.join(" OR ")));
        // Domains are checked host names (letters, digits, '-', '.'): no
        // LIKE wildcard can be among them. Both sides lower-cased, as
        // `passes` compares (PostgreSQL's LIKE heeds case).
        args.extend(
            filter
                .iter()
                .map(|d| Arg::Text(format!("%@{}", d.to_ascii_lowercase()))),
        );
    }
    let row: Vec<(i64, Option<i64>)> = fetch_all_args(c, &sql, args).await?;
    Ok(row.into_iter().next().unwrap_or((0, None)))
}

/// What compaction did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Compacted {
    pub orgs: u64,
    /// Older states removed (each had a later state of the same record).
    pub removed: u64,
}

/// Older states deleted per transaction: a compaction of a large outbox
/// never holds the one SQLite writer (or PostgreSQL locks) for long, and
/// People writes and deliveries go on between its batches.
const COMPACT_BATCH: i64 = 5_000;

/// How often each instance compacts the outbox by itself. Hourly is far
/// finer than the retention (days) and a scan of what is old is cheap at
/// that rate; instances that compact at once only find less to delete.
pub const COMPACT_EVERY: std::time::Duration = std::time::Duration::from_secs(3_600);

/// Keeps only the latest state of each record among those every enabled
/// delivery of its org has passed and that are older than `retention_ms`.
/// What a delivery has not yet sent is never touched; a backfill beyond the
/// retention window still sends every record's latest state. Runs by
/// itself every [`COMPACT_EVERY`] (and `rekey outbox compact`), in batches
/// of [`COMPACT_BATCH`].
pub async fn compact(db: &Db, retention_ms: i64, now: i64) -> Result<Compacted, StoreError> {
    let cut = now.saturating_sub(retention_ms);
    let mut c = db.read().await?;
    // The orgs whose oldest record is older than the cut: one probe of
    // `outbox_org (org_id, seq)` per org, not a scan of the outbox (there
    // is no index on `at`, and one would cost every People write). A
    // record's `at` grows with its `seq` within an org, so the oldest by
    // `seq` is the oldest by time.
    let orgs: Vec<(String,)> = fetch_all!(
        &mut c,
        (String,),
        "SELECT o.id FROM orgs o \
         WHERE (SELECT b.at FROM outbox b WHERE b.org_id = o.id ORDER BY b.seq LIMIT 1) < $1",
        cut
    )?;
    drop(c);
    let mut out = Compacted::default();
    for (org,) in orgs {
        out.orgs += 1;
        loop {
            let mut tx = db.begin_write().await?;
            // The lowest cursor of the org's deliveries, or its head when
            // none; read in each batch's transaction, so a delivery
            // enabled meanwhile (at the head) or a cursor that moved is
            // seen. A cursor never moves back.
            let horizon = scalar_optional!(
                &mut tx,
                Option<i64>,
                "SELECT MIN(cursor_seq) FROM deliveries WHERE org_id = $1",
                &org
            )?
            .flatten();
            let horizon = match horizon {
                Some(h) => h,
                None => head(&mut tx, &org).await?,
            };
            let n = exec!(
                &mut tx,
                "DELETE FROM outbox WHERE seq IN (
                   SELECT o.seq FROM outbox o WHERE o.org_id = $1 AND o.seq <= $2 AND o.at < $3
                     AND EXISTS (SELECT 1 FROM outbox n WHERE n.org_id = o.org_id AND n.email = o.email
                                 AND n.seq > o.seq AND n.seq <= $2 AND n.at < $3)
                   ORDER BY o.seq LIMIT $4)",
                &org,
                horizon,
                cut,
                COMPACT_BATCH
            )?;
            tx.commit().await?;
            out.removed += n;
            if n < COMPACT_BATCH as u64 {
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::passes;

    #[test]
    fn the_filter_matches_the_exact_domain() {
        let f = vec!["example.com".to_string()];
        assert!(passes(&f, "ada@example.com"));
        assert!(passes(&f, "ada@EXAMPLE.com"));
        assert!(!passes(&f, "ada@sub.example.com"));
        assert!(!passes(&f, "ada@example.com.evil"));
        assert!(passes(&[], "ada@anything.org"));
    }
}
