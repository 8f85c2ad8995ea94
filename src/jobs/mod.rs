//! Background work of a server instance. Each job is a loop over its
//! interval that stops with the server. The jobs here are idempotent
//! housekeeping, safe to run on every instance at once; work that must run
//! exactly once is claimed by lease in the database.

pub mod janitor;
pub mod lease;
pub mod queue;

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::Core;

/// Starts the jobs; they stop when `stop` turns true.
pub fn spawn_all(core: &Core, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let mut jobs = vec![epoch_poller(core.clone(), stop.clone())];
    let keeper = core.config.keeper_interval.0;
    if !keeper.is_zero() {
        jobs.push(every(
            core.clone(),
            stop.clone(),
            keeper,
            "refresh keeper",
            |core| {
                Box::pin(async move {
                    crate::connectors::keeper::run_once(&core)
                        .await
                        .map(|p| p.refreshed as u64)
                        .map_err(|e| e.to_string())
                })
            },
            None,
            false,
        ));
    }
    let due = core.config.jobs_interval.0;
    if !due.is_zero() {
        jobs.push(every(
            core.clone(),
            stop.clone(),
            due,
            "jobs",
            |core| {
                Box::pin(async move {
                    let started = crate::rotation::start_due(&core)
                        .await
                        .map_err(|e| e.to_string())?;
                    let instance = crate::connectors::credentials::instance_id();
                    // Campaigns first: they start the rotations this pass runs.
                    let campaigns = crate::incident::run_due(&core, instance)
                        .await
                        .map_err(|e| e.to_string())?;
                    let ran = crate::rotation::run_due(&core, instance)
                        .await
                        .map_err(|e| e.to_string())?;
                    let sent = crate::events::sender::run_due(&core, instance)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok((started + campaigns + ran + sent) as u64)
                })
            },
            // A rotation or campaign started here runs at once.
            Some(Wake::Jobs),
            false,
        ));
    }
    let delivery = core.config.delivery_interval.0;
    if !delivery.is_zero() {
        jobs.push(every(
            core.clone(),
            stop.clone(),
            delivery,
            "deliveries",
            |core| {
                Box::pin(async move {
                    let instance = crate::connectors::credentials::instance_id();
                    crate::sync::run::run_due(&core, instance)
                        .await
                        .map(|n| n as u64)
                        .map_err(|e| e.to_string())
                })
            },
            // A delivery resumed or a backfill started here runs at once.
            Some(Wake::Deliveries),
            false,
        ));
    }
    jobs.extend([
        every(
            core.clone(),
            stop.clone(),
            crate::oauth::usage::FLUSH,
            "secret-usage flush",
            |core| {
                Box::pin(async move {
                    core.usage
                        .flush(&core.db)
                        .await
                        .map(|n| n as u64)
                        .map_err(|e| e.to_string())
                })
            },
            None,
            // What is noted in memory is written before the server stops.
            true,
        ),
        every(
            core.clone(),
            stop.clone(),
            crate::sync::outbox::COMPACT_EVERY,
            "outbox compaction",
            |core| {
                Box::pin(async move {
                    let retention = i64::try_from(core.config.outbox_retention.0.as_millis())
                        .unwrap_or(i64::MAX);
                    crate::sync::outbox::compact(&core.db, retention, core.now())
                        .await
                        .map(|c| c.removed)
                        .map_err(|e| e.to_string())
                })
            },
            None,
            false,
        ),
        every(
            core.clone(),
            stop,
            Duration::from_secs(300),
            "janitor",
            |core| Box::pin(async move { janitor::sweep(&core).await.map_err(|e| e.to_string()) }),
            None,
            false,
        ),
    ]);
    jobs
}

/// Reads the invalidation epoch every `store::epoch::POLL`: while it runs
/// (and keeps up), the validation cache may be used. A failing read only
/// turns the cache off; one warning when it starts failing, one line when it
/// recovers.
fn epoch_poller(core: Core, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::store::epoch::POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            match core.db.poll_epoch().await {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("invalidation epoch readable again; validation cache on");
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot read the invalidation epoch; validation cache off");
                }
                Err(_) => {}
            }
        }
    })
}

type JobFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, String>> + Send>>;

/// Which notification, besides its period, runs a loop at once.
#[derive(Clone, Copy)]
enum Wake {
    /// `Core::work_due`: rotations and campaigns.
    Jobs,
    /// `Core::delivery_due`: deliveries and backfills.
    Deliveries,
}

/// Runs `job` every `period` until `stop`; with `wake`, also as soon as
/// that notification comes. Only a `final_pass` job runs once more on
/// stop (a flush of what is noted in memory): work claimed by lease is
/// never claimed anew by an instance that is stopping.
fn every(
    core: Core,
    mut stop: watch::Receiver<bool>,
    period: Duration,
    name: &'static str,
    job: fn(Core) -> JobFuture,
    wake: Option<Wake>,
    final_pass: bool,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = woken(&core, wake) => {}
                _ = stop.changed() => {
                    if final_pass {
                        let _ = job(core.clone()).await;
                    }
                    return;
                }
            }
            match job(core.clone()).await {
                Ok(n) if n > 0 => tracing::debug!(job = name, items = n, "job ran"),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(job = name, error = %e, "job failed; retrying next period")
                }
            }
        }
    })
}

/// Waits for `wake`'s notification; never, without one.
async fn woken(core: &Core, wake: Option<Wake>) {
    match wake {
        Some(Wake::Jobs) => core.work_due.notified().await,
        Some(Wake::Deliveries) => core.delivery_due.notified().await,
        None => std::future::pending().await,
    }
}
