//! The refresh keeper's jobs (`crate::jobs::queue`, kind `refresh`): one
//! per OAuth connection, id `refresh-<connection id>`, due when the
//! connection's tokens are (the later of `refresh_due_at` and a failure's
//! `next_attempt_at`). Its lease is the one lock on a connection's refresh:
//! the keeper takes it by claiming due jobs, an on-demand refresh (a read of
//! stale credentials, `connection refresh`) by [`lock`] — so a rotating
//! refresh token is never spent twice, by one instance or several.

use super::ConnectorError;
use crate::jobs::queue::{self, Standing};
use crate::state::Core;
use crate::store::Tx;

pub const KIND: &str = "refresh";
/// How long a refresh may hold the lock before another may take it.
pub const LEASE_MS: i64 = 60_000;
/// Due "never": a connection with nothing to refresh.
const NEVER: i64 = i64::MAX / 4;

fn job_id(connection_id: &str) -> String {
    format!("refresh-{connection_id}")
}

fn standing<'a>(job_id: &'a str, connection_id: &'a str) -> Standing<'a> {
    Standing {
        id: job_id,
        kind: KIND,
        subject: connection_id,
        step: "refresh",
        host: None,
    }
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
    let id = job_id(connection_id);
    queue::schedule_standing(tx, &standing(&id, connection_id), due.unwrap_or(NEVER), now).await?;
    Ok(())
}

/// Takes the refresh lock of a connection (or renews our own), whether or
/// not it is due. True when we hold it.
pub async fn lock(core: &Core, connection_id: &str, owner: &str) -> Result<bool, ConnectorError> {
    let id = job_id(connection_id);
    Ok(queue::take_standing(
        &core.db,
        &standing(&id, connection_id),
        owner,
        LEASE_MS,
        NEVER,
        core.now(),
    )
    .await?)
}

/// Right before an action at the provider: renews `owner`'s lock for a
/// whole lease, or says it was lost (an instance that stalled past its
/// lease, whose work another has taken over, must do nothing more).
pub async fn hold(core: &Core, connection_id: &str, owner: &str) -> Result<bool, ConnectorError> {
    Ok(queue::heartbeat(
        &core.db,
        &job_id(connection_id),
        owner,
        LEASE_MS,
        core.now(),
    )
    .await?)
}

/// [`hold`] in the transaction that stores a refresh's result, so the
/// result is stored only by the lock's holder.
pub async fn hold_in(
    tx: &mut Tx,
    connection_id: &str,
    owner: &str,
    now: i64,
) -> Result<bool, ConnectorError> {
    Ok(queue::heartbeat_in(tx, &job_id(connection_id), owner, LEASE_MS, now).await?)
}

/// Gives the locks of `connection_ids` back, each job due again when its
/// connection next is (never, when it has nothing left to refresh).
pub async fn release(
    core: &Core,
    owner: &str,
    connection_ids: &[String],
) -> Result<(), ConnectorError> {
    queue::release_connection_refreshes(&core.db, KIND, owner, connection_ids, NEVER, core.now())
        .await?;
    Ok(())
}
