//! The refresh keeper: refreshes each OAuth connection before its access
//! token expires (and before its refresh token would lapse). Work is claimed
//! by lease in the database, so with several instances each connection is
//! refreshed by one of them; a killed instance's leases run out and another
//! picks the work up.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::credentials::{instance_id, refresh_locked, Refreshed};
use super::ConnectorError;
use crate::fetch_all;
use crate::state::Core;
use crate::store::sql::{exec_args, Arg};
use crate::store::Tx;

const LEASE_MS: i64 = 60_000;
const BATCH: i64 = 500;
const PARALLEL: usize = 64;

#[derive(sqlx::FromRow)]
struct Claimed {
    id: String,
}

/// Claims due connections for this instance.
async fn claim(core: &Core, owner: &str) -> Result<Vec<String>, ConnectorError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    // BACKEND-SPECIFIC: PostgreSQL skips rows another instance is claiming;
    // SQLite's write transaction is exclusive already.
    let sql = match &tx {
        Tx::Postgres(..) => {
            "UPDATE connections SET lease_owner = $1, lease_until = $2 WHERE id IN (
               SELECT id FROM connections
               WHERE has_credentials = TRUE AND auth = 'oauth2' AND status IN ('connected', 'error')
                 AND refresh_due_at <= $3 AND (next_attempt_at IS NULL OR next_attempt_at <= $3)
                 AND (lease_until IS NULL OR lease_until < $3)
               ORDER BY refresh_due_at LIMIT $4 FOR UPDATE SKIP LOCKED)
             RETURNING id"
        }
        Tx::Sqlite(..) => {
            "UPDATE connections SET lease_owner = $1, lease_until = $2 WHERE id IN (
               SELECT id FROM connections
               WHERE has_credentials = TRUE AND auth = 'oauth2' AND status IN ('connected', 'error')
                 AND refresh_due_at <= $3 AND (next_attempt_at IS NULL OR next_attempt_at <= $3)
                 AND (lease_until IS NULL OR lease_until < $3)
               ORDER BY refresh_due_at LIMIT $4)
             RETURNING id"
        }
    };
    let rows = fetch_all!(&mut tx, Claimed, sql, owner, now + LEASE_MS, now, BATCH)?;
    tx.commit().await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

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
    let ids = claim(core, owner).await?;
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
            refresh_locked(&core, &id, false).await
        });
    }
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(Refreshed::Done)) => pass.refreshed += 1,
            Ok(Ok(Refreshed::NeedsReauth)) => pass.needs_reauth += 1,
            Ok(Ok(Refreshed::Retry(_))) => pass.retried += 1,
            Ok(Ok(Refreshed::Fresh)) => {}
            Ok(Err(e)) => {
                pass.retried += 1;
                tracing::warn!(error = %e, "refresh failed");
            }
            Err(e) => tracing::error!(error = %e, "refresh task failed"),
        }
    }
    // One statement releases the whole batch (a write per connection would
    // cost as much as the refresh's own).
    if let Err(e) = release_all(core, owner, &claimed).await {
        tracing::warn!(error = %e, "cannot release connection leases; they will expire");
    }
    Ok(pass)
}

async fn release_all(core: &Core, owner: &str, ids: &[String]) -> Result<(), ConnectorError> {
    for chunk in ids.chunks(500) {
        let sql = format!(
            "UPDATE connections SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1 AND id IN ({})",
            (2..chunk.len() + 2).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
        );
        let mut args = vec![Arg::Text(owner.to_string())];
        args.extend(chunk.iter().map(|id| Arg::Text(id.clone())));
        let mut tx = core.db.begin_write().await?;
        exec_args(&mut tx, &sql, args).await?;
        tx.commit().await?;
    }
    Ok(())
}
