//! The database handle over SQLite or PostgreSQL.
//!
//! One SQL text runs on both engines: SQLite binds `$N` placeholders by
//! number, so repositories write portable SQL once and the macros in
//! [`sql`](self::sql) compile the same body once per backend. Handlers never
//! see which engine is underneath.

pub mod epoch;
pub mod keyset;
pub mod sql;
pub mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction};

use epoch::{Epoch, Invalidation};
use sql::Arg;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Writer(#[from] writer::WriterError),
    #[error("unsupported database url (expected sqlite:PATH or postgres://…): {0}")]
    BadUrl(String),
    #[error("database file: {0}")]
    File(#[from] std::io::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// A database: SQLite (a writer pool and a read-only pool over one file) or
/// PostgreSQL (one pool; PostgreSQL handles concurrent writers itself).
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
        /// One writing transaction at a time within this process. SQLite
        /// allows one writer anyway; without the gate, waiting writers poll
        /// in SQLite's busy handler (sleeping up to 100 ms a try), which
        /// turns contention into tail latency. Other processes (the CLI)
        /// still meet the busy timeout.
        gate: std::sync::Arc<tokio::sync::Semaphore>,
        epoch: Arc<Epoch>,
    },
    Postgres {
        pool: PgPool,
        epoch: Arc<Epoch>,
        /// Chains the audit events this process's transactions staged.
        chainer: Arc<crate::audit::Chainer>,
    },
}

/// A writing transaction. Obtain it through [`Db::begin_write`] only.
/// The last field holds the audit events recorded in it, chained onto the
/// log as the transaction's last statements ([`crate::audit::record`]).
pub enum Tx {
    Sqlite(
        Transaction<'static, Sqlite>,
        tokio::sync::OwnedSemaphorePermit,
        Arc<Epoch>,
        Vec<crate::audit::AuditRow>,
    ),
    Postgres(
        Transaction<'static, Postgres>,
        Arc<Epoch>,
        Vec<crate::audit::AuditRow>,
        Arc<crate::audit::Chainer>,
    ),
}

/// A pooled connection for reads.
pub enum Conn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

/// A borrowed connection of either engine; what the query macros match on.
pub enum Ex<'a> {
    Sqlite(&'a mut SqliteConnection),
    Postgres(&'a mut PgConnection),
}

pub trait AsEx {
    fn ex(&mut self) -> Ex<'_>;
}

impl AsEx for Tx {
    fn ex(&mut self) -> Ex<'_> {
        match self {
            Tx::Sqlite(t, ..) => Ex::Sqlite(t),
            Tx::Postgres(t, ..) => Ex::Postgres(t),
        }
    }
}

impl AsEx for Conn {
    fn ex(&mut self) -> Ex<'_> {
        match self {
            Conn::Sqlite(c) => Ex::Sqlite(c),
            Conn::Postgres(c) => Ex::Postgres(c),
        }
    }
}

impl Tx {
    /// The audit events recorded in this transaction and not yet chained.
    pub(crate) fn audit_pending(&mut self) -> &mut Vec<crate::audit::AuditRow> {
        match self {
            Tx::Sqlite(.., pending) => pending,
            Tx::Postgres(_, _, pending, _) => pending,
        }
    }

    /// Commits. When the transaction changed something a validation cache
    /// may hold (a revocation, a deactivation, a new secret), this returns
    /// only once every instance has stopped trusting what it cached before
    /// ([`epoch`]): a revocation is in force everywhere when its call answers.
    pub async fn commit(self) -> Result<()> {
        self.commit_no_wait().await?.wait().await;
        Ok(())
    }

    /// Commits a transaction that only inserted (inserts fire no
    /// invalidation trigger), without the epoch check.
    async fn commit_inserts(mut self) -> Result<()> {
        let staged = crate::audit::chain_pending(&mut self).await?;
        match self {
            Tx::Sqlite(t, ..) => t.commit().await?,
            Tx::Postgres(t, _, _, chainer) => {
                t.commit().await?;
                if staged {
                    chainer.wake();
                }
            }
        }
        Ok(())
    }

