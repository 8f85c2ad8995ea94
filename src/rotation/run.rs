//! Running a rotation's steps: one leased job per rotation. Every step
//! commits its effects, its record and the job's next step in one
//! transaction; a lost lease rolls the step back.

use serde_json::{json, Map, Value};

use super::limits::{LEASE_MS, STEP_BUDGET, TARGET_LOOK_MS};
use super::{
    by_id, cutover, finish, record_step, record_steps, RotationError, RotationRow, JOB_KIND,
};
use crate::connectors::connections::{self, Connection};
use crate::connectors::drivers::{self, Admin, Driver, Since, Target};
use crate::connectors::probe::{self, Verdict};
use crate::connectors::slots::{self, Slot};
use crate::exec;
use crate::jobs::lease::Lease;
use crate::jobs::queue::{self, Job, DEAD, DONE};
use crate::state::Core;
use crate::store::writer::BoxFuture;
use crate::store::Tx;

/// Steps between the write-ahead and the promotion: the target may hold
/// the new credential while `current` is still the old one. They cannot be
/// cancelled, and when their budget is spent nothing sealed is dropped —
/// a retry resumes at `recover`.
pub(super) const CHANGING: [&str; 3] = ["apply", "verify", "recover"];

pub(super) enum Next {
    /// The step committed and moved the job to `step` (with `payload`
    /// when the step set one): go on from there without reading it back.
    Continue {
        step: String,
        payload: Option<Value>,
    },
    /// The rotation ended (completed, failed, cancelled).
    Ended,
    /// A connection's rotation retired the previous credential and
    /// completed.
    Completed,
    /// A passing failure: count an attempt and retry later.
    Retry(String),
    /// The step failed for good: the rotation fails, naming the step.
    Fail(String),
    /// The lease was lost to another instance: stop here, act nowhere.
    Lost,
    /// The step gave the job back itself (with what it recorded).
    Released,
}

/// Claims as many due rotation jobs as this instance has free slots and
/// runs each on a task of its own; returns at once. A task that ends frees
/// its slot and wakes the jobs loop, which claims again. Nothing here waits
/// for a rotation: one slow target holds one slot (for at most
/// [`STEP_BUDGET`] a step), never the loop, so it cannot delay another
/// org's rotation or a campaign.
pub async fn run_due(core: &Core, instance: &str) -> Result<usize, RotationError> {
    let slots = core.rotation_slots.clone();
    let free = slots.available_permits();
    if free == 0 {
        return Ok(0);
    }
    let token = queue::claim_token(instance);
    // At most `per_host` rotations act on one target host at once, across
    // rotations, campaigns and instances.
    let jobs = queue::claim_capped(
        &core.db,
        JOB_KIND,
        &token,
        LEASE_MS,
        free as i64,
        core.now(),
        &super::limits::per_host,
    )
    .await?;
    let n = jobs.len();
    for job in jobs {
        // Only this loop takes slots, so one is free for each job claimed.
        let permit = slots.clone().try_acquire_owned().ok();
        let core = core.clone();
        tokio::spawn(async move {
            if let Err(e) = run_job(&core, job, None).await {
                tracing::warn!(error = %e, "rotation step failed");
            }
            drop(permit);
            core.work_due.notify_one();
        });
    }
    Ok(n)
}

/// What a rotation driven here to completion leaves its driver: the
/// connection and the credential now current, as the steps left them (a
/// campaign probes with them without reading them back).
pub struct Completed {
    pub conn: Connection,
    pub current: Map<String, Value>,
}

/// Runs rotation `id` from this process if its job is due and free (the
/// CLI's `--wait`, a campaign's item); what it completed, if it did.
pub async fn drive(
    core: &Core,
    id: &str,
    instance: &str,
) -> Result<Option<Completed>, RotationError> {
    let Some(row) = by_id(&mut core.db.read().await?, id).await? else {
        return Ok(None);
    };
    // Through the group-commit writer: campaigns drive many at once. A
    // claim's only failures are the database's, so it needs no savepoint.
    let (job_id, token, now) = (row.job_id.clone(), queue::claim_token(instance), core.now());
    let claimed = core
        .writer
        .run_unguarded(move |tx| {
            Box::pin(async move {
                queue::claim_id_in(tx, &job_id, &token, LEASE_MS, now, &super::limits::per_host)
                    .await
            })
        })
        .await??;
    match claimed {
        Some(job) => run_job(core, job, Some(row)).await,
        None => Ok(None),
    }
}

