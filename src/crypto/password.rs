//! Human passwords: argon2id. Only passwords use a slow hash; issued secrets
//! are 256-bit random and use the keyed digest in [`super::token`].

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;

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
    params: Params,
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

/// argon2's working memory, kept by the thread that hashes and reused for
/// every hash it runs. Allocating it per hash (as `argon2`'s own
/// `hash_password`/`verify_password` do) left the process holding hundreds
/// of MiB after a burst: glibc keeps freed blocks of that size in its
/// arenas. Reusing one buffer bounds argon2's memory to one buffer per
/// hashing thread.
#[derive(Default)]
pub struct Memory(Vec<Block>);

impl Memory {
    fn blocks(&mut self, n: usize) -> &mut [Block] {
        if self.0.len() < n {
            self.0.resize(n, Block::default());
        }
        &mut self.0[..n]
    }

    /// Overwrites what the last hash left (state derived from a password).
    fn wipe(&mut self) {
        self.0.iter_mut().for_each(|b| *b = Block::default());
    }
}

impl PasswordHasherConfig {
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, PasswordError> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| PasswordError::Params(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        Ok(PasswordHasherConfig {
            argon,
            params,
            dummy: Default::default(),
        })
    }

    fn hash_unchecked(&self, password: &str, mem: &mut Memory) -> Result<String, PasswordError> {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let mut salt_raw = [0u8; 64];
        let salt_bytes = salt
            .decode_b64(&mut salt_raw)
            .map_err(|_| PasswordError::Hash)?;
        let mut out = [0u8; 32];
        let r = self.argon.hash_password_into_with_memory(
            password.as_bytes(),
            salt_bytes,
            &mut out,
            mem.blocks(self.params.block_count()),
        );
        mem.wipe();
        r.map_err(|_| PasswordError::Hash)?;
        let hash = PasswordHash {
            algorithm: argon2::ARGON2ID_IDENT,
            version: Some(Version::V0x13.into()),
            params: (&self.params).try_into().map_err(|_| PasswordError::Hash)?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(|_| PasswordError::Hash)?),
        };
        Ok(hash.to_string())
    }

    pub fn hash(&self, password: &str, mem: &mut Memory) -> Result<String, PasswordError> {
        if password.chars().count() < MIN_LENGTH {
            return Err(PasswordError::TooShort(MIN_LENGTH));
        }
        self.hash_unchecked(password, mem)
    }

    /// Verifies against the stored hash, or against a dummy hash when there is
    /// no account, so both cases cost the same.
    pub fn verify(&self, password: &str, stored: Option<&str>, mem: &mut Memory) -> bool {
        let dummy;
        let target = match stored {
            Some(s) => s,
            None => {
                dummy = self
                    .dummy
                    .get_or_init(|| self.hash_unchecked(&generate(), mem).unwrap_or_default());
                dummy.as_str()
            }
        };
        let ok = self.verify_phc(password, target, mem).unwrap_or(false);
        ok && stored.is_some()
    }

    /// Recomputes a PHC-string hash with its own parameters (a stored hash
    /// keeps the cost it was made with) in `mem`, compared in constant time.
    fn verify_phc(&self, password: &str, phc: &str, mem: &mut Memory) -> Option<bool> {
        let parsed = PasswordHash::new(phc).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::V0x13,
        };
        let params = Params::try_from(&parsed).ok()?;
        let expected = parsed.hash?;
        let mut salt_raw = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt_raw).ok()?;
        let mut out = vec![0u8; expected.len()];
        let argon = Argon2::new(algorithm, version, params.clone());
        let r = argon.hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            mem.blocks(params.block_count()),
        );
        mem.wipe();
        r.ok()?;
        Some(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
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
        let mut m = Memory::default();
        let stored = h.hash("correct horse battery", &mut m).unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(h.verify("correct horse battery", Some(&stored), &mut m));
        assert!(!h.verify("wrong password!!", Some(&stored), &mut m));
        assert!(!h.verify("correct horse battery", None, &mut m));
        assert!(matches!(
            h.hash("short", &mut m),
            Err(PasswordError::TooShort(_))
        ));
        // hashes made by the argon2 crate's own API (and other costs) verify
        use argon2::password_hash::PasswordHasher;
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(2048, 2, 1, None).unwrap(),
        );
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let phc = other
            .hash_password(b"another password", &salt)
            .unwrap()
            .to_string();
        assert!(h.verify("another password", Some(&phc), &mut m));
        assert!(!h.verify("another passworx", Some(&phc), &mut m));
    }
}
