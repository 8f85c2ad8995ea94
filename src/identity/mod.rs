//! Orgs, users, operators, permissions and admin sessions.

pub mod operators;
pub mod orgs;
pub mod sessions;
pub mod throttle;
pub mod users;

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("invalid credentials")]
    BadCredentials,
    #[error("too many failed attempts; try again later")]
    Throttled { retry_after_secs: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sealed(#[from] crate::crypto::sealed::SealedError),
    #[error(transparent)]
    Password(#[from] crate::crypto::password::PasswordError),
    /// Every password-hashing place is taken; answered `503` + `Retry-After`.
    #[error(transparent)]
    Busy(#[from] crate::crypto::password_pool::PoolBusy),
}

impl From<sqlx::Error> for IdentityError {
    fn from(e: sqlx::Error) -> Self {
        IdentityError::Store(e.into())
    }
}

/// What a user (and so any token acting for them) may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Read,
    ReadWrite,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::ReadWrite => "read_write",
        }
    }

    /// The lesser of two permissions.
    pub fn cap(self, other: Permission) -> Permission {
        self.min(other)
    }
}

impl std::str::FromStr for Permission {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "read" => Ok(Permission::Read),
            "read_write" => Ok(Permission::ReadWrite),
            other => Err(IdentityError::Invalid(format!(
                "permission must be read or read_write, not {other:?}"
            ))),
        }
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Trims and lower-cases an email and checks it is plausible
/// (one `@`, a non-empty local part, a dotted domain, no spaces).
pub fn normalize_email(raw: &str) -> Result<String, IdentityError> {
    let e = raw.trim().to_lowercase();
    let bad = || IdentityError::Invalid(format!("{:?} is not a valid email address", raw.trim()));
    let (local, domain) = e.split_once('@').ok_or_else(bad)?;
    let ok = !local.is_empty()
        && local.len() <= 64
        && e.len() <= 254
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !e
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',' || c == '<' || c == '>');
    if ok {
        Ok(e)
    } else {
        Err(bad())
    }
}

/// Names users type (slugs, app, key, client and connection names): 1–64
/// characters of letters, digits, `-`, `_`, `.` and spaces, not blank.
pub fn validate_name(what: &str, name: &str) -> Result<String, IdentityError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 64 {
        return Err(IdentityError::Invalid(format!(
            "{what} must be 1 to 64 characters"
        )));
    }
    if !n
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '))
    {
        return Err(IdentityError::Invalid(format!(
            "{what} may hold letters, digits, spaces, '-', '_' and '.' only"
        )));
    }
    Ok(n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email("  Ann@Example.COM ").unwrap(),
            "ann@example.com"
        );
        for bad in [
            "", "ann", "ann@", "@x.io", "a@b", "a b@x.io", "a@@x.io", "a@x..io",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn permission_cap() {
        assert_eq!(
            Permission::ReadWrite.cap(Permission::Read),
            Permission::Read
        );
        assert_eq!(
            "read_write".parse::<Permission>().unwrap(),
            Permission::ReadWrite
        );
        assert!("admin".parse::<Permission>().is_err());
    }
}