/// Runs `job`'s steps; `read` is its rotation when the caller has read it
/// (a driver read it to find the job).
async fn run_job(
    core: &Core,
    mut job: Job,
    read: Option<RotationRow>,
) -> Result<Option<Completed>, RotationError> {
    let Some(token) = job.lease_owner.clone() else {
        return Ok(None);
    };
    // Renewed while the steps run; checked right before every action at
    // the target.
    let lease = Lease::hold(core, &job.id, &token, LEASE_MS);
    let owner = lease.token();
    // The row's fields a step uses do not change while it runs; a cancel
    // meanwhile takes the lease, which the next step's commit notices.
    let row = match read {
        Some(r) => Some(r),
        None => by_id(&mut core.db.read().await?, &job.subject).await?,
    };
    let Some(row) = row else {
        let mut tx = core.db.begin_write().await?;
        queue::finish(&mut tx, &job.id, owner, queue::CANCELLED, core.now()).await?;
        tx.commit().await?;
        return Ok(None);
    };
    if row.finished_at.is_some() {
        let mut tx = core.db.begin_write().await?;
        queue::finish(&mut tx, &job.id, owner, DONE, core.now()).await?;
        tx.commit().await?;
        return Ok(None);
    }
    let mut ctx = None;
    loop {
        let step = job.step.clone();
        let run = step_once(core, &row, &job, &lease, &mut ctx);
        let next = match tokio::time::timeout(STEP_BUDGET, run).await {
            Ok(Ok(n)) => n,
            Ok(Err(RotationError::LeaseLost)) => Next::Lost,
            Ok(Err(e)) => Next::Retry(e.to_string()),
            Err(_) => Next::Retry(format!(
                "the {step} step ran past its budget of {} s; it is retried",
                STEP_BUDGET.as_secs()
            )),
        };
        match next {
            Next::Continue { step: to, payload } => {
                pause_for_crash_tests(&step).await;
                // What the step's commit wrote to the job, kept here.
                job.step = to;
                job.attempts = 0;
                if let Some(p) = payload {
                    job.payload = p.to_string();
                }
            }
            Next::Completed => {
                return Ok(ctx.map(|c| Completed {
                    conn: c.conn,
                    current: c.current,
                }))
            }
            Next::Ended | Next::Lost | Next::Released => return Ok(None),
            Next::Retry(msg) => {
                // The attempt and what the rotation says about it commit
                // together, and only while this claim holds the job: a
                // stale instance records nothing.
                let now = core.now();
                let mut tx = core.db.begin_write().await?;
                match queue::fail_in(&mut tx, &job.id, owner, &msg, now).await? {
                    None => return Ok(None),
                    // Past the write-ahead the target may hold the new
                    // credential: nothing sealed is dropped.
                    Some(DEAD) if CHANGING.contains(&step.as_str()) => {
                        unrecovered(&mut tx, &row, &step, &msg, now).await?;
                    }
                    Some(DEAD) => fail_rotation(&mut tx, &row, &step, &msg, now).await?,
                    Some(_) => {
                        record_step(&mut tx, &row, &step, "retrying", &msg, "running", now).await?
                    }
                }
                tx.commit().await?;
                return Ok(None);
            }
            Next::Fail(msg) => {
                let now = core.now();
                let mut tx = core.db.begin_write().await?;
                if !queue::finish(&mut tx, &job.id, owner, DONE, now).await? {
                    return Ok(None);
                }
                fail_rotation(&mut tx, &row, &step, &msg, now).await?;
                tx.commit().await?;
                return Ok(None);
            }
        }
    }
}

/// Ends the rotation as `failed` at `step` with the target's message; the
/// connection goes back to `connected` on its current (unchanged) credential.
pub(super) async fn fail_rotation(
    tx: &mut Tx,
    row: &RotationRow,
    step: &str,
    msg: &str,
    now: i64,
) -> Result<(), RotationError> {
    record_step(tx, row, step, "failed", msg, "failed", now).await?;
    finish(tx, row, "failed", Some(&format!("{step}: {msg}")), now).await?;
    exec!(
        tx,
        "UPDATE connections SET status = 'connected' WHERE id = $1 AND status = 'rotating'",
        &row.target_id
    )?;
    Ok(())
}

/// The admin connection of `--rotate-with`: name, settings, credential.
type Via = (String, Map<String, Value>, Map<String, Value>);

/// What one run of a connection's rotation job keeps between its steps:
/// read once, then kept in step with what each step commits (every read
/// is a round trip, and at hundreds of rotations a second they count).
struct Ctx {
    conn: Connection,
    driver: &'static dyn Driver,
    via: Option<Via>,
    current: Map<String, Value>,
    /// `None`: not known here yet (read it when needed).
    pending: Option<Map<String, Value>>,
    previous: Option<Option<Map<String, Value>>>,
}

