//! The one leased-job primitive. A job is a row in `jobs`: what it acts
//! on, the step it has reached, and who holds it until when. Rotations,
//! incident campaigns and deliveries are jobs; each step's effects commit in
//! the same transaction as the step itself ([`advance`]), so a process
//! killed at any point leaves a job that another instance (or the next
//! start) takes over at the step it had reached, once the lease runs out.
//!
//! - [`claim`] takes due jobs of one kind: `FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL, so instances claiming at once take different jobs; SQLite's
//!   write transaction is exclusive already. The owner is a token of the
//!   claim's own ([`claim_token`]), never reused: a process cannot claim a
//!   job it is still running, and a task that lost a job to another claim
//!   (even of its own process) fails every owner check from then on.
//! - [`heartbeat`] extends a lease while a long step runs; every change
//!   checks the owner, so a job whose lease was lost is not written by two.
//!   `crate::jobs::lease` renews it in the background and checks it right
//!   before every action at an outside system.
//! - [`fail`] counts an attempt and retries with exponential backoff and
//!   jitter, until `max_attempts`: then the job is `dead`, shown to a
//!   person, and waits for [`clear`] — never a silent forever-retry.
//!
//! Time is a parameter (`now`, unix milliseconds) throughout.

use rand::Rng;
use serde::Serialize;
use serde_json::Value;

use crate::store::sql::Arg;
use crate::store::{new_id, AsEx, Db, StoreError, Tx};
use crate::{exec, fetch_all, fetch_optional};

pub const QUEUED: &str = "queued";
pub const RUNNING: &str = "running";
pub const DONE: &str = "done";
pub const DEAD: &str = "dead";
pub const CANCELLED: &str = "cancelled";

#[derive(sqlx::FromRow, Debug, Clone, Serialize)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub subject: String,
    pub state: String,
    pub step: String,
    pub payload: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub next_run_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The outside system it acts on (`kind:host`), capped per host.
    pub host: Option<String>,
}

impl Job {
    pub fn payload(&self) -> Value {
        serde_json::from_str(&self.payload).unwrap_or(Value::Null)
    }
}

const COLS: &str = "id, kind, subject, state, step, payload, attempts, max_attempts, next_run_at, \
    lease_owner, lease_until, last_error, created_at, updated_at, host";

/// A fresh lease owner for one claim by `instance`: the instance names
/// who holds a job (shown to people), the suffix makes each claim its own.
pub fn claim_token(instance: &str) -> String {
    format!("{instance}/{}", new_id())
}

pub struct NewJob<'a> {
    pub kind: &'a str,
    pub subject: &'a str,
    pub step: &'a str,
    pub payload: &'a Value,
    pub run_at: i64,
    /// Failed attempts allowed before the job is `dead`.
    pub max_attempts: i64,
    /// The outside system it acts on (`kind:host`): claims cap the jobs
    /// running against one host ([`claim_capped`]).
    pub host: Option<&'a str>,
}

/// Adds a job, in the caller's transaction (with whatever it is about).
pub async fn enqueue(tx: &mut Tx, new: &NewJob<'_>, now: i64) -> Result<String, StoreError> {
    let id = new_id();
    enqueue_as(tx, &id, new, now).await?;
    Ok(id)
}

/// [`enqueue`] with the id chosen by the caller (a row that names its job
/// is written before the job).
pub async fn enqueue_as(
    tx: &mut Tx,
    id: &str,
    new: &NewJob<'_>,
    now: i64,
) -> Result<(), StoreError> {
    exec!(
        tx,
        "INSERT INTO jobs (id, kind, subject, state, step, payload, attempts, max_attempts, next_run_at, created_at, updated_at, host)
         VALUES ($1, $2, $3, 'queued', $4, $5, 0, $6, $7, $8, $8, $9)",
        id,
        new.kind,
        new.subject,
        new.step,
        new.payload.to_string(),
        new.max_attempts.max(1),
        new.run_at,
        now,
        new.host
    )?;
    Ok(())
}

pub async fn get<C: AsEx>(c: &mut C, id: &str) -> Result<Option<Job>, StoreError> {
    Ok(fetch_optional!(
        c,
        Job,
        &format!("SELECT {COLS} FROM jobs WHERE id = $1"),
        id
    )?)
}

/// Takes up to `limit` due jobs of `kind` for `owner` until `now + lease_ms`:
/// queued ones whose time has come, and running ones whose holder's lease
/// ran out (it died or hung).
pub async fn claim(
    db: &Db,
    kind: &str,
    owner: &str,
    lease_ms: i64,
    limit: i64,
    now: i64,
) -> Result<Vec<Job>, StoreError> {
    claim_capped(db, kind, owner, lease_ms, limit, now, &|_| i64::MAX).await
}

