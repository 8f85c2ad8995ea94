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

use super::sql::{exec_args, placeholders, Arg};
use super::{Db, StoreError, Tx};
use crate::exec;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a job leaves behind once it ran: whether to keep its writes, and
/// how to answer once the batch's commit is known.
type Completion = (bool, Box<dyn FnOnce(Result<(), String>) + Send>);
type RowAnswer = oneshot::Sender<Result<(), WriterError>>;

/// The single-row inserts of a batch, grouped by statement, and their answers.
#[derive(Default)]
struct RowGroups {
    groups: Vec<(&'static str, usize, Vec<Vec<Arg>>)>,
    answers: Vec<RowAnswer>,
}

impl RowGroups {
    fn push(&mut self, prefix: &'static str, cols: usize, row: Vec<Arg>, done: RowAnswer) {
        match self.groups.iter_mut().find(|(p, _, _)| *p == prefix) {
            Some((_, _, v)) => v.push(row),
            None => self.groups.push((prefix, cols, vec![row])),
        }
        self.answers.push(done);
    }

    /// The groups as [`Db::insert_rows`] and [`insert_groups`] take them.
    fn refs(&self) -> Vec<(&str, usize, Vec<&[Arg]>)> {
        self.groups
            .iter()
            .map(|(p, c, rows)| (*p, *c, rows.iter().map(Vec::as_slice).collect()))
            .collect()
    }

    fn answer(self, commit: &Result<(), String>) {
        for d in self.answers {
            let _ = d.send(commit.clone().map_err(WriterError::Commit));
        }
    }
}
type JobFn = Box<dyn for<'a> FnOnce(&'a mut Tx) -> BoxFuture<'a, Completion> + Send>;

enum Job {
    /// A closure run inside its own savepoint.
    Run(JobFn),
    /// A closure whose only failures are database errors (its refusals come
    /// back as `Ok`): no savepoint round trips; an error breaks the batch.
    Unguarded(JobFn),
    /// One row of a multi-row INSERT: the rows of one statement that meet
    /// in a batch go in as one statement (issuing a token is one INSERT, and
    /// at thousands a second the per-statement cost is what counts).
    Row {
        prefix: &'static str,
        cols: usize,
        row: Vec<Arg>,
        done: oneshot::Sender<Result<(), WriterError>>,
    },
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
/// Most rows one INSERT statement takes.
pub(super) const CHUNK: usize = 500;

impl Writer {
    /// Spawns the writer task on the current runtime.
    pub fn spawn(db: Db) -> Writer {
        let n = match db {
            Db::Sqlite { .. } => 1,
            Db::Postgres { .. } => 8,
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

    /// Like [`run`](Self::run), without a savepoint, for a job that returns
    /// `Err` only for a database error (which fails the whole batch).
    pub async fn run_unguarded<T, E, F>(&self, f: F) -> Result<Result<T, E>, WriterError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: for<'a> FnOnce(&'a mut Tx) -> BoxFuture<'a, Result<T, E>> + Send + 'static,
    {
        self.submit(f, false).await
    }

    /// Inserts one row with `prefix` (`INSERT INTO t (a, b) VALUES`) and
    /// `cols` values, coalesced with the other rows of the same prefix in
    /// the batch. Returns once the batch is committed.
    pub async fn insert_row(
        &self,
        prefix: &'static str,
        cols: usize,
        row: Vec<Arg>,
    ) -> Result<(), WriterError> {
        let (done, rx) = oneshot::channel();
        self.send(Job::Row {
            prefix,
            cols,
            row,
            done,
        })
        .await?;
        rx.await.map_err(|_| WriterError::Closed)?
    }

    async fn send(&self, job: Job) -> Result<(), WriterError> {
        let lane = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.lanes.len();
        self.lanes[lane]
            .send(job)
            .await
            .map_err(|_| WriterError::Closed)
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
        self.send(if guarded {
            Job::Run(run)
        } else {
            Job::Unguarded(run)
        })
        .await?;
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
        if batch.iter().all(|j| matches!(j, Job::Row { .. })) {
            insert_only(&db, batch).await;
            continue;
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
        let mut rows = RowGroups::default();
        let mut broken: Option<String> = None;
        for job in batch {
            let run = match job {
                Job::Row {
                    prefix,
                    cols,
                    row,
                    done,
                } => {
                    rows.push(prefix, cols, row, done);
                    continue;
                }
                Job::Unguarded(run) => {
                    if broken.is_none() {
                        let (keep, d) = run(&mut tx).await;
                        if !keep {
                            broken = Some("a job failed with a database error".into());
                        }
                        done.push(d);
                    }
                    continue;
                }
                Job::Run(run) => run,
            };
            if broken.is_some() {
                // The transaction is unusable: dropping the job drops its
                // answer channel, and its caller gets an error.
                drop(run);
                continue;
            }
            if let Err(e) = exec!(&mut tx, "SAVEPOINT job") {
                broken = Some(e.to_string());
                drop(run);
                continue;
            }
            // The audit events a rolled-back job recorded go with it.
            let audited = tx.audit_pending().len();
            let (keep, d) = run(&mut tx).await;
            let end = if keep {
                exec!(&mut tx, "RELEASE SAVEPOINT job")
            } else {
                tx.audit_pending().truncate(audited);
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
        if broken.is_none() {
            if let Err(e) = insert_groups(&mut tx, &rows.refs()).await {
                broken = Some(e.to_string());
            }
        }
        let (commit, invalidation) = match broken {
            Some(e) => (Err(e), None),
            None => match tx.commit_no_wait().await {
                Ok(inv) => (Ok(()), Some(inv)),
                Err(e) => (Err(StoreError::to_string(&e)), None),
            },
        };
        if let Err(e) = &commit {
            tracing::error!(error = %e, "group commit failed");
        }
        let answer = move || {
            rows.answer(&commit);
            for d in done {
                d(commit.clone());
            }
        };
        match invalidation {
            // A job revoked something (reuse detection, a replayed code):
            // its batch is answered once every instance stopped trusting its
            // cache, without holding the lane for that long.
            Some(inv) if inv.happened() => {
                tokio::spawn(async move {
                    inv.wait().await;
                    answer();
                });
            }
            _ => answer(),
        }
    }
}

/// A batch of single-row inserts only (token issuance at its busiest): one
/// multi-row statement per table, the whole transaction in one call.
async fn insert_only(db: &Db, batch: Vec<Job>) {
    let mut rows = RowGroups::default();
    for job in batch {
        if let Job::Row {
            prefix,
            cols,
            row,
            done,
        } = job
        {
            rows.push(prefix, cols, row, done);
        }
    }
    let commit = db
        .insert_rows(&rows.refs())
        .await
        .map_err(|e| e.to_string());
    if let Err(e) = &commit {
        tracing::error!(error = %e, "group commit failed");
    }
    rows.answer(&commit);
}

/// Inserts row groups inside `tx`, in chunks of 500 rows, which keep every
/// statement under SQLite's bound-parameter limit.
pub(crate) async fn insert_groups(
    tx: &mut Tx,
    groups: &[(&str, usize, Vec<&[Arg]>)],
) -> Result<(), sqlx::Error> {
    for (prefix, cols, rows) in groups {
        for chunk in rows.chunks(CHUNK) {
            let sql = format!("{prefix} {}", placeholders(chunk.len(), *cols));
            let args = chunk.iter().flat_map(|r| r.iter().cloned()).collect();
            exec_args(tx, &sql, args).await?;
        }
    }
    Ok(())
}