impl Ctx {
    /// Reads what the steps of `row`'s rotation need; `Err` with a message
    /// when no driver rotates the connection's kind.
    async fn load(
        core: &Core,
        row: &RotationRow,
        job: &Job,
    ) -> Result<Result<Ctx, String>, RotationError> {
        let mut c = core.db.read().await?;
        let conn = connections::get(&mut c, &row.target_id).await?;
        let Some(driver) = drivers::for_kind(&conn.kind, &conn.auth) else {
            return Ok(Err(format!(
                "no driver rotates {} ({})",
                conn.kind, conn.auth
            )));
        };
        let current = slots::read(&mut c, core, &conn.id, Slot::Current)
            .await?
            .unwrap_or_default();
        let via = match job.payload()["rotate_with"].as_str() {
            Some(id) => {
                let admin = connections::get(&mut c, id).await?;
                let creds = slots::read(&mut c, core, &admin.id, Slot::Current)
                    .await?
                    .unwrap_or_default();
                Some((admin.name.clone(), admin.settings(), creds))
            }
            None => None,
        };
        Ok(Ok(Ctx {
            conn,
            driver,
            via,
            current,
            pending: None,
            previous: None,
        }))
    }

    async fn pending(&mut self, core: &Core) -> Result<Map<String, Value>, RotationError> {
        if self.pending.is_none() {
            self.pending = slots::read(
                &mut core.db.read().await?,
                core,
                &self.conn.id,
                Slot::Pending,
            )
            .await?;
        }
        self.pending
            .clone()
            .ok_or_else(|| RotationError::Invalid("the pending credential is missing".into()))
    }

    async fn previous(&mut self, core: &Core) -> Result<Option<Map<String, Value>>, RotationError> {
        if self.previous.is_none() {
            self.previous = Some(
                slots::read(
                    &mut core.db.read().await?,
                    core,
                    &self.conn.id,
                    Slot::Previous,
                )
                .await?,
            );
        }
        Ok(self.previous.clone().flatten())
    }

    /// `pending` became `current`, and `current` `previous`.
    fn promoted(&mut self) {
        if let Some(new) = self.pending.take() {
            self.previous = Some(Some(std::mem::replace(&mut self.current, new)));
        } else {
            // Not known here: read again when needed.
            self.previous = None;
        }
    }
}

