//! Delivery and backfill: the org's outbox (every People change, in
//! sequence order) carried to the connections that receive it.
//!
//! - [`outbox`]: reading windows of it, its head, retention and compaction.
//! - [`delivery`]: a connection's delivery — its cursor (the last sequence
//!   delivered), its [`State`], enabling, pausing, resuming, status;
//!   statuses are read a page at a time (`statuses`), in a fixed number of
//!   queries whatever the page's size.
//! - [`run`]: the work, on the one jobs primitive: a standing job per
//!   delivery (`delivery:<id>`) and one per backfill (`backfill:<id>`),
//!   claimed by lease and capped per target host, so instances share it and
//!   a killed one's work is taken over at its cursor.
//! - [`overview`]: deliveries across connections (waiting on a person, per
//!   connector kind), for the console and the status page.
//! - [`backfill`]: replaying a window of the outbox on demand, with progress.
//! - [`target`]: what a record becomes at each kind that receives it (one
//!   trait; `rekey`, `postgres`/`mysql`, `custom_rest`).
//!
//! Semantics: at least once, in sequence order per org. Every record carries
//! its idempotency key (org, sequence) to the target, which applies a record
//! only above the sequence it last applied for that email: a retried batch
//! never writes twice, and a replayed older state never overwrites a newer
//! one. Nothing is skipped: a batch that fails stays the next to send.

pub mod backfill;
pub mod delivery;
pub mod outbox;
pub mod overview;
pub mod run;
pub mod state;
mod statuses;
pub mod target;

pub use state::{Event, State};

use crate::connectors::ConnectorError;
use crate::store::StoreError;

/// How many records a batch holds unless the delivery says otherwise; the
/// receivers' own limits bound it (the People API takes 1000 a call).
pub const DEFAULT_BATCH: i64 = 500;
pub const MAX_BATCH: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    /// Refused because of the connection's or delivery's state; the
    /// message says what to do.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SyncError> for ConnectorError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Connector(c) => c,
            SyncError::Store(s) => ConnectorError::Store(s),
            SyncError::NotFound(m) => ConnectorError::NotFound(m),
            SyncError::Invalid(m) => ConnectorError::Invalid(m),
            SyncError::Refused(m) => ConnectorError::Refused(m),
        }
    }
}

impl From<sqlx::Error> for SyncError {
    fn from(e: sqlx::Error) -> Self {
        SyncError::Store(e.into())
    }
}
