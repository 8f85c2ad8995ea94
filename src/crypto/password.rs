//! Human passwords: argon2id. Only passwords use a slow hash; issued secrets
//! are 256-bit random and use the keyed digest in [`super::token`].

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use rand::RngCore;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("password hashing failed")]
    Hash,
    #[error("password must be at least {0} characters")]
    TooShort(usize),
}

pub const MIN_LENGTH: usize = 12;

#[derive(Clone)]
pub struct PasswordHasherConfig {
    argon: Argon2<'static>,
    /// A hash of a random password, verified against when an account does not
    /// exist so that a failed login takes the same time either way. Made on
    /// first use, so start-up does not pay for an argon2 hash.
    dummy: std::sync::Arc<std::sync::OnceLock<String>>,
}

impl std::fmt::Debug for PasswordHasherConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHasher")
    }
}

impl PasswordHasherConfig {
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, PasswordError> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| PasswordError::Params(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        Ok(PasswordHasherConfig {
            argon,
            dummy: Default::default(),
        })
    }

    fn hash_unchecked(&self, password: &str) -> Result<String, PasswordError> {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        self.argon
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|_| PasswordError::Hash)
    }

    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        if password.chars().count() < MIN_LENGTH {
            return Err(PasswordError::TooShort(MIN_LENGTH));
        }
        self.hash_unchecked(password)
    }

    /// Verifies against the stored hash, or against a dummy hash when there is
    /// no account, so both cases cost the same.
    pub fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let dummy;
        let target = match stored {
            Some(s) => s,
            None => {
                dummy = self
                    .dummy
                    .get_or_init(|| self.hash_unchecked(&generate()).unwrap_or_default());
                dummy.as_str()
            }
        };
        let Ok(parsed) = PasswordHash::new(target) else {
            return false;
        };
        let ok = self
            .argon
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && stored.is_some()
    }
}

/// A strong generated password (192 random bits, base64url).
pub fn generate() -> String {
    let mut raw = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    B64URL.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = PasswordHasherConfig::new(1024, 1, 1).unwrap();
        let stored = h.hash("correct horse battery").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(h.verify("correct horse battery", Some(&stored)));
        assert!(!h.verify("wrong password!!", Some(&stored)));
        assert!(!h.verify("correct horse battery", None));
        assert!(matches!(h.hash("short"), Err(PasswordError::TooShort(_))));
    }
}