async fn step_once(
    core: &Core,
    row: &RotationRow,
    job: &Job,
    lease: &Lease,
    ctx: &mut Option<Ctx>,
) -> Result<Next, RotationError> {
    let owner = lease.token();
    if row.target_type != "connection" {
        return super::own::step(core, row, job, owner).await;
    }
    if job.step == "verify_person" {
        // A person stored a new grant and the process that stored it did
        // not get to verify it (a crash): verified here.
        let mut c = core.db.read().await?;
        let conn = connections::get(&mut c, &row.target_id).await?;
        let creds = connections::credentials(&mut c, core, &conn.id).await?;
        drop(c);
        let out = probe::run(core, &conn, &creds).await;
        let now = core.now();
        let mut tx = core.db.begin_write().await?;
        if !queue::heartbeat_in(&mut tx, &job.id, owner, LEASE_MS, now).await? {
            return Ok(Next::Lost);
        }
        super::credential_stored_in(&mut tx, &row.target_id, Some(&out), now).await?;
        tx.commit().await?;
        return Ok(Next::Released);
    }
    if job.step == "person" {
        // Due only at the deadline: nobody completed it.
        let now = core.now();
        let mut tx = core.db.begin_write().await?;
        if !queue::finish(&mut tx, &job.id, owner, DONE, now).await? {
            return Ok(Next::Lost);
        }
        let detail = "the deadline passed before a person completed the rotation";
        record_step(&mut tx, row, "person", "stalled", detail, "stalled", now).await?;
        finish(&mut tx, row, "stalled", Some(detail), now).await?;
        tx.commit().await?;
        return Ok(Next::Ended);
    }
    if ctx.is_none() {
        match Ctx::load(core, row, job).await? {
            Ok(c) => *ctx = Some(c),
            Err(m) => return Ok(Next::Fail(m)),
        }
    }
    let Some(ctx) = ctx.as_mut() else {
        return Ok(Next::Fail(
            "the rotation's connection could not be read".into(),
        ));
    };
    // The target's view, owned here so that `ctx` may change as steps commit.
    let (conn, driver) = (ctx.conn.clone(), ctx.driver);
    let (settings, endpoints, current) = (conn.settings(), conn.endpoints(), ctx.current.clone());
    let via = ctx.via.clone();
    let target = Target {
        core,
        conn: &conn,
        egress: &core.egress,
        settings: &settings,
        endpoints: &endpoints,
        current: &current,
        admin: via.as_ref().map(|(name, settings, credential)| Admin {
            name,
            settings,
            credential,
        }),
        apply_since_ms: job.payload()["apply_started_at"].as_i64(),
    };
    let dual = job.payload()["dual"].as_bool().unwrap_or(driver.dual());
    let now = core.now();
    match job.step.as_str() {
        step @ ("check" | "write_ahead") => {
            let mut done = Vec::with_capacity(2);
            if step == "check" {
                if let Err(m) = driver.check(&target).await {
                    return Ok(Next::Fail(m));
                }
                // The check changed nothing: its record commits with the
                // write-ahead, before anything changes at the target.
                done.push((
                    "check",
                    format!("the change may be made {}", target.actor()),
                ));
            }
            let new = driver.create(&current);
            ctx.pending = Some(new.clone());
            let s = Owned::of(core, row, job, owner, &conn);
            grouped(core, move |tx| {
                Box::pin(async move {
                    let version = write_ahead(tx, &s.core, &s.conn, &new, now).await?;
                    done.push(("write_ahead", format!("new credential sealed as pending (version {version}) before the target changes")));
                    steps_in(tx, &s, &done, "apply", "running", None, now).await
                })
            })
            .await
        }
        "apply" => {
            let pending = ctx.pending(core).await?;
            // When the change was first attempted is recorded before the
            // attempt where the driver reads it: a resume then tells what
            // this rotation made at the target from what someone else made
            // meanwhile. That commit proves the lease as well.
            let mut held = false;
            let started = match target.apply_since_ms {
                Some(t) => t,
                None if !driver.marks_apply_start() => crate::clock::wall_ms(),
                None => {
                    let t = crate::clock::wall_ms();
                    let payload = merged(&job.payload(), json!({"apply_started_at": t}));
                    let (id, owner) = (job.id.clone(), owner.to_string());
                    held = core
                        .writer
                        .run_unguarded(move |tx| {
                            Box::pin(async move {
                                queue::advance(tx, &id, &owner, "apply", Some(&payload), now).await
                            })
                        })
                        .await??;
                    if !held {
                        return Ok(Next::Lost);
                    }
                    t
                }
            };
            let target = Target {
                apply_since_ms: Some(started),
                ..target
            };
            if !held && !lease.held().await? {
                return Ok(Next::Lost);
            }
            match driver.apply(&target, &pending).await {
                Ok(applied) => {
                    // What only the target's answer tells, kept for the
                    // steps after (and a resume elsewhere).
                    let mut extra = Map::new();
                    extra.insert("apply_started_at".into(), json!(started));
                    if let Some(d) = applied.dual {
                        extra.insert("dual".into(), json!(d));
                    }
                    if let Some(m) = applied.mark.clone() {
                        extra.insert("applied_mark".into(), m);
                    }
                    let payload = Some(merged(&job.payload(), Value::Object(extra)));
                    if let Some(made) = &applied.credential {
                        ctx.pending = Some(made.clone());
                    }
                    let s = Owned::of(core, row, job, owner, &conn);
                    grouped(core, move |tx| {
                        Box::pin(async move {
                            // Only the target could make it (AWS): stored in
                            // the same commit that records it made.
                            if let Some(made) = &applied.credential {
                                slots::refill(tx, &s.core, &s.conn.id, Slot::Pending, made, now)
                                    .await?;
                            }
                            let done = [("apply", applied.detail)];
                            steps_in(tx, &s, &done, "verify", "running", payload.as_ref(), now)
                                .await
                        })
                    })
                    .await
                }
                Err(m) => Ok(Next::Retry(m)),
            }
        }
        "verify" => verify(core, row, job, lease, dual, ctx, &target).await,
        "recover" => {
            let why = job.payload()["verify_failed"]
                .as_str()
                .unwrap_or("the new credential failed its test")
                .to_string();
            recover(core, row, job, lease, dual, ctx, &target, why).await
        }
        "promote" => {
            let s = Owned::of(core, row, job, owner, &conn);
            let next = grouped(core, move |tx| {
                Box::pin(async move {
                    let (detail, status, payload) =
                        promote(tx, &s.core, &s.row, &s.job, dual, &s.conn, now).await?;
                    steps_in(
                        tx,
                        &s,
                        &[("promote", detail)],
                        "cutover",
                        status,
                        Some(&payload),
                        now,
                    )
                    .await
                })
            })
            .await?;
            ctx.promoted();
            Ok(next)
        }
        "cutover" => cutover(core, row, job, lease, dual, ctx, &target).await,
        "retire" => retire(core, row, job, lease, ctx, &target, None).await,
        other => Ok(Next::Fail(format!("unknown step {other:?}"))),
    }
}

