//! A fixed pool of threads for argon2, the only deliberately expensive
//! work an unauthenticated caller can ask for. Each hash holds
//! `argon2_memory_kib` (19 MiB by default) while it runs, so the number run
//! at once is the memory bound: `password_hash_concurrency` threads take
//! jobs from a queue of `password_hash_queue` places; when both are full the
//! caller is told to come back later ([`PoolBusy`], answered as `503` with
//! `Retry-After`) instead of piling up on tokio's blocking pool, which grows
//! to 512 threads and keeps each thread's malloc arena.
//!
//! Each thread keeps one argon2 working buffer ([`Memory`]) and reuses it,
//! so what stays resident after a burst is one buffer per thread.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::password::{Memory, PasswordError, PasswordHasherConfig};

/// Every hashing place is taken.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("too many password checks at once; try again in a moment")]
pub struct PoolBusy;

type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// The pool's figures, exported on `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct PoolMetrics {
    pub refused: prometheus_client::metrics::counter::Counter,
    /// Hashes run (one per login attempt that got past the throttle).
    pub hashes: prometheus_client::metrics::counter::Counter,
    pub in_flight: prometheus_client::metrics::gauge::Gauge,
}

#[derive(Clone)]
pub struct PasswordPool {
    hasher: PasswordHasherConfig,
    jobs: SyncSender<Job>,
    workers: usize,
    pub metrics: PoolMetrics,
}

impl std::fmt::Debug for PasswordPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordPool({} workers)", self.workers)
    }
}

impl PasswordPool {
    /// Starts `workers` threads (at least one) behind a queue of `queue` places.
    pub fn new(hasher: PasswordHasherConfig, workers: usize, queue: usize) -> PasswordPool {
        let workers = workers.max(1);
        let (jobs, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("rekey-argon2-{i}"))
                .spawn(move || work(&rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        PasswordPool {
            hasher,
            jobs,
            workers,
            metrics: PoolMetrics::default(),
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&PasswordHasherConfig, &mut Memory) -> T + Send + 'static,
    ) -> Result<T, PoolBusy> {
        let (tx, rx) = oneshot::channel();
        let hasher = self.hasher.clone();
        let in_flight = self.metrics.in_flight.clone();
        let hashes = self.metrics.hashes.clone();
        in_flight.inc();
        let job: Job = Box::new(move |mem| {
            hashes.inc();
            let _ = tx.send(f(&hasher, mem));
            in_flight.dec();
        });
        if let Err(e) = self.jobs.try_send(job) {
            self.metrics.in_flight.dec();
            if matches!(e, TrySendError::Full(_)) {
                self.metrics.refused.inc();
            }
            return Err(PoolBusy);
        }
        rx.await.map_err(|_| PoolBusy)
    }

    /// Verifies `password` against `stored`, or against a dummy hash when
    /// there is no account: one hash either way.
    pub async fn verify(&self, password: &str, stored: Option<String>) -> Result<bool, PoolBusy> {
        let pw = password.to_string();
        self.run(move |h, mem| h.verify(&pw, stored.as_deref(), mem))
            .await
    }

    pub async fn hash(&self, password: &str) -> Result<Result<String, PasswordError>, PoolBusy> {
        let pw = password.to_string();
        self.run(move |h, mem| h.hash(&pw, mem)).await
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    let mut mem = Memory::default();
    loop {
        // The lock is held only while waiting for the next job, never while
        // hashing, so the other workers take jobs meanwhile.
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(&mut mem),
            Err(_) => return,
        }
    }
}
