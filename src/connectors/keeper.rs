//! The refresh keeper: refreshes each OAuth connection before its access
//! token expires (and before its refresh token would lapse). Each
//! connection's refresh is a leased job (`refresh_jobs`, on the one jobs
//! primitive), so with several instances each connection is refreshed by
//! one of them; a killed instance's leases run out and another picks the
//! work up.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::credentials::{instance_id, refresh_locked_here, Refreshed};
use super::{refresh_jobs, ConnectorError};
use crate::jobs::queue;
use crate::state::Core;

const BATCH: i64 = 500;
const PARALLEL: usize = 64;

#[derive(Debug, Default, Clone, Copy)]
pub struct Pass {
    pub claimed: usize,
    pub refreshed: usize,
    pub needs_reauth: usize,
    pub retried: usize,
}

/// One pass: claim what is due, refresh it (in parallel), release.
pub async fn run_once(core: &Core) -> Result<Pass, ConnectorError> {
    let owner = instance_id();
    let jobs = queue::claim(
        &core.db,
        refresh_jobs::KIND,
        owner,
        refresh_jobs::LEASE_MS,
        BATCH,
        core.now(),
    )
    .await?;
    let ids: Vec<String> = jobs.into_iter().map(|j| j.subject).collect();
    let claimed = ids.clone();
    let mut pass = Pass {
        claimed: ids.len(),
        ..Default::default()
    };
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let mut set = tokio::task::JoinSet::new();
    for id in ids {
        let core = core.clone();
        let gate = gate.clone();
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let r = refresh_locked_here(&core, &id, owner).await;
            if let Err(e) = &r {
                if let Err(e) = super::credentials::refresh_errored(&core, &id, &e.to_string()).await {
                    tracing::warn!(connection = %id, error = %e, "could not record the failed refresh");
                }
            }
            r
        });
    }
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(Refreshed::Done)) => pass.refreshed += 1,
            Ok(Ok(Refreshed::NeedsReauth)) => pass.needs_reauth += 1,
            Ok(Ok(Refreshed::Retry(_))) => pass.retried += 1,
            // Logged where it happened; another instance holds the work.
            Ok(Ok(Refreshed::Fresh | Refreshed::LeaseLost)) => {}
            Ok(Err(e)) => {
                pass.retried += 1;
                tracing::warn!(error = %e, "refresh failed");
            }
            Err(e) => tracing::error!(error = %e, "refresh task failed"),
        }
    }
    // One statement releases the whole batch (a write per connection would
    // cost as much as the refresh's own).
    if let Err(e) = refresh_jobs::release(core, owner, &claimed).await {
        tracing::warn!(error = %e, "cannot release connection leases; they will expire");
    }
    Ok(pass)
}
