//! A held job's lease while its work runs: renewed in the background, and
//! checked right before every action at an outside system.
//!
//! The crash window this closes: an instance that stalls (SIGSTOP, a VM
//! freeze, swapping) past its lease while another instance takes the job
//! over must not act at the target when it wakes — rolling back, retiring
//! or applying on a rotation another instance already moved on would leave
//! the target holding a credential nothing stored opens. Renewal alone
//! cannot promise that (a stalled process renews nothing), so the holder
//! renews again *immediately before* each action ([`Lease::held`]); one
//! conditional update on the job row, so a lease taken over by another
//! claim answers false and the action is not taken. What remains is the
//! time between that update and the action itself, which is one local
//! step, not a step's whole run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::queue;
use crate::state::Core;
use crate::store::StoreError;

pub struct Lease {
    core: Core,
    job_id: String,
    token: String,
    lease_ms: i64,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Starts renewing `token`'s lease on `job_id` every third of
    /// `lease_ms` (real time) until dropped.
    pub fn hold(core: &Core, job_id: &str, token: &str, lease_ms: i64) -> Lease {
        let lost = Arc::new(AtomicBool::new(false));
        let every = Duration::from_millis(u64::try_from(lease_ms / 3).unwrap_or(1_000).max(100));
        let renewer = {
            let (core, id, token, lost) = (
                core.clone(),
                job_id.to_string(),
                token.to_string(),
                lost.clone(),
            );
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match queue::heartbeat(&core.db, &id, &token, lease_ms, core.now()).await {
                        Ok(true) => {}
                        Ok(false) => {
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        // A database hiccup is not a lost lease; the check
                        // before the next action decides.
                        Err(e) => tracing::warn!(job = %id, error = %e, "lease renewal failed"),
                    }
                }
            })
        };
        Lease {
            core: core.clone(),
            job_id: job_id.to_string(),
            token: token.to_string(),
            lease_ms,
            lost,
            renewer,
        }
    }

    /// Renews the lease now; false when another claim holds the job (or it
    /// ended): the caller must not act. Call it right before every action
    /// at an outside system.
    pub async fn held(&self) -> Result<bool, StoreError> {
        if self.lost.load(Ordering::SeqCst) {
            return Ok(false);
        }
        // Through the group-commit writer: the checks of many rotations
        // share a commit.
        let (id, token, ms, now) = (
            self.job_id.clone(),
            self.token.clone(),
            self.lease_ms,
            self.core.now(),
        );
        let ok = self
            .core
            .writer
            // Its only failures are the database's: no savepoint needed.
            .run_unguarded(move |tx| {
                Box::pin(async move { queue::heartbeat_in(tx, &id, &token, ms, now).await })
            })
            .await
            .map_err(StoreError::from)??;
        if !ok {
            self.lost.store(true, Ordering::SeqCst);
        }
        Ok(ok)
    }

    /// The claim's token: the owner every write of the job checks.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}