/// [`claim`], taking a job with a host only while fewer than `cap(host)`
/// jobs (of any kind, on any instance) hold a live lease on that host.
pub async fn claim_capped(
    db: &Db,
    kind: &str,
    owner: &str,
    lease_ms: i64,
    limit: i64,
    now: i64,
    cap: &(dyn Fn(&str) -> i64 + Sync),
) -> Result<Vec<Job>, StoreError> {
    let mut tx = db.begin_write().await?;
    // BACKEND-SPECIFIC: PostgreSQL skips rows another instance is claiming
    // right now; SQLite's write transaction is exclusive already.
    let lock = match &tx {
        Tx::Postgres(..) => "FOR UPDATE SKIP LOCKED",
        Tx::Sqlite(..) => "",
    };
    // More candidates than wanted: some may be over their host's cap.
    let candidates: Vec<(String, Option<String>)> = fetch_all!(
        &mut tx,
        (String, Option<String>),
        &format!(
            "SELECT id, host FROM jobs
             WHERE kind = $1 AND next_run_at <= $2
               AND (state = 'queued' OR (state = 'running' AND lease_until < $2))
             ORDER BY next_run_at LIMIT $3 {lock}"
        ),
        kind,
        now,
        limit.saturating_mul(4).max(limit)
    )?;
    let sql = format!(
        "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2, updated_at = $3, woken_at = NULL
         WHERE id = $4 RETURNING {COLS}"
    );
    let until = now.saturating_add(lease_ms);
    let mut jobs = Vec::with_capacity(usize::try_from(limit).unwrap_or(0).min(candidates.len()));
    // Hosts found full in this claim: not asked again for its other jobs.
    let mut full: Vec<&str> = Vec::new();
    for (id, host) in &candidates {
        if jobs.len() as i64 >= limit {
            break;
        }
        if let Some(h) = host.as_deref() {
            if full.contains(&h) {
                continue;
            }
            if !take_place(&mut tx, h, cap(h), id, now).await? {
                full.push(h);
                continue;
            }
        }
        // Running at once: the next place taken in this transaction must
        // see this one's job holding its place.
        if let Some(j) = fetch_optional!(&mut tx, Job, &sql, owner, until, now, id)? {
            jobs.push(j);
        }
    }
    tx.commit().await?;
    Ok(jobs)
}

/// The most places a host may have; a larger cap means none (the uncapped
/// claims pass `i64::MAX`).
const MAX_PLACES: i64 = 4_096;

/// Takes a place on `host` for job `id` while fewer than `cap` jobs hold a
/// live lease on it (of any kind, on any instance): a place in
/// `job_host_slots` is free when its job no longer holds a live lease, so
/// an abandoned job (its holder crashed) frees its place by itself and
/// nothing has to give it back. A job that holds a place takes that one
/// again (a lease taken over), never a second.
///
/// The places are looked at in three tiers, each asked only when the one
/// before found nothing (`COALESCE` evaluates lazily on both engines):
/// the place this job holds; the first place nobody holds (a job that
/// finishes or is released empties its place, [`free_place`]); the first
/// place whose job's lease has lapsed. Every tier locks what it finds
/// (skipping what another claim locked): the `UPDATE` rechecks only host
/// and place, so an unlocked find could overwrite a place another claim
/// took meanwhile and let two jobs run on one place. Ranking every place with its
/// lease check, as one query did before, cost 0.72 ms a claim on
/// PostgreSQL, the costliest statement of a campaign.
///
/// BACKEND-SPECIFIC: on PostgreSQL concurrent claims skip the places
/// another claim is taking (`FOR UPDATE SKIP LOCKED`) instead of waiting
/// for a lock on the whole host, so claims on one host never queue behind
/// each other's transactions; SQLite's write transaction is exclusive
/// already.
async fn take_place(
    tx: &mut Tx,
    host: &str,
    cap: i64,
    id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    if cap > MAX_PLACES {
        // Uncapped (`claim`, `claim_id`): no places to keep.
        return Ok(true);
    }
    let lock = match tx {
        Tx::Postgres(..) => "FOR UPDATE SKIP LOCKED",
        Tx::Sqlite(..) => "",
    };
    let take = format!(
        "UPDATE job_host_slots SET job_id = $1
         WHERE host = $2 AND n = COALESCE(
             (SELECT s.n FROM job_host_slots s
              WHERE s.host = $2 AND s.n < $3 AND s.job_id = $1 LIMIT 1 {lock}),
             (SELECT s.n FROM job_host_slots s
              WHERE s.host = $2 AND s.n < $3 AND s.job_id IS NULL
              ORDER BY s.n LIMIT 1 {lock}),
             (SELECT s.n FROM job_host_slots s
              WHERE s.host = $2 AND s.n < $3 AND NOT EXISTS (
                  SELECT 1 FROM jobs j
                  WHERE j.id = s.job_id AND j.state = 'running' AND j.lease_until >= $4)
              ORDER BY s.n LIMIT 1 {lock}))"
    );
    for first in [true, false] {
        if exec!(tx, &take, id, host, cap, now)? == 1 {
            return Ok(true);
        }
        if !first {
            break;
        }
        // No free place among the host's rows: add the missing ones (its
        // first claim, or a raised cap) and look once more. (`WHERE true`:
        // SQLite reads `ON CONFLICT` after a bare `FROM g` as a join.)
        let have = crate::scalar_optional!(
            tx,
            i64,
            "SELECT COUNT(*) FROM job_host_slots WHERE host = $1 AND n < $2",
            host,
            cap
        )?
        .unwrap_or(0);
        if have >= cap {
            return Ok(false);
        }
        exec!(
            tx,
            "WITH RECURSIVE g(n) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT n + 1 FROM g WHERE n + 1 < $2)
             INSERT INTO job_host_slots (host, n) SELECT $1, n FROM g WHERE true
             ON CONFLICT (host, n) DO NOTHING",
            host,
            cap
        )?;
    }
    Ok(false)
}

