//! People records behind the platform API, upserted by Email. Every change
//! appends to the outbox in the same transaction, for connections to
//! deliver and backfill from.

pub mod records;

use std::collections::hash_map::{Entry, HashMap};

use serde_json::{Map, Value};

use crate::store::sql::{json_table, JsonCol};
use crate::store::{Db, StoreError, Tx};
use crate::{exec, fetch_all, fetch_optional};
pub use records::{validate, RecordError, MAX_RECORDS};

#[derive(sqlx::FromRow, Debug, Clone)]
struct Row {
    email: String,
    fields: String,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Inserted,
    Updated,
}

/// Upserts validated records (email, fields) for `org_id` in one
/// transaction; returns the outcome of each, in order. Fields are merged into
/// an existing record: given fields replace, others stay.
pub async fn upsert(
    db: &Db,
    org_id: &str,
    records: Vec<(String, Map<String, Value>)>,
    now: i64,
) -> Result<Vec<Outcome>, StoreError> {
    let mut emails: Vec<String> = records.iter().map(|(e, _)| e.clone()).collect();
    emails.sort_unstable();
    emails.dedup();
    let wanted = text(&emails.iter().map(|e| [e]).collect::<Vec<_>>());
    let mut tx = db.begin_write().await?;
    lock_org(&mut tx, org_id).await?;
    let sql = format!(
        "SELECT email, fields FROM people WHERE org_id = $1 AND email IN (SELECT w.c0 FROM {})",
        json_table(&mut tx, 2, &[JsonCol::Text], "w")
    );
    let rows = fetch_all!(&mut tx, Row, &sql, org_id, &wanted)?;
    let mut current: HashMap<String, Map<String, Value>> = rows
        .into_iter()
        .map(|r| {
            let m = serde_json::from_str::<Map<String, Value>>(&r.fields).unwrap_or_default();
            (r.email, m)
        })
        .collect();
    let mut outcomes = Vec::with_capacity(records.len());
    let mut outbox: Vec<(String, &str, Option<String>)> = Vec::with_capacity(records.len());
    for (email, fields) in records {
        let entry = current.entry(email);
        outcomes.push(match &entry {
            Entry::Occupied(_) => Outcome::Updated,
            Entry::Vacant(_) => Outcome::Inserted,
        });
        let email = entry.key().clone();
        let merged = entry.or_default();
        merged.extend(fields);
        outbox.push((email, "upsert", Some(text(merged))));
    }
    // One row per email of the batch (its final state), in one statement.
    let people: Vec<(String, String)> = current
        .into_iter()
        .map(|(e, m)| {
            let f = text(&m);
            (e, f)
        })
        .collect();
    let sql = format!(
        "INSERT INTO people (org_id, email, fields, created_at, updated_at)
         SELECT $1, r.c0, r.c1, $2, $2 FROM {} WHERE true
         ON CONFLICT (org_id, email) DO UPDATE SET fields = excluded.fields, updated_at = excluded.updated_at",
        json_table(&mut tx, 3, &[JsonCol::Text, JsonCol::Text], "r")
    );
    exec!(&mut tx, &sql, org_id, now, text(&people))?;
    append_outbox(&mut tx, org_id, outbox, now).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Serialises People writes of one org. SQLite's write transactions are
/// already exclusive; PostgreSQL takes a transaction-scoped advisory lock, so
/// two concurrent upserts of one email merge instead of losing a field.
async fn lock_org(tx: &mut Tx, org_id: &str) -> Result<(), StoreError> {
    // BACKEND-SPECIFIC
    if let Tx::Postgres(..) = tx {
        exec!(
            tx,
            "SELECT pg_advisory_xact_lock(hashtext($1))::text",
            format!("people:{org_id}")
        )?;
    }
    Ok(())
}

/// JSON text of `v`, written straight into a buffer (a `Value`'s
/// `to_string` goes through the formatting machinery, measured slower). It
/// cannot fail for what is passed here: string-keyed maps and tuples.
fn text<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Appends change records (email, op, record or none), in order.
async fn append_outbox(
    tx: &mut Tx,
    org_id: &str,
    items: Vec<(String, &str, Option<String>)>,
    now: i64,
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO outbox (org_id, email, op, record, at)
         SELECT $1, r.c0, r.c1, r.c2, $2 FROM {} ORDER BY r.ord",
        json_table(tx, 3, &[JsonCol::Text, JsonCol::Text, JsonCol::Text], "r")
    );
    exec!(tx, &sql, org_id, now, text(&items))?;
    Ok(())
}

/// One record by email, as the JSON text it is stored as (an object).
pub async fn get(db: &Db, org_id: &str, email: &str) -> Result<Option<String>, StoreError> {
    let mut c = db.read().await?;
    let row = fetch_optional!(
        &mut c,
        Row,
        "SELECT email, fields FROM people WHERE org_id = $1 AND email = $2",
        org_id,
        email
    )?;
    Ok(row.map(|r| r.fields))
}

/// A page of records ordered by email, after `after` (keyset pagination:
/// stable under concurrent inserts). Returns the records and the last email.
pub async fn page(
    db: &Db,
    org_id: &str,
    after: &str,
    limit: i64,
) -> Result<(Vec<Value>, Option<String>, bool), StoreError> {
    let mut c = db.read().await?;
    let rows = fetch_all!(
        &mut c,
        Row,
        "SELECT email, fields FROM people WHERE org_id = $1 AND email > $2 ORDER BY email LIMIT $3",
        org_id,
        after,
        limit + 1
    )?;
    let more = rows.len() as i64 > limit;
    let rows: Vec<Row> = rows.into_iter().take(limit as usize).collect();
    let last = rows.last().map(|r| r.email.clone());
    Ok((
        rows.into_iter()
            .map(|r| serde_json::from_str(&r.fields).unwrap_or(Value::Null))
            .collect(),
        last,
        more,
    ))
}

