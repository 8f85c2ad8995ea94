//! The invalidation epoch: what makes a validation cache safe across
//! processes and instances.
//!
//! One row (`cache_epoch`) counts the changes that can make a cached
//! validation wrong: revoked tokens and grants, changed or deleted clients,
//! access keys, users and orgs. Triggers on those tables bump it, so no code
//! path can forget (migration `0005_cache_epoch`). Each server polls the
//! counter every [`POLL`]; a cached entry carries the epoch it was read
//! under and is used only while that is still the epoch *and* the last poll
//! started less than [`FRESH`] ago. A transaction that bumped the counter
//! waits [`PROPAGATION`] (longer than `FRESH`) after its commit before it
//! returns, so by then every instance has either seen the new epoch or
//! stopped trusting its cache: a revocation is in force everywhere before
//! the revoke call answers. Only durations on each process's monotonic
//! clock are compared, never wall times across machines.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// How often a server reads the counter.
pub const POLL: Duration = Duration::from_millis(20);
/// How old the last poll may be for the cache to be used.
pub const FRESH: Duration = Duration::from_millis(100);
/// How far past a revoking change a bulk-revocation cut-off is set.
pub const CUTOFF_MARGIN: Duration = Duration::from_millis(125);
/// How long an invalidating commit waits before it returns.
pub const PROPAGATION: Duration = Duration::from_millis(150);

/// The cut-off ("nothing issued before T is valid") for a revocation made
/// at `now_ms`: past anything another instance may still issue on what it
/// cached before the change (it stops trusting its cache within [`FRESH`]
/// of the commit), and before the changing call returns ([`PROPAGATION`]),
/// so what is issued after that stays valid. Assumes the instances' clocks
/// agree to within the 25 ms between the two.
///
/// The margin counts from `now_ms`, not from the commit, which may come
/// much later (a row lock, a slow disk): what other instances issue before
/// the commit, while the change is not yet visible, can carry times past
/// the cut-off. So no cut-off stands alone where that matters: a client's
/// secret changes in a commit of its own before the tokens' cut-off is set
/// (`clients::revoke_tokens_before` runs after it has returned), and a
/// user's activation moves the user's cut-off to its own time
/// (`identity::users`).
pub fn cutoff(now_ms: i64) -> i64 {
    now_ms + CUTOFF_MARGIN.as_millis() as i64
}

/// This process's view of the counter.
#[derive(Debug)]
pub struct Epoch {
    base: Instant,
    /// The counter as last read.
    db_value: AtomicU64,
    /// This process's generation: one more each time a poll read a counter
    /// other than the last. Cache entries carry it. It only ever grows, even
    /// if the counter goes back (a restored backup, a failed-over replica),
    /// so an entry of an earlier generation can never come back to life.
    generation: AtomicU64,
    /// Nanoseconds after `base` at which the last poll that completed had
    /// started; 0 until a poll completed.
    polled_at: AtomicU64,
    /// Nanoseconds after `base` of this process's last own invalidating
    /// commit: polls started before it do not make the cache fresh.
    invalidated_at: AtomicU64,
    /// SQLite: set by the writing connections' update hook when a trigger
    /// bumped the counter; cleared when a writing transaction begins (one
    /// runs at a time in a process).
    pub(crate) sqlite_bumped: AtomicBool,
}

impl Default for Epoch {
    fn default() -> Self {
        Epoch {
            base: Instant::now(),
            db_value: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            polled_at: AtomicU64::new(0),
            invalidated_at: AtomicU64::new(0),
            sqlite_bumped: AtomicBool::new(false),
        }
    }
}

