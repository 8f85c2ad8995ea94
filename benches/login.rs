//! Memory under a burst of unauthenticated logins: 500 parallel
//! `POST /api/v1/session` with random emails and the production argon2
//! cost (19 MiB, 2 passes). Prints the server's peak RSS (VmHWM) and its
//! RSS two seconds after the burst, and how the attempts were answered.
//! `cargo bench --bench login`. Target: peak under 200 MiB.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    const BURST: usize = 500;
    for backend in backends() {
        let Some(w) = World::new(backend).await else {
            continue;
        };
        w.json(&["org", "create", "acme"], None);
        let mut c = w.cmd();
        c.env("REKEY_ARGON2_MEMORY_KIB", "19456")
            .env("REKEY_ARGON2_ITERATIONS", "2")
            // every attempt reaches the hashing pool: the worst case
            .env("REKEY_LOGIN_MAX_FAILURES_PER_IP", "100000");
        let (mut child, url, _) = serve_cmd(c);
        let pid = child.id();
        let idle = status_kib(pid, "VmRSS:");
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let started = Instant::now();
        let tasks: Vec<_> = (0..BURST)
            .map(|i| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    client
                        .post(format!("{url}/api/v1/session"))
                        .json(&serde_json::json!({
                            "email": format!("nobody-{i}-{}@acme.test", ulid::Ulid::new()),
                            "password": "not-the-password-at-all",
                        }))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                })
            })
            .collect();
        let mut by_status = std::collections::BTreeMap::new();
        for t in tasks {
            *by_status.entry(t.await.unwrap_or(0)).or_insert(0usize) += 1;
        }
        let burst_ms = started.elapsed().as_millis();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let peak = status_kib(pid, "VmHWM:");
        let settled = status_kib(pid, "VmRSS:");
        println!(
            "[{backend}] {BURST} parallel bad logins in {burst_ms} ms: answered {by_status:?}; \
             RSS idle {:.1} MiB, peak {:.1} MiB, settled {:.1} MiB (target: peak < 200 MiB)",
            idle as f64 / 1024.0,
            peak as f64 / 1024.0,
            settled as f64 / 1024.0
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}
