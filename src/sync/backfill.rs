//! Backfills: a window of the outbox replayed to one delivery on demand (a
//! target that was emptied, a new connection that must receive history).
//!
//! A backfill sends (from_seq, to_seq], where `to_seq` is the delivery's
//! cursor when it started: what came later is live delivery's. Live
//! delivery waits while a backfill runs (`State::Backfilling`), so the two
//! never send one record at once, and the target's per-record sequence
//! check keeps an older state from overwriting a newer one. The backfill's
//! cursor moves after each acknowledged batch, in the transaction that
//! checks its lease: a killed instance's backfill resumes there, on any
//! instance.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::json;

use super::delivery::{self, BackfillProgress, Delivery, KIND};
use super::state::Event;
use super::{outbox, target, SyncError};
use crate::audit::Actor;
use crate::connectors::connections;
use crate::events::activity::{self, ActivityType};
use crate::jobs::queue::{self, Standing};
use crate::state::Core;
use crate::store::sql::{fetch_all_args, json_table, Arg, JsonCol};
use crate::store::{new_id, AsEx, Tx};
use crate::{exec, fetch_all, fetch_optional};

pub const RUNNING: &str = "running";
pub const DONE: &str = "done";
pub const CANCELLED: &str = "cancelled";

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct Backfill {
    pub id: String,
    pub delivery_id: String,
    pub org_id: String,
    pub from_seq: i64,
    pub to_seq: i64,
    pub cursor_seq: i64,
    pub total: i64,
    pub done: i64,
    pub state: String,
    pub last_error: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
}

const COLS: &str =
    "id, delivery_id, org_id, from_seq, to_seq, cursor_seq, total, done, state, last_error, \
    started_at, finished_at, updated_at";

pub fn job_id(backfill_id: &str) -> String {
    format!("backfill:{backfill_id}")
}

impl Backfill {
    /// Progress at `now`: the rate so far and the time left at that rate.
    pub fn progress(&self, now: i64) -> BackfillProgress {
        let end = self.finished_at.unwrap_or(now);
        let secs = (end.saturating_sub(self.started_at) as f64 / 1000.0).max(0.001);
        let rate = self.done as f64 / secs;
        let left = self.total.saturating_sub(self.done).max(0);
        BackfillProgress {
            id: self.id.clone(),
            state: self.state.clone(),
            from_seq: self.from_seq,
            to_seq: self.to_seq,
            done: self.done,
            total: self.total,
            records_per_s: (rate * 10.0).round() / 10.0,
            eta_s: (self.state == RUNNING && rate > 0.0)
                .then(|| (left as f64 / rate).ceil() as i64),
            last_error: self.last_error.clone(),
            started_at: self.started_at,
            finished_at: self.finished_at,
        }
    }
}

pub async fn get<C: AsEx>(c: &mut C, id: &str) -> Result<Option<Backfill>, SyncError> {
    Ok(fetch_optional!(
        c,
        Backfill,
        &format!("SELECT {COLS} FROM backfills WHERE id = $1"),
        id
    )?)
}

/// The running backfill of a delivery, if any.
pub async fn running<C: AsEx>(c: &mut C, delivery_id: &str) -> Result<Option<Backfill>, SyncError> {
    Ok(fetch_optional!(
        c,
        Backfill,
        &format!("SELECT {COLS} FROM backfills WHERE delivery_id = $1 AND state = 'running'"),
        delivery_id
    )?)
}

