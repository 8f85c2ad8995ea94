//! Delivery throughput: records per second through each target, in
//! batches of 500, with the figures printed. `cargo bench --bench delivery`
//! (REKEY_BENCH_RECORDS to change the count, default 100,000).
//!
//! - PostgreSQL: the `postgres` target upserting into a fresh database on
//!   the machine's PostgreSQL (127.0.0.1:5432, or REKEY_TEST_POSTGRES_URL).
//!   Target: ≥ 20,000 records/s. Every email is new (the insert path), then
//!   the same records again (the path where the sequence guard skips every
//!   row, as a retried batch does).

mod support;

use std::collections::BTreeMap;
use std::time::Instant;

use rekey::audit::Actor;
use rekey::config::Config;
use rekey::connectors::connections::{self, NewConnection};
use rekey::state::Core;
use rekey::sync::target::{self, Batch, Op, Open, Record};
use serde_json::{json, Map, Value};
use support::World;

const BATCH: usize = 500;

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let n = env_n("REKEY_BENCH_RECORDS", 100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        master_key: Some(rekey::crypto::keyring::generate_key()),
        ..Config::default()
    };
    let (core, _) = Core::open(config, true).await.expect("core");
    let org = rekey::identity::orgs::create(&core.db, &Actor::cli(), "bench", None, core.now())
        .await
        .expect("org");
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let email = format!("person{i:07}@bench.test");
            Record {
                seq: i as i64 + 1,
                email: email.clone(),
                op: Op::Upsert,
                fields: json!({"email": email, "first_name": "Ada", "last_name": "Lovelace", "title": "Engineer", "company": "Analytical"})
                    .as_object()
                    .cloned(),
                at: 1_800_000_000_000 + i as i64,
            }
        })
        .collect();

    // A fresh PostgreSQL database to deliver into (dropped with the world).
    if let Some(w) = World::new("postgres").await {
        let url = url::Url::parse(&w.db_url).expect("url");
        let database = url.path().trim_start_matches('/').to_string();
        let port = url.port().unwrap_or(5432).to_string();
        let user = if url.username().is_empty() {
            "postgres".to_string()
        } else {
            url.username().to_string()
        };
        let settings: BTreeMap<String, String> = [
            ("host", url.host_str().unwrap_or("127.0.0.1")),
            ("port", &port),
            ("database", &database),
            ("username", &user),
            ("table", "people_sync"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let conn = connections::create(
            &core,
            &Actor::cli(),
            NewConnection {
                org_id: &org.id,
                kind: "postgres",
                name: "bench-pg",
                auth: None,
                settings: &settings,
                endpoints: &BTreeMap::new(),
            },
        )
        .await
        .expect("connection");
        let creds: Map<String, Value> = json!({"password": url.password().unwrap_or("")})
            .as_object()
            .cloned()
            .unwrap_or_default();
        for pass in ["new rows", "a retried run (every row skipped)"] {
            let s = conn.settings();
            let mut t = target::open(Open {
                core: &core,
                conn: &conn,
                settings: &s,
                credentials: &creds,
                signing_secret: "",
            })
            .await
            .expect("open");
            let start = Instant::now();
            for chunk in records.chunks(BATCH) {
                let batch = Batch {
                    org_id: &org.id,
                    records: chunk,
                };
                t.send(&batch).await.expect("send");
            }
            let secs = start.elapsed().as_secs_f64();
            t.close().await;
            println!(
                "[postgres target] {n} records, batch {BATCH}, {pass}: {:.0} records/s ({secs:.2} s; target ≥ 20,000/s)",
                n as f64 / secs
            );
        }
    }

    // backfill: added by the delivery engine (the `rekey` target's figure
    // and a backfill of 1,000,000 outbox records: records/s, peak RSS).
}