/// Deletes a record; false when there was none.
pub async fn delete(db: &Db, org_id: &str, email: &str, now: i64) -> Result<bool, StoreError> {
    let mut tx = db.begin_write().await?;
    lock_org(&mut tx, org_id).await?;
    let n = exec!(
        &mut tx,
        "DELETE FROM people WHERE org_id = $1 AND email = $2",
        org_id,
        email
    )?;
    if n == 0 {
        return Ok(false);
    }
    append_outbox(
        &mut tx,
        org_id,
        vec![(email.to_string(), "delete", None)],
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// One change another rekey delivers (`POST /v1/people/changes`): the
/// record's whole state after it, or its deletion, with its sequence at
/// the source.
#[derive(Debug, Clone)]
pub struct Change {
    pub seq: i64,
    pub email: String,
    /// `None`: the record was deleted at the source.
    pub fields: Option<Map<String, Value>>,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Applied {
    pub applied: usize,
    /// Changes at or below the sequence already applied for their email
    /// from this source: a retried or replayed batch.
    pub skipped: usize,
}

/// Applies changes from `source` (another rekey's org) in order, each only
/// above the sequence last applied for its email from that source: a batch
/// sent twice writes once, and a replayed older state never overwrites a
/// newer one. A record is replaced whole (the source sends its full state),
/// and every applied change appends to this org's outbox in the same
/// transaction, as a write through the API does.
pub async fn apply(
    db: &Db,
    org_id: &str,
    source: &str,
    changes: Vec<Change>,
    now: i64,
) -> Result<Applied, StoreError> {
    let mut emails: Vec<&str> = changes.iter().map(|c| c.email.as_str()).collect();
    emails.sort_unstable();
    emails.dedup();
    let wanted = text(&emails.iter().map(|e| [e]).collect::<Vec<_>>());
    let mut tx = db.begin_write().await?;
    lock_org(&mut tx, org_id).await?;
    let sql = format!(
        "SELECT email, seq FROM people_sources
         WHERE org_id = $1 AND source = $3 AND email IN (SELECT w.c0 FROM {})",
        json_table(&mut tx, 2, &[JsonCol::Text], "w")
    );
    let rows: Vec<(String, i64)> =
        fetch_all!(&mut tx, (String, i64), &sql, org_id, &wanted, source)?;
    let mut applied_seq: HashMap<String, i64> = rows.into_iter().collect();
    let mut out = Applied::default();
    // The final state of each email, and every applied change in order.
    let mut last: HashMap<String, Option<String>> = HashMap::new();
    let mut outbox: Vec<(String, &str, Option<String>)> = Vec::new();
    for c in changes {
        if applied_seq.get(&c.email).is_some_and(|s| *s >= c.seq) {
            out.skipped += 1;
            continue;
        }
        applied_seq.insert(c.email.clone(), c.seq);
        let fields = c.fields.map(|f| text(&f));
        outbox.push((
            c.email.clone(),
            if fields.is_some() { "upsert" } else { "delete" },
            fields.clone(),
        ));
        last.insert(c.email, fields);
        out.applied += 1;
    }
    if out.applied == 0 {
        return Ok(out);
    }
    let (upserts, deletes): (Vec<_>, Vec<_>) = last.into_iter().partition(|(_, f)| f.is_some());
    if !upserts.is_empty() {
        let rows: Vec<(String, String)> = upserts
            .into_iter()
            .map(|(e, f)| (e, f.unwrap_or_default()))
            .collect();
        let sql = format!(
            "INSERT INTO people (org_id, email, fields, created_at, updated_at)
             SELECT $1, r.c0, r.c1, $2, $2 FROM {} WHERE true
             ON CONFLICT (org_id, email) DO UPDATE SET fields = excluded.fields, updated_at = excluded.updated_at",
            json_table(&mut tx, 3, &[JsonCol::Text, JsonCol::Text], "r")
        );
        exec!(&mut tx, &sql, org_id, now, text(&rows))?;
    }
    if !deletes.is_empty() {
        let gone: Vec<[String; 1]> = deletes.into_iter().map(|(e, _)| [e]).collect();
        let sql = format!(
            "DELETE FROM people WHERE org_id = $1 AND email IN (SELECT d.c0 FROM {})",
            json_table(&mut tx, 2, &[JsonCol::Text], "d")
        );
        exec!(&mut tx, &sql, org_id, text(&gone))?;
    }
    let seqs: Vec<(String, String)> = applied_seq
        .into_iter()
        .map(|(e, s)| (e, s.to_string()))
        .collect();
    let sql = format!(
        "INSERT INTO people_sources (org_id, source, email, seq)
         SELECT $1, $2, r.c0, CAST(r.c1 AS BIGINT) FROM {} WHERE true
         ON CONFLICT (org_id, source, email) DO UPDATE SET seq = excluded.seq
         WHERE people_sources.seq < excluded.seq",
        json_table(&mut tx, 3, &[JsonCol::Text, JsonCol::Text], "r")
    );
    exec!(&mut tx, &sql, org_id, source, text(&seqs))?;
    append_outbox(&mut tx, org_id, outbox, now).await?;
    tx.commit().await?;
    Ok(out)
}
