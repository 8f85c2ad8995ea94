//! The authorization server: clients (applications and machine clients),
//! the authorization request, one file per grant, revocation,
//! introspection, authorizations and their statuses, and the guard that
//! authenticates platform API calls.

pub mod access_keys;
pub mod authorizations;
pub mod authorize;
pub mod cache;
pub mod client_auth;
pub mod clients;
pub mod grants;
pub mod guard;
pub mod introspect;
pub mod overlap;
pub mod revoke;
pub mod tokens;
pub mod usage;

use crate::identity::{IdentityError, Permission};
use crate::store::StoreError;

pub use overlap::{previous_held, refuse_live_previous, Overlap};

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidClient(String),
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    UnauthorizedClient(String),
    #[error("{0}")]
    UnsupportedGrantType(String),
    #[error("{0}")]
    InvalidScope(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sealed(#[from] crate::crypto::sealed::SealedError),
}

impl From<sqlx::Error> for OAuthError {
    fn from(e: sqlx::Error) -> Self {
        OAuthError::Store(e.into())
    }
}

impl OAuthError {
    /// The RFC 6749 error code.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient(_) => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType(_) => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::NotFound(_) => "not_found",
            OAuthError::Conflict(_) => "conflict",
            OAuthError::Identity(_) => "invalid_request",
            OAuthError::Store(_) | OAuthError::Sealed(_) => "server_error",
        }
    }
}

/// The scope a grant or token confers now: the least of what it was given,
/// what its application may have now, and (for tokens acting for a user)
/// the user's permission now. An application whose scope shrinks takes its
/// existing grants down with it.
pub fn effective_scope(given: &str, client: &str, user: Option<&str>) -> Option<Permission> {
    let mut s: Permission = given.parse().ok()?;
    s = s.cap(client.parse().ok()?);
    if let Some(u) = user {
        s = s.cap(u.parse().ok()?);
    }
    Some(s)
}

/// Parses a scope as the API speaks it: `read` or `read_write`.
pub fn parse_scope(s: &str) -> Result<Permission, OAuthError> {
    s.trim().parse().map_err(|_| {
        OAuthError::InvalidScope(format!(
            "scope must be read or read_write, not {:?}",
            s.trim()
        ))
    })
}
