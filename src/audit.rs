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

/// Records `ev` in `tx`: it is written, chained onto the log, as the
/// transaction's last statements when it commits, and vanishes with it
/// when it does not. The chain's head is one row every audited transaction
/// writes; bumping it at commit holds its lock (PostgreSQL; SQLite has one
/// writer anyway) for the commit alone, not for the whole transaction:
/// taken at the first event, it made every audited write on PostgreSQL
/// wait for the one before to finish its work (55 campaign items/s, and
/// credential reads timing out in the pool under a campaign).
pub async fn record(tx: &mut Tx, now: i64, actor: &Actor, ev: Event<'_>) -> Result<(), StoreError> {
    tx.audit_pending().push(AuditRow {
        seq: 0,
        at: now,
        org_id: ev.org_id.map(str::to_string),
        actor: actor.name.clone(),
        action: ev.action.to_string(),
        target: ev.target.map(str::to_string),
        ip: actor.ip.clone(),
        detail: ev.detail.to_string(),
        prev_hash: String::new(),
        hash: String::new(),
    });
    Ok(())
}

/// Chains the events recorded in `tx` onto the log: called by the
/// transaction's commit, before it commits. The head moves by the number
/// of events at once, which takes its row lock on PostgreSQL until the
/// commit, so concurrent writers line up there and the chain never forks.
pub(crate) async fn chain_pending(tx: &mut Tx) -> Result<(), StoreError> {
    let mut rows = std::mem::take(tx.audit_pending());
    if rows.is_empty() {
        return Ok(());
    }
    let n = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    let head = fetch_optional!(
        tx,
        Head,
        "UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash",
        n
    )?
    .ok_or_else(|| StoreError::Database(sqlx::Error::RowNotFound))?;
    let mut seq = head.seq - n;
    let mut prev = head.hash;
    for row in &mut rows {
        seq += 1;
        row.seq = seq;
        row.prev_hash = std::mem::take(&mut prev);
        row.hash = chain_hash(row);
        prev = row.hash.clone();
    }
    exec!(tx, "UPDATE audit_head SET hash = $1 WHERE id = 1", &prev)?;
    for row in &rows {
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
    }
    Ok(())
}

/// Newest first: `audit list`'s search (an action prefix, a start time).
pub async fn list(
    db: &Db,
    org_id: Option<&str>,
    since: Option<i64>,
    action_prefix: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    let f = Filter {
        org_id: org_id.map(str::to_string),
        action: action_prefix.map(str::to_string),
        since,
        ..Filter::default()
    };
    Ok(search(db, &f, None, limit).await?.items)
}

impl AuditRow {
    /// The row as the CLI's `audit list --json` and the admin API answer it.
    pub fn json(&self) -> Value {
        serde_json::json!({
            "seq": self.seq,
            "at": crate::clock::rfc3339(self.at),
            "org_id": self.org_id,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "ip": self.ip,
            "detail": serde_json::from_str::<Value>(&self.detail).unwrap_or_default(),
            "hash": self.hash,
        })
    }
}

/// What a search of the log asks for; every part optional.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// One org's events only (an org admin's view); `None` is every event.
    pub org_id: Option<String>,
    /// The actor contains this (case-insensitive): `admin@acme`, `operator:`.
    pub actor: Option<String>,
    /// The action starts with this: `user.` or `user.deactivate`.
    pub action: Option<String>,
    /// The target contains this (case-insensitive): a name, email or id.
    pub target: Option<String>,
    /// At or after (unix ms).
    pub since: Option<i64>,
    /// Before (unix ms).
    pub until: Option<i64>,
}

/// One page of a search, newest first, with the exact number of matching
/// events and the keyset of the next page (`before_seq`) when one follows.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<AuditRow>,
    pub total: i64,
    pub next_before_seq: Option<i64>,
}

// One WHERE for the count and the page, the same text on both engines:
// LOWER() on both sides because LIKE ignores case on SQLite and not on
// PostgreSQL; absent bounds are the widest values, not NULL tests.
const WHERE: &str = "($1 IS NULL OR org_id = $1)
     AND ($2 IS NULL OR LOWER(actor) LIKE $2 ESCAPE '\\')
     AND ($3 IS NULL OR LOWER(action) LIKE $3 ESCAPE '\\')
     AND ($4 IS NULL OR LOWER(COALESCE(target, '')) LIKE $4 ESCAPE '\\')
     AND at >= $5 AND at < $6";

/// The events matching `f`, newest first, `limit` of them before
/// `before_seq` (the keyset: a deep page costs what the first does).
pub async fn search(
    db: &Db,
    f: &Filter,
    before_seq: Option<i64>,
    limit: i64,
) -> Result<Page, StoreError> {
    let mut c = db.read().await?;
    let pattern = |v: &Option<String>, contains: bool| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| crate::store::sql::like(v, contains))
    };
    let actor = pattern(&f.actor, true);
    let action = pattern(&f.action, false);
    let target = pattern(&f.target, true);
    let since = f.since.unwrap_or(i64::MIN);
    let until = f.until.unwrap_or(i64::MAX);
    let total = crate::scalar_optional!(
        &mut c,
        i64,
        &format!("SELECT COUNT(*) FROM audit_events WHERE {WHERE}"),
        &f.org_id,
        &actor,
        &action,
        &target,
        since,
        until
    )?
    .unwrap_or(0);
    let limit = limit.max(1);
    let mut items = fetch_all!(
        &mut c,
        AuditRow,
        &format!(
            "SELECT seq, at, org_id, actor, action, target, ip, detail, prev_hash, hash FROM audit_events
             WHERE {WHERE} AND seq < $7 ORDER BY seq DESC LIMIT $8"
        ),
        &f.org_id,
        &actor,
        &action,
        &target,
        since,
        until,
        before_seq.unwrap_or(i64::MAX),
        limit.saturating_add(1)
    )?;
    let more = items.len() as i64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_before_seq = if more {
        items.last().map(|r| r.seq)
    } else {
        None
    };
    Ok(Page {
        items,
        total,
        next_before_seq,
    })
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
