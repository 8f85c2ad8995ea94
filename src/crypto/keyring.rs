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
use std::sync::{Arc, Mutex, RwLock};

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
    #[error(
        "the key file {path} is missing, but the database holds encrypted secrets: restore it \
         from your backup (or set REKEY_MASTER_KEY). No new key was generated: it would open none of them"
    )]
    Lost { path: PathBuf },
    #[error(
        "the key file {path} is readable by group or others (mode {mode:o}): run chmod 600 {path} \
         and consider the keys in it exposed"
    )]
    Exposed { path: PathBuf, mode: u32 },
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
///
/// Loaded from a key file, it follows that file: `rekey keyring rotate
/// --generate --remove-old` run by the CLI rewrites it while servers run. A
/// seal checks the file's stamp first (one `stat`), so a server seals under
/// the key the CLI is re-encrypting to as soon as it is written, not under a
/// key about to be removed; an open that names an unknown key re-reads the
/// file before failing. Polling on a timer instead would leave a window in
/// which a server seals under the old key after the CLI has finished.
#[derive(Clone)]
pub struct Keyring {
    keys: Arc<RwLock<Arc<Vec<MasterKey>>>>,
    watch: Option<Arc<Watch>>,
}

/// The key file a keyring follows, and the stamp of the version it read.
struct Watch {
    path: PathBuf,
    stamp: Mutex<Option<Stamp>>,
}

/// What tells one version of the key file from the next: it is rewritten by
/// rename (a new inode), and its time and length change.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
        }
    }
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
        Ok(Keyring {
            keys: Arc::new(RwLock::new(Arc::new(parse_keys(list)?))),
            watch: None,
        })
    }

    /// Loads keys from `env_keys` when set, else from `key_file` (which the
    /// keyring then follows); when neither exists and `create` is true,
    /// generates a key into `key_file` (mode 0600). When it is missing and
    /// `create` is false, the error is [`KeyringError::Lost`]: the caller
    /// refuses creation only when secrets exist that a new key cannot open.
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
        let source = match fs::metadata(key_file) {
            Ok(_) => KeySource::File(key_file.to_path_buf()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !create {
                    return Err(KeyringError::Lost {
                        path: key_file.to_path_buf(),
                    });
                }
                if let Some(dir) = key_file.parent() {
                    crate::state::private_dir(dir).map_err(io)?;
                }
                write_key_file(key_file, &generate_key()).map_err(io)?;
                KeySource::Generated(key_file.to_path_buf())
            }
            Err(e) => return Err(io(e)),
        };
        let (keys, stamp) = read_key_file(key_file)?;
        let keyring = Keyring {
            keys: Arc::new(RwLock::new(Arc::new(keys))),
            watch: Some(Arc::new(Watch {
                path: key_file.to_path_buf(),
                stamp: Mutex::new(Some(stamp)),
            })),
        };
        Ok((keyring, source))
    }

    /// The keys as last read, newest first.
    fn current(&self) -> Arc<Vec<MasterKey>> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            // A panic while swapping an `Arc` leaves a whole value behind.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the followed key file when it changed since it was read;
    /// returns whether the keys changed. A file that no longer parses or
    /// has become readable by others is not taken: the keys stay as they
    /// were and the log says why (key ids only, never key material).
    fn follow_file(&self) -> bool {
        let Some(watch) = &self.watch else {
            return false;
        };
        let Ok(mut seen) = watch.stamp.lock() else {
            return false;
        };
        let Ok(meta) = fs::metadata(&watch.path) else {
            // Missing for a moment (or for good): keep the keys in memory.
            return false;
        };
        if *seen == Some(Stamp::of(&meta)) {
            return false;
        }
        match read_key_file(&watch.path) {
            Ok((keys, stamp)) => {
                *seen = Some(stamp);
                let ids: Vec<String> = keys.iter().map(|k| hex(&k.id)).collect();
                let mut slot = match self.keys.write() {
                    Ok(slot) => slot,
                    Err(poisoned) => poisoned.into_inner(),
                };
                *slot = Arc::new(keys);
                tracing::info!(path = %watch.path.display(), key_ids = ?ids, "key file changed: keyring re-read");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "key file changed but was not taken; keeping the keys in memory");
                false
            }
        }
    }
}

/// Reads and parses a key file, refusing one that group or others can read.
fn read_key_file(path: &Path) -> Result<(Vec<MasterKey>, Stamp), KeyringError> {
    let io = |source| KeyringError::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyringError::Exposed {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let text = std::io::read_to_string(file).map_err(io)?;
    Ok((parse_keys(&text)?, Stamp::of(&meta)))
}

/// Parses a comma- or newline-separated list of base64 keys, newest first.
fn parse_keys(list: &str) -> Result<Vec<MasterKey>, KeyringError> {
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
    Ok(keys)
}

impl Keyring {
    /// Key ids (hex), newest first.
    pub fn key_ids(&self) -> Vec<String> {
        self.current().iter().map(|k| hex(&k.id)).collect()
    }

    pub fn newest_id(&self) -> String {
        hex(&self.current()[0].id)
    }

    /// Seals under the newest key (of the key file as it is now, when the
    /// keyring follows one). The ciphertext names its key:
    /// [`Keyring::key_id_of`] is the id to store beside it.
    pub fn seal(&self, place: Place<'_>, plaintext: &[u8]) -> Vec<u8> {
        self.follow_file();
        let keys = self.current();
        let key = &keys[0];
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
        let mut keys = self.current();
        if !keys.iter().any(|k| k.id == id) && self.follow_file() {
            // Rotated by another process since this one read the file.
            keys = self.current();
        }
        let key = keys
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
        // `mode` applies only when the file is created: a stale temporary
        // file left with wider access must not pass it on.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
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
    fn follows_its_key_file_and_refuses_an_exposed_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (kr, source) = Keyring::load(None, &path, true).unwrap();
        assert_eq!(source, KeySource::Generated(path.clone()));
        let old_id = kr.newest_id();
        // another process puts a new key first and re-encrypts under it
        let new = generate_key();
        write_key_file(&path, &new).unwrap();
        let ct = Keyring::parse(&new).unwrap().seal(place("1"), b"x");
        assert_eq!(kr.open(place("1"), &ct).unwrap(), b"x");
        assert_ne!(kr.newest_id(), old_id);
        assert_eq!(
            Keyring::key_id_of(&kr.seal(place("1"), b"x")).unwrap(),
            kr.newest_id()
        );

        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            Keyring::load(None, &path, true),
            Err(KeyringError::Exposed { .. })
        ));
        fs::remove_file(&path).unwrap();
        assert!(matches!(
            Keyring::load(None, &path, false),
            Err(KeyringError::Lost { .. })
        ));
        assert!(!path.exists());
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