impl Epoch {
    fn nanos(&self, t: Instant) -> u64 {
        // +1 so that 0 keeps meaning "never".
        u64::try_from(t.saturating_duration_since(self.base).as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// The epoch under which cached entries may be used now, or `None`
    /// when the cache must not be trusted (no recent poll).
    pub fn current(&self) -> Option<u64> {
        let polled = self.polled_at.load(Ordering::Acquire);
        if polled == 0 || polled <= self.invalidated_at.load(Ordering::Acquire) {
            return None;
        }
        let age = self.nanos(Instant::now()).saturating_sub(polled);
        (age < FRESH.as_nanos() as u64).then(|| self.generation.load(Ordering::Acquire))
    }

    /// Records a poll that started at `started` and read `value`. Called by
    /// one poller at a time.
    pub fn observe(&self, value: u64, started: Instant) {
        if self.db_value.swap(value, Ordering::AcqRel) != value {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        self.polled_at
            .fetch_max(self.nanos(started), Ordering::AcqRel);
    }

    /// This process just committed an invalidating change: stop trusting
    /// the cache until a poll started after now has read the new counter.
    pub fn invalidate_local(&self) {
        self.invalidated_at
            .fetch_max(self.nanos(Instant::now()), Ordering::AcqRel);
    }
}

/// What an invalidating commit still owes its caller: the wait until every
/// instance has stopped trusting what it cached before.
#[must_use = "an invalidating commit must wait before it answers"]
#[derive(Debug)]
pub struct Invalidation(pub(crate) bool);

impl Invalidation {
    pub fn happened(&self) -> bool {
        self.0
    }

    pub async fn wait(self) {
        if self.0 {
            tokio::time::sleep(PROPAGATION).await;
        }
    }
}

/// A bounded map whose entries are valid only under the epoch they were
/// read in. Full, it drops entries of older epochs, then everything: the
/// cache is an accelerator, a miss is only a database read.
#[derive(Debug)]
pub struct EpochCache<V> {
    map: RwLock<HashMap<String, (u64, V)>>,
    cap: usize,
}

impl<V: Clone> EpochCache<V> {
    pub fn new(cap: usize) -> Self {
        EpochCache {
            map: RwLock::new(HashMap::new()),
            cap,
        }
    }

    fn get(&self, key: &str, epoch: u64) -> Option<V> {
        let m = self.map.read().unwrap_or_else(|p| p.into_inner());
        m.get(key)
            .filter(|(e, _)| *e == epoch)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: String, epoch: u64, v: V) {
        let mut m = self.map.write().unwrap_or_else(|p| p.into_inner());
        if m.len() >= self.cap && !m.contains_key(&key) {
            m.retain(|_, (e, _)| *e == epoch);
            if m.len() >= self.cap {
                m.clear();
            }
        }
        m.insert(key, (epoch, v));
    }

    /// The value under `key`: from the cache when `epoch` may be trusted and
    /// `valid` accepts the entry, otherwise from `load` (whatever it finds,
    /// valid or not), which is cached when `valid` accepts it. What `valid`
    /// refuses is never served from, nor put in, the cache.
    pub async fn get_or_load<E>(
        &self,
        epoch: &Epoch,
        key: &str,
        valid: impl Fn(&V) -> bool,
        load: impl std::future::Future<Output = Result<Option<V>, E>>,
    ) -> Result<Option<V>, E> {
        let e = epoch.current();
        if let Some(v) = e.and_then(|e| self.get(key, e)).filter(|v| valid(v)) {
            return Ok(Some(v));
        }
        let v = load.await?;
        if let (Some(e), Some(v)) = (e, &v) {
            if valid(v) {
                self.put(key.to_string(), e, v.clone());
            }
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_only_after_a_poll_and_not_after_an_own_invalidation() {
        let e = Epoch::default();
        assert_eq!(e.current(), None, "never polled");
        let t = Instant::now();
        e.observe(7, t);
        let g = e.current().expect("fresh");
        e.invalidate_local();
        assert_eq!(e.current(), None, "own invalidation distrusts the cache");
        // A poll that started before the invalidation does not restore it…
        e.observe(7, t);
        assert_eq!(e.current(), None);
        // …one started after does, under a new generation.
        e.observe(8, Instant::now());
        let g2 = e.current().expect("fresh");
        assert!(g2 > g);
    }

    #[test]
    fn a_counter_going_back_is_still_a_new_generation() {
        let e = Epoch::default();
        e.observe(5, Instant::now());
        let at5 = e.current().expect("fresh");
        e.observe(6, Instant::now());
        e.observe(5, Instant::now()); // restored from a backup
        let again = e.current().expect("fresh");
        assert!(again > at5, "entries cached at 5 must not come back");
        e.observe(5, Instant::now());
        assert_eq!(e.current(), Some(again), "no change, same generation");
    }

    #[test]
    fn stale_polls_make_the_cache_unusable() {
        let e = Epoch::default();
        e.observe(1, Instant::now());
        std::thread::sleep(FRESH + Duration::from_millis(5));
        assert_eq!(e.current(), None);
    }

    #[test]
    fn entries_of_another_epoch_are_not_returned() {
        let c = EpochCache::new(2);
        c.put("a".into(), 1, 10);
        assert_eq!(c.get("a", 1), Some(10));
        assert_eq!(c.get("a", 2), None);
        c.put("b".into(), 2, 20);
        c.put("c".into(), 2, 30);
        // full: the epoch-1 entry went first
        assert_eq!(c.get("b", 2), Some(20));
        assert_eq!(c.get("c", 2), Some(30));
        assert_eq!(c.get("a", 1), None);
    }

    #[test]
    fn propagation_outlasts_freshness_and_the_cutoff() {
        assert!(FRESH < CUTOFF_MARGIN && CUTOFF_MARGIN < PROPAGATION);
        assert!(PROPAGATION > FRESH + POLL);
    }
}
