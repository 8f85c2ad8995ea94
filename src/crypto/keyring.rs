//! Versioned master keys and AEAD with associated data.
//!
//! A ciphertext is `0x01 | key id (4 bytes) | nonce (24 bytes) | XChaCha20-Poly1305 output`.
//! The key id is a fingerprint of the key itself, so it stays stable however
//! the configured list is reordered. The associated data names the table,
//! column and row the ciphertext belongs to: moved to another row, it fails
//! to open.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

const FORMAT: u8 = 1;
const HEADER: usize = 1 + 4 + 24;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("master key {0} is not valid base64 of 32 bytes")]
    BadKey(usize),
    #[error("no master key configured")]
    Empty,
    #[error("cannot read or write the key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext was sealed with key {0}, which is not configured")]
    UnknownKey(String),
    #[error("ciphertext does not open (wrong key, or moved from another row)")]
    Open,
}

#[derive(Clone)]
struct MasterKey {
    id: [u8; 4],
    cipher: XChaCha20Poly1305,
}

impl MasterKey {
    fn new(raw: &[u8; 32]) -> Self {
        let fp = Sha256::new()
            .chain_update(b"rekey master key id\0")
            .chain_update(raw)
            .finalize();
        let mut id = [0u8; 4];
        id.copy_from_slice(&fp[..4]);
        MasterKey {
            id,
            cipher: XChaCha20Poly1305::new(raw.into()),
        }
    }
}

/// Where the ciphertext lives; becomes the associated data.
#[derive(Clone, Copy, Debug)]
pub struct Place<'a> {
    pub table: &'a str,
    pub column: &'a str,
    pub row: &'a str,
}

impl Place<'_> {
    fn aad(&self) -> Vec<u8> {
        format!("rekey\0{}\0{}\0{}", self.table, self.column, self.row).into_bytes()
    }
}

/// The configured master keys, newest first. Seals with the newest; opens with
/// whichever key the ciphertext names.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<MasterKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material; ids only.
        f.debug_struct("Keyring")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

/// How the keyring was obtained, for the start-up log.
#[derive(Debug, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    File(PathBuf),
    Generated(PathBuf),
}

impl Keyring {
    /// Parses a comma- or newline-separated list of base64 keys, newest first.
    pub fn parse(list: &str) -> Result<Keyring, KeyringError> {
        let mut keys = Vec::new();
        for (i, part) in list
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(|l| l.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .enumerate()
        {
            let raw = B64.decode(part).map_err(|_| KeyringError::BadKey(i + 1))?;
            let raw: [u8; 32] = raw.try_into().map_err(|_| KeyringError::BadKey(i + 1))?;
            keys.push(MasterKey::new(&raw));
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Keyring { keys })
    }

    /// Loads keys from `env_keys` when set, else from `key_file`; when neither
    /// exists and `create` is true, generates a key into `key_file` (mode 0600).
    pub fn load(
        env_keys: Option<&str>,
        key_file: &Path,
        create: bool,
    ) -> Result<(Keyring, KeySource), KeyringError> {
        if let Some(list) = env_keys.filter(|s| !s.trim().is_empty()) {
            return Ok((Self::parse(list)?, KeySource::Environment));
        }
        let io = |source| KeyringError::KeyFile {
            path: key_file.to_path_buf(),
            source,
        };
        match fs::read_to_string(key_file) {
            Ok(text) => Ok((Self::parse(&text)?, KeySource::File(key_file.to_path_buf()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                if let Some(dir) = key_file.parent() {
                    crate::state::private_dir(dir).map_err(io)?;
                }
                write_key_file(key_file, &generate_key()).map_err(io)?;
                let text = fs::read_to_string(key_file).map_err(io)?;
                Ok((
                    Self::parse(&text)?,
                    KeySource::Generated(key_file.to_path_buf()),
                ))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Key ids (hex), newest first.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| hex(&k.id)).collect()
    }

    pub fn newest_id(&self) -> String {
        hex(&self.keys[0].id)
    }

    pub fn seal(&self, place: Place<'_>, plaintext: &[u8]) -> Vec<u8> {
        let key = &self.keys[0];
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = place.aad();
        // Encryption only fails for messages beyond the cipher's length limit
        // (256 GiB), which no secret approaches.
        let body = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER + body.len());
        out.push(FORMAT);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out
    }

    pub fn open(&self, place: Place<'_>, ciphertext: &[u8]) -> Result<Vec<u8>, KeyringError> {
        if ciphertext.len() < HEADER + 16 || ciphertext[0] != FORMAT {
            return Err(KeyringError::Malformed);
        }
        let id = &ciphertext[1..5];
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| KeyringError::UnknownKey(hex(id)))?;
        let aad = place.aad();
        key.cipher
            .decrypt(
                XNonce::from_slice(&ciphertext[5..HEADER]),
                Payload {
                    msg: &ciphertext[HEADER..],
                    aad: &aad,
                },
            )
            .map_err(|_| KeyringError::Open)
    }

    /// The key id a ciphertext names, in hex.
    pub fn key_id_of(ciphertext: &[u8]) -> Option<String> {
        (ciphertext.len() >= 5).then(|| hex(&ciphertext[1..5]))
    }
}

/// A fresh master key, base64.
pub fn generate_key() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    B64.encode(raw)
}

/// Writes (or rewrites) a key file with mode 0600, keys newest first.
pub fn write_key_file(path: &Path, keys: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("key.tmp");
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        writeln!(
            f,
            "# rekey master keys, newest first. Keep this file secret and backed up."
        )?;
        writeln!(f, "{}", keys.trim())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(row: &str) -> Place<'_> {
        Place {
            table: "t",
            column: "c",
            row,
        }
    }

    #[test]
    fn round_trip_and_binding() {
        let kr = Keyring::parse(&generate_key()).unwrap();
        let ct = kr.seal(place("1"), b"secret");
        assert_eq!(kr.open(place("1"), &ct).unwrap(), b"secret");
        assert!(matches!(kr.open(place("2"), &ct), Err(KeyringError::Open)));
        let other = Place {
            table: "t",
            column: "other",
            row: "1",
        };
        assert!(kr.open(other, &ct).is_err());
    }

    #[test]
    fn old_keys_still_open_new_key_seals() {
        let old = generate_key();
        let new = generate_key();
        let kr_old = Keyring::parse(&old).unwrap();
        let ct = kr_old.seal(place("1"), b"x");
        let kr = Keyring::parse(&format!("{new},{old}")).unwrap();
        assert_eq!(kr.open(place("1"), &ct).unwrap(), b"x");
        let ct2 = kr.seal(place("1"), b"x");
        assert_eq!(Keyring::key_id_of(&ct2).unwrap(), kr.newest_id());
        assert_ne!(kr.newest_id(), kr_old.newest_id());
        let kr_new_only = Keyring::parse(&new).unwrap();
        assert!(matches!(
            kr_new_only.open(place("1"), &ct),
            Err(KeyringError::UnknownKey(_))
        ));
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(matches!(
            Keyring::parse("not base64!"),
            Err(KeyringError::BadKey(1))
        ));
        assert!(matches!(Keyring::parse(""), Err(KeyringError::Empty)));
    }
}
