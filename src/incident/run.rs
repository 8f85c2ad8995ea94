//! Running campaigns: each pass of an instance's jobs loop claims due
//! campaign jobs (leased, so several instances share the work and a killed
//! one's campaigns are taken over) and moves every open item one step:
//!
//! - a pending connection item starts its rotation (at most [`crate::rotation::limits::PER_HOST`],
//!   [`crate::rotation::limits::PER_DATABASE_HOST`] for databases,
//!   acting at a time per provider host), or adopts the one it started
//!   before a crash, so no target is rotated twice by one campaign;
//! - an item under way follows its rotation: promoted → `done` (the old
//!   credential still works until the cut-over), completed (the old one
//!   retired) and probed with the new one → `verified`, failed or stalled
//!   → `failed`,
//!   a person's turn → `waiting_person`;
//! - a provider-client item waits on the operator until `connector
//!   configure` stores a new secret for the kind;
//! - when every item is settled the campaign is `completed`.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use serde_json::json;

use super::{get_row, items, own, IncidentError, IncidentRow, ItemRow, JOB_KIND};
use crate::audit::{self, Actor, Event};
use crate::connectors::{connections, probe, service_keys};
use crate::events::webhooks::{self, WebhookEvent};
use crate::jobs::queue::{self, Job, DONE};
use crate::rotation::{self, RotationError, StartRequest, Started, TargetRef};
use crate::state::Core;
use crate::store::sql::{fetch_all_args, param_list, Arg};
use crate::{exec, fetch_optional};

/// Items acting at once per provider host within a pass; the jobs'
/// claims bound it across campaigns, rotations and instances too.
fn per_host(host: Option<&str>) -> usize {
    usize::try_from(crate::rotation::limits::per_host(host.unwrap_or_default())).unwrap_or(1)
}
const LEASE_MS: i64 = 120_000;
/// How soon a campaign with open items looks again.
const AGAIN_MS: i64 = 1_000;

/// Runs the due campaigns' passes; returns how many ran.
pub async fn run_due(core: &Core, instance: &str) -> Result<usize, IncidentError> {
    let owner = &queue::claim_token(instance);
    let jobs = queue::claim(&core.db, JOB_KIND, owner, LEASE_MS, 8, core.now()).await?;
    let n = jobs.len();
    for job in jobs {
        if let Err(e) = pass(core, &job, owner, instance).await {
            tracing::warn!(campaign = %job.subject, error = %e, "campaign pass failed");
            // Not `?`: one failure to record it must not leave the other
            // campaigns of this claim unrun until their leases end.
            if let Err(e) = queue::fail(&core.db, &job.id, owner, &e.to_string(), core.now()).await
            {
                tracing::warn!(campaign = %job.subject, error = %e, "could not record the failed pass");
            }
        }
    }
    Ok(n)
}

fn system() -> Actor {
    Actor::new("incident".to_string(), None)
}

