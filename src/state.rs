//! What every entry point (the server and each CLI command) shares: the
//! database, the keyring, the pepper, the password hasher and the clock.

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::keyring::{KeySource, Keyring, Place};
use crate::crypto::password::PasswordHasherConfig;
use crate::crypto::password_pool::PasswordPool;
use crate::crypto::{sealed, Pepper};
use crate::store::writer::Writer;
use crate::store::Db;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Keyring(#[from] crate::crypto::KeyringError),
    #[error(transparent)]
    Sealed(#[from] crate::crypto::sealed::SealedError),
    #[error(transparent)]
    Password(#[from] crate::crypto::password::PasswordError),
    #[error("the server pepper in the database is damaged")]
    BadPepper,
    #[error(transparent)]
    Catalog(#[from] crate::connectors::catalog::CatalogError),
}

/// Cheap to clone: everything lives behind one `Arc`.
#[derive(Clone, Debug)]
pub struct Core {
    inner: Arc<CoreInner>,
}

impl Core {
    /// Where clients reach rekey (OAuth callbacks, the issuer): the
    /// configured `public_url`, else the address this process's server
    /// is bound to, else `http://{listen}` (a CLI command).
    pub fn public_url(&self) -> String {
        self.bound_url
            .get()
            .cloned()
            .unwrap_or_else(|| self.config.public_url_configured())
    }

    /// Records where this process's server is reached, for the CLI
    /// commands that have no `public_url` of their own
    /// ([`Core::adopt_server_url`]).
    pub async fn record_server_url(&self, url: &str) -> Result<(), crate::store::StoreError> {
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        crate::exec!(
            &mut tx,
            "INSERT INTO server_url (id, public_url, started_at) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET public_url = excluded.public_url, started_at = excluded.started_at",
            url,
            now
        )?;
        tx.commit().await?;
        Ok(())
    }

    /// A CLI command without a configured `public_url` hands out links
    /// (`connection authorize`, a rotation's authorize URL) to the server
    /// that started last, where it listens: `http://{listen}` from this
    /// process's settings names 8080 when that server was started with
    /// `--listen` elsewhere, and the link would lead nowhere.
    pub async fn adopt_server_url(&self) -> Result<(), crate::store::StoreError> {
        if self.config.public_url.is_some() {
            return Ok(());
        }
        let url = crate::scalar_optional!(
            &mut self.db.read().await?,
            String,
            "SELECT public_url FROM server_url WHERE id = 1"
        )?;
        if let Some(u) = url {
            let _ = self.bound_url.set(u);
        }
        Ok(())
    }
}

impl std::ops::Deref for Core {
    type Target = CoreInner;
    fn deref(&self) -> &CoreInner {
        &self.inner
    }
}

#[derive(Debug)]
pub struct CoreInner {
    pub db: Db,
    /// Group commit for the hot write paths.
    pub writer: Writer,
    /// Who last used each issued secret (per secret), flushed in batches
    /// by the server.
    pub usage: crate::oauth::usage::UsageTracker,
    /// Token, key and client validations, safe across instances through
    /// the invalidation epoch (used only while the server polls it).
    pub cache: crate::oauth::cache::ValidationCache,
    pub keyring: Keyring,
    pub pepper: Pepper,
    /// argon2 runs only here: a bounded pool (see `password_pool`).
    pub passwords: PasswordPool,
    pub clock: Arc<dyn Clock>,
    /// Every outbound call to an address an admin typed goes through it.
    pub egress: crate::egress::Egress,
    pub config: Arc<Config>,
    /// Woken when work for the jobs loop was just queued in this process
    /// (a rotation or campaign started through the API): it runs at once
    /// instead of at its next `jobs_interval` tick. Other instances still
    /// find it on their tick.
    pub work_due: tokio::sync::Notify,
    /// The same for the deliveries loop (a delivery resumed, a backfill
    /// started). Apart from `work_due`: one `Notify` shared by two loops
    /// hands a wake to whichever waits, so a rotation's wake could go to
    /// the deliveries loop and wait for the next jobs tick.
    pub delivery_due: tokio::sync::Notify,
    /// Rotations this process runs at once (`rotation::run_due` takes a
    /// slot per claimed job; it frees as the rotation's run ends).
    pub rotation_slots: Arc<tokio::sync::Semaphore>,
    /// The public URL of this process's server, set once it is bound (so a
    /// server on port 0 hands out callback URLs that work); see
    /// [`Core::public_url`].
    pub bound_url: std::sync::OnceLock<String>,
}

/// Creates the data directory 0700 (it holds the database and the key
/// file), and takes group and other access away from one that has them.
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            // Best effort: a directory someone else owns is left as it is.
            if let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot make the data directory private");
            }
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

const PEPPER: Place<'static> = Place {
    table: "server",
    column: "pepper",
    row: "1",
};

impl Core {
    /// Opens the database (creating and migrating it when `migrate`), loads
    /// the keyring (generating a key file when none exists and `create_key`),
    /// and the pepper (generating it on first start).
    pub async fn open(config: Config, create_key: bool) -> Result<(Core, KeySource), CoreError> {
        if config.database_url.is_none() {
            private_dir(&config.data_dir).map_err(|e| {
                crate::config::ConfigError::Invalid(format!(
                    "cannot create data_dir {}: {e}",
                    config.data_dir.display()
                ))
            })?;
        }
        // A broken catalog fails start-up, naming the file and field.
        crate::connectors::catalog::catalog()?;
        let db = Db::connect(&config.database_url()).await?;
        db.migrate().await?;
        // A missing key file next to encrypted secrets is a lost key, not a
        // first start: a new key would open none of them, so none is made.
        let create_key = create_key && !sealed::any(&db).await?;
        let (keyring, source) =
            Keyring::load(config.master_key.as_deref(), &config.key_file(), create_key)?;
        let clock: Arc<dyn Clock> = crate::clock::from_env();
        let pepper = load_pepper(&db, &keyring, clock.now_ms()).await?;
        let policy = crate::egress::Policy::new(&config.egress_deny, &config.egress_allow)
            .map_err(|e| crate::config::ConfigError::Invalid(e.to_string()))?;
        let egress = crate::egress::Egress::new(policy, Some((db.clone(), clock.clone())))
            .with_budget(config.target_budget());
        let passwords = PasswordPool::new(
            PasswordHasherConfig::new(
                config.argon2_memory_kib,
                config.argon2_iterations,
                config.argon2_parallelism,
            )?,
            config.password_hash_workers(),
            config.password_hash_queue_len(),
        );
        Ok((
            Core {
                inner: Arc::new(CoreInner {
                    writer: Writer::spawn(db.clone()),
                    usage: Default::default(),
                    cache: Default::default(),
                    db,
                    keyring,
                    pepper,
                    passwords,
                    clock,
                    egress,
                    config: Arc::new(config),
                    work_due: tokio::sync::Notify::new(),
                    delivery_due: tokio::sync::Notify::new(),
                    rotation_slots: Arc::new(tokio::sync::Semaphore::new(
                        crate::rotation::limits::PARALLEL,
                    )),
                    bound_url: std::sync::OnceLock::new(),
                }),
            },
            source,
        ))
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// Reads the pepper, creating it if this is the first start. Concurrent first
/// starts (CLI and server) agree because the insert is "if absent" and
/// everyone re-reads.
async fn load_pepper(db: &Db, keyring: &Keyring, now: i64) -> Result<Pepper, CoreError> {
    let mut c = db.read().await?;
    if let Some(raw) = sealed::get(&mut c, keyring, PEPPER).await? {
        return Pepper::from_bytes(&raw).ok_or(CoreError::BadPepper);
    }
    drop(c);
    let mut tx = db.begin_write().await?;
    sealed::put_if_absent(&mut tx, keyring, PEPPER, Pepper::generate().as_bytes(), now).await?;
    let raw = sealed::get(&mut tx, keyring, PEPPER)
        .await?
        .ok_or(CoreError::BadPepper)?;
    tx.commit().await?;
    Pepper::from_bytes(&raw).ok_or(CoreError::BadPepper)
}
