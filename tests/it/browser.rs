//! The console in a real browser: `tests/browser/console.mjs` drives
//! Debian's Chromium through playwright-core against this build's binary
//! (sign in; an app authorized by a user and revoked from its
//! Authorizations tab; a `rekey` connection authorized through a second
//! rekey's pages and re-authenticated; a Redis rotation watched to the end;
//! an incident from its dry-run plan to its report — with JavaScript, then
//! without). A failing step leaves a screenshot in target/browser/.
//!
//! Needs `chromium`, Node.js with `npm ci` run in tests/browser (`.ci/run`
//! does both) and Redis; SKIPPED on a laptop without them, never in CI.

use std::path::Path;
use std::process::Command;

use crate::harness::*;

#[test]
fn the_console_works_in_chromium_with_and_without_javascript() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let ready = Path::new(&chromium).exists()
        && root
            .join("tests/browser/node_modules/playwright-core")
            .exists()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !require(
        ready,
        "Chromium, Node.js and tests/browser/node_modules (npm ci)",
    ) || !require(redis_up(), "Redis")
    {
        return;
    }
    let out = Command::new("node")
        .arg(root.join("tests/browser/console.mjs"))
        .env("REKEY_BIN", BIN)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "browser tests failed:\n{text}");
    assert!(text.contains("browser tests: all passed"), "{text}");
}