    /// Commits and hands back the wait an invalidating commit owes, for
    /// callers that must not sleep in place (the group-commit writer) or
    /// that commit many times and wait once.
    pub async fn commit_no_wait(mut self) -> Result<Invalidation> {
        let staged = crate::audit::chain_pending(&mut self).await?;
        // BACKEND-SPECIFIC: on SQLite the triggers bump the counter and the
        // connection's update hook notes it (no statement of our own); on
        // PostgreSQL they mark the transaction and bump the counter at
        // commit (migration 0005_cache_epoch).
        let (invalidates, epoch) = match self {
            Tx::Sqlite(t, _permit, epoch, _) => {
                t.commit().await?;
                (epoch.sqlite_bumped.swap(false, Ordering::AcqRel), epoch)
            }
            Tx::Postgres(mut t, epoch, _, chainer) => {
                let marked = sqlx::query_scalar::<_, bool>(
                    "SELECT COALESCE(current_setting('rekey.invalidates', true), '') = '1'",
                )
                .fetch_one(&mut *t)
                .await?;
                t.commit().await?;
                if staged {
                    chainer.wake();
                }
                (marked, epoch)
            }
        };
        if invalidates {
            epoch.invalidate_local();
        }
        Ok(Invalidation(invalidates))
    }
}