/// Takes one job by id, when it is due and nobody holds it (a CLI that
/// drives the rotation it started). A job whose lease is live is held,
/// whoever holds it — this process included.
pub async fn claim_id(
    db: &Db,
    id: &str,
    owner: &str,
    lease_ms: i64,
    now: i64,
) -> Result<Option<Job>, StoreError> {
    let mut tx = db.begin_write().await?;
    let job = claim_id_in(&mut tx, id, owner, lease_ms, now, &|_| i64::MAX).await?;
    tx.commit().await?;
    Ok(job)
}

/// [`claim_id`] in the caller's transaction (the group-commit writer's),
/// while fewer than `cap(host)` jobs hold a live lease on the job's host.
pub async fn claim_id_in(
    tx: &mut Tx,
    id: &str,
    owner: &str,
    lease_ms: i64,
    now: i64,
    cap: &(dyn Fn(&str) -> i64 + Sync),
) -> Result<Option<Job>, StoreError> {
    let host = crate::scalar_optional!(
        tx,
        Option<String>,
        "SELECT host FROM jobs WHERE id = $1",
        id
    )?
    .flatten();
    if let Some(h) = host {
        if !take_place(tx, &h, cap(&h), id, now).await? {
            return Ok(None);
        }
    }
    Ok(fetch_optional!(
        tx,
        Job,
        &format!(
            "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2, updated_at = $3, woken_at = NULL
             WHERE id = $4 AND next_run_at <= $3
               AND (state = 'queued' OR (state = 'running' AND lease_until < $3))
             RETURNING {COLS}"
        ),
        owner,
        now.saturating_add(lease_ms),
        now,
        id
    )?)
}

/// Extends `owner`'s lease; false when it no longer holds the job.
pub async fn heartbeat(
    db: &Db,
    id: &str,
    owner: &str,
    lease_ms: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let mut tx = db.begin_write().await?;
    let held = heartbeat_in(&mut tx, id, owner, lease_ms, now).await?;
    tx.commit().await?;
    Ok(held)
}

/// [`heartbeat`] in the caller's transaction (the group-commit writer's):
/// the check that the lease is still held commits (or rolls back) with the
/// work it guards.
pub async fn heartbeat_in(
    tx: &mut Tx,
    id: &str,
    owner: &str,
    lease_ms: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let n = exec!(
        tx,
        "UPDATE jobs SET lease_until = $1, updated_at = $2
         WHERE id = $3 AND lease_owner = $4 AND state = 'running'",
        now.saturating_add(lease_ms),
        now,
        id,
        owner
    )?;
    Ok(n == 1)
}

/// A job with an id of its own, one per subject (a connection's refresh):
/// it is created on first use and then only moves.
pub struct Standing<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub subject: &'a str,
    pub step: &'a str,
    /// The outside system it acts on (`kind:host`), capped per host.
    pub host: Option<&'a str>,
}

/// Creates a standing job due at `run_at`, or moves it there, in the
/// caller's transaction. A held job keeps its lease.
pub async fn schedule_standing(
    tx: &mut Tx,
    job: &Standing<'_>,
    run_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    exec!(
        tx,
        "INSERT INTO jobs (id, kind, subject, state, step, payload, attempts, max_attempts, next_run_at, created_at, updated_at, host)
         VALUES ($1, $2, $3, 'queued', $4, '{}', 0, 1, $5, $6, $6, $7)
         ON CONFLICT (id) DO UPDATE SET next_run_at = excluded.next_run_at, updated_at = excluded.updated_at,
            host = excluded.host",
        job.id,
        job.kind,
        job.subject,
        job.step,
        run_at,
        now,
        job.host
    )?;
    Ok(())
}

/// Takes a standing job's lease for `owner` (or renews its own), due or
/// not, creating the job (due at `idle_run_at`) when it does not exist.
/// False when someone else holds a live lease.
pub async fn take_standing(
    db: &Db,
    job: &Standing<'_>,
    owner: &str,
    lease_ms: i64,
    idle_run_at: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let mut tx = db.begin_write().await?;
    let n = exec!(
        &mut tx,
        "INSERT INTO jobs (id, kind, subject, state, step, payload, attempts, max_attempts, next_run_at,
            lease_owner, lease_until, created_at, updated_at)
         VALUES ($1, $2, $3, 'running', $4, '{}', 0, 1, $5, $6, $7, $8, $8)
         ON CONFLICT (id) DO UPDATE SET state = 'running', lease_owner = excluded.lease_owner,
            lease_until = excluded.lease_until, updated_at = excluded.updated_at, woken_at = NULL
         WHERE jobs.state <> 'running' OR jobs.lease_until < $8 OR jobs.lease_owner = excluded.lease_owner",
        job.id,
        job.kind,
        job.subject,
        job.step,
        idle_run_at,
        owner,
        now.saturating_add(lease_ms),
        now
    )?;
    tx.commit().await?;
    Ok(n == 1)
}

