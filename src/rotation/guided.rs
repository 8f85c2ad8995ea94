//! Rotations a person carries out, where the other side does not let a
//! program rotate:
//!
//! - `reauthorize` (OAuth grants): the grant is revoked at the provider
//!   where it can be, the connection is `needs_reauth`, and the rotation
//!   waits for a person (`waiting_person`) with the authorize URL; it
//!   completes when the OAuth callback stores the new grant.
//! - `manual`: the kind's runbook from the catalog, each step marked done
//!   (`rekey rotation step ID --done N`); it completes when `connection
//!   set-credential` stores a new value that passed its probe.
//!
//! Either way the job is due at the deadline: a rotation nobody finished
//! by then ends `stalled`.

use serde_json::{json, Value};

use super::{
    finish, insert, record_step, record_step_with, NewRotation, RotationError, RotationRow,
    RotationView, StartRequest, Started,
};
use crate::audit::Actor;
use crate::connectors::catalog::Rotation as Mode;
use crate::connectors::connections::Connection;
use crate::connectors::oauth_client;
use crate::connectors::probe::{Outcome, Verdict};
use crate::jobs::queue;
use crate::state::Core;
use crate::{exec, fetch_optional};

pub(super) async fn start(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    conn: &Connection,
    req: &StartRequest,
) -> Result<Started, RotationError> {
    let method = conn.method()?;
    let reauthorize = matches!(method.rotation, Mode::Reauthorize);
    if req.dry_run || req.preflight {
        return Ok(Started::Plan(json!({
            "dry_run": req.dry_run,
            "preflight": req.preflight,
            "target": {"type": "connection", "name": conn.name},
            "mode": if reauthorize { "reauthorize" } else { "manual" },
            "steps": if reauthorize {
                vec!["check", "revoke", "authorize", "verify"]
            } else {
                vec!["check", "runbook", "verify"]
            },
            "runbook": method.runbook,
        })));
    }
    let now = core.now();
    let row = insert(
        core,
        actor,
        NewRotation {
            org_id,
            target_type: "connection",
            target_id: &conn.id,
            target_name: &conn.name,
            step: "person",
            payload: json!({}),
            status: "waiting_person",
            // Nothing runs until a person acts; at the deadline the job
            // ends a rotation nobody finished.
            run_at: now.saturating_add(req.deadline_ms),
            cutover_window_ms: req.cutover_window_ms,
            deadline_ms: req.deadline_ms,
            rotate_with: None,
            host: None,
        },
    )
    .await?;
    let check = if reauthorize {
        "rotated by re-authorization: a person signs in at the provider"
    } else {
        "rotated by hand: a person follows the runbook, then stores the new value"
    };
    let id = row.id.clone();
    let mut tx = core.db.begin_write().await?;
    record_step(&mut tx, &row, "check", "done", check, "waiting_person", now).await?;
    tx.commit().await?;
    if reauthorize {
        // The old grant goes first: the incident is that it may be known.
        let (_, note) = oauth_client::revoke(core, actor, org_id, &conn.id).await?;
        // A campaign's rotation runs as `incident:ID`: its flow is the
        // campaign's, completed only by a signed-in admin of the org.
        let campaign = actor.name.strip_prefix("incident:");
        let public_url = core.public_url();
        let url = oauth_client::start(core, actor, org_id, &conn.id, &public_url, campaign)
            .await?
            .link(&public_url);
        let mut tx = core.db.begin_write().await?;
        let revoked = note.unwrap_or_else(|| "the grant was revoked at the provider".into());
        record_step(
            &mut tx,
            &row,
            "revoke",
            "done",
            &revoked,
            "waiting_person",
            now,
        )
        .await?;
        exec!(
            &mut tx,
            "UPDATE connections SET status = 'needs_reauth', status_reason = 'rotation: re-authorize' WHERE id = $1",
            &conn.id
        )?;
        record_step_with(
            &mut tx,
            &row,
            "authorize",
            "waiting",
            "a person opens the authorize URL and signs in at the provider",
            "waiting_person",
            now,
            json!({"authorize_url": url}),
        )
        .await?;
        tx.commit().await?;
    } else {
        let mut tx = core.db.begin_write().await?;
        record_runbook(&mut tx, &row, &method.runbook, &[], now).await?;
        tx.commit().await?;
    }
    Ok(Started::Rotation(Box::new(
        super::get_any(core, &id).await?.view(),
    )))
}