/// The database holds sealed credentials and digests: only its owner may
/// read it. Creates the file 0600 when missing (SQLite gives its `-wal` and
/// `-shm` files the database file's mode) and takes group and other access
/// away from files an earlier version left readable.
#[cfg(unix)]
fn private_files(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if path.as_os_str().is_empty() || path.to_str() == Some(":memory:") {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(meta) = std::fs::metadata(&p) {
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn private_files(_: &Path) -> Result<()> {
    Ok(())
}

impl Db {
    /// Connects to `url` (`sqlite:PATH`, `sqlite://PATH` or `postgres://…`).
    /// SQLite files are created when missing.
    pub async fn connect(url: &str) -> Result<Db> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(32)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            let chainer = Arc::new(crate::audit::Chainer::default());
            let db = Db::Postgres {
                pool,
                epoch: Default::default(),
                chainer: chainer.clone(),
            };
            tokio::spawn(chainer.run(db.clone()));
            return Ok(db);
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| StoreError::BadUrl(url.to_string()))?;
        Self::open_sqlite(Path::new(path)).await
    }

    async fn open_sqlite(path: &Path) -> Result<Db> {
        private_files(path)?;
        // WAL lets the CLI and the server share the file; FULL because a
        // rotated credential must survive a power cut; the busy timeout turns
        // a concurrent writer into a short wait instead of an error.
        let base = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Pages read through a memory map of the first 32 MiB of the
            // file, pread beyond. The map matters: a read transaction after
            // another connection's write starts with a cold page cache, and
            // mapped pages cost nothing to read again (without it a campaign
            // over 1,000 Redis connections ran at 160 items/s, not 270).
            // Its size is bounded because every mapped page a read touches
            // stays in the process's resident set: with 256 MiB the server's
            // RSS grew with the database (266 MiB after a 1,000,000-record
            // outbox was read once, where the backfill itself needed 7 MiB).
            .pragma("mmap_size", "33554432");
        let epoch: Arc<Epoch> = Default::default();
        let hooked = epoch.clone();
        let write = SqlitePoolOptions::new()
            // One connection: the gate lets one writing transaction run at a
            // time anyway, and a connection whose page cache another
            // connection's write made stale starts cold (the pool hands its
            // connections out in turn, so with four every batch did).
            .max_connections(1)
            // No ping before each acquire (both pools): a connection to a
            // local file cannot go stale, and on SQLite the ping is a hop to
            // the connection's worker thread (a third of a read's cost under
            // load).
            .test_before_acquire(false)
            // Sees the invalidation triggers bump `cache_epoch`, so a commit
            // knows it must wait without a statement of its own.
            .after_connect(move |conn, _| {
                let epoch = hooked.clone();
                Box::pin(async move {
                    conn.lock_handle().await?.set_update_hook(move |change| {
                        if change.table == "cache_epoch" {
                            epoch.sqlite_bumped.store(true, Ordering::Release);
                        }
                    });
                    Ok(())
                })
            })
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(
                base.clone()
                    .create_if_missing(true)
                    // The one writer's cache stays warm across batches; a
                    // larger one keeps the index pages of the write-hot
                    // tables (People emails, outbox, tokens) in it.
                    .pragma("cache_size", "-65536"),
            )
            .await?;
        let read = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.read_only(true))
            .await?;
        Ok(Db::Sqlite {
            write,
            read,
            gate: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            epoch,
        })
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite { .. } => "sqlite",
            Db::Postgres { .. } => "postgres",
        }
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self {
            Db::Sqlite { .. } => &SQLITE_MIGRATIONS,
            Db::Postgres { .. } => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Db::Sqlite { write, .. } => SQLITE_MIGRATIONS.run(write).await?,
            Db::Postgres { pool, .. } => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// True when the database answers and every embedded migration is applied.
    pub async fn is_current(&self) -> Result<bool> {
        let latest = self.migrator().iter().map(|m| m.version).max().unwrap_or(0);
        let mut c = self.read().await?;
        let applied: Option<i64> = crate::scalar_optional!(
            &mut c,
            Option<i64>,
            "SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE"
        )?
        .flatten();
        Ok(applied == Some(latest))
    }

    /// Begins a writing transaction. On SQLite it is `BEGIN IMMEDIATE`: a
    /// deferred transaction that reads and then writes fails with "database
    /// is locked" when another writer got there first; taking the write lock
    /// up front makes it wait (busy timeout) instead.
    pub async fn begin_write(&self) -> Result<Tx> {
        Ok(match self {
            Db::Sqlite {
                write, gate, epoch, ..
            } => {
                let permit = gate
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?;
                // Begun on a task of its own, so it runs to its end whoever
                // stops waiting: sqlx's SQLite begin with a custom statement
                // awaits twice (the BEGIN, then a look at the handle), and a
                // caller cancelled between the two (a request whose client
                // hung up) left the one write connection inside a
                // transaction nothing could end — every later write failed
                // "begin_with at non-zero transaction depth" until restart.
                // A transaction begun for nobody is dropped with the task's
                // output, and rolled back.
                let pool = write.clone();
                let t = tokio::spawn(async move { pool.begin_with("BEGIN IMMEDIATE").await })
                    .await
                    .map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))??;
                epoch.sqlite_bumped.store(false, Ordering::Release);
                Tx::Sqlite(t, permit, epoch.clone(), Vec::new())
            }
            Db::Postgres {
                pool,
                epoch,
                chainer,
            } => Tx::Postgres(
                pool.begin().await?,
                epoch.clone(),
                Vec::new(),
                chainer.clone(),
            ),
        })
    }

    /// Inserts groups of rows (`INSERT INTO t (a, b) VALUES` prefix, column
    /// count, rows) as one write transaction, for batches of inserts only
    /// (they fire no invalidation trigger, so no epoch check is owed).
    ///
    /// BACKEND-SPECIFIC: on SQLite the whole transaction, `BEGIN IMMEDIATE`
    /// to `COMMIT`, goes to the connection's worker thread as one statement
    /// list: one hop instead of four, and under load each hop waits for a
    /// core (measured: ~350 µs a hop with both cores busy). PostgreSQL takes
    /// no statement list with binds, so there it is an ordinary transaction.
    pub async fn insert_rows(&self, groups: &[(&str, usize, Vec<&[Arg]>)]) -> Result<()> {
        match self {
            Db::Sqlite { write, gate, .. } => {
                let _permit = gate
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?;
                let mut script = String::from("BEGIN IMMEDIATE;");
                let mut args: Vec<&Arg> = Vec::new();
                for (prefix, cols, rows) in groups {
                    for chunk in rows.chunks(writer::CHUNK) {
                        script.push_str(prefix);
                        script.push(' ');
                        script.push_str(&sql::placeholders_from(
                            args.len() + 1,
                            chunk.len(),
                            *cols,
                        ));
                        script.push(';');
                        args.extend(chunk.iter().flat_map(|r| r.iter()));
                    }
                }
                script.push_str("COMMIT;");
                let mut conn = write.acquire().await?;
                // Kept prepared: one list per batch size, and sqlx's statement
                // cache is bounded (its oldest entries go).
                let mut q = sqlx::query(&script);
                for a in args {
                    q = sql::bind_sqlite(q, a);
                }
                if let Err(e) = q.execute(&mut *conn).await {
                    // The list may have stopped inside the transaction: end
                    // it before the connection goes back to the pool. "No
                    // transaction" means BEGIN itself failed or SQLite rolled
                    // back already; anything else, and the connection goes.
                    if let Err(r) = sqlx::query("ROLLBACK").execute(&mut *conn).await {
                        if !r.to_string().contains("no transaction is active") {
                            let _ = conn.detach();
                        }
                    }
                    return Err(e.into());
                }
                Ok(())
            }
            Db::Postgres { .. } => {
                let mut tx = self.begin_write().await?;
                writer::insert_groups(&mut tx, groups).await?;
                // Inserts fire no invalidation trigger: no epoch check owed.
                tx.commit_inserts().await
            }
        }
    }

    /// A connection for reads (the read-only pool on SQLite).
    pub async fn read(&self) -> Result<Conn> {
        Ok(match self {
            Db::Sqlite { read, .. } => Conn::Sqlite(read.acquire().await?),
            Db::Postgres { pool, .. } => Conn::Postgres(pool.acquire().await?),
        })
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite { write, read, .. } => {
                read.close().await;
                write.close().await;
            }
            Db::Postgres { pool, chainer, .. } => {
                // What this process staged goes on the chain before it
                // lets go (a CLI command's events, chained at once).
                if chainer.has_staged() {
                    if let Err(e) = crate::audit::chain_now(self).await {
                        tracing::warn!(error = %e, "chaining staged audit events at close failed; another instance chains them");
                    }
                }
                pool.close().await
            }
        }
    }

    /// True once [`close`](Self::close) has run.
    pub fn is_closed(&self) -> bool {
        match self {
            Db::Sqlite { write, .. } => write.is_closed(),
            Db::Postgres { pool, .. } => pool.is_closed(),
        }
    }

    /// This process's view of the invalidation epoch.
    pub fn epoch(&self) -> &Epoch {
        match self {
            Db::Sqlite { epoch, .. } | Db::Postgres { epoch, .. } => epoch,
        }
    }

    /// Reads the invalidation counter once and records it ([`epoch`]).
    pub async fn poll_epoch(&self) -> Result<()> {
        let started = std::time::Instant::now();
        let mut c = self.read().await?;
        let v: i64 =
            crate::scalar_optional!(&mut c, i64, "SELECT value FROM cache_epoch WHERE id = 1")?
                .unwrap_or(0);
        self.epoch().observe(u64::try_from(v).unwrap_or(0), started);
        Ok(())
    }
}