async fn pass(core: &Core, job: &Job, owner: &str, instance: &str) -> Result<(), IncidentError> {
    // Renewed while the pass runs (its items may take minutes).
    let _lease = crate::jobs::lease::Lease::hold(core, &job.id, owner, LEASE_MS);
    let force = Asks {
        force_cutover: job.payload()["force_cutover"].as_bool() == Some(true),
        end_sessions: job.payload()["end_sessions"].as_bool() == Some(true),
    };
    let row = get_row(&mut core.db.read().await?, &job.subject).await?;
    if row.finished_at.is_some() {
        let mut tx = core.db.begin_write().await?;
        queue::finish(&mut tx, &job.id, owner, DONE, core.now()).await?;
        tx.commit().await?;
        return Ok(());
    }
    let all = items(&mut core.db.read().await?, &row.id).await?;
    let by_n: Arc<HashMap<i64, ItemRow>> = Arc::new(all.iter().map(|i| (i.n, i.clone())).collect());
    // Items that can move now, each a pipeline of its own (start or adopt
    // its rotation, drive it, follow it to verified), run concurrently up
    // to PER_HOST per provider host.
    let starts = |i: &ItemRow| {
        i.status == "pending" && i.target_type == "connection" && blocked(i, &by_n).is_none()
    };
    let starting: Vec<i64> = all.iter().filter(|i| starts(i)).map(|i| i.n).collect();
    // What starts now shows as acting at once (one write for all); an item
    // cancelled since it was read is not among them, and does not start.
    let acting = mark_acting(core, &row.id, &starting).await?;
    let mut gates: HashMap<String, Arc<Semaphore>> = HashMap::new();
    let mut set = JoinSet::new();
    for item in all
        .into_iter()
        .filter(|i| !i.settled() && (!starts(i) || acting.contains(&i.n)))
    {
        let gate = gates
            .entry(item.host.clone().unwrap_or_default())
            .or_insert_with(|| Arc::new(Semaphore::new(per_host(item.host.as_deref()))))
            .clone();
        let (core, row, by_n, instance) = (
            core.clone(),
            row.clone(),
            by_n.clone(),
            instance.to_string(),
        );
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let r = step(&core, &row, &item, &by_n, &instance, force).await;
            if let Err(e) = r {
                tracing::warn!(campaign = %row.id, item = item.n, error = %e, "campaign item step failed");
                // A target that is gone (its connection deleted mid-campaign)
                // fails its item: nothing is left to rotate or follow, and
                // left open it kept the campaign passing every second,
                // forever. Any other error is passing: the next pass retries.
                if gone(&e) {
                    let failed = Change {
                        status: "failed",
                        detail: format!("its target is gone: {e}"),
                        waiting_on: None,
                        rotation_id: None,
                        event: Some("incident.item_failed"),
                    };
                    if let Err(e) = record(&core, &item, failed).await {
                        tracing::warn!(campaign = %row.id, item = item.n, error = %e, "could not fail the item");
                    }
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    let all = items(&mut core.db.read().await?, &row.id).await?;
    let now = core.now();
    if all.iter().all(ItemRow::settled) {
        let failed = all.iter().filter(|i| i.status == "failed").count();
        let mut tx = core.db.begin_write().await?;
        if !queue::finish(&mut tx, &job.id, owner, DONE, now).await? {
            return Ok(());
        }
        exec!(
            &mut tx,
            "UPDATE incidents SET status = 'completed', finished_at = $1 WHERE id = $2 AND finished_at IS NULL",
            now,
            &row.id
        )?;
        audit::record(
            &mut tx,
            now,
            &system(),
            Event {
                org_id: row.org_id.as_deref(),
                action: "incident.finish",
                target: Some(&row.id),
                detail: json!({"items": all.len(), "failed": failed}),
            },
        )
        .await?;
        tx.commit().await?;
    } else {
        queue::release(&core.db, &job.id, owner, now.saturating_add(AGAIN_MS), now).await?;
    }
    Ok(())
}

/// Whether a step failed because what the item acts on no longer exists.
fn gone(e: &IncidentError) -> bool {
    use crate::connectors::ConnectorError as C;
    matches!(
        e,
        IncidentError::NotFound(_)
            | IncidentError::Connector(C::NotFound(_))
            | IncidentError::Rotation(RotationError::NotFound(_))
            | IncidentError::Rotation(RotationError::Connector(C::NotFound(_)))
    )
}

/// What an item becomes, with its detail.
struct Change<'a> {
    status: &'a str,
    detail: String,
    waiting_on: Option<&'a str>,
    rotation_id: Option<String>,
    /// The audit event the change is (item failed, item waiting), if any.
    event: Option<&'a str>,
}

async fn record(core: &Core, item: &ItemRow, c: Change<'static>) -> Result<(), IncidentError> {
    if c.status == item.status
        && Some(c.detail.as_str()) == item.detail.as_deref()
        && (c.rotation_id.is_none() || c.rotation_id == item.rotation_id)
    {
        return Ok(());
    }
    let now = core.now();
    let item = item.clone();
    // Through the group-commit writer: a campaign's items settle many at
    // a time, and share a commit. Its only failures are the database's,
    // so it needs no savepoint of its own.
    core.writer
        .run_unguarded(move |tx| {
            Box::pin(async move {
                let done_at = matches!(c.status, "done" | "verified").then_some(now);
                let verified_at = (c.status == "verified").then_some(now);
                exec!(
                    tx,
                    "UPDATE incident_items SET status = $1, detail = $2, waiting_on = $3,
                        rotation_id = COALESCE($4, rotation_id),
                        done_at = COALESCE(done_at, $5), verified_at = COALESCE(verified_at, $6),
                        done_by = CASE WHEN $5 IS NULL THEN done_by ELSE COALESCE(done_by, $7) END,
                        updated_at = $8
                     WHERE incident_id = $9 AND n = $10 AND status <> 'cancelled'",
                    c.status,
                    &c.detail,
                    c.waiting_on,
                    &c.rotation_id,
                    done_at,
                    verified_at,
                    done_by(&item),
                    now,
                    &item.incident_id,
                    item.n
                )?;
                if let Some(action) = c.event.filter(|_| c.status != item.status) {
                    audit::record(
                        tx,
                        now,
                        &system(),
                        Event {
                            org_id: item.org_id.as_deref(),
                            action,
                            target: Some(&item.incident_id),
                            detail: json!({"n": item.n, "target": {"type": item.target_type, "name": item.target_name}, "detail": c.detail, "who": c.waiting_on}),
                        },
                    )
                    .await?;
                    // A person's turn is what a webhook is for; only an
                    // org's items reach an org's receivers.
                    if let (Some(org), "incident.item_waiting") = (item.org_id.as_deref(), action) {
                        let data = json!({"incident": item.incident_id, "n": item.n, "target": {"type": item.target_type, "name": item.target_name}, "detail": c.detail, "who": c.waiting_on});
                        webhooks::emit(tx, org, WebhookEvent::IncidentItemWaiting, data, now).await?;
                    }
                }
                Ok::<_, IncidentError>(())
            })
        })
        .await
        .map_err(crate::store::StoreError::from)?
}

fn done_by(item: &ItemRow) -> &'static str {
    match item.action.as_str() {
        "rotate" => "rekey (automatic rotation)",
        "operator" => "the operator (connector configure)",
        "reauthorize" => "an org admin (re-authorized at the provider)",
        _ => "an org admin (runbook, set-credential)",
    }
}

/// Why a pending item cannot start yet: the item it waits for.
fn blocked<'a>(item: &ItemRow, by_n: &'a HashMap<i64, ItemRow>) -> Option<&'a ItemRow> {
    item.after_n
        .and_then(|n| by_n.get(&n))
        .filter(|first| !matches!(first.status.as_str(), "done" | "verified"))
}

