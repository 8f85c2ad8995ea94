//! The cut-over's decision, one for every rotation: a connection's (its
//! readers on the credentials endpoint, and what the target reports) and
//! one of rekey's own secrets (who presented the previous one). Each kind
//! says who is still on the previous credential; this decides what follows:
//!
//! - nobody, and the window has passed: retire the previous credential;
//! - `rotation finish --now` (or an incident's forced cut-over at its
//!   deadline): retire it now, naming whom that breaks;
//! - the deadline has passed: stop `stalled`, naming who — both
//!   credentials keep working, nobody is cut off;
//! - else wait, and look again when something can have changed.

use super::run::Next;
use super::{finish, record_step, RotationError, RotationRow};
use crate::jobs::queue::{self, Job, DONE};
use crate::state::Core;
use crate::store::{StoreError, Tx};

/// What one kind of rotation sees at a look at its cut-over.
pub(super) struct Look {
    /// Nobody is on the previous credential and the window has passed:
    /// retire it, with this as the cut-over's record.
    pub clear: Option<String>,
    /// Who is still on the previous credential, each named for a person.
    pub behind: Vec<String>,
    /// Copies of the previous credential handed out before the promotion
    /// that may still be used (a connection's `refresh_after`), each named.
    /// They hold the cut-over like `behind`, but their readers have moved:
    /// the record does not say it waits for them.
    pub cached: Vec<String>,
    /// What the ones in `behind` are ("readers", "users").
    pub who: &'static str,
    /// The wait's record while nobody is behind (everyone has moved; the
    /// window, or a cached copy, has not passed).
    pub waiting: String,
    /// When to look again if nothing changes (capped at the deadline).
    pub next: i64,
    /// Added to every record (a report that was unavailable).
    pub note: String,
}

pub(super) enum Decision {
    /// Retire the previous credential; the cut-over's record.
    Retire(String),
    /// Recorded and committed here (stalled, or waiting).
    Done(Next),
}

/// Decides and, unless the kind must retire, records the decision and
/// hands the job back, only while `owner` holds it.
pub(super) async fn decide(
    core: &Core,
    row: &RotationRow,
    job: &Job,
    owner: &str,
    look: Look,
) -> Result<Decision, RotationError> {
    let now = core.now();
    let Look {
        clear,
        behind,
        cached,
        who,
        waiting,
        next,
        note,
    } = look;
    if let Some(detail) = clear {
        return Ok(Decision::Retire(detail + &note));
    }
    // Whom a forced retire breaks, or a stall names: the ones behind and
    // every copy that may still be used.
    let nobody_behind = behind.is_empty();
    let names = behind
        .into_iter()
        .chain(cached)
        .collect::<Vec<_>>()
        .join(", ");
    let payload = job.payload();
    // `rotation finish --now` (or a campaign's forced cut-over at its
    // deadline): the previous credential goes now, and the record names
    // whom that breaks.
    let forced = payload["finish_now"].as_bool() == Some(true)
        || (now >= row.deadline_at && payload["force_at_deadline"].as_bool() == Some(true));
    if forced {
        let breaks = if names.is_empty() {
            "nobody was still on it".to_string()
        } else {
            format!("{who} still on it break: {names}")
        };
        return Ok(Decision::Retire(format!(
            "finished at once by a person's decision; {breaks}{note}"
        )));
    }
    if now >= row.deadline_at {
        let mut tx = core.db.begin_write().await?;
        if !queue::finish(&mut tx, &job.id, owner, DONE, now).await? {
            return Ok(Decision::Done(Next::Lost));
        }
        let detail = if names.is_empty() {
            "the deadline passed before the cut-over window ended; both credentials still work"
                .to_string()
        } else {
            format!("the deadline passed with {who} still on the previous credential: {names}; both credentials still work")
        };
        record_step(&mut tx, row, "cutover", "stalled", &detail, "stalled", now).await?;
        finish(
            &mut tx,
            row,
            "stalled",
            Some(&format!("cutover: {detail}")),
            now,
        )
        .await?;
        tx.commit().await?;
        return Ok(Decision::Done(Next::Ended));
    }
    // Once every reader has moved the record says so, not that it waits
    // for them (the kind's `waiting` names what is left: the window, or
    // the cached copies).
    let detail = if nobody_behind {
        waiting
    } else {
        format!("waiting for {who} still on the previous credential: {names}")
    } + &note;
    // The wait is recorded with the job's release, and only while this
    // claim holds the job: a stale instance never turns a rotation that
    // another finished back to waiting.
    let mut tx = core.db.begin_write().await?;
    if !queue::release_in(&mut tx, &job.id, owner, next.min(row.deadline_at), now).await? {
        return Ok(Decision::Done(Next::Lost));
    }
    record_step(
        &mut tx,
        row,
        "cutover",
        "waiting",
        &detail,
        "waiting_cutover",
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Decision::Done(Next::Released))
}

/// A reader moved to a newer version of connection `connection_id`: the
/// rotation waiting in its cut-over (if any) looks again now rather than
/// at the time it was released to, since the reader may have been the
/// last one behind. True when a job was woken (the caller tells the jobs
/// loop after its commit).
pub async fn wake_on_read(tx: &mut Tx, connection_id: &str, now: i64) -> Result<bool, StoreError> {
    let job: Option<String> = crate::scalar_optional!(
        tx,
        String,
        "SELECT job_id FROM rotations WHERE target_type = 'connection' AND target_id = $1
           AND finished_at IS NULL AND status = 'waiting_cutover'",
        connection_id
    )?;
    match job {
        Some(id) => Ok(queue::wake(tx, &[id], now).await? > 0),
        None => Ok(false),
    }
}