/// Makes the jobs `ids` due now (new work for a delivery that was waiting
/// for it, a paused one whose cause went away, a reader that moved). A
/// queued job is due at once. A held job is marked woken: its holder may
/// have read what the wake is about before it changed, so its release
/// ([`release_in`]) makes it due at once rather than at the time it
/// computed from what it read — before, that wake was lost (a delivery
/// resumed while its job, having seen it paused, released itself for an
/// hour). Returns how many jobs were woken or marked.
pub async fn wake(tx: &mut Tx, ids: &[String], now: i64) -> Result<u64, StoreError> {
    let mut n = 0;
    for chunk in ids.chunks(500) {
        let list = crate::store::sql::param_list(2, chunk.len());
        let sql = format!(
            "UPDATE jobs SET
                next_run_at = CASE WHEN state = 'queued' THEN $1 ELSE next_run_at END,
                woken_at = CASE WHEN state = 'running' THEN $1 ELSE woken_at END,
                updated_at = $1
             WHERE ((state = 'queued' AND next_run_at > $1) OR state = 'running') AND id IN ({list})"
        );
        let mut args = vec![Arg::Int(now)];
        args.extend(chunk.iter().map(|id| Arg::Text(id.clone())));
        n += crate::store::sql::exec_args(tx, &sql, args).await?;
    }
    Ok(n)
}

/// Removes a job whatever its state (what it worked on is gone). A holder
/// fails its next owner check and stops.
pub async fn delete(tx: &mut Tx, id: &str) -> Result<bool, StoreError> {
    Ok(exec!(tx, "DELETE FROM jobs WHERE id = $1", id)? == 1)
}

/// Gives back `owner`'s leases on the refresh jobs (`kind`) of the
/// connections `subjects`, each due again when its connection next is: the
/// later of its refresh time and a failure's retry time, or `idle_run_at`
/// when it has nothing left to refresh. One statement per 500 (a write per
/// connection would cost as much as the refresh itself).
pub async fn release_connection_refreshes(
    db: &Db,
    kind: &str,
    owner: &str,
    subjects: &[String],
    idle_run_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    for chunk in subjects.chunks(500) {
        let list = crate::store::sql::param_list(5, chunk.len());
        let sql = format!(
            "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL, updated_at = $2,
                next_run_at = COALESCE((
                    SELECT CASE WHEN c.next_attempt_at IS NOT NULL AND c.next_attempt_at > c.refresh_due_at
                                THEN c.next_attempt_at ELSE c.refresh_due_at END
                    FROM connections c
                    WHERE c.id = jobs.subject AND c.has_credentials = TRUE AND c.status IN ('connected', 'error')
                ), $3)
             WHERE kind = $4 AND lease_owner = $1 AND subject IN ({list})"
        );
        let mut args = vec![
            Arg::Text(owner.to_string()),
            Arg::Int(now),
            Arg::Int(idle_run_at),
            Arg::Text(kind.to_string()),
        ];
        args.extend(chunk.iter().map(|id| Arg::Text(id.clone())));
        let mut tx = db.begin_write().await?;
        crate::store::sql::exec_args(&mut tx, &sql, args).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Moves a held job to `step` (and `payload`, when given) in the caller's
/// transaction, so the step and its effects commit together. False when the
/// lease was lost: the caller must roll back what it did.
pub async fn advance(
    tx: &mut Tx,
    id: &str,
    owner: &str,
    step: &str,
    payload: Option<&Value>,
    now: i64,
) -> Result<bool, StoreError> {
    let n = exec!(
        tx,
        "UPDATE jobs SET step = $1, payload = COALESCE($2, payload), attempts = 0, last_error = NULL, updated_at = $3
         WHERE id = $4 AND lease_owner = $5 AND state = 'running'",
        step,
        payload.map(Value::to_string),
        now,
        id,
        owner
    )?;
    Ok(n == 1)
}

/// Ends a held job as `done` or `cancelled`, in the caller's transaction.
pub async fn finish(
    tx: &mut Tx,
    id: &str,
    owner: &str,
    state: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let held = crate::scalar_optional!(
        tx,
        Option<String>,
        "UPDATE jobs SET state = $1, lease_owner = NULL, lease_until = NULL, updated_at = $2
         WHERE id = $3 AND lease_owner = $4 AND state = 'running' RETURNING host",
        state,
        now,
        id,
        owner
    )?;
    free_place(tx, id, held).await
}

/// Empties the place on its host that a job which just gave up its lease
/// held, so the next claim finds it without checking leases. `held` is
/// what the statement that gave the lease up returned: `None` when the
/// caller did not hold the job (nothing is freed), `Some(None)` for a job
/// acting on no host. True when the caller held the job.
async fn free_place(
    tx: &mut Tx,
    id: &str,
    held: Option<Option<String>>,
) -> Result<bool, StoreError> {
    let Some(host) = held else {
        return Ok(false);
    };
    if let Some(h) = host {
        exec!(
            tx,
            "UPDATE job_host_slots SET job_id = NULL WHERE host = $1 AND job_id = $2",
            &h,
            id
        )?;
    }
    Ok(true)
}

/// Gives a held job back to run again at `run_at`, without counting an
/// attempt (it is waiting for something, not failing).
pub async fn release(
    db: &Db,
    id: &str,
    owner: &str,
    run_at: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let mut tx = db.begin_write().await?;
    let held = release_in(&mut tx, id, owner, run_at, now).await?;
    tx.commit().await?;
    Ok(held)
}

/// [`release`] in the caller's transaction, so what the holder records
/// about the wait commits only while it still holds the job.
///
/// A release ends a run that worked (it waits for something), so the
/// attempts start again: `max_attempts` counts failures in a row. Counted
/// over a job's whole life, a campaign that follows its items for hours,
/// or a cut-over that waits a day, died of a few passing database errors
/// spread across it.
pub async fn release_in(
    tx: &mut Tx,
    id: &str,
    owner: &str,
    run_at: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let held = crate::scalar_optional!(
        tx,
        Option<String>,
        "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL, attempts = 0,
            next_run_at = CASE WHEN woken_at IS NULL THEN $1 ELSE $2 END, woken_at = NULL, updated_at = $2
         WHERE id = $3 AND lease_owner = $4 AND state = 'running' RETURNING host",
        run_at,
        now,
        id,
        owner
    )?;
    free_place(tx, id, held).await
}

/// Counts a failed attempt. Returns the job's state after it: `queued`
/// (retried after a backoff with jitter) or `dead` (its budget is spent; a
/// person must [`clear`] it). `None` when `owner` no longer held it.
pub async fn fail(
    db: &Db,
    id: &str,
    owner: &str,
    error: &str,
    now: i64,
) -> Result<Option<&'static str>, StoreError> {
    let mut tx = db.begin_write().await?;
    let state = fail_in(&mut tx, id, owner, error, now).await?;
    tx.commit().await?;
    Ok(state)
}

/// [`fail`] in the caller's transaction: what the holder records about the
/// failure commits with it, and only while it holds the job.
pub async fn fail_in(
    tx: &mut Tx,
    id: &str,
    owner: &str,
    error: &str,
    now: i64,
) -> Result<Option<&'static str>, StoreError> {
    fail_in_after(tx, id, owner, error, &backoff_ms, now).await
}

