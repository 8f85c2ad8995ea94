//! The refresh keeper's jobs (`crate::jobs::queue`, kind `refresh`): one
//! per OAuth connection, id `refresh-<connection id>`, due when the
//! connection's tokens are (the later of `refresh_due_at` and a failure's
//! `next_attempt_at`). Its lease is the one lock on a connection's refresh:
//! the keeper takes it by claiming due jobs, an on-demand refresh (a read of
//! stale credentials, `connection refresh`) by [`lock`] — so a rotating
//! refresh token is never spent twice, by one instance or several.

use super::ConnectorError;
use crate::exec;
use crate::state::Core;
use crate::store::sql::{exec_args, param_list, Arg};
use crate::store::Tx;

pub const KIND: &str = "refresh";
/// How long a refresh may hold the lock before another may take it.
pub const LEASE_MS: i64 = 60_000;
/// Due "never": a connection with nothing to refresh.
const NEVER: i64 = i64::MAX / 4;

fn job_id(connection_id: &str) -> String {
    format!("refresh-{connection_id}")
}

/// The connection's tokens are due at `due` (new tokens were stored):
/// creates its job or moves it, in the caller's transaction. A job held
/// right now keeps its lease; its release recomputes the time anyway.
pub async fn schedule(
    tx: &mut Tx,
    connection_id: &str,
    due: Option<i64>,
    now: i64,
) -> Result<(), ConnectorError> {
    exec!(
        tx,
        "INSERT INTO jobs (id, kind, subject, state, step, payload, attempts, max_attempts, next_run_at, created_at, updated_at)
         VALUES ($1, 'refresh', $2, 'queued', 'refresh', '{}', 0, 1, $3, $4, $4)
         ON CONFLICT (id) DO UPDATE SET next_run_at = excluded.next_run_at, updated_at = excluded.updated_at",
        job_id(connection_id),
        connection_id,
        due.unwrap_or(NEVER),
        now
    )?;
    Ok(())
}

/// Takes the refresh lock of a connection (or renews our own), whether or
/// not it is due. True when we hold it.
pub async fn lock(core: &Core, connection_id: &str, owner: &str) -> Result<bool, ConnectorError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let n = exec!(
        &mut tx,
        "INSERT INTO jobs (id, kind, subject, state, step, payload, attempts, max_attempts, next_run_at,
            lease_owner, lease_until, created_at, updated_at)
         VALUES ($1, 'refresh', $2, 'running', 'refresh', '{}', 0, 1, $3, $4, $5, $6, $6)
         ON CONFLICT (id) DO UPDATE SET state = 'running', lease_owner = excluded.lease_owner,
            lease_until = excluded.lease_until, updated_at = excluded.updated_at
         WHERE jobs.state <> 'running' OR jobs.lease_until < $6 OR jobs.lease_owner = excluded.lease_owner",
        job_id(connection_id),
        connection_id,
        NEVER,
        owner,
        now + LEASE_MS,
        now
    )?;
    tx.commit().await?;
    Ok(n == 1)
}

/// Gives the locks of `connection_ids` back, each job due again when its
/// connection next is (never, when it has nothing left to refresh).
pub async fn release(
    core: &Core,
    owner: &str,
    connection_ids: &[String],
) -> Result<(), ConnectorError> {
    for chunk in connection_ids.chunks(500) {
        let list = param_list(3, chunk.len());
        let sql = format!(
            "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL, updated_at = $2,
                next_run_at = COALESCE((
                    SELECT CASE WHEN c.next_attempt_at IS NOT NULL AND c.next_attempt_at > c.refresh_due_at
                                THEN c.next_attempt_at ELSE c.refresh_due_at END
                    FROM connections c
                    WHERE c.id = jobs.subject AND c.has_credentials = TRUE AND c.status IN ('connected', 'error')
                ), {NEVER})
             WHERE kind = 'refresh' AND lease_owner = $1 AND subject IN ({list})"
        );
        let mut args = vec![Arg::Text(owner.to_string()), Arg::Int(core.now())];
        args.extend(chunk.iter().map(|id| Arg::Text(id.clone())));
        let mut tx = core.db.begin_write().await?;
        exec_args(&mut tx, &sql, args).await?;
        tx.commit().await?;
    }
    Ok(())
}
