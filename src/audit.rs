//! Append-only, hash-chained audit log. Each event is written in the
//! transaction of the change it records, and carries the hash of the event
//! before it; `verify` walks the chain.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::store::{Db, StoreError, Tx};
use crate::{exec, fetch_all, fetch_optional};

/// Who did it, where from. Handlers build one per request.
#[derive(Clone, Debug, Default)]
pub struct Actor {
    /// `cli`, `system`, `operator:EMAIL`, `user:EMAIL`, `client:ID`, …
    pub name: String,
    pub ip: Option<String>,
}

impl Actor {
    pub fn new(name: impl Into<String>, ip: Option<String>) -> Actor {
        Actor {
            name: name.into(),
            ip,
        }
    }
    pub fn cli() -> Actor {
        Actor::new("cli", None)
    }
    pub fn system() -> Actor {
        Actor::new("system", None)
    }
}

/// One event to record. `detail` must never hold a secret value.
pub struct Event<'a> {
    pub org_id: Option<&'a str>,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub detail: Value,
}

#[derive(sqlx::FromRow, Serialize, Debug, Clone)]
pub struct AuditRow {
    pub seq: i64,
    pub at: i64,
    pub org_id: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(sqlx::FromRow)]
struct Head {
    seq: i64,
    hash: String,
}

fn chain_hash(r: &AuditRow) -> String {
    // A JSON array is an unambiguous encoding of the fields (no delimiter games).
    let canonical = serde_json::json!([
        r.seq,
        r.at,
        r.org_id,
        r.actor,
        r.action,
        r.target,
        r.ip,
        r.detail,
        r.prev_hash
    ])
    .to_string();
    Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Appends `ev` inside `tx`. The head row is bumped first, which takes its
/// row lock on PostgreSQL (SQLite already holds the write lock), so
/// concurrent writers line up and the chain never forks.
pub async fn record(
    tx: &mut Tx,
    now: i64,
    actor: &Actor,
    ev: Event<'_>,
) -> Result<i64, StoreError> {
    let head = fetch_optional!(
        tx,
        Head,
        "UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash"
    )?
    .ok_or_else(|| StoreError::Database(sqlx::Error::RowNotFound))?;
    let mut row = AuditRow {
        seq: head.seq,
        at: now,
        org_id: ev.org_id.map(str::to_string),
        actor: actor.name.clone(),
        action: ev.action.to_string(),
        target: ev.target.map(str::to_string),
        ip: actor.ip.clone(),
        detail: ev.detail.to_string(),
        prev_hash: head.hash,
        hash: String::new(),
    };
    row.hash = chain_hash(&row);
    exec!(
        tx,
        "UPDATE audit_head SET hash = $1 WHERE id = 1",
        &row.hash
    )?;
    exec!(
        tx,
        "INSERT INTO audit_events (seq, at, org_id, actor, action, target, ip, detail, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        row.seq,
        row.at,
        &row.org_id,
        &row.actor,
        &row.action,
        &row.target,
        &row.ip,
        &row.detail,
        &row.prev_hash,
        &row.hash
    )?;
    Ok(row.seq)
}

/// Newest first.
pub async fn list(
    db: &Db,
    org_id: Option<&str>,
    since: Option<i64>,
    action_prefix: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    let mut c = db.read().await?;
    let prefix = action_prefix.map(|p| format!("{p}%"));
    Ok(fetch_all!(
        &mut c,
        AuditRow,
        "SELECT seq, at, org_id, actor, action, target, ip, detail, prev_hash, hash FROM audit_events
         WHERE ($1 IS NULL OR org_id = $1) AND at >= $2 AND ($3 IS NULL OR action LIKE $3)
         ORDER BY seq DESC LIMIT $4",
        org_id,
        since.unwrap_or(0),
        prefix,
        limit
    )?)
}

#[derive(Debug, Serialize)]
pub struct Verification {
    pub checked: i64,
    pub head_seq: i64,
    /// The first sequence number whose event does not match the chain.
    pub broken_at: Option<i64>,
    pub reason: Option<String>,
}

/// Walks the whole chain in order.
pub async fn verify(db: &Db) -> Result<Verification, StoreError> {
    let mut c = db.read().await?;
    let head = fetch_optional!(
        &mut c,
        Head,
        "SELECT seq, hash FROM audit_head WHERE id = 1"
    )?
    .ok_or_else(|| StoreError::Database(sqlx::Error::RowNotFound))?;
    let mut prev = "0".repeat(64);
    let mut expect = 1i64;
    let mut checked = 0i64;
    let broken = |checked, seq, reason: &str| Verification {
        checked,
        head_seq: head.seq,
        broken_at: Some(seq),
        reason: Some(reason.to_string()),
    };
    loop {
        let rows = fetch_all!(
            &mut c,
            AuditRow,
            "SELECT seq, at, org_id, actor, action, target, ip, detail, prev_hash, hash FROM audit_events
             WHERE seq >= $1 ORDER BY seq LIMIT 1000",
            expect
        )?;
        if rows.is_empty() {
            break;
        }
        for r in rows {
            if r.seq != expect {
                return Ok(broken(checked, expect, "event missing"));
            }
            if r.prev_hash != prev {
                return Ok(broken(checked, r.seq, "does not follow the previous event"));
            }
            if chain_hash(&r) != r.hash {
                return Ok(broken(checked, r.seq, "content does not match its hash"));
            }
            prev = r.hash;
            expect += 1;
            checked += 1;
        }
    }
    if expect - 1 != head.seq || prev != head.hash {
        return Ok(broken(
            checked,
            expect,
            "chain ends before the recorded head",
        ));
    }
    Ok(Verification {
        checked,
        head_seq: head.seq,
        broken_at: None,
        reason: None,
    })
}