/// [`fail_in`] with a backoff of the job's own (`delay(attempts)`, in ms):
/// webhooks keep retrying for days, not minutes.
pub async fn fail_in_after(
    tx: &mut Tx,
    id: &str,
    owner: &str,
    error: &str,
    delay: &(dyn Fn(i64) -> i64 + Sync),
    now: i64,
) -> Result<Option<&'static str>, StoreError> {
    let Some(job) = get(tx, id).await? else {
        return Ok(None);
    };
    if job.lease_owner.as_deref() != Some(owner) || job.state != RUNNING {
        return Ok(None);
    }
    let attempts = job.attempts.saturating_add(1);
    let state = if attempts >= job.max_attempts {
        DEAD
    } else {
        QUEUED
    };
    exec!(
        tx,
        "UPDATE jobs SET state = $1, attempts = $2, last_error = $3, next_run_at = $4,
                lease_owner = NULL, lease_until = NULL, updated_at = $5
         WHERE id = $6 AND lease_owner = $7",
        state,
        attempts,
        error,
        now.saturating_add(delay(attempts)),
        now,
        id,
        owner
    )?;
    Ok(Some(state))
}

/// A person clears a `dead` job: it runs again at once with a fresh budget.
pub async fn clear(tx: &mut Tx, id: &str, now: i64) -> Result<bool, StoreError> {
    let n = exec!(
        tx,
        "UPDATE jobs SET state = 'queued', attempts = 0, next_run_at = $1, updated_at = $1
         WHERE id = $2 AND state = 'dead'",
        now,
        id
    )?;
    Ok(n == 1)
}

/// Puts a finished or dead job back at `step`, due now, with a fresh budget
/// (a person retries it).
pub async fn requeue(tx: &mut Tx, id: &str, step: &str, now: i64) -> Result<bool, StoreError> {
    let n = exec!(
        tx,
        "UPDATE jobs SET state = 'queued', step = $1, attempts = 0, next_run_at = $2, lease_owner = NULL,
                lease_until = NULL, last_error = NULL, updated_at = $2
         WHERE id = $3",
        step,
        now,
        id
    )?;
    Ok(n == 1)
}