/// True when `e` is a unique-constraint violation (a duplicate name, slug or email).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// A fresh identifier: a ULID, sortable by creation time.
pub fn new_id() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write transaction whose caller is cancelled while it begins (a
    /// request whose client hung up) must leave the one write connection
    /// usable. sqlx's SQLite begin with a custom statement awaits twice;
    /// cancelled between the two, it left the connection inside a
    /// transaction nothing could end, and every later write failed
    /// "attempted to call begin_with at non-zero transaction depth" until
    /// the server restarted (CI: a provider whose sender was killed
    /// mid-batch answered 500 to everything after).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_begin_cancelled_midway_leaves_the_writer_usable() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite:{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        for i in 0..3_000u64 {
            // Cancelled at a different point each time: polled a few times
            // (the worker thread runs the BEGIN meanwhile), then dropped —
            // before the gate, during the BEGIN, or between it and the
            // check after it.
            let mut begin = Box::pin(db.begin_write());
            for _ in 0..(i % 12) {
                if futures::poll!(begin.as_mut()).is_ready() {
                    break;
                }
                std::thread::sleep(Duration::from_micros(i % 7 * 5));
                tokio::task::yield_now().await;
            }
            drop(begin);
            let tx = tokio::time::timeout(Duration::from_secs(10), db.begin_write())
                .await
                .unwrap_or_else(|_| panic!("attempt {i}: the writer hangs"))
                .unwrap_or_else(|e| panic!("attempt {i}: the writer is wedged: {e}"));
            drop(tx);
        }
    }
}
