//! Time as a parameter. Domain code takes `now` (unix milliseconds) from the
//! caller; only the clock reads the system time.

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now_ms(&self) -> i64 {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The machine's wall clock, never moved by tests: for comparing with
/// timestamps another system wrote with its own wall clock (AWS's
/// `CreateDate`), where the injected clock's offset would mislead.
pub fn wall_ms() -> i64 {
    SystemClock.now_ms()
}

/// A clock tests can move: the system time plus an offset in milliseconds
/// read from a file on every reading, so every process of a test (the
/// server, a second instance, the CLI) sees a move at once. Used only in
/// debug builds, when `REKEY_TEST_CLOCK_FILE` names the file (see
/// [`crate::test_hooks`]); `rekey serve` logs a warning when it is on. A
/// missing or unreadable file means no offset.
#[derive(Debug)]
pub struct OffsetFileClock {
    path: std::path::PathBuf,
}

impl Clock for OffsetFileClock {
    fn now_ms(&self) -> i64 {
        let offset = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        SystemClock.now_ms().saturating_add(offset)
    }
}

/// The environment variable that turns the test clock on (debug builds).
pub const TEST_CLOCK_ENV: &str = crate::test_hooks::CLOCK_FILE;

/// The clock the binary runs on: the system clock, or the test clock in a
/// debug build with [`TEST_CLOCK_ENV`] set.
pub fn from_env() -> std::sync::Arc<dyn Clock> {
    match crate::test_hooks::clock_file() {
        Some(path) => std::sync::Arc::new(OffsetFileClock { path }),
        None => std::sync::Arc::new(SystemClock),
    }
}

/// True when the test clock is on (for a warning at start; never in a
/// release build).
pub fn is_test_clock() -> bool {
    crate::test_hooks::clock_file().is_some()
}

/// RFC 3339 form of a unix-millisecond instant, for people and JSON.
pub fn rfc3339(ms: i64) -> String {
    // Clamped to what RFC 3339 can write (years 1970 to 9999): a value out
    // of range in a row must not take a whole listing down.
    const MAX_MS: i64 = 253_402_300_799_999;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.clamp(0, MAX_MS) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parses an instant: RFC 3339, or a duration meaning "that long ago" (`1h`).
pub fn parse_instant(s: &str, now_ms: i64) -> Option<i64> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
        return i64::try_from(d.as_millis()).ok();
    }
    crate::config::parse_duration(s).map(|d| now_ms - d.as_millis() as i64)
}

/// Serde for `…_at` fields held as unix ms: written as RFC 3339 strings,
/// the API's one vocabulary for times (`#[serde(serialize_with = …)]`).
pub mod as_rfc3339 {
    pub fn serialize<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*ms))
    }

    /// The same for an optional time (`null` when absent).
    pub fn opt<S: serde::Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => s.serialize_str(&super::rfc3339(*ms)),
            None => s.serialize_none(),
        }
    }
}
