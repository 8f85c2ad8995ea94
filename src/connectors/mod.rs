//! Outbound connections: the catalog of connector kinds, connections and
//! their status machine, the OAuth client flow, the refresh keeper, probes
//! and the credentials platform code reads.

pub mod actions;
pub mod aws;
pub mod catalog;
pub mod connections;
pub mod credentials;
pub mod drivers;
pub mod flow;
pub mod hosts;
pub mod keeper;
pub mod mint;
pub mod oauth_client;
pub mod probe;
pub mod provider_clients;
pub mod refresh_jobs;
pub mod service_keys;
pub mod session;
pub mod shapes;
pub mod slots;
pub mod template;

use crate::identity::IdentityError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The asker may not act on this (another org's flow, say).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} already exists")]
    Conflict(String),
    /// A change refused because of the connection's state (a setting that
    /// decides where a held credential goes); the message says what to do.
    #[error("{0}")]
    Refused(String),
    /// The credential failed its probe and was not stored.
    #[error("the connection test failed: {0}")]
    ProbeFailed(String),
    /// The provider refused (invalid_grant and the like).
    #[error("the provider refused: {0}")]
    Provider(String),
    /// The provider could not be reached or answered 5xx/429; retried.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sealed(#[from] crate::crypto::sealed::SealedError),
}

impl From<crate::rotation::RotationError> for ConnectorError {
    fn from(e: crate::rotation::RotationError) -> Self {
        use crate::rotation::RotationError as R;
        match e {
            R::Connector(c) => c,
            R::Store(s) => ConnectorError::Store(s),
            R::NotFound(m) => ConnectorError::NotFound(m),
            other => ConnectorError::Invalid(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for ConnectorError {
    fn from(e: sqlx::Error) -> Self {
        ConnectorError::Store(e.into())
    }
}