/// Sets `patch`'s fields on a job's payload (a person's decision the
/// worker reads at its next step: `finish_now`).
pub async fn patch_payload(
    tx: &mut Tx,
    id: &str,
    patch: &Value,
    now: i64,
) -> Result<bool, StoreError> {
    let Some(job) = get(tx, id).await? else {
        return Ok(false);
    };
    let mut payload = match job.payload() {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    if let Value::Object(p) = patch {
        payload.extend(p.clone());
    }
    let n = exec!(
        tx,
        "UPDATE jobs SET payload = $1, updated_at = $2 WHERE id = $3",
        Value::Object(payload).to_string(),
        now,
        id
    )?;
    Ok(n == 1)
}

/// Makes a waiting job due now with `patch` on its payload; false while a
/// live lease holds it (its holder would write over the change) or when it
/// has ended.
pub async fn hurry(tx: &mut Tx, id: &str, patch: &Value, now: i64) -> Result<bool, StoreError> {
    let n = exec!(
        tx,
        "UPDATE jobs SET next_run_at = $1, updated_at = $1
         WHERE id = $2 AND (state = 'queued' OR (state = 'running' AND lease_until < $1))",
        now,
        id
    )?;
    if n != 1 {
        return Ok(false);
    }
    patch_payload(tx, id, patch, now).await
}

/// Cancels a job whatever holds it (a person's decision); a holder finds
/// out at its next [`advance`] or [`finish`], which then do nothing.
pub async fn cancel(tx: &mut Tx, id: &str, now: i64) -> Result<bool, StoreError> {
    let n = exec!(
        tx,
        "UPDATE jobs SET state = 'cancelled', lease_owner = NULL, lease_until = NULL, updated_at = $1
         WHERE id = $2 AND state IN ('queued', 'running', 'dead')",
        now,
        id
    )?;
    Ok(n == 1)
}

/// [`cancel`], unless the job is at one of the `busy` steps (work that,
/// once begun, must run to its end); `Ok(false)` then, or when the job has
/// ended. One conditional update, so a step that a worker takes meanwhile
/// is seen (the row lock orders the two on PostgreSQL).
pub async fn cancel_unless_at(
    tx: &mut Tx,
    id: &str,
    busy: &[&str],
    now: i64,
) -> Result<bool, StoreError> {
    if busy.is_empty() {
        return cancel(tx, id, now).await;
    }
    let sql = format!(
        "UPDATE jobs SET state = 'cancelled', lease_owner = NULL, lease_until = NULL, updated_at = $1
         WHERE id = $2 AND state IN ('queued', 'running', 'dead') AND step NOT IN ({})",
        crate::store::sql::param_list(3, busy.len())
    );
    let mut args = vec![Arg::Int(now), Arg::Text(id.to_string())];
    args.extend(busy.iter().map(|s| Arg::Text(s.to_string())));
    Ok(crate::store::sql::exec_args(tx, &sql, args).await? == 1)
}

/// Delay before retry number `attempts`: 5 s doubling to at most 15 min,
/// ±20% jitter so that jobs failing together do not retry together.
pub fn backoff_ms(attempts: i64) -> i64 {
    let base = 5_000i64
        .saturating_mul(1i64 << attempts.clamp(0, 8))
        .min(15 * 60_000);
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    (base as f64 * jitter) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn sqlite() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite:{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        (dir, db)
    }

    /// A fresh PostgreSQL database (dropped by [`drop_pg`]), or `None` off
    /// CI when there is none.
    async fn postgres() -> Option<(Db, String)> {
        let admin_url = std::env::var("REKEY_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let admin = match sqlx::PgPool::connect(&admin_url).await {
            Ok(p) => p,
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("PostgreSQL is required in CI: {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED: PostgreSQL unreachable ({e})");
                return None;
            }
        };
        let name = format!("rekey_jobs_{}", new_id().to_lowercase());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        let url = format!("{}/{name}", &admin_url[..admin_url.rfind('/').unwrap()]);
        let db = Db::connect(&url).await.unwrap();
        db.migrate().await.unwrap();
        Some((db, name))
    }

    async fn drop_pg(db: Db, name: String) {
        db.close().await;
        let admin_url = std::env::var("REKEY_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&admin)
                .await;
        }
    }

    async fn add(db: &Db, subject: &str, run_at: i64, max: i64) -> String {
        add_on(db, subject, run_at, max, None).await
    }

    async fn add_on(db: &Db, subject: &str, run_at: i64, max: i64, host: Option<&str>) -> String {
        let mut tx = db.begin_write().await.unwrap();
        let id = enqueue(
            &mut tx,
            &NewJob {
                kind: "test",
                subject,
                step: "plan",
                payload: &json!({"n": 1}),
                run_at,
                max_attempts: max,
                host,
            },
            0,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        id
    }

    async fn lifecycle(db: &Db) {
        let id = add(db, "a", 1_000, 2).await;
        // not due yet
        assert!(claim(db, "test", "one", 60_000, 10, 999)
            .await
            .unwrap()
            .is_empty());
        let got = claim(db, "test", "one", 60_000, 10, 1_000).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].lease_owner.as_deref(), Some("one"));
        // held: nobody else gets it while the lease lasts
        assert!(claim(db, "test", "two", 60_000, 10, 2_000)
            .await
            .unwrap()
            .is_empty());
        assert!(heartbeat(db, &id, "one", 60_000, 30_000).await.unwrap());
        assert!(!heartbeat(db, &id, "two", 60_000, 30_000).await.unwrap());
        // a step commits with the holder's transaction, and only the holder's
        let mut tx = db.begin_write().await.unwrap();
        assert!(
            advance(&mut tx, &id, "one", "apply", Some(&json!({"n": 2})), 31_000)
                .await
                .unwrap()
        );
        assert!(!advance(&mut tx, &id, "two", "verify", None, 31_000)
            .await
            .unwrap());
        tx.commit().await.unwrap();
        // the holder dies: after its lease ends another takes over at its step
        assert!(claim(db, "test", "two", 60_000, 10, 89_999)
            .await
            .unwrap()
            .is_empty());
        let got = claim(db, "test", "two", 60_000, 10, 90_001).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].step, "apply");
        assert_eq!(got[0].payload()["n"], 2);
        // the old holder can no longer write it
        let mut tx = db.begin_write().await.unwrap();
        assert!(!finish(&mut tx, &id, "one", DONE, 90_002).await.unwrap());
        tx.commit().await.unwrap();
        // failures back off, then the budget ends in `dead`
        assert_eq!(
            fail(db, &id, "two", "target refused", 100_000)
                .await
                .unwrap(),
            Some(QUEUED)
        );
        let j = get(&mut db.read().await.unwrap(), &id)
            .await
            .unwrap()
            .unwrap();
        assert!(j.next_run_at >= 100_000 + 8_000, "{}", j.next_run_at);
        assert_eq!(j.last_error.as_deref(), Some("target refused"));
        assert!(claim(db, "test", "two", 60_000, 10, 100_001)
            .await
            .unwrap()
            .is_empty());
        let got = claim(db, "test", "two", 60_000, 10, 200_000).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            fail(db, &id, "two", "again", 200_001).await.unwrap(),
            Some(DEAD)
        );
        assert!(claim(db, "test", "two", 60_000, 10, i64::MAX / 2)
            .await
            .unwrap()
            .is_empty());
        // a person clears it; it runs and finishes
        let mut tx = db.begin_write().await.unwrap();
        assert!(clear(&mut tx, &id, 300_000).await.unwrap());
        tx.commit().await.unwrap();
        let got = claim(db, "test", "three", 60_000, 10, 300_000)
            .await
            .unwrap();
        assert_eq!((got.len(), got[0].attempts), (1, 0));
        let mut tx = db.begin_write().await.unwrap();
        assert!(finish(&mut tx, &id, "three", DONE, 300_001).await.unwrap());
        tx.commit().await.unwrap();
        assert!(claim(db, "test", "three", 60_000, 10, i64::MAX / 2)
            .await
            .unwrap()
            .is_empty());
    }

    /// Many claimers at once: every job is taken exactly once.
    async fn concurrent_claims(db: &Db) {
        for i in 0..200 {
            add(db, &format!("s{i}"), 0, 3).await;
        }
        let mut set = tokio::task::JoinSet::new();
        for w in 0..8 {
            let db = db.clone();
            set.spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = claim(&db, "test", &format!("w{w}"), 60_000, 7, 1_000)
                        .await
                        .unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|j| j.id));
                }
            });
        }
        let mut all = Vec::new();
        while let Some(r) = set.join_next().await {
            all.extend(r.unwrap());
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(
            (n, all.len()),
            (200, 200),
            "a job was claimed twice or not at all"
        );
    }

    /// Claimers on several "instances" at once, 30 jobs on one host capped
    /// at 3 and 10 on another host: never more than 3 hold a live lease on
    /// the first host, by claim or by id; the rest wait their turn.
    async fn host_cap(db: &Db) {
        for i in 0..30 {
            add_on(db, &format!("h{i}"), 0, 3, Some("mysql:db1")).await;
        }
        for i in 0..10 {
            add_on(db, &format!("r{i}"), 0, 3, Some("redis:cache")).await;
        }
        let cap = |h: &str| if h == "mysql:db1" { 3 } else { 100 };
        let mut set = tokio::task::JoinSet::new();
        for w in 0..6 {
            let db = db.clone();
            set.spawn(async move {
                claim_capped(&db, "test", &format!("w{w}"), 60_000, 20, 1_000, &cap)
                    .await
                    .unwrap()
            });
        }
        let mut all = Vec::new();
        while let Some(r) = set.join_next().await {
            all.extend(r.unwrap());
        }
        let on = |h: &str| all.iter().filter(|j| j.host.as_deref() == Some(h)).count();
        assert_eq!((on("mysql:db1"), on("redis:cache")), (3, 10));
        // by id too: the host is full
        let waiting = fetch_all!(
            &mut db.read().await.unwrap(),
            (String,),
            "SELECT id FROM jobs WHERE host = 'mysql:db1' AND state = 'queued' LIMIT 1"
        )
        .unwrap();
        let mut tx = db.begin_write().await.unwrap();
        let got = claim_id_in(&mut tx, &waiting[0].0, "cli", 60_000, 1_000, &cap)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert!(got.is_none(), "claimed past the host's cap");
        // one ends: one more may start
        let first = all
            .iter()
            .find(|j| j.host.as_deref() == Some("mysql:db1"))
            .unwrap();
        let mut tx = db.begin_write().await.unwrap();
        let owner = first.lease_owner.clone().unwrap();
        assert!(finish(&mut tx, &first.id, &owner, DONE, 1_001)
            .await
            .unwrap());
        tx.commit().await.unwrap();
        // the finished job emptied its place: the next claim takes it
        // without asking whose lease lapsed
        let holding = |id: String| {
            let db = db.clone();
            async move {
                crate::scalar_optional!(
                    &mut db.read().await.unwrap(),
                    i64,
                    "SELECT COUNT(*) FROM job_host_slots WHERE job_id = $1",
                    &id
                )
                .unwrap()
                .unwrap_or(0)
            }
        };
        assert_eq!(holding(first.id.clone()).await, 0);
        // a released job empties its place too
        let second = all
            .iter()
            .filter(|j| j.host.as_deref() == Some("mysql:db1"))
            .nth(1)
            .unwrap();
        assert_eq!(holding(second.id.clone()).await, 1);
        let mut tx = db.begin_write().await.unwrap();
        let owner2 = second.lease_owner.clone().unwrap();
        assert!(release_in(&mut tx, &second.id, &owner2, 500_000, 1_001)
            .await
            .unwrap());
        tx.commit().await.unwrap();
        assert_eq!(holding(second.id.clone()).await, 0);
        let more = claim_capped(db, "test", "w9", 60_000, 20, 1_002, &cap)
            .await
            .unwrap();
        assert_eq!(more.len(), 2, "{more:?}");
        // and a lease that ran out frees its place
        let later = claim_capped(db, "test", "w10", 60_000, 20, 200_000, &cap)
            .await
            .unwrap();
        assert_eq!(
            later
                .iter()
                .filter(|j| j.host.as_deref() == Some("mysql:db1"))
                .count(),
            3
        );
    }

    /// A wake that finds its job held is not lost: the holder computed its
    /// release from what it read before the wake's change, and the job is
    /// due at once after it (CI caught a delivery resumed while its job,
    /// having read it paused, released itself for an hour). A wake of a
    /// queued job makes it due; a claim after a wake starts afresh.
    async fn wakes_while_held(db: &Db) {
        let id = add(db, "w", 1_000, 3).await;
        let got = claim(db, "test", "one", 30_000, 1, 2_000).await.unwrap();
        assert_eq!(got.len(), 1);
        let mut tx = db.begin_write().await.unwrap();
        assert_eq!(
            wake(&mut tx, std::slice::from_ref(&id), 3_000)
                .await
                .unwrap(),
            1
        );
        tx.commit().await.unwrap();
        // the holder releases to the time it computed, an hour on
        assert!(release(db, &id, "one", 3_603_000, 4_000).await.unwrap());
        let j = get(&mut db.read().await.unwrap(), &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(j.next_run_at, 4_000, "due at once after a wake it missed");
        // the next claim takes it and clears the wake: a later release
        // without a wake keeps its time
        let got = claim(db, "test", "two", 30_000, 1, 4_000).await.unwrap();
        assert_eq!(got.len(), 1);
        assert!(release(db, &id, "two", 3_604_000, 5_000).await.unwrap());
        let j = get(&mut db.read().await.unwrap(), &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(j.next_run_at, 3_604_000);
        // a queued job is simply made due
        let mut tx = db.begin_write().await.unwrap();
        assert_eq!(
            wake(&mut tx, std::slice::from_ref(&id), 6_000)
                .await
                .unwrap(),
            1
        );
        tx.commit().await.unwrap();
        let j = get(&mut db.read().await.unwrap(), &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((j.state.as_str(), j.next_run_at), ("queued", 6_000));
    }

    /// `max_attempts` counts failures in a row: a job that waits between
    /// them (a campaign following its items, a cut-over) is not killed by
    /// a few passing errors spread over its life; two in a row still are.
    async fn releases_start_the_attempts_again(db: &Db) {
        let id = add(db, "a", 0, 2).await;
        let mut t = 1_000;
        for _ in 0..5 {
            assert_eq!(
                claim(db, "test", "one", 60_000, 10, t).await.unwrap().len(),
                1
            );
            assert_eq!(fail(db, &id, "one", "blip", t).await.unwrap(), Some(QUEUED));
            t += 100_000;
            assert_eq!(
                claim(db, "test", "one", 60_000, 10, t).await.unwrap().len(),
                1
            );
            assert!(release(db, &id, "one", t, t).await.unwrap());
            let j = get(&mut db.read().await.unwrap(), &id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!((j.state.as_str(), j.attempts), ("queued", 0));
            t += 100_000;
        }
        assert_eq!(
            claim(db, "test", "one", 60_000, 10, t).await.unwrap().len(),
            1
        );
        assert_eq!(fail(db, &id, "one", "down", t).await.unwrap(), Some(QUEUED));
        t += 100_000;
        assert_eq!(
            claim(db, "test", "one", 60_000, 10, t).await.unwrap().len(),
            1
        );
        assert_eq!(
            fail(db, &id, "one", "still down", t).await.unwrap(),
            Some(DEAD)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn jobs_on_sqlite() {
        let (_d, db) = sqlite().await;
        lifecycle(&db).await;
        let (_d, db) = sqlite().await;
        wakes_while_held(&db).await;
        let (_d, db) = sqlite().await;
        concurrent_claims(&db).await;
        let (_d, db) = sqlite().await;
        host_cap(&db).await;
        let (_d, db) = sqlite().await;
        releases_start_the_attempts_again(&db).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn jobs_on_postgres() {
        if let Some((db, name)) = postgres().await {
            lifecycle(&db).await;
            drop_pg(db, name).await;
        }
        if let Some((db, name)) = postgres().await {
            wakes_while_held(&db).await;
            drop_pg(db, name).await;
        }
        if let Some((db, name)) = postgres().await {
            concurrent_claims(&db).await;
            drop_pg(db, name).await;
        }
        if let Some((db, name)) = postgres().await {
            releases_start_the_attempts_again(&db).await;
            drop_pg(db, name).await;
        }
        if let Some((db, name)) = postgres().await {
            host_cap(&db).await;
            drop_pg(db, name).await;
        }
    }
}
