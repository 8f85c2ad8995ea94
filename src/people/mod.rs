//! People records behind the platform API, upserted by Email. Every change
//! appends to the outbox in the same transaction, for connections to
//! deliver and backfill from.

pub mod records;

use serde_json::{Map, Value};

use crate::store::sql::{exec_args, placeholders, Arg};
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
    let mut tx = db.begin_write().await?;
    lock_org(&mut tx, org_id).await?;
    let mut emails: Vec<String> = records.iter().map(|(e, _)| e.clone()).collect();
    emails.sort();
    emails.dedup();
    let mut current: std::collections::HashMap<String, Map<String, Value>> =
        std::collections::HashMap::new();
    for chunk in emails.chunks(500) {
        let sql = format!(
            "SELECT email, fields FROM people WHERE org_id = $1 AND email IN ({})",
            (2..chunk.len() + 2)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows: Vec<Row> = match crate::store::AsEx::ex(&mut tx) {
            crate::store::Ex::Sqlite(c) => {
                let mut q = sqlx::query_as::<_, Row>(&sql).bind(org_id);
                for e in chunk {
                    q = q.bind(e);
                }
                q.fetch_all(&mut *c).await?
            }
            crate::store::Ex::Postgres(c) => {
                let mut q = sqlx::query_as::<_, Row>(&sql).bind(org_id);
                for e in chunk {
                    q = q.bind(e);
                }
                q.fetch_all(&mut *c).await?
            }
        };
        for r in rows {
            let m = serde_json::from_str::<Map<String, Value>>(&r.fields).unwrap_or_default();
            current.insert(r.email, m);
        }
    }
    let mut outcomes = Vec::with_capacity(records.len());
    let mut outbox: Vec<(String, String)> = Vec::with_capacity(records.len());
    for (email, fields) in records {
        let entry = current.entry(email.clone());
        let outcome = match &entry {
            std::collections::hash_map::Entry::Occupied(_) => Outcome::Updated,
            std::collections::hash_map::Entry::Vacant(_) => Outcome::Inserted,
        };
        let merged = entry.or_default();
        for (k, v) in fields {
            merged.insert(k, v);
        }
        outbox.push((email, Value::Object(merged.clone()).to_string()));
        outcomes.push(outcome);
    }
    // One row per email (the final state), in multi-row statements.
    let rows: Vec<(String, String)> = current
        .into_iter()
        .filter(|(e, _)| emails.binary_search(e).is_ok())
        .map(|(e, m)| (e, Value::Object(m).to_string()))
        .collect();
    for chunk in rows.chunks(400) {
        let sql = format!(
            "INSERT INTO people (org_id, email, fields, created_at, updated_at) VALUES {}
             ON CONFLICT (org_id, email) DO UPDATE SET fields = excluded.fields, updated_at = excluded.updated_at",
            placeholders(chunk.len(), 5)
        );
        let mut args = Vec::with_capacity(chunk.len() * 5);
        for (e, f) in chunk {
            args.extend([
                Arg::Text(org_id.into()),
                Arg::Text(e.clone()),
                Arg::Text(f.clone()),
                Arg::Int(now),
                Arg::Int(now),
            ]);
        }
        exec_args(&mut tx, &sql, args).await?;
    }
    append_outbox(
        &mut tx,
        org_id,
        outbox
            .into_iter()
            .map(|(e, r)| (e, "upsert", Some(r)))
            .collect(),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Serialises People writes of one org. SQLite's write transactions are
/// already exclusive; PostgreSQL takes a transaction-scoped advisory lock, so
/// two concurrent upserts of one email merge instead of losing a field.
async fn lock_org(tx: &mut Tx, org_id: &str) -> Result<(), StoreError> {
    // BACKEND-SPECIFIC
    if let Tx::Postgres(_) = tx {
        exec!(
            tx,
            "SELECT pg_advisory_xact_lock(hashtext($1))::text",
            format!("people:{org_id}")
        )?;
    }
    Ok(())
}

async fn append_outbox(
    tx: &mut Tx,
    org_id: &str,
    items: Vec<(String, &str, Option<String>)>,
    now: i64,
) -> Result<(), StoreError> {
    for chunk in items.chunks(400) {
        let sql = format!(
            "INSERT INTO outbox (org_id, email, op, record, at) VALUES {}",
            placeholders(chunk.len(), 5)
        );
        let mut args = Vec::with_capacity(chunk.len() * 5);
        for (e, op, r) in chunk {
            args.extend([
                Arg::Text(org_id.into()),
                Arg::Text(e.clone()),
                Arg::Text((*op).into()),
                Arg::OptText(r.clone()),
                Arg::Int(now),
            ]);
        }
        exec_args(tx, &sql, args).await?;
    }
    Ok(())
}

/// One record by email.
pub async fn get(db: &Db, org_id: &str, email: &str) -> Result<Option<Value>, StoreError> {
    let mut c = db.read().await?;
    let row = fetch_optional!(
        &mut c,
        Row,
        "SELECT email, fields FROM people WHERE org_id = $1 AND email = $2",
        org_id,
        email
    )?;
    Ok(row.map(|r| serde_json::from_str(&r.fields).unwrap_or(Value::Null)))
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