/// The new credential must prove itself with the connection's own probe.
/// When it does not, the target is put back on the current credential
/// ([`recover`]); the current credential was never touched here.
#[allow(clippy::too_many_arguments)]
async fn verify(
    core: &Core,
    row: &RotationRow,
    job: &Job,
    lease: &Lease,
    dual: bool,
    ctx: &mut Ctx,
    target: &Target<'_>,
) -> Result<Next, RotationError> {
    let pending = ctx.pending(core).await?;
    let (driver, conn) = (ctx.driver, ctx.conn.clone());
    let out = match driver.settle(target, &pending).await {
        Ok(()) => probe::run(core, &conn, &pending).await,
        Err(m) => probe::Outcome::failed(m),
    };
    if out.verdict == Verdict::Ok {
        // Verified: promoted in the same commit.
        return promote_now(
            core,
            row,
            job,
            lease,
            dual,
            ctx,
            vec![("verify", out.message)],
        )
        .await;
    }
    let why = match out.verdict {
        Verdict::Unverified => format!("the new credential cannot be verified ({}); a rotation only completes on a verified credential", out.message),
        _ => format!("the new credential failed its test: {}", out.message),
    };
    recover(core, row, job, lease, dual, ctx, target, why).await
}

/// After a failed verify the target may hold the new credential (a
/// one-password target — PostgreSQL, MariaDB — then refuses the current
/// one). The pending credential is dropped only once the target is known to
/// accept the current one again; until then both stay sealed and this step
/// is retried with backoff, and `rotation retry` resumes it after its
/// budget is spent. Never a state where nothing stored works:
/// - rolled back and the current credential logs in (or, where nothing can
///   be verified, the rollback succeeded): the pending one goes, the
///   rotation fails saying so;
/// - else, when the target accepts the new one, it is promoted (a passing
///   failure made the verify fail) and the rotation goes on;
/// - else both are kept and the step is retried.
#[allow(clippy::too_many_arguments)]
async fn recover(
    core: &Core,
    row: &RotationRow,
    job: &Job,
    lease: &Lease,
    dual: bool,
    ctx: &mut Ctx,
    target: &Target<'_>,
    why: String,
) -> Result<Next, RotationError> {
    let owner = lease.token();
    let pending = ctx.pending(core).await?;
    let conn = ctx.conn.clone();
    // Never act at the target for a job another instance has taken over.
    if !lease.held().await? {
        return Ok(Next::Lost);
    }
    let rollback = ctx.driver.rollback(target, target.current, &pending).await;
    // The rollback's success is the target's word that it is back on the
    // current credential (a dual target never left it). When the rollback
    // failed, only a login with the current credential proves it.
    let back = match &rollback {
        Ok(_) => None,
        Err(_) => Some(probe::run(core, &conn, target.current).await),
    };
    let now = core.now();
    let restored = match (&rollback, &back) {
        (Ok(done), _) => Some(format!(
            "it was removed at the target again ({done}); the current credential is unchanged"
        )),
        (Err(m), Some(b)) if b.verdict == Verdict::Ok => Some(format!(
            "removing it at the target failed ({m}), but the target accepts the current credential ({})",
            b.message
        )),
        _ => None,
    };
    if let Some(how) = restored {
        let mut tx = core.db.begin_write().await?;
        if !queue::finish(&mut tx, &job.id, owner, DONE, now).await? {
            return Ok(Next::Lost);
        }
        slots::discard_pending(&mut tx, &conn.id).await?;
        fail_rotation(&mut tx, row, "verify", &format!("{why}; {how}"), now).await?;
        tx.commit().await?;
        return Ok(Next::Ended);
    }
    // Not back on the current credential. If the target holds the new one
    // and accepts it, that is the credential to keep.
    let again = probe::run(core, &conn, &pending).await;
    if again.verdict == Verdict::Ok {
        let detail = format!(
            "{why}; the target accepts the new credential now: {}",
            again.message
        );
        return promote_now(core, row, job, lease, dual, ctx, vec![("verify", detail)]).await;
    }
    let msg = format!(
        "{why}; rolling back failed ({}), and the target accepts neither the current credential ({}) nor the new one ({}) right now; both are kept sealed and this is retried",
        rollback.err().unwrap_or_default(),
        back.map(|b| b.message).unwrap_or_default(),
        again.message
    );
    if job.step != "recover" {
        // Recorded once; the retries count attempts at this step.
        let payload = merged(&job.payload(), json!({"verify_failed": why}));
        let mut tx = core.db.begin_write().await?;
        if !queue::advance(&mut tx, &job.id, owner, "recover", Some(&payload), now).await? {
            return Ok(Next::Lost);
        }
        record_step(&mut tx, row, "verify", "failed", &msg, "running", now).await?;
        tx.commit().await?;
    }
    Ok(Next::Retry(msg))
}

