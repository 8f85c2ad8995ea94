//! Start-up time of `rekey serve` on an existing database (spawn to the
//! first `/healthz` answer) and idle memory (VmRSS after a second idle).
//! `cargo bench --bench startup`. Targets: under 200 ms and under 30 MiB.

mod support;

use std::time::{Duration, Instant};

use support::*;

#[tokio::main]
async fn main() {
    for backend in backends() {
        let Some(w) = World::new(backend).await else {
            continue;
        };
        // an existing, migrated database with some data in it
        w.json(&["org", "create", "acme"], None);
        w.json(
            &[
                "user",
                "create",
                "--org",
                "acme",
                "--email",
                "u@acme.test",
                "--permission",
                "read",
            ],
            None,
        );
        let mut starts = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            let (mut child, url, _) = w.serve();
            let client = reqwest::Client::new();
            loop {
                if let Ok(r) = client.get(format!("{url}/healthz")).send().await {
                    if r.status() == 200 {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            starts.push(t.elapsed().as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_secs(1)).await;
            let status =
                std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
            if let Some(kb) = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
            {
                rss.push(kb / 1024.0);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        starts.sort_by(|a, b| a.total_cmp(b));
        rss.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{backend:<9} start-up to first /healthz: median {:.0} ms, max {:.0} ms   idle RSS: median {:.1} MiB, max {:.1} MiB   (10 runs)",
            starts[starts.len() / 2],
            starts[starts.len() - 1],
            rss.get(rss.len() / 2).copied().unwrap_or(0.0),
            rss.last().copied().unwrap_or(0.0)
        );
    }
}
