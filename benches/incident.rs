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

use serde_json::{json, Value};
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
    let r = api
        .http
        .post(format!("{}/api/v1/incidents", api.url))
        .header("X-CSRF-Token", &api.csrf)
        .json(&json!({"reason": "benchmark", "scope": "org:acme"}))
        .send()
        .await
        .expect("start");
    assert_eq!(r.status(), 201, "campaign start");
    let id = r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut v = Value::Null;
    let mut half = None;
    while Instant::now() < deadline {
        v = api
            .http
            .get(format!("{}/api/v1/incidents/{id}", api.url))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json");
        if half.is_none() && v["verified_pct"].as_u64().unwrap_or(0) >= 50 {
            half = Some(started.elapsed());
        }
        if v["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
