//! Deliveries seen across connections, one query each: those waiting on a
//! person (the console's "What needs you") and, per connector kind, how
//! many deliver (the public status page). Reads only.

use serde::Serialize;

use super::state::State;
use super::SyncError;
use crate::fetch_all;
use crate::store::Db;

/// A delivery a person must act on: its connection waits for
/// re-authorization, or the receiver refused a batch (parked).
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct Waiting {
    pub org_id: String,
    pub connection: String,
    pub kind: String,
    pub state: String,
    pub last_error: Option<String>,
    pub parked_from: Option<i64>,
    pub parked_to: Option<i64>,
}

/// Deliveries in `paused_auth` or holding a parked batch, of `org_id` (or
/// every org), oldest pause first.
pub async fn needing_person(
    db: &Db,
    org_id: Option<&str>,
    limit: i64,
) -> Result<Vec<Waiting>, SyncError> {
    let mut c = db.read().await?;
    Ok(fetch_all!(
        &mut c,
        Waiting,
        "SELECT d.org_id, c.name AS connection, c.kind, d.state, d.last_error, d.parked_from, d.parked_to
         FROM deliveries d JOIN connections c ON c.id = d.connection_id
         WHERE (d.state = $1 OR d.parked_from IS NOT NULL) AND ($2 IS NULL OR d.org_id = $2)
         ORDER BY d.paused_at, c.name
         LIMIT $3",
        State::PausedAuth.as_str(),
        org_id,
        limit
    )?)
}

/// One connector kind's deliveries: how many are enabled and how many of
/// them deliver (`running`, `caught_up` or `backfilling`). Counts only: no
/// org, no name.
#[derive(sqlx::FromRow, Serialize, Debug, Clone)]
pub struct KindDelivery {
    pub kind: String,
    pub deliveries: i64,
    pub delivering: i64,
}

pub async fn by_kind(db: &Db) -> Result<Vec<KindDelivery>, SyncError> {
    let mut c = db.read().await?;
    Ok(fetch_all!(
        &mut c,
        KindDelivery,
        "SELECT c.kind,
                COUNT(*) AS deliveries,
                SUM(CASE WHEN d.state IN ($1, $2, $3) THEN 1 ELSE 0 END) AS delivering
         FROM deliveries d JOIN connections c ON c.id = d.connection_id
         GROUP BY c.kind ORDER BY c.kind",
        State::Running.as_str(),
        State::CaughtUp.as_str(),
        State::Backfilling.as_str()
    )?)
}