/// The latest backfill of each of `delivery_ids`, with its progress at
/// `now`, in one query (the ids ride in one JSON parameter).
pub async fn latest_of<C: AsEx>(
    c: &mut C,
    delivery_ids: &[&str],
    now: i64,
) -> Result<HashMap<String, BackfillProgress>, SyncError> {
    if delivery_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<[&str; 1]> = delivery_ids.iter().map(|id| [*id]).collect();
    let sql = format!(
        "SELECT {COLS} FROM backfills b
         WHERE b.delivery_id IN (SELECT w.c0 FROM {})
           AND NOT EXISTS (SELECT 1 FROM backfills n WHERE n.delivery_id = b.delivery_id
               AND (n.started_at > b.started_at OR (n.started_at = b.started_at AND n.id > b.id)))",
        json_table(c, 1, &[JsonCol::Text], "w")
    );
    let rows: Vec<Backfill> =
        fetch_all_args(c, &sql, vec![Arg::Text(json!(ids).to_string())]).await?;
    Ok(rows
        .into_iter()
        .map(|b| (b.delivery_id.clone(), b.progress(now)))
        .collect())
}

pub async fn ids_of(tx: &mut Tx, delivery_id: &str) -> Result<Vec<String>, SyncError> {
    let rows: Vec<(String,)> = fetch_all!(
        tx,
        (String,),
        "SELECT id FROM backfills WHERE delivery_id = $1",
        delivery_id
    )?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Wakes the running backfill of a delivery (its connection is back).
pub async fn wake_for(tx: &mut Tx, delivery_id: &str, now: i64) -> Result<(), SyncError> {
    if let Some(b) = running(&mut *tx, delivery_id).await? {
        queue::wake(tx, &[job_id(&b.id)], now).await?;
    }
    Ok(())
}

/// Where a backfill starts.
#[derive(Debug, Clone, Copy)]
pub enum Window {
    /// The whole outbox still kept.
    All,
    /// Records written at or after this time (unix ms).
    Since(i64),
    /// Records from this sequence on.
    Seq(i64),
}

/// What `start` answers: the window and its count; with `dry_run`, what
/// would be sent (nothing is written).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Started {
    pub dry_run: bool,
    pub from_seq: i64,
    pub to_seq: i64,
    /// Records in the window that pass the delivery's filter.
    pub total: i64,
    /// The backfill started (absent on a dry run).
    pub backfill: Option<BackfillProgress>,
}

/// Starts (or, `dry_run`, counts) a backfill of connection `name`'s delivery.
pub async fn start(
    core: &Core,
    org_id: &str,
    name: &str,
    from: Window,
    dry_run: bool,
    actor: &Actor,
) -> Result<Started, SyncError> {
    let now = core.now();
    let (conn, d) = delivery::find(core, org_id, name).await?;
    let mut c = core.db.read().await?;
    let head = outbox::head(&mut c, org_id).await?;
    let after = match from {
        Window::All => 0,
        Window::Since(t) => {
            if t > now {
                return Err(SyncError::Invalid(
                    "the backfill window starts in the future; give a time in the past".into(),
                ));
            }
            outbox::before_time(&mut c, org_id, t).await?
        }
        Window::Seq(s) => {
            if s < 1 {
                return Err(SyncError::Invalid(
                    "--from-seq must be a sequence of 1 or more".into(),
                ));
            }
            if s > head.saturating_add(1) {
                return Err(SyncError::Invalid(format!(
                    "sequence {s} is after the outbox's head ({head}): nothing has been written there yet"
                )));
            }
            s - 1
        }
    };
    // What live delivery has passed; later records are its own.
    let to = d.cursor_seq;
    let after = after.min(to);
    let (total, _) = outbox::count(&mut c, org_id, after, to, &d.filter()).await?;
    drop(c);
    if dry_run {
        return Ok(Started {
            dry_run,
            from_seq: after.saturating_add(1),
            to_seq: to,
            total,
            backfill: None,
        });
    }
    let id = new_id();
    let mut tx = core.db.begin_write().await?;
    // Under the delivery's lock, so two starts at once (a double click, a
    // retried request) on PostgreSQL cannot both see none running.
    delivery::lock(&mut tx, &d.id).await?;
    if let Some(b) = running(&mut tx, &d.id).await? {
        return Err(SyncError::Refused(format!(
            "a backfill of this delivery is already running ({} of {} sent); wait for it to finish",
            b.done, b.total
        )));
    }
    exec!(
        &mut tx,
        "INSERT INTO backfills (id, delivery_id, org_id, from_seq, to_seq, cursor_seq, total, done, state,
            started_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $4, $6, 0, 'running', $7, $7)",
        &id,
        &d.id,
        org_id,
        after,
        to,
        total,
        now
    )?;
    queue::schedule_standing(
        &mut tx,
        &Standing {
            id: &job_id(&id),
            kind: KIND,
            subject: &id,
            step: "backfill",
            host: Some(&target::host(&conn)),
        },
        now,
        now,
    )
    .await?;
    delivery::transition(&mut tx, &d.id, Event::BackfillStarted, now).await?;
    let detail = json!({"from_seq": after + 1, "to_seq": to, "total": total});
    connections::record(
        &mut tx,
        now,
        actor,
        &conn,
        "delivery.backfill",
        detail.clone(),
    )
    .await?;
    activity::record(
        &mut tx,
        org_id,
        &conn.id,
        ActivityType::Backfill,
        &format!(
            "backfill started by {}: {total} records (sequences {}–{to})",
            actor.name,
            after + 1
        ),
        detail,
        now,
    )
    .await?;
    let b = get(&mut tx, &id)
        .await?
        .ok_or_else(|| SyncError::NotFound(format!("backfill {id}")))?;
    tx.commit().await?;
    core.delivery_due.notify_waiters();
    Ok(Started {
        dry_run,
        from_seq: after.saturating_add(1),
        to_seq: to,
        total,
        backfill: Some(b.progress(now)),
    })
}