/// The recovery's budget is spent with the target accepting neither stored
/// credential: the rotation is `failed`, both credentials stay sealed, the
/// connection shows the error, and `rotation retry` runs the recovery again.
async fn unrecovered(
    tx: &mut Tx,
    row: &RotationRow,
    step: &str,
    msg: &str,
    now: i64,
) -> Result<(), RotationError> {
    let reason = format!(
        "{step}: {msg}; both credentials are kept sealed: `rekey rotation retry {}` tries again to put the target on a stored credential",
        row.id
    );
    record_step(tx, row, step, "failed", &reason, "failed", now).await?;
    finish(tx, row, "failed", Some(&reason), now).await?;
    exec!(
        tx,
        "UPDATE connections SET status = 'error', status_reason = $1 WHERE id = $2",
        "a rotation could not put the target back on a stored credential; retry it",
        &row.target_id
    )?;
    Ok(())
}

/// Promotes the pending credential (verified by the caller), recording
/// `done` and the promotion in one commit; the job moves to the cut-over.
async fn promote_now(
    core: &Core,
    row: &RotationRow,
    job: &Job,
    lease: &Lease,
    dual: bool,
    ctx: &mut Ctx,
    done: Vec<(&'static str, String)>,
) -> Result<Next, RotationError> {
    let now = core.now();
    let s = Owned::of(core, row, job, lease.token(), &ctx.conn);
    let next = grouped(core, move |tx| {
        Box::pin(async move {
            let (detail, status, payload) =
                promote(tx, &s.core, &s.row, &s.job, dual, &s.conn, now).await?;
            let mut done = done;
            done.push(("promote", detail));
            steps_in(tx, &s, &done, "cutover", status, Some(&payload), now).await
        })
    })
    .await?;
    if matches!(next, Next::Continue { .. }) {
        ctx.promoted();
    }
    Ok(next)
}

/// `REKEY_TEST_PAUSE_AFTER_STEP` (debug builds only, see
/// [`crate::test_hooks`]): stop for good after each committed step, holding
/// the lease, so a test can SIGKILL the process at an exact point between
/// steps and show the rotation resuming elsewhere.
async fn pause_for_crash_tests(step: &str) {
    if crate::test_hooks::pause_after_rotation_steps() {
        tracing::warn!(
            step,
            "paused after a rotation step (REKEY_TEST_PAUSE_AFTER_STEP)"
        );
        std::future::pending::<()>().await;
    }
}

/// Cached copies named one by one in a cut-over's record.
const NAMED_HOLDS: usize = 5;

/// The old credential is retired only when nothing still uses it: the
/// window has passed, every reader of the credentials endpoint has read
/// the promoted version since, every `refresh_after` handed out with an
/// older version has passed (and the target reports nobody on the old
/// one). What follows is [`cutover::decide`]'s, as for every rotation.
#[allow(clippy::too_many_arguments)]
async fn cutover(
    core: &Core,
    row: &RotationRow,
    job: &Job,
    lease: &Lease,
    dual: bool,
    ctx: &mut Ctx,
    target: &Target<'_>,
) -> Result<Next, RotationError> {
    let now = core.now();
    let payload = job.payload();
    let until = payload["cutover_until"].as_i64().unwrap_or(now);
    if !dual {
        let detail = "one credential at a time: nothing to wait for".to_string();
        return retire(core, row, job, lease, ctx, target, Some(detail)).await;
    }
    let version = payload["promoted_version"].as_i64().unwrap_or(i64::MAX);
    let (behind, holds) = {
        let mut c = core.db.read().await?;
        let behind = slots::readers_behind(&mut c, &ctx.conn.id, version).await?;
        let holds = slots::holds_before(&mut c, &ctx.conn.id, version, now).await?;
        (behind, holds)
    };
    let mut names = behind
        .iter()
        .map(|r| {
            format!(
                "{} (last read version {} at {})",
                r.who(),
                r.version,
                crate::clock::rfc3339(r.read_at)
            )
        })
        .collect::<Vec<_>>();
    // Every copy of an older version handed out with a `refresh_after`
    // that has not passed may still be in use, even where a sibling behind
    // the same key has read the new one: the previous version outlives it.
    let held_until = holds.iter().map(|h| h.until_at).max();
    let mut cached: Vec<String> = holds
        .iter()
        .take(NAMED_HOLDS)
        .map(|h| {
            format!(
                "{} may use version {} from its cache until {} (refresh_after)",
                h.who(),
                h.version,
                crate::clock::rfc3339(h.until_at)
            )
        })
        .collect();
    if holds.len() > NAMED_HOLDS {
        cached.push(format!(
            "{} more cached copies of the previous version",
            holds.len() - NAMED_HOLDS
        ));
    }
    // Where the target itself reports who is still on the old credential
    // (AWS: a use after the promotion).
    let since = Since {
        promoted_at: payload["promoted_at"].as_i64().unwrap_or(0),
        mark: &payload["applied_mark"],
        window_ms: row.cutover_window_ms,
    };
    // Not knowing is not a use: rekey's own view still decides, and the
    // step says so (once per look, in the record, not the log).
    let mut note = String::new();
    let mut reported = false;
    if let Some(old) = ctx.previous(core).await? {
        match ctx.driver.still_on_old(target, &old, &since).await {
            Ok(found) => {
                reported = !found.is_empty();
                names.extend(found);
            }
            Err(e) => {
                note = format!("; the target's own report of who still uses the old credential is unavailable ({e}), so rekey's readers decide");
            }
        }
        // Sessions the target keeps working once the old secret is gone
        // (Redis) hold nothing; the record says how many there are.
        if let Ok(Some(n)) = ctx.driver.sessions_on_old(target, &since).await {
            if n > 0 {
                note.push_str(&format!(
                    "; {n} sessions opened with the previous credential are kept by the target after it is retired and do not hold the cut-over"
                ));
            }
        }
    }
    // Looked at again when something can have changed: a reader's re-read
    // wakes the job at once (`wake_on_read`); otherwise at the window's end,
    // when the last cached copy may go, or — where the target reports uses
    // that tell rekey nothing when they stop — after a while.
    let mut next = [Some(until), held_until]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .min()
        .unwrap_or(row.deadline_at);
    if reported {
        next = next.min(now.saturating_add(TARGET_LOOK_MS));
    }
    // With nobody behind: what the previous version is still kept for.
    let moved = format!("every reader has moved to version {version}");
    let waiting = match held_until.filter(|t| *t > now) {
        Some(t) => format!(
            "{moved}; the previous one is kept until {} for copies cached before the rotation: {}",
            crate::clock::rfc3339(t.max(until)),
            cached.join(", ")
        ),
        None => format!(
            "{moved}; both credentials work until {} (the cut-over window)",
            crate::clock::rfc3339(until)
        ),
    };
    let look = cutover::Look {
        clear: (now >= until && names.is_empty() && cached.is_empty()).then(|| {
            format!("the window has passed, every reader has moved to version {version}, and no cached copy of the previous one may still be used")
        }),
        behind: names,
        cached,
        who: "readers",
        waiting,
        next,
        note,
    };
    match cutover::decide(core, row, job, lease.token(), look).await? {
        cutover::Decision::Retire(detail) => {
            retire(core, row, job, lease, ctx, target, Some(detail)).await
        }
        cutover::Decision::Done(next) => Ok(next),
    }
}

async fn write_ahead(
    tx: &mut Tx,
    core: &Core,
    conn: &Connection,
    new: &Map<String, Value>,
    now: i64,
) -> Result<i64, RotationError> {
    let version = slots::write(tx, core, &conn.id, Slot::Pending, new, now).await?;
    exec!(
        tx,
        "UPDATE connections SET status = 'rotating', status_reason = 'rotation in progress' WHERE id = $1",
        &conn.id
    )?;
    Ok(version)
}

/// `pending` becomes `current`; returns the step's detail, the rotation's
/// status and the job payload for the cut-over.
async fn promote(
    tx: &mut Tx,
    core: &Core,
    row: &RotationRow,
    job: &Job,
    dual: bool,
    conn: &Connection,
    now: i64,
) -> Result<(String, &'static str, Value), RotationError> {
    let version = slots::promote(tx, core, &conn.id, now).await?;
    slots::mark_verified(tx, &conn.id, Slot::Current, now).await?;
    exec!(
        tx,
        "UPDATE connections SET status = 'connected', status_reason = $1, updated_at = $2 WHERE id = $3",
        format!("rotated to credential version {version}"),
        now,
        &conn.id
    )?;
    // A delivery paused for the old credential resumes with the new one.
    crate::sync::delivery::connection_changed(tx, &conn.id, "connected", now)
        .await
        .map_err(|e| RotationError::Connector(e.into()))?;
    let until = now.saturating_add(row.cutover_window_ms);
    let (detail, status) = if dual {
        (
            format!("version {version} is current; the previous one works until it is retired"),
            "waiting_cutover",
        )
    } else {
        (format!("version {version} is current"), "running")
    };
    Ok((
        detail,
        status,
        merged(
            &job.payload(),
            json!({"cutover_until": until, "promoted_version": version, "promoted_at": now}),
        ),
    ))
}

/// Removes the previous credential at the target and here, and completes
/// the rotation; `cutover` is the cut-over step's record when it commits
/// together with this one.
#[allow(clippy::too_many_arguments)]
async fn retire(
    core: &Core,
    row: &RotationRow,
    job: &Job,
    lease: &Lease,
    ctx: &mut Ctx,
    target: &Target<'_>,
    cutover: Option<String>,
) -> Result<Next, RotationError> {
    let owner = lease.token();
    let previous = ctx.previous(core).await?;
    if previous.is_some() && !lease.held().await? {
        return Ok(Next::Lost);
    }
    let mut detail = match &previous {
        Some(old) => match ctx.driver.retire(target, old).await {
            Ok(d) => format!("the previous credential no longer works ({d})"),
            Err(m) => return Ok(Next::Retry(m)),
        },
        None => "nothing to retire".to_string(),
    };
    let sessions = match previous {
        Some(_) => sessions_after_retire(ctx.driver, target, &job.payload(), &mut detail).await,
        None => None,
    };
    let now = core.now();
    let s = Owned::of(core, row, job, owner, &ctx.conn);
    grouped(core, move |tx| {
        Box::pin(async move {
            if !queue::finish(tx, &s.job.id, &s.owner, DONE, now).await? {
                return Err(RotationError::LeaseLost);
            }
            slots::retire_previous(tx, &s.conn.id, now).await?;
            if let Some(v) = &sessions {
                exec!(
                    tx,
                    "UPDATE rotations SET sessions = $1 WHERE id = $2",
                    v.to_string(),
                    &s.row.id
                )?;
            }
            let mut done = Vec::with_capacity(2);
            if let Some(c) = cutover {
                done.push(("cutover", c));
            }
            done.push(("retire", detail));
            record_steps(tx, &s.row, &done, "completed", now).await?;
            finish(tx, &s.row, "completed", None, now).await?;
            Ok(Next::Completed)
        })
    })
    .await
}

/// Sessions the target keeps working after the retire (Redis): ended when
/// the rotation asks (an incident's, the credential presumed leaked),
/// else counted — they hold no cut-over. `{"ended": N}` or `{"kept": N}`,
/// `None` where the target keeps none or does not say; what happened is
/// added to the retire's `detail`. A failure here retries nothing: the old
/// credential is already refused for every new login.
async fn sessions_after_retire(
    driver: &dyn Driver,
    target: &Target<'_>,
    payload: &Value,
    detail: &mut String,
) -> Option<Value> {
    let since = Since {
        promoted_at: payload["promoted_at"].as_i64().unwrap_or(0),
        mark: &payload["applied_mark"],
        window_ms: 0,
    };
    if payload["end_sessions"].as_bool() == Some(true) {
        match driver.end_sessions(target).await {
            Ok(Some(n)) => {
                detail.push_str(&format!("; {n} sessions of the account were ended"));
                return Some(json!({ "ended": n }));
            }
            Ok(None) => return None,
            Err(m) => detail.push_str(&format!("; ending its sessions failed: {m}")),
        }
    }
    match driver.sessions_on_old(target, &since).await {
        Ok(Some(n)) => {
            if n > 0 {
                detail.push_str(&format!(
                    "; {n} sessions opened with it are kept by the target"
                ));
            }
            Some(json!({ "kept": n }))
        }
        Ok(None) => None,
        Err(m) => {
            detail.push_str(&format!("; sessions kept by the target are unknown ({m})"));
            None
        }
    }
}

/// What a step's closure owns (the writer runs it later, on its task).
struct Owned {
    core: Core,
    row: RotationRow,
    job: Job,
    owner: String,
    conn: Connection,
}

impl Owned {
    fn of(core: &Core, row: &RotationRow, job: &Job, owner: &str, conn: &Connection) -> Owned {
        Owned {
            core: core.clone(),
            row: row.clone(),
            job: job.clone(),
            owner: owner.to_string(),
            conn: conn.clone(),
        }
    }
}

/// Runs a step's writes in the group-commit writer: the steps of many
/// rotations at once share one commit (every commit is an fsync on
/// SQLite), each in a savepoint of its own. A lost lease rolls the step's
/// writes back.
async fn grouped<F>(core: &Core, f: F) -> Result<Next, RotationError>
where
    F: for<'a> FnOnce(&'a mut Tx) -> BoxFuture<'a, Result<Next, RotationError>> + Send + 'static,
{
    match core.writer.run(f).await? {
        Err(RotationError::LeaseLost) => Ok(Next::Lost),
        other => other,
    }
}

/// Records `done` steps and moves the job to `next`, in the caller's
/// transaction; a lost lease is an error, so the writes roll back.
async fn steps_in(
    tx: &mut Tx,
    s: &Owned,
    done: &[(&str, String)],
    next: &str,
    status: &str,
    payload: Option<&Value>,
    now: i64,
) -> Result<Next, RotationError> {
    if !queue::advance(tx, &s.job.id, &s.owner, next, payload, now).await? {
        return Err(RotationError::LeaseLost);
    }
    record_steps(tx, &s.row, done, status, now).await?;
    Ok(Next::Continue {
        step: next.to_string(),
        payload: payload.cloned(),
    })
}

/// The job's payload with `extra`'s fields set (steps add to it; what the
/// start put there, such as `rotate_with`, stays).
fn merged(payload: &Value, extra: Value) -> Value {
    let mut out = match payload {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    if let Value::Object(e) = extra {
        out.extend(e);
    }
    Value::Object(out)
}
