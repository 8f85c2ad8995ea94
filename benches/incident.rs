//! An incident campaign over 1,000 Redis-ACL connections (users created
//! here), end to end through the release binary: the campaign is started
//! through the admin API and the server's jobs loop runs it (each item a
//! rotation: check, write-ahead, ACL SETUSER, verify, promote, cut-over with
//! no overlap, retire, then the item's own probe). Prints items per second
//! and the time to 100 % verified. `cargo bench --bench incident`
//! (REKEY_BENCH_REDIS_USERS, default 1000). Target: >= 200 items/s and the
//! whole campaign under 10 s on SQLite.

mod support;

use std::time::{Duration, Instant};

use support::*;

#[tokio::main]
async fn main() {
    let users: usize = std::env::var("REKEY_BENCH_REDIS_USERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    for backend in backends() {
        let Some(w) = World::new(backend).await else {
            continue;
        };
        let (mut child, api) = admin_world(&w).await;
        let run = ulid::Ulid::new().to_string().to_lowercase();
        if redis_targets(&api, &run, users).await.is_some() {
            campaign(&api, backend, users).await;
            drop_redis_users(&run, users).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

async fn campaign(api: &Api, backend: &str, n: usize) {
    let started = Instant::now();
    let mut half = None;
    let v = api
        .campaign("benchmark", "org:acme", Duration::from_secs(600), |v| {
            if half.is_none() && v["verified_pct"].as_u64().unwrap_or(0) >= 50 {
                half = Some(started.elapsed());
            }
        })
        .await;
    let secs = started.elapsed().as_secs_f64();
    let verified = v["counts"]["verified"].as_u64().unwrap_or(0);
    let failed = v["counts"]["failed"].as_u64().unwrap_or(0);
    println!(
        "[{backend}] campaign over {n} Redis ACL connections: {verified} verified, {failed} failed; \
         50 % verified at {:.2} s, 100 % at {secs:.2} s = {:.0} items/s",
        half.map(|d| d.as_secs_f64()).unwrap_or(f64::NAN),
        verified as f64 / secs
    );
}
