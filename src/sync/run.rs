//! Sending: the jobs of deliveries (`step = deliver`, one standing job per
//! delivery) and backfills (`step = backfill`, one per backfill), claimed
//! by lease on the one jobs primitive and capped per target host, so
//! several instances share them and never send one batch at once.
//!
//! One claim sends batches in order from its lane's cursor for up to
//! [`RUN_BUDGET`], then gives the job back (due at once when more is left:
//! other deliveries on the host get their turn). After each batch the cursor
//! moves in a transaction that first checks the lease is still held, so an
//! instance that stalled past its lease moves nothing; what it sent is sent
//! again by the next holder, and the targets' idempotency (org, sequence)
//! makes that harmless.
//!
//! The crash window: between a batch reaching the target and its cursor
//! commit. A `kill -9` there resends that batch — at least once — and
//! nothing is ever skipped, since the cursor only moves past what a target
//! acknowledged.

use std::time::{Duration, Instant};

use serde_json::json;

use super::delivery::{self, Delivery, KIND};
use super::state::{Event, State};
use super::target::{self, Batch, Open, SendError};
use super::{backfill, outbox, SyncError};
use crate::audit::Actor;
use crate::connectors::connections::{self, Connection};
use crate::connectors::credentials::{self, Refreshed};
use crate::events::activity::{self, ActivityType};
use crate::events::webhooks::{self, WebhookEvent};
use crate::jobs::lease::Lease;
use crate::jobs::queue::{self, Job};
use crate::state::Core;
use crate::{exec, fetch_all, scalar_optional};

/// A claim's lease: renewed in the background while it sends, so it only
/// runs out for an instance that died or stalled.
pub const LEASE_MS: i64 = 60_000;
/// How long one claim sends before giving its job back.
pub const RUN_BUDGET: Duration = Duration::from_secs(20);
/// Jobs one pass of an instance claims.
const CLAIM: i64 = 16;
/// How soon a delivery that is caught up, or waits for its connection,
/// looks again by itself. New records and a connection coming back wake it
/// sooner.
const IDLE_MS: i64 = 60_000;
/// A delivery that waits for a person (paused, a parked batch) is only
/// woken by them; this is the fallback look.
const PERSON_MS: i64 = 24 * 3600 * 1000;
/// How soon a run that failed (a store error, a secret that does not
/// open) is tried again: soon enough to ride out a blip, far enough apart
/// not to spin on a lasting fault.
const ERROR_RETRY_MS: i64 = 30_000;