async fn record_runbook(
    tx: &mut crate::store::Tx,
    row: &RotationRow,
    runbook: &[String],
    done: &[u64],
    now: i64,
) -> Result<(), RotationError> {
    let steps: Vec<Value> = runbook
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let n = i as u64 + 1;
            json!({"n": n, "text": text, "done": done.contains(&n)})
        })
        .collect();
    let count = done.len();
    record_step_with(
        tx,
        row,
        "runbook",
        "waiting",
        &format!(
            "{count} of {} steps done; then `rekey connection set-credential` stores the new value",
            runbook.len()
        ),
        "waiting_person",
        now,
        json!({"runbook": steps}),
    )
    .await
}

/// Marks runbook step `n` of a manual rotation done.
pub async fn runbook_step(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    id: &str,
    n: u64,
) -> Result<RotationView, RotationError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let row = super::get(&mut tx, org_id, id).await?;
    let view = row.view();
    let Some(Value::Array(book)) = view.runbook.clone() else {
        return Err(RotationError::Invalid(format!(
            "rotation {id} has no runbook (it is not a manual rotation)"
        )));
    };
    if row.status != "waiting_person" {
        return Err(RotationError::Invalid(format!(
            "rotation {id} is {}, not waiting for a person",
            row.status
        )));
    }
    if n == 0 || n > book.len() as u64 {
        return Err(RotationError::Invalid(format!(
            "the runbook has steps 1 to {}",
            book.len()
        )));
    }
    let texts: Vec<String> = book
        .iter()
        .filter_map(|s| s["text"].as_str().map(str::to_string))
        .collect();
    let mut done: Vec<u64> = book
        .iter()
        .filter(|s| s["done"] == true)
        .filter_map(|s| s["n"].as_u64())
        .collect();
    if !done.contains(&n) {
        done.push(n);
    }
    record_runbook(&mut tx, &row, &texts, &done, now).await?;
    crate::audit::record(
        &mut tx,
        now,
        actor,
        crate::audit::Event {
            org_id: Some(org_id),
            action: "rotation.runbook_step",
            target: Some(id),
            detail: json!({"step": n}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(super::get_any(core, id).await?.view())
}

/// A credential was stored for `connection_id`: the rotation a person is
/// carrying out for it (a runbook, a re-authorization) moves on, in the
/// caller's transaction — the one that stored the credential, so a crash
/// cannot leave the credential stored and the rotation waiting. `out` is
/// the probe of the stored value; `None` when it is not known yet (a new
/// grant is stored before it is probed): the person's step is recorded and
/// the job verifies the grant itself if nothing else does within a minute.
pub async fn credential_stored_in(
    tx: &mut crate::store::Tx,
    connection_id: &str,
    out: Option<&Outcome>,
    now: i64,
) -> Result<(), RotationError> {
    let Some(row) = fetch_optional!(
        tx,
        RotationRow,
        &format!(
            "SELECT {} FROM rotations r WHERE r.target_type = 'connection' AND r.target_id = $1
               AND r.finished_at IS NULL
               AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = r.job_id AND j.step IN ('person', 'verify_person'))",
            cols_of("r")
        ),
        connection_id
    )?
    else {
        return Ok(());
    };
    let Some(out) = out else {
        record_step(
            tx,
            &row,
            "person",
            "done",
            "a new credential was stored; verifying it",
            "running",
            now,
        )
        .await?;
        queue::requeue(tx, &row.job_id, "verify_person", now.saturating_add(60_000)).await?;
        return Ok(());
    };
    match out.verdict {
        Verdict::Failed => {
            record_step(
                tx,
                &row,
                "verify",
                "failed",
                &out.message,
                "waiting_person",
                now,
            )
            .await?;
            // Back to waiting on the person, due at the deadline.
            queue::requeue(tx, &row.job_id, "person", row.deadline_at).await?;
        }
        verdict => {
            let (status, reason) = if verdict == Verdict::Ok {
                ("done", None)
            } else {
                (
                    "unverified",
                    Some("completed without verification: nothing can prove this kind's credential by a request"),
                )
            };
            record_step(tx, &row, "verify", status, &out.message, "completed", now).await?;
            finish(tx, &row, "completed", reason, now).await?;
            queue::cancel(tx, &row.job_id, now).await?;
        }
    }
    Ok(())
}

/// Whether a rotation of the connection waits for a person to store a new
/// credential.
pub async fn waits_for_person(core: &Core, connection_id: &str) -> Result<bool, RotationError> {
    let n = crate::scalar_optional!(
        &mut core.db.read().await?,
        i64,
        "SELECT COUNT(*) FROM rotations r JOIN jobs j ON j.id = r.job_id
         WHERE r.target_type = 'connection' AND r.target_id = $1 AND r.finished_at IS NULL
           AND j.step = 'person'",
        connection_id
    )?;
    Ok(n.unwrap_or(0) > 0)
}

/// The rotation columns, each qualified by `alias`.
fn cols_of(alias: &str) -> String {
    super::COLS
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}