async fn mark_acting(
    core: &Core,
    id: &str,
    ns: &[i64],
) -> Result<std::collections::HashSet<i64>, IncidentError> {
    let mut acting = std::collections::HashSet::with_capacity(ns.len());
    if ns.is_empty() {
        return Ok(acting);
    }
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    for chunk in ns.chunks(500) {
        let list = param_list(3, chunk.len());
        let sql = format!(
            "UPDATE incident_items SET status = 'acting', detail = 'starting its rotation', updated_at = $1
             WHERE incident_id = $2 AND status = 'pending' AND n IN ({list}) RETURNING n"
        );
        let mut args = vec![Arg::Int(now), Arg::Text(id.to_string())];
        args.extend(chunk.iter().map(|n| Arg::Int(*n)));
        let rows: Vec<(i64,)> = fetch_all_args(&mut tx, &sql, args).await?;
        acting.extend(rows.into_iter().map(|(n,)| n));
    }
    tx.commit().await?;
    Ok(acting)
}

/// What the campaign asks of its rotations when the old credential is
/// presumed leaked.
#[derive(Clone, Copy)]
struct Asks {
    /// Retire at the deadline even with readers still on it.
    force_cutover: bool,
    /// End the sessions the target keeps open with the retired credential.
    end_sessions: bool,
}

async fn step(
    core: &Core,
    row: &IncidentRow,
    item: &ItemRow,
    by_n: &HashMap<i64, ItemRow>,
    instance: &str,
    force: Asks,
) -> Result<(), IncidentError> {
    if own::is_own(item) {
        // Left pending by a crash during the start.
        own::act(core, &system(), row, item).await?;
        return Ok(());
    }
    if item.target_type == "provider_client" {
        return provider_client(core, row, item, by_n).await;
    }
    if item.status == "pending" {
        if let Some(first) = blocked(item, by_n) {
            let detail = format!(
                "waits for item {} ({} {}): the platform's OAuth client is rotated first",
                first.n, first.target_type, first.target_name
            );
            return record(
                core,
                item,
                Change {
                    status: "pending",
                    detail,
                    waiting_on: None,
                    rotation_id: None,
                    event: None,
                },
            )
            .await;
        }
    }
    let rid = match &item.rotation_id {
        Some(rid) => rid.clone(),
        // Pending, or acting without a rotation (a crash after it was
        // marked): start its rotation, or adopt the one already started.
        None => match start_rotation(core, row, item, force).await? {
            Some(rid) => rid,
            None => return Ok(()),
        },
    };
    // Run the rotation from here (when it is due and nobody else holds
    // it), then follow it.
    let completed = match rotation::drive(core, &rid, instance).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(rotation = %rid, error = %e, "campaign rotation step failed");
            None
        }
    };
    follow(core, item, &rid, completed).await
}