/// One pass: wakes deliveries that have new records, claims due jobs and
/// runs them in parallel. Returns how many jobs ran.
pub async fn run_due(core: &Core, instance: &str) -> Result<usize, SyncError> {
    wake_behind(core).await?;
    let owner = queue::claim_token(instance);
    let jobs = queue::claim_capped(
        &core.db,
        KIND,
        &owner,
        LEASE_MS,
        CLAIM,
        core.now(),
        &crate::rotation::limits::per_host,
    )
    .await?;
    let n = jobs.len();
    let mut set = tokio::task::JoinSet::new();
    for job in jobs {
        let (core, owner) = (core.clone(), owner.clone());
        set.spawn(async move {
            if let Err(e) = run_job(&core, &job, &owner).await {
                // Given back to try again a little later: left running, it
                // would be claimed again only at its lease's end, holding
                // its place on the host meanwhile.
                tracing::warn!(job = %job.id, error = %e, "delivery job failed; it runs again shortly");
                let again = core.now().saturating_add(ERROR_RETRY_MS);
                if let Err(e) = queue::release(&core.db, &job.id, &owner, again, core.now()).await {
                    tracing::warn!(job = %job.id, error = %e, "could not give the failed delivery job back; it runs again when its lease ends");
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    Ok(n)
}

/// Makes due the jobs of deliveries that are caught up or running and have
/// records after their cursor: one read, and a write only when there are.
async fn wake_behind(core: &Core) -> Result<(), SyncError> {
    let mut c = core.db.read().await?;
    let ids: Vec<(String,)> = fetch_all!(
        &mut c,
        (String,),
        "SELECT d.id FROM deliveries d
         WHERE d.state IN ('caught_up', 'running')
           AND EXISTS (SELECT 1 FROM outbox o WHERE o.org_id = d.org_id AND o.seq > d.cursor_seq)"
    )?;
    drop(c);
    if ids.is_empty() {
        return Ok(());
    }
    let jobs: Vec<String> = ids.iter().map(|(id,)| delivery::job_id(id)).collect();
    let mut tx = core.db.begin_write().await?;
    queue::wake(&mut tx, &jobs, core.now()).await?;
    tx.commit().await?;
    Ok(())
}

async fn run_job(core: &Core, job: &Job, owner: &str) -> Result<(), SyncError> {
    let lease = Lease::hold(core, &job.id, owner, LEASE_MS);
    let run_at = match job.step.as_str() {
        "backfill" => run_backfill(core, job, &lease).await?,
        _ => run_delivery(core, job, &lease).await?,
    };
    match run_at {
        RunAt::At(at) => {
            queue::release(&core.db, &job.id, owner, at, core.now()).await?;
        }
        RunAt::Over => {
            let mut tx = core.db.begin_write().await?;
            queue::finish(&mut tx, &job.id, owner, "done", core.now()).await?;
            tx.commit().await?;
        }
        RunAt::Lost => {}
    }
    Ok(())
}

/// Which cursor a run moves.
enum Lane<'a> {
    Live,
    Backfill { id: &'a str, to: i64 },
}

/// How a run of batches ended.
enum Pumped {
    /// Nothing left in the lane.
    Empty,
    /// The time budget ran out with more to send.
    Budget,
    /// The lease was lost, or the delivery or backfill changed under the
    /// run (paused, cancelled, disabled): stop without writing more.
    Stopped,
    /// A batch was delivered and the delivery found paused (or, for live
    /// delivery, a backfill begun) meanwhile: the next run does what the
    /// state says.
    Held,
    /// A batch was not delivered; it stays the next to send.
    Failed {
        error: SendError,
        from: i64,
        to: i64,
    },
}

/// What a run delivered: records and the sequences they spanned.
#[derive(Default)]
struct Sent {
    records: i64,
    from: i64,
    to: i64,
}

impl Sent {
    /// One entry in the connection's activity log for the run (not one per
    /// batch: a catch-up of thousands of records is one line).
    async fn record(&self, core: &Core, d: &Delivery, what: &str) -> Result<(), SyncError> {
        if self.records == 0 {
            return Ok(());
        }
        let mut tx = core.db.begin_write().await?;
        activity::record(
            &mut tx,
            &d.org_id,
            &d.connection_id,
            if what == "backfill" {
                ActivityType::Backfill
            } else {
                ActivityType::Delivery
            },
            &format!(
                "{what}: {} records delivered (sequences {}–{})",
                self.records, self.from, self.to
            ),
            json!({"records": self.records, "from_seq": self.from, "to_seq": self.to}),
            core.now(),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// What becomes of a run's job.
enum RunAt {
    /// Given back, due again at this time.
    At(i64),
    /// Its work is over (the backfill finished or was cancelled, the
    /// delivery or backfill is gone): the job ends and frees its place on
    /// the host. Left running, it would be claimed again at every lease's
    /// end, forever, holding one of the host's places each time.
    Over,
    /// The lease was lost: the job is someone else's, nothing to give back.
    Lost,
}

async fn run_delivery(core: &Core, job: &Job, lease: &Lease) -> Result<RunAt, SyncError> {
    let now = core.now();
    let mut c = core.db.read().await?;
    let Some(d) = delivery::get(&mut c, &job.subject).await? else {
        return Ok(RunAt::Over);
    };
    let conn = connections::get(&mut c, &d.connection_id).await?;
    let backfilling = backfill::running(&mut c, &d.id).await?.is_some();
    drop(c);
    if backfilling {
        let mut tx = core.db.begin_write().await?;
        delivery::lock(&mut tx, &d.id).await?;
        // Asked again in the transaction, under the delivery's lock: a backfill that ended since the
        // read has already moved the delivery on, and moving it to
        // `backfilling` now would hold live delivery with no backfill left
        // to release it.
        let still = backfill::running(&mut tx, &d.id).await?.is_some();
        if still {
            delivery::transition(&mut tx, &d.id, Event::BackfillStarted, now).await?;
        }
        tx.commit().await?;
        return Ok(RunAt::At(if still {
            now.saturating_add(PERSON_MS)
        } else {
            now
        }));
    }
    match d.state() {
        State::PausedByUser => return Ok(RunAt::At(now.saturating_add(PERSON_MS))),
        State::PausedError if d.parked_from.is_some() => {
            return Ok(RunAt::At(now.saturating_add(PERSON_MS)))
        }
        _ => {}
    }
    if !super::state::usable(&conn.status) {
        let mut tx = core.db.begin_write().await?;
        delivery::lock(&mut tx, &d.id).await?;
        // Asked again in the transaction, as above: a re-authorization
        // committed since the read has resumed the delivery already.
        let now_conn = connections::get(&mut tx, &conn.id).await?;
        let lost = !super::state::usable(&now_conn.status);
        if lost {
            delivery::transition(&mut tx, &d.id, Event::AuthLost, now).await?;
        }
        tx.commit().await?;
        return Ok(RunAt::At(if lost {
            now.saturating_add(IDLE_MS)
        } else {
            now
        }));
    }
    let mut d = d;
    if d.state() == State::PausedAuth {
        let mut tx = core.db.begin_write().await?;
        let moved = delivery::transition(&mut tx, &d.id, Event::AuthBack, now).await?;
        tx.commit().await?;
        let Some(moved) = moved else {
            return Ok(RunAt::Over);
        };
        if moved.state() != State::Running {
            // A person paused it, or a backfill began, since the read: the
            // next run does what that state says.
            return Ok(RunAt::At(now));
        }
        d = moved;
    }
    let (pumped, sent) = pump(core, lease, &d, &conn, Lane::Live).await?;
    sent.record(core, &d, "delivery").await?;
    settle(core, lease, &d, &conn, pumped).await
}

async fn run_backfill(core: &Core, job: &Job, lease: &Lease) -> Result<RunAt, SyncError> {
    let now = core.now();
    let mut c = core.db.read().await?;
    let Some(b) = backfill::get(&mut c, &job.subject).await? else {
        return Ok(RunAt::Over);
    };
    let Some(d) = delivery::get(&mut c, &b.delivery_id).await? else {
        return Ok(RunAt::Over);
    };
    let conn = connections::get(&mut c, &d.connection_id).await?;
    drop(c);
    if b.state != backfill::RUNNING {
        return Ok(RunAt::Over);
    }
    if d.state() == State::PausedByUser {
        return Ok(RunAt::At(now.saturating_add(PERSON_MS)));
    }
    if !super::state::usable(&conn.status) {
        return Ok(RunAt::At(now.saturating_add(IDLE_MS)));
    }
    let lane = Lane::Backfill {
        id: &b.id,
        to: b.to_seq,
    };
    let (pumped, sent) = pump(core, lease, &d, &conn, lane).await?;
    sent.record(core, &d, "backfill").await?;
    let now = core.now();
    match pumped {
        Pumped::Empty => {
            backfill::finish(core, &b.id, &d, now).await?;
            core.delivery_due.notify_waiters();
            Ok(RunAt::Over)
        }
        Pumped::Budget | Pumped::Held => Ok(RunAt::At(now)),
        Pumped::Stopped => Ok(RunAt::Lost),
        Pumped::Failed { error, .. } => {
            let mut tx = core.db.begin_write().await?;
            // Only the lease's holder speaks for the backfill: a run that
            // stalled past its lease fails a batch its successor may have
            // sent.
            delivery::lock(&mut tx, &d.id).await?; // before the job's row, as in `pump`
            if !queue::heartbeat_in(&mut tx, lease.job_id(), lease.token(), LEASE_MS, now).await? {
                return Ok(RunAt::Lost);
            }
            exec!(
                &mut tx,
                "UPDATE backfills SET last_error = $1, updated_at = $2 WHERE id = $3",
                error.to_string(),
                now,
                &b.id
            )?;
            tx.commit().await?;
            after_failure(core, lease, &d, &conn, &error, None, now).await
        }
    }
}

/// Records what a live run came to and moves the delivery's state.
async fn settle(
    core: &Core,
    lease: &Lease,
    d: &Delivery,
    conn: &Connection,
    pumped: Pumped,
) -> Result<RunAt, SyncError> {
    let now = core.now();
    match pumped {
        Pumped::Stopped => Ok(RunAt::Lost),
        Pumped::Budget | Pumped::Held => Ok(RunAt::At(now)),
        Pumped::Empty => {
            if !lease.held().await? {
                return Ok(RunAt::Lost);
            }
            let mut tx = core.db.begin_write().await?;
            let Some(d) = delivery::transition(&mut tx, &d.id, Event::Empty, now).await? else {
                return Ok(RunAt::Over);
            };
            if d.state() == State::CaughtUp {
                caught_up(&mut tx, &d, now).await?;
            }
            tx.commit().await?;
            Ok(RunAt::At(now.saturating_add(IDLE_MS)))
        }
        Pumped::Failed { error, from, to } => {
            after_failure(core, lease, d, conn, &error, Some((from, to)), now).await
        }
    }
}

/// A failed batch: an auth failure marks the connection (which pauses the
/// delivery by `delivery::connection_changed`), any other failure pauses it
/// with the error; returns when to look again.
async fn after_failure(
    core: &Core,
    lease: &Lease,
    d: &Delivery,
    conn: &Connection,
    error: &SendError,
    batch: Option<(i64, i64)>,
    now: i64,
) -> Result<RunAt, SyncError> {
    let mut tx = core.db.begin_write().await?;
    // Only the lease's holder records a failure: a run that stalled past
    // its lease would park, or pause for a person, a batch its successor
    // has delivered since.
    delivery::lock(&mut tx, &d.id).await?; // before the job's row, as in `pump`
    if !queue::heartbeat_in(&mut tx, lease.job_id(), lease.token(), LEASE_MS, now).await? {
        return Ok(RunAt::Lost);
    }
    // A refused live batch is parked in the transaction that records the
    // error and the state, so no reader sees one without the others.
    if let (SendError::Refused(_), Some((from, to))) = (error, batch) {
        exec!(
            &mut tx,
            "UPDATE deliveries SET parked_from = $1, parked_to = $2 WHERE id = $3",
            from,
            to,
            &d.id
        )?;
    }
    let message = error.to_string();
    let Some(failures) = scalar_optional!(
        &mut tx,
        i64,
        "UPDATE deliveries SET last_error = $1, last_error_at = $2, updated_at = $2,
            failures = CASE WHEN $3 THEN failures + 1 ELSE failures END
         WHERE id = $4 RETURNING failures",
        &message,
        now,
        matches!(error, SendError::Passing(_)),
        &d.id
    )?
    else {
        // Disabled meanwhile (the transitions below read the row as it is).
        return Ok(RunAt::Over);
    };
    let at = match error {
        SendError::Auth(reason) => {
            // Re-read: a refresh may have marked it already, or a person
            // fixed it.
            let fresh = connections::get(&mut tx, &conn.id).await?;
            if fresh.status_changed_at != conn.status_changed_at
                && super::state::usable(&fresh.status)
            {
                // The connection came back (re-authorized, a rotation
                // promoted its new credential) since this run opened the
                // target: what was refused is the credential it replaced.
                // Marking it `needs_reauth` now would undo the person's
                // fix; look again with the new one.
                now
            } else {
                if fresh.status != "needs_reauth" {
                    connections::set_status(
                        &mut tx,
                        &Actor::system(),
                        &fresh,
                        "needs_reauth",
                        Some(reason),
                        now,
                    )
                    .await?;
                }
                delivery::transition(&mut tx, &d.id, Event::AuthLost, now).await?;
                now.saturating_add(IDLE_MS)
            }
        }
        SendError::Passing(_) => {
            delivery::transition(&mut tx, &d.id, Event::Failed, now).await?;
            now.saturating_add(queue::backoff_ms(failures))
        }
        SendError::Refused(_) => {
            delivery::transition(&mut tx, &d.id, Event::Failed, now).await?;
            now.saturating_add(PERSON_MS)
        }
    };
    tx.commit().await?;
    Ok(RunAt::At(at))
}

/// A delivery that was paused is caught up: records the catch-up (records
/// sent since the pause ended, time paused) and ends the pause.
async fn caught_up(tx: &mut crate::store::Tx, d: &Delivery, now: i64) -> Result<(), SyncError> {
    let (Some(paused_at), Some(before)) = (d.paused_at, d.paused_delivered) else {
        return Ok(());
    };
    let resumed = d.resumed_at.unwrap_or(now).max(paused_at);
    let records = d.delivered.saturating_sub(before);
    let paused_ms = resumed.saturating_sub(paused_at);
    exec!(
        tx,
        "UPDATE deliveries SET caught_up_records = $1, caught_up_paused_ms = $2,
            paused_at = NULL, paused_delivered = NULL, resumed_at = NULL, updated_at = $3
         WHERE id = $4",
        records,
        paused_ms,
        now,
        &d.id
    )?;
    let detail = json!({"records": records, "paused_s": paused_ms / 1000, "last_delivered_seq": d.cursor_seq});
    activity::record(
        tx,
        &d.org_id,
        &d.connection_id,
        ActivityType::Delivery,
        &format!(
            "caught up: {records} records delivered after {} s paused",
            paused_ms / 1000
        ),
        detail.clone(),
        now,
    )
    .await?;
    let mut data = detail;
    data["delivery"] = json!(d.id);
    data["connection_id"] = json!(d.connection_id);
    webhooks::emit(tx, &d.org_id, WebhookEvent::DeliveryCaughtUp, data, now).await?;
    Ok(())
}

/// Sends batches of the lane in order until it is empty, the budget runs
/// out, or a batch fails. A target that refuses the credential gets one
/// refresh (OAuth) and one more try before the failure stands.
async fn pump(
    core: &Core,
    lease: &Lease,
    d: &Delivery,
    conn: &Connection,
    lane: Lane<'_>,
) -> Result<(Pumped, Sent), SyncError> {
    let started = Instant::now();
    let mut sent = Sent::default();
    let filter = d.filter();
    let (mut cursor, upto) = match &lane {
        Lane::Live => (d.cursor_seq, None),
        Lane::Backfill { id, to } => {
            let mut c = core.db.read().await?;
            let cur = scalar_optional!(
                &mut c,
                i64,
                "SELECT cursor_seq FROM backfills WHERE id = $1",
                *id
            )?
            .unwrap_or(*to);
            (cur, Some(*to))
        }
    };
    let mut opened: Option<Box<dyn target::Target>> = None;
    let mut refreshed = false;
    let result = loop {
        if started.elapsed() >= RUN_BUDGET {
            break Pumped::Budget;
        }
        let mut c = core.db.read().await?;
        let (records, last) =
            outbox::window(&mut c, &d.org_id, cursor, upto, &filter, d.batch).await?;
        drop(c);
        let Some(last) = last else {
            break Pumped::Empty;
        };
        if !records.is_empty() {
            if !lease.held().await? {
                break Pumped::Stopped;
            }
            let batch = Batch {
                org_id: &d.org_id,
                records: &records,
            };
            let sent = loop {
                if opened.is_none() {
                    match open(core, d, conn).await {
                        Ok(t) => opened = Some(t),
                        Err(e) => break Err(e),
                    }
                }
                let Some(t) = opened.as_mut() else {
                    break Err(SendError::Passing("the target could not be opened".into()));
                };
                match t.send(&batch).await {
                    Err(SendError::Auth(m)) if !refreshed => {
                        refreshed = true;
                        if let Some(t) = opened.take() {
                            t.close().await;
                        }
                        if !refresh_once(core, conn).await? {
                            break Err(SendError::Auth(m));
                        }
                    }
                    other => break other,
                }
            };
            if let Err(error) = sent {
                break Pumped::Failed {
                    error,
                    from: cursor.saturating_add(1),
                    to: last,
                };
            }
        }
        let now = core.now();
        let mut tx = core.db.begin_write().await?;
        // The delivery's row before the job's, the order every writer of
        // both keeps (a person's resume, a connection's change), so two of
        // them never wait on each other on PostgreSQL.
        delivery::lock(&mut tx, &d.id).await?;
        if !queue::heartbeat_in(&mut tx, lease.job_id(), lease.token(), LEASE_MS, now).await? {
            break Pumped::Stopped;
        }
        // Whether live delivery must stop after this batch: a person paused
        // it, its connection broke or a backfill began while it was sent.
        let mut hold = false;
        let moved = match &lane {
            Lane::Live => {
                // Re-read in the transaction. The batch was delivered, so the
                // cursor moves past it whatever happened meanwhile (holding
                // it back would send the batch twice on resume); only another
                // holder having moved the cursor stops it. The state moves
                // by the one machine, which keeps a pause or a backfill.
                match delivery::get(&mut tx, &d.id).await? {
                    Some(now_d) if now_d.cursor_seq == cursor => {
                        // Locked above, before the job's row, and read here.
                        let to = delivery::transition_row(
                            &mut tx,
                            now_d,
                            Event::Sent { more: true },
                            now,
                        )
                        .await?
                        .state();
                        hold = matches!(
                            to,
                            State::PausedByUser | State::PausedAuth | State::Backfilling
                        );
                        exec!(
                            &mut tx,
                            "UPDATE deliveries SET cursor_seq = $1, delivered = delivered + $2,
                                last_delivered_at = CASE WHEN $2 > 0 THEN $3 ELSE last_delivered_at END,
                                failures = 0, last_error = NULL, last_error_at = NULL, updated_at = $3
                             WHERE id = $4 AND cursor_seq = $5",
                            last,
                            records.len() as i64,
                            now,
                            &d.id,
                            cursor
                        )?
                    }
                    _ => 0,
                }
            }
            Lane::Backfill { id, .. } => {
                // The batch was delivered, so its cursor moves; a person's
                // pause or a lost connection since then stops the run after
                // it (the next run waits as the state says).
                hold = delivery::get(&mut tx, &d.id).await?.is_none_or(|now_d| {
                    matches!(now_d.state(), State::PausedByUser | State::PausedAuth)
                });
                exec!(
                &mut tx,
                "UPDATE backfills SET cursor_seq = $1, done = done + $2, last_error = NULL, updated_at = $3
                 WHERE id = $4 AND cursor_seq = $5 AND state = 'running'",
                last,
                records.len() as i64,
                now,
                *id,
                cursor
            )?
            }
        };
        if moved != 1 {
            break Pumped::Stopped;
        }
        tx.commit().await?;
        if let (Some(first), Some(end)) = (records.first(), records.last()) {
            if sent.records == 0 {
                sent.from = first.seq;
            }
            sent.to = end.seq;
            sent.records += records.len() as i64;
        }
        cursor = last;
        if hold {
            break Pumped::Held;
        }
    };
    if let Some(t) = opened {
        t.close().await;
    }
    Ok((result, sent))
}

/// Opens the target with the connection's current credential (refreshed
/// first when about to expire).
async fn open(
    core: &Core,
    d: &Delivery,
    conn: &Connection,
) -> Result<Box<dyn target::Target>, SendError> {
    let fail = |e: String| SendError::Passing(e);
    if conn
        .method()
        .map_err(|e| fail(e.to_string()))?
        .is_oauth_code()
    {
        credentials::ensure_fresh(core, conn)
            .await
            .map_err(|e| fail(e.to_string()))?;
    }
    let mut c = core.db.read().await.map_err(|e| fail(e.to_string()))?;
    let fresh = connections::get(&mut c, &conn.id)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if fresh.status == "needs_reauth" {
        return Err(SendError::Auth(
            fresh
                .status_reason
                .unwrap_or_else(|| "the connection needs re-authorization".into()),
        ));
    }
    let creds = connections::credentials(&mut c, core, &conn.id)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let secret = delivery::signing_secret(&mut c, core, d)
        .await
        .map_err(|e| fail(e.to_string()))?;
    drop(c);
    let settings = fresh.settings();
    target::open(Open {
        core,
        conn: &fresh,
        settings: &settings,
        credentials: &creds,
        signing_secret: &secret,
    })
    .await
}

/// The target refused the credential: one forced refresh for an OAuth
/// connection. True when a new credential is stored (worth one more try).
async fn refresh_once(core: &Core, conn: &Connection) -> Result<bool, SyncError> {
    if !conn.method()?.is_oauth_code() {
        return Ok(false);
    }
    Ok(matches!(
        credentials::refresh_now(core, conn).await?,
        Refreshed::Done | Refreshed::Fresh
    ))
}
