//! Group commit for the hot write paths (token issuance, refresh rotation).
//!
//! One writer task drains the queued jobs of concurrent requests into one
//! transaction, each job inside its own savepoint (so one failed job does
//! not undo the others), commits once, and only then answers every job. A
//! request is never answered before its write is durable; the per-commit
//! fsync is shared by the whole batch.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::{mpsc, oneshot};

use super::{Db, StoreError, Tx};
use crate::exec;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a job leaves behind once it ran: whether to keep its writes, and
/// how to answer once the batch's commit is known.
type Completion = (bool, Box<dyn FnOnce(Result<(), String>) + Send>);
type JobFn = Box<dyn for<'a> FnOnce(&'a mut Tx) -> BoxFuture<'a, Completion> + Send>;

struct Job {
    run: JobFn,
    /// Run inside its own savepoint. Jobs that are one statement (an
    /// INSERT of a fresh token) skip it: a statement is atomic, and one
    /// that fails breaks the batch anyway.
    guarded: bool,
}

/// One or more writer lanes. SQLite has one writer at a time anyway, so it
/// gets one lane; PostgreSQL takes concurrent writers, and a job there is
/// several round trips, so one lane would cap throughput at one job per
/// round-trip chain: it gets several lanes, each batching on its own
/// connection, and row locks keep the compare-and-sets exact across lanes.
#[derive(Clone, Debug)]
pub struct Writer {
    lanes: std::sync::Arc<Vec<mpsc::Sender<Job>>>,
    next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("the writer is shut down")]
    Closed,
    #[error("commit failed: {0}")]
    Commit(String),
}

/// Most jobs one transaction takes; bounds the latency one batch adds.
const MAX_BATCH: usize = 256;

impl Writer {
    /// Spawns the writer task on the current runtime.
    pub fn spawn(db: Db) -> Writer {
        let n = match db {
            Db::Sqlite { .. } => 1,
            Db::Postgres(_) => 8,
        };
        let mut lanes = Vec::with_capacity(n);
        for _ in 0..n {
            let (queue, rx) = mpsc::channel::<Job>(4096);
            tokio::spawn(run(db.clone(), rx));
            lanes.push(queue);
        }
        Writer {
            lanes: std::sync::Arc::new(lanes),
            next: Default::default(),
        }
    }

    /// Runs `f` in the next group transaction. `Ok` keeps its writes, `Err`
    /// rolls them back to its savepoint; either way the answer comes after
    /// the commit.
    pub async fn run<T, E, F>(&self, f: F) -> Result<Result<T, E>, WriterError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: for<'a> FnOnce(&'a mut Tx) -> BoxFuture<'a, Result<T, E>> + Send + 'static,
    {
        self.submit(f, true).await
    }

    /// Like [`run`](Self::run) for a job that is a single statement: no
    /// savepoint round trips. If it fails, the whole batch fails.
    pub async fn run_single<T, E, F>(&self, f: F) -> Result<Result<T, E>, WriterError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: for<'a> FnOnce(&'a mut Tx) -> BoxFuture<'a, Result<T, E>> + Send + 'static,
    {
        self.submit(f, false).await
    }

    async fn submit<T, E, F>(&self, f: F, guarded: bool) -> Result<Result<T, E>, WriterError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: for<'a> FnOnce(&'a mut Tx) -> BoxFuture<'a, Result<T, E>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<Result<T, E>, WriterError>>();
        let run: JobFn = Box::new(move |t: &mut Tx| {
            Box::pin(async move {
                let result = f(t).await;
                let keep = result.is_ok();
                let done: Box<dyn FnOnce(Result<(), String>) + Send> = Box::new(move |commit| {
                    let _ = tx.send(match commit {
                        Ok(()) => Ok(result),
                        Err(e) => Err(WriterError::Commit(e)),
                    });
                });
                (keep, done)
            })
        });
        let job = Job { run, guarded };
        let lane = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.lanes.len();
        self.lanes[lane]
            .send(job)
            .await
            .map_err(|_| WriterError::Closed)?;
        rx.await.map_err(|_| WriterError::Closed)?
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut tx = match db.begin_write().await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "group commit: cannot begin");
                drop(batch);
                continue;
            }
        };
        let mut done = Vec::with_capacity(batch.len());
        let mut broken: Option<String> = None;
        for job in batch {
            if broken.is_some() {
                // The transaction is unusable: dropping the job drops its
                // answer channel, and its caller gets an error.
                drop(job);
                continue;
            }
            if !job.guarded {
                let (keep, d) = (job.run)(&mut tx).await;
                if !keep {
                    broken = Some("a single-statement job failed".into());
                }
                done.push(d);
                continue;
            }
            if let Err(e) = exec!(&mut tx, "SAVEPOINT job") {
                broken = Some(e.to_string());
                drop(job);
                continue;
            }
            let (keep, d) = (job.run)(&mut tx).await;
            let end = if keep {
                exec!(&mut tx, "RELEASE SAVEPOINT job")
            } else {
                match exec!(&mut tx, "ROLLBACK TO SAVEPOINT job") {
                    Ok(_) => exec!(&mut tx, "RELEASE SAVEPOINT job"),
                    Err(e) => Err(e),
                }
            };
            if let Err(e) = end {
                broken = Some(e.to_string());
            }
            done.push(d);
        }
        let commit = match broken {
            Some(e) => Err(e),
            None => tx.commit().await.map_err(|e: StoreError| e.to_string()),
        };
        if let Err(e) = &commit {
            tracing::error!(error = %e, "group commit failed");
        }
        for d in done {
            d(commit.clone());
        }
    }
}
