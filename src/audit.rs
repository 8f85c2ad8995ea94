//! Append-only, hash-chained audit log. Each event is written in the
//! transaction of the change it records, and carries the hash of the event
//! before it; `verify` walks the chain.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::store::sql::{exec_args, Arg};
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

/// Staged events one DELETE names (one parameter each: well under either
/// store's limit on bound parameters).
const CHAIN_CHUNK: usize = 500;

/// Hands the events recorded in `tx` to the log: called by the
/// transaction's commit, before it commits; true when they were staged and
/// the chainer must be woken after the commit.
///
/// BACKEND-SPECIFIC: on SQLite (one writer at a time) they are chained in
/// the transaction itself. On PostgreSQL they are staged in
/// `audit_pending`, taking no lock, and [`chain_now`] moves them onto the
/// chain after the commit: chaining in the transaction took the head's
/// row lock until its commit, and every concurrent audited write waited
/// there holding its own locks and pooled connection (a campaign's items
/// waited 25 ms each on the head). Either way the events commit or vanish
/// with the transaction's own writes.
pub(crate) async fn chain_pending(tx: &mut Tx) -> Result<bool, StoreError> {
    let rows = std::mem::take(tx.audit_pending());
    if rows.is_empty() {
        return Ok(false);
    }
    match tx {
        Tx::Sqlite(..) => {
            chain(tx, rows).await?;
            Ok(false)
        }
        Tx::Postgres(..) => {
            insert(
                tx,
                "INSERT INTO audit_pending (at, org_id, actor, action, target, ip, detail) VALUES",
                rows.iter().map(|r| r.args(false)).collect(),
            )
            .await?;
            Ok(true)
        }
    }
}

/// Puts `rows` on the chain in `tx`: the head moves by their number at
/// once (taking its row lock on PostgreSQL until the commit, so the chain
/// never forks), each gets the next sequence number and the hash over the
/// one before.
async fn chain(tx: &mut Tx, mut rows: Vec<AuditRow>) -> Result<(), StoreError> {
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
    insert(
        tx,
        "INSERT INTO audit_events (seq, at, org_id, actor, action, target, ip, detail, prev_hash, hash) VALUES",
        rows.iter().map(|r| r.args(true)).collect(),
    )
    .await
}

/// Inserts `rows` (each one row's values) with `prefix`, as few statements as
/// the stores' limits on bound parameters allow.
async fn insert(tx: &mut Tx, prefix: &str, rows: Vec<Vec<Arg>>) -> Result<(), StoreError> {
    let cols = rows.first().map_or(0, Vec::len);
    let refs = rows.iter().map(Vec::as_slice).collect();
    crate::store::writer::insert_groups(tx, &[(prefix, cols, refs)]).await?;
    Ok(())
}

impl AuditRow {
    /// The row's values in column order: with the chain's fields (`seq`
    /// first, the two hashes last) or, staged, without them.
    fn args(&self, chained: bool) -> Vec<Arg> {
        let mut v = Vec::with_capacity(10);
        if chained {
            v.push(Arg::Int(self.seq));
        }
        v.extend([
            Arg::Int(self.at),
            Arg::OptText(self.org_id.clone()),
            Arg::Text(self.actor.clone()),
            Arg::Text(self.action.clone()),
            Arg::OptText(self.target.clone()),
            Arg::OptText(self.ip.clone()),
            Arg::Text(self.detail.clone()),
        ]);
        if chained {
            v.extend([
                Arg::Text(self.prev_hash.clone()),
                Arg::Text(self.hash.clone()),
            ]);
        }
        v
    }
}

#[derive(sqlx::FromRow)]
struct Staged {
    id: i64,
    at: i64,
    org_id: Option<String>,
    actor: String,
    action: String,
    target: Option<String>,
    ip: Option<String>,
    detail: String,
}

/// Events one chaining transaction takes from `audit_pending`.
const CHAIN_BATCH: i64 = 1_000;

