//! Hooks the integration tests use to drive the real binary: a clock moved
//! by a file (`REKEY_TEST_CLOCK_FILE`), a stop after each rotation step
//! (`REKEY_TEST_PAUSE_AFTER_STEP`), a stall before a refresh token is sent
//! (`REKEY_TEST_PAUSE_BEFORE_REFRESH`), catalog URLs sent to a local
//! stand-in (`REKEY_TEST_CATALOG_URLS`) and a failure injected after a
//! rotation of rekey's own secret issued the new one, before its commit
//! (`REKEY_TEST_FAIL_AFTER_ISSUE`).
//!
//! Each reads its variable only in debug builds (`debug_assertions`, which
//! `cargo test` builds have): a release build compiles the readers out and
//! ignores the variables, silently. Set on a production host they would
//! move time (token expiry, rotation windows), hang rotations, or send an
//! OAuth client secret somewhere else.

use std::path::PathBuf;

#[cfg(debug_assertions)]
fn var(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// A release build reads no test hook from the environment.
#[cfg(not(debug_assertions))]
fn var(_name: &str) -> Option<std::ffi::OsString> {
    None
}

/// The variable that turns the test clock on.
pub const CLOCK_FILE: &str = "REKEY_TEST_CLOCK_FILE";

/// The test clock's offset file, when [`CLOCK_FILE`] names one.
pub fn clock_file() -> Option<PathBuf> {
    var(CLOCK_FILE).map(PathBuf::from)
}

/// Whether rotations stop for good after each committed step, so a test
/// can SIGKILL the process at an exact point between steps.
pub fn pause_after_rotation_steps() -> bool {
    var("REKEY_TEST_PAUSE_AFTER_STEP").is_some()
}

/// Whether a rotation of one of rekey's own secrets fails after writing
/// the new secret and the rotation, before they commit: a test shows that
/// neither is left.
pub fn fail_after_issue() -> bool {
    var("REKEY_TEST_FAIL_AFTER_ISSUE").is_some()
}

/// `REKEY_TEST_PAUSE_BEFORE_REFRESH=<path>`: a refresh that holds its lease
/// and is about to check it and send the refresh token waits here until the
/// file at `<path>` exists, so a test can stall it past its lease while
/// another instance refreshes. Nothing happens when the variable is unset.
pub async fn pause_before_refresh(connection_id: &str) {
    let Some(path) = var("REKEY_TEST_PAUSE_BEFORE_REFRESH").map(PathBuf::from) else {
        return;
    };
    tracing::warn!(connection = %connection_id, path = %path.display(), "paused before the refresh lease check until the file exists (REKEY_TEST_PAUSE_BEFORE_REFRESH)");
    while !path.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `FROM=TO` pairs (separated by spaces): a catalog URL starting with
/// `FROM` goes to `TO` instead.
pub fn catalog_urls() -> Option<String> {
    var("REKEY_TEST_CATALOG_URLS").and_then(|v| v.into_string().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test touches these variables, so parallel tests do not race on them.
    #[test]
    fn hooks_follow_their_variables_in_debug_builds_only() {
        std::env::set_var("REKEY_TEST_PAUSE_AFTER_STEP", "1");
        std::env::set_var("REKEY_TEST_CATALOG_URLS", "https://a=http://b");
        let clock_was = std::env::var_os(CLOCK_FILE);
        std::env::set_var(CLOCK_FILE, "/nonexistent/clock-offset-ms");
        let (pause, urls, clock) = (pause_after_rotation_steps(), catalog_urls(), clock_file());
        std::env::remove_var("REKEY_TEST_PAUSE_AFTER_STEP");
        std::env::remove_var("REKEY_TEST_CATALOG_URLS");
        match clock_was {
            Some(v) => std::env::set_var(CLOCK_FILE, v),
            None => std::env::remove_var(CLOCK_FILE),
        }
        if cfg!(debug_assertions) {
            assert!(pause);
            assert_eq!(urls.as_deref(), Some("https://a=http://b"));
            assert_eq!(clock, Some(PathBuf::from("/nonexistent/clock-offset-ms")));
        } else {
            // `cargo test --release`: the variables are ignored.
            assert!(!pause);
            assert_eq!(urls, None);
            assert_eq!(clock, None);
        }
        assert!(!pause_after_rotation_steps(), "unset means off");
    }

    #[tokio::test]
    async fn the_refresh_pause_waits_for_its_file_in_debug_builds_only() {
        let dir = tempfile::tempdir().unwrap();
        let release = dir.path().join("release");
        let wait = std::time::Duration::from_millis(200);
        std::env::set_var("REKEY_TEST_PAUSE_BEFORE_REFRESH", &release);
        let paused = tokio::time::timeout(wait, pause_before_refresh("c")).await;
        std::env::remove_var("REKEY_TEST_PAUSE_BEFORE_REFRESH");
        // A refresh of another test caught by the variable goes on now.
        std::fs::write(&release, "").unwrap();
        assert_eq!(
            paused.is_err(),
            cfg!(debug_assertions),
            "pauses only in debug builds"
        );
        let after = tokio::time::timeout(wait, pause_before_refresh("c")).await;
        assert!(after.is_ok(), "unset means off");
    }
}