/// Starts the item's rotation, or adopts the one this campaign already
/// started for the target (a crash between starting it and recording it).
async fn start_rotation(
    core: &Core,
    row: &IncidentRow,
    item: &ItemRow,
    force: Asks,
) -> Result<Option<String>, IncidentError> {
    let org_id = item.org_id.clone().unwrap_or_default();
    let actor = Actor::new(format!("incident:{}", row.id), None);
    // Adopted: only a rotation this campaign started since the item last
    // changed status (a crash between starting it and recording it). A
    // retried item was reset after its failed rotation started, so it gets
    // a fresh one; a rotation someone else started meanwhile (an admin's
    // `rotate`, the scheduler) is never taken for the item's own — one
    // still running is the answer of the start below, one that ended says
    // nothing about this item's.
    // An item this pass read as pending has none to adopt: a start a
    // crash left unrecorded leaves its item acting, and a retry's reset
    // is later than the rotation it failed with (one pass of a campaign
    // runs at a time: its job is leased). Asked only of acting items.
    let existing = if item.status == "pending" {
        None
    } else {
        fetch_optional!(
            &mut core.db.read().await?,
            (String,),
            "SELECT id FROM rotations WHERE target_type = 'connection' AND target_id = $1 AND started_at >= $2
               AND started_by = $3
             ORDER BY started_at DESC LIMIT 1",
            &item.target_id,
            row.started_at.max(item.updated_at),
            &actor.name
        )?
    };
    let rid = match existing {
        Some((id,)) => id,
        None => {
            let req = StartRequest {
                target: TargetRef::Connection(item.target_id.clone()),
                dry_run: false,
                preflight: false,
                cutover_window_ms: row.overlap_ms,
                // The old credential is presumed leaked: readers get the
                // overlap and then an hour, not a day.
                deadline_ms: row
                    .overlap_ms
                    .saturating_add(crate::rotation::limits::INCIDENT_GRACE_MS),
                rotate_with: None,
                force_at_deadline: force.force_cutover,
                end_sessions: force.end_sessions,
            };
            match rotation::start(core, &actor, &org_id, &req).await {
                Ok(Started::Rotation(v)) => v.id,
                Ok(Started::Plan(_)) => return Ok(None),
                Err(RotationError::InProgress(v)) => v.id,
                Err(e) => {
                    let detail = format!("the rotation could not start: {e}");
                    record(
                        core,
                        item,
                        Change {
                            status: "failed",
                            detail,
                            waiting_on: None,
                            rotation_id: None,
                            event: Some("incident.item_failed"),
                        },
                    )
                    .await?;
                    return Ok(None);
                }
            }
        }
    };
    Ok(Some(rid))
}

/// Moves the item along with its rotation; `completed` is what the
/// rotation left when this process drove it to completion (then it is not
/// read back).
async fn follow(
    core: &Core,
    item: &ItemRow,
    rid: &str,
    completed: Option<rotation::Completed>,
) -> Result<(), IncidentError> {
    let change = match completed {
        Some(c) => probed(core, rid, &c.conn, &c.current).await,
        None => followed(core, item, rid).await?,
    };
    // The record is an org's to read (its campaign view, the report, its
    // webhooks): the platform's service keys that the rotation's steps
    // name, and their addresses, are not (`rotation show` keeps them for
    // the operator).
    let change = Change {
        detail: service_keys::tenant_text(&mut core.db.read().await?, &change.detail).await?,
        rotation_id: Some(rid.to_string()),
        ..change
    };
    record(core, item, change).await
}

/// A completed rotation's item, verified by the connection's own probe
/// with the credential now stored.
async fn probed(
    core: &Core,
    rid: &str,
    conn: &connections::Connection,
    creds: &serde_json::Map<String, serde_json::Value>,
) -> Change<'static> {
    let out = probe::run(core, conn, creds).await;
    match out.verdict {
        probe::Verdict::Ok => Change {
            status: "verified",
            detail: format!("rotation {rid} completed; probe: {}", out.message),
            waiting_on: None,
            rotation_id: None,
            event: None,
        },
        probe::Verdict::Unverified => Change {
            status: "done",
            detail: format!(
                "rotation {rid} completed; the credential cannot be verified by a request ({})",
                out.message
            ),
            waiting_on: None,
            rotation_id: None,
            event: None,
        },
        probe::Verdict::Failed => Change {
            status: "failed",
            detail: format!(
                "rotation {rid} completed but the probe fails: {}",
                out.message
            ),
            waiting_on: None,
            rotation_id: None,
            event: Some("incident.item_failed"),
        },
    }
}