/// The backfill sent its whole window: done, and live delivery resumes.
pub async fn finish(core: &Core, id: &str, d: &Delivery, now: i64) -> Result<(), SyncError> {
    let mut tx = core.db.begin_write().await?;
    let n = exec!(
        &mut tx,
        "UPDATE backfills SET state = 'done', finished_at = $1, updated_at = $1 WHERE id = $2 AND state = 'running'",
        now,
        id
    )?;
    if n == 1 {
        if let Some(b) = get(&mut tx, id).await? {
            let p = b.progress(now);
            activity::record(
                &mut tx,
                &d.org_id,
                &d.connection_id,
                ActivityType::Backfill,
                &format!(
                    "backfill done: {} records in {} s",
                    b.done,
                    now.saturating_sub(b.started_at) / 1000
                ),
                json!({"done": p.done, "total": p.total, "records_per_s": p.records_per_s}),
                now,
            )
            .await?;
        }
        // Moved from the state it holds now (`transition` reads it), not
        // the one the run began with.
        if delivery::transition(&mut tx, &d.id, Event::BackfillEnded, now)
            .await?
            .is_some()
        {
            queue::wake(&mut tx, &[d.job_id()], now).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Stops the running backfill of connection `name`'s delivery.
pub async fn cancel(
    core: &Core,
    org_id: &str,
    name: &str,
    actor: &Actor,
) -> Result<BackfillProgress, SyncError> {
    let (conn, d) = delivery::find(core, org_id, name).await?;
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    delivery::lock(&mut tx, &d.id).await?;
    let b = running(&mut tx, &d.id)
        .await?
        .ok_or_else(|| SyncError::NotFound("a running backfill".into()))?;
    exec!(
        &mut tx,
        "UPDATE backfills SET state = 'cancelled', finished_at = $1, updated_at = $1 WHERE id = $2",
        now,
        &b.id
    )?;
    queue::delete(&mut tx, &job_id(&b.id)).await?;
    delivery::transition(&mut tx, &d.id, Event::BackfillEnded, now).await?;
    queue::wake(&mut tx, &[d.job_id()], now).await?;
    connections::record(
        &mut tx,
        now,
        actor,
        &conn,
        "delivery.backfill_cancel",
        json!({"done": b.done, "total": b.total}),
    )
    .await?;
    let b = get(&mut tx, &b.id)
        .await?
        .ok_or_else(|| SyncError::NotFound("backfill".into()))?;
    tx.commit().await?;
    Ok(b.progress(now))
}