/// Moves every staged event (PostgreSQL, any instance's) onto the chain,
/// oldest first, [`CHAIN_BATCH`] per transaction; returns how many. Run by
/// each instance's chainer when one of its transactions staged events, every
/// [`CHAIN_SWEEP`] for other processes' (a CLI that exited first), and by
/// every reader of the log before it reads, so a search never misses an
/// event whose transaction has committed. Nothing to do on SQLite.
pub async fn chain_now(db: &Db) -> Result<usize, StoreError> {
    if !matches!(db, Db::Postgres { .. }) {
        return Ok(0);
    }
    let mut moved = 0;
    loop {
        // Looked at without a lock first: most reads find nothing staged.
        let any = crate::scalar_optional!(
            &mut db.read().await?,
            i64,
            "SELECT id FROM audit_pending ORDER BY id LIMIT 1"
        )?;
        if any.is_none() {
            return Ok(moved);
        }
        let mut tx = db.begin_write().await?;
        // The head's lock first: chainers (several instances, a reader)
        // take turns, and each finds what the one before left.
        exec!(
            &mut tx,
            "SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE"
        )?;
        let staged = fetch_all!(
            &mut tx,
            Staged,
            "SELECT id, at, org_id, actor, action, target, ip, detail FROM audit_pending
             ORDER BY id LIMIT $1",
            CHAIN_BATCH
        )?;
        let n = staged.len();
        let last = staged.last().map(|s| s.id).unwrap_or(0);
        let ids: Vec<Arg> = staged.iter().map(|s| Arg::Int(s.id)).collect();
        let rows = staged
            .into_iter()
            .map(|s| AuditRow {
                seq: 0,
                at: s.at,
                org_id: s.org_id,
                actor: s.actor,
                action: s.action,
                target: s.target,
                ip: s.ip,
                detail: s.detail,
                prev_hash: String::new(),
                hash: String::new(),
            })
            .collect();
        if n > 0 {
            chain(&mut tx, rows).await?;
            // By id, not `<= last`: a transaction that took a lower id may
            // commit after this one read.
            for chunk in ids.chunks(CHAIN_CHUNK) {
                let sql = format!(
                    "DELETE FROM audit_pending WHERE id <= {last} AND id IN ({})",
                    crate::store::sql::param_list(1, chunk.len())
                );
                exec_args(&mut tx, &sql, chunk.to_vec()).await?;
            }
        }
        tx.commit().await?;
        moved += n;
        if (n as i64) < CHAIN_BATCH {
            return Ok(moved);
        }
    }
}

/// How often an instance's chainer looks for events staged by another
/// process that could not chain them itself (a CLI that exited first).
pub const CHAIN_SWEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Wakes a process's chainer ([`Chainer::run`]) after a commit staged events.
#[derive(Debug, Default)]
pub struct Chainer {
    wake: tokio::sync::Notify,
    staged: std::sync::atomic::AtomicBool,
}

impl Chainer {
    /// The commit that staged events has returned: chain them soon. A wake
    /// while a pass runs is kept, so the chainer passes once more.
    pub fn wake(&self) {
        self.staged
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// True once this process has staged events (and so has migrated).
    pub fn has_staged(&self) -> bool {
        self.staged.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The chainer of one process: chains on every wake and every
    /// [`CHAIN_SWEEP`], until the database is closed.
    pub async fn run(self: std::sync::Arc<Self>, db: Db) {
        // Sweeps start after the first wake: by then this process has
        // migrated the database (a process that never writes an event never
        // looks).
        let mut armed = false;
        loop {
            tokio::select! {
                () = self.wake.notified() => armed = true,
                () = tokio::time::sleep(CHAIN_SWEEP) => {}
            }
            if !armed {
                continue;
            }
            if db.is_closed() {
                return;
            }
            if let Err(e) = chain_now(&db).await {
                if db.is_closed() {
                    return;
                }
                tracing::warn!(error = %e, "chaining staged audit events failed; retried at the next wake");
            }
        }
    }
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
    // Every committed event is on the chain before the log is read.
    chain_now(db).await?;
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
    chain_now(db).await?;
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