/// What the item becomes, read from its rotation as it stands.
async fn followed(
    core: &Core,
    item: &ItemRow,
    rid: &str,
) -> Result<Change<'static>, IncidentError> {
    let r = rotation::get_any(core, rid).await?;
    let v = r.view();
    let last = v
        .steps
        .last()
        .and_then(|s| s["detail"].as_str())
        .unwrap_or_default()
        .to_string();
    Ok(match r.status.as_str() {
        "completed" => {
            let mut c = core.db.read().await?;
            let conn = connections::get(&mut c, &item.target_id).await?;
            let creds = crate::connectors::slots::read(
                &mut c,
                core,
                &conn.id,
                crate::connectors::slots::Slot::Current,
            )
            .await?
            .unwrap_or_default();
            drop(c);
            probed(core, rid, &conn, &creds).await
        }
        // `done`, not yet `verified` (README): the new credential is
        // current, and the old one — presumed leaked — still works until
        // the cut-over retires it. The record must not say verified before
        // the status does.
        "waiting_cutover" => Change {
            status: "done",
            detail: format!("rotation {rid}: the new credential is current; the previous one works until the cut-over retires it ({last})"),
            waiting_on: None,
            rotation_id: None,
            event: None,
        },
        "waiting_person" => {
            let what = match (&v.authorize_url, &v.runbook) {
                (Some(url), _) => format!("re-authorize at {url}"),
                (None, Some(_)) => format!("follow the runbook of rotation {rid} (`rekey rotation show {rid}`), then `rekey connection set-credential`"),
                _ => last.clone(),
            };
            Change {
                status: "waiting_person",
                detail: what,
                waiting_on: Some("org_admins"),
                rotation_id: None,
                event: Some("incident.item_waiting"),
            }
        }
        "failed" | "stalled" | "cancelled" => Change {
            status: "failed",
            detail: format!(
                "rotation {rid} {}: {}",
                r.status,
                r.reason.clone().unwrap_or(last)
            ),
            waiting_on: None,
            rotation_id: None,
            event: Some("incident.item_failed"),
        },
        _ => Change {
            status: "acting",
            detail: format!("rotation {rid} {}: {last}", r.status),
            waiting_on: None,
            rotation_id: None,
            event: None,
        },
    })
}

/// The platform's OAuth client of a kind: the operator's turn, until
/// `connector configure` has stored a new secret since the campaign began.
async fn provider_client(
    core: &Core,
    row: &IncidentRow,
    item: &ItemRow,
    by_n: &HashMap<i64, ItemRow>,
) -> Result<(), IncidentError> {
    let updated = fetch_optional!(
        &mut core.db.read().await?,
        (i64,),
        "SELECT updated_at FROM connector_clients WHERE kind = $1",
        &item.target_id
    )?
    .map(|r| r.0);
    let waiting = |detail: String| Change {
        status: "waiting_person",
        detail,
        waiting_on: Some("operator"),
        rotation_id: None,
        event: Some("incident.item_waiting"),
    };
    let Some(t) = updated.filter(|t| *t >= row.started_at) else {
        let detail = item.detail.clone().unwrap_or_default();
        return record(core, item, waiting(detail)).await;
    };
    let stored = format!(
        "the operator stored a new client secret for {} ({})",
        item.target_name,
        crate::clock::rfc3339(t)
    );
    // Probed at the provider through one of the connections that wait on
    // it (the token endpoint may depend on a connection's settings).
    let waiter = by_n
        .values()
        .find(|i| i.after_n == Some(item.n) && i.target_type == "connection");
    let out = match waiter {
        Some(w) => {
            let conn = connections::get(&mut core.db.read().await?, &w.target_id).await?;
            crate::connectors::oauth_client::probe_client(core, &conn).await
        }
        None => probe::Outcome::unverified("no connection in the campaign uses it"),
    };
    let change = match out.verdict {
        probe::Verdict::Ok => Change {
            status: "verified",
            detail: format!("{stored}; {}", out.message),
            waiting_on: None,
            rotation_id: None,
            event: None,
        },
        probe::Verdict::Unverified => Change {
            status: "done",
            detail: format!("{stored}; it cannot be verified by a request: {}", out.message),
            waiting_on: None,
            rotation_id: None,
            event: None,
        },
        probe::Verdict::Failed => waiting(format!(
            "{stored}, but {}; store the new one: rekey connector configure {} --client-id ID --client-secret-stdin",
            out.message, item.target_name
        )),
    };
    record(core, item, change).await
}
