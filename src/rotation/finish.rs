//! `rotation finish ID [--now]`: a person ends a cut-over. Without `--now`
//! the cut-over is looked at at once (it completes when no reader is left
//! on the previous credential, and says who is otherwise); with `--now` the
//! previous credential is retired at once even with readers on it, and the
//! answer names whom that breaks. It is the way out of a rotation past its
//! promotion (which cannot be cancelled) and of a stalled one, and what
//! `incident blast-radius --revoke` runs for a leaked previous credential.

use serde::Serialize;
use serde_json::json;

use super::{by_id, get, reopen, RotationError, RotationRow, RotationView, SETTLED};
use crate::audit::{self, Actor, Event};
use crate::connectors::slots;
use crate::jobs::queue;
use crate::state::Core;

#[derive(Debug, Serialize)]
pub struct Finished {
    pub rotation: RotationView,
    /// `--now`: the previous credential is retired whoever still uses it.
    pub now: bool,
    /// Who was still on the previous credential (and breaks, with `now`).
    pub breaks: Vec<String>,
}

impl Finished {
    /// The answer of `finish` (CLI `--json` and API alike): the rotation's
    /// view with `now`, `breaks` (who breaks: only with `now`) and
    /// `still_on_previous`.
    pub fn json(&self) -> serde_json::Value {
        let mut v = json!(self.rotation);
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("now".into(), json!(self.now));
            let breaks = if self.now {
                self.breaks.clone()
            } else {
                Vec::new()
            };
            m.insert("breaks".into(), json!(breaks));
            m.insert("still_on_previous".into(), json!(self.breaks));
        }
        v
    }
}

/// Steps at which the new credential is promoted and the previous one
/// still works.
const PROMOTED: [&str; 2] = ["cutover", "retire"];

pub async fn finish_cutover(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    id: &str,
    now_flag: bool,
) -> Result<Finished, RotationError> {
    let row = get(&mut core.db.read().await?, org_id, id).await?;
    let job = queue::get(&mut core.db.read().await?, &row.job_id)
        .await?
        .ok_or_else(|| RotationError::NotFound(format!("rotation {id}'s job")))?;
    if matches!(row.status.as_str(), "completed" | "cancelled") {
        return Err(RotationError::Invalid(format!(
            "rotation {id} has already ended ({}): there is no previous credential left to retire",
            row.status
        )));
    }
    if !PROMOTED.contains(&job.step.as_str()) {
        return Err(RotationError::Invalid(format!(
            "rotation {id} is {} at step {}: only a rotation whose new credential is promoted (waiting for its cut-over, or stalled) can be finished",
            row.status, job.step
        )));
    }
    let breaks = still_on_previous(core, &row, &job).await?;
    let patch = json!({"finish_now": now_flag});
    let now = core.now();
    if row.finished_at.is_some() {
        // Stalled (or failed at its retire): it goes on from its cut-over.
        reopen(core, actor, &row, "cutover", patch).await?;
    } else {
        // The worker may be looking at the cut-over this instant; its look
        // is short, so try again for a moment rather than write under it.
        let mut done = false;
        for _ in 0..50 {
            let mut tx = core.db.begin_write().await?;
            if queue::hurry(&mut tx, &row.job_id, &patch, core.now()).await? {
                tx.commit().await?;
                done = true;
                break;
            }
            drop(tx);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        if !done {
            return Err(RotationError::Invalid(format!(
                "rotation {id} is busy at its {} step; try again in a moment",
                job.step
            )));
        }
    }
    let mut tx = core.db.begin_write().await?;
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: Some(org_id),
            action: "rotation.finish",
            target: Some(id),
            detail: json!({"now": now_flag, "still_on_previous": breaks}),
        },
    )
    .await?;
    tx.commit().await?;
    // Run the cut-over from here, so the answer says how it ended.
    let instance = crate::connectors::credentials::instance_id();
    for _ in 0..20 {
        super::drive(core, id, instance).await?;
        let r = by_id(&mut core.db.read().await?, id).await?;
        let settled = r
            .as_ref()
            .is_none_or(|r| SETTLED.contains(&r.status.as_str()) || !now_flag);
        if settled {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    core.work_due.notify_one();
    let row = get(&mut core.db.read().await?, org_id, id).await?;
    Ok(Finished {
        rotation: row.view(),
        now: now_flag,
        breaks,
    })
}

/// The readers (rekey's view) still on a version older than the promoted
/// one, and those that may still use a copy of it they were told to keep,
/// each named for a person.
async fn still_on_previous(
    core: &Core,
    row: &RotationRow,
    job: &queue::Job,
) -> Result<Vec<String>, RotationError> {
    if row.target_type != "connection" {
        return super::own::still_on_previous(core, row, job).await;
    }
    let version = job.payload()["promoted_version"]
        .as_i64()
        .unwrap_or(i64::MAX);
    let mut c = core.db.read().await?;
    let mut names: Vec<String> = slots::readers_behind(&mut c, &row.target_id, version)
        .await?
        .iter()
        .map(slots::Reader::who)
        .collect();
    // A copy cached as told (`refresh_after`) breaks too when retired now.
    let holds = slots::holds_before(&mut c, &row.target_id, version, core.now()).await?;
    names.extend(holds.iter().map(|h| {
        format!(
            "{} (cached version {} until {})",
            h.who(),
            h.version,
            crate::clock::rfc3339(h.until_at)
        )
    }));
    Ok(names)
}
