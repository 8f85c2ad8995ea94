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
    // First, while this process holds nothing else: its peak RSS is then
    // the backfill's.
    backfill(&core, &org.id).await;
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
        let conn = pg_connection(&core, &org.id, &w, "bench-pg").await;
        let url = url::Url::parse(&w.db_url).expect("url");
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

    rekey_target(&core, &org.id, &records).await;
}

/// This process's peak resident memory so far (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// A PostgreSQL target connection of `org_id`, connected, into a fresh
/// database of the machine's PostgreSQL.
async fn pg_connection(
    core: &Core,
    org_id: &str,
    w: &World,
    name: &str,
) -> rekey::connectors::connections::Connection {
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
        ("table", "people_backfill"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let conn = connections::create(
        core,
        &Actor::cli(),
        NewConnection {
            org_id,
            kind: "postgres",
            name,
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
    let now = core.now();
    let mut tx = core.db.begin_write().await.expect("tx");
    connections::put_credentials(&mut tx, core, &conn, &creds, None, now)
        .await
        .expect("credentials");
    connections::set_status(&mut tx, &Actor::cli(), &conn, "connected", None, now)
        .await
        .expect("status");
    tx.commit().await.expect("commit");
    conn
}

/// A backfill of REKEY_BENCH_BACKFILL (default 1,000,000) outbox records
/// into PostgreSQL through the engine itself (windows read after the
/// cursor, batches of 500, the cursor committed under the lease after
/// each): records/s, and this process's peak RSS, which must stay flat
/// whatever the backlog (target: under 100 MiB).
async fn backfill(core: &Core, org_id: &str) {
    let n = env_n("REKEY_BENCH_BACKFILL", 1_000_000);
    let Some(w) = World::new("postgres").await else {
        return;
    };
    let conn = pg_connection(core, org_id, &w, "bench-backfill").await;
    // The history: People writes of 1,000 records, as the API makes them.
    let written = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + 1000).min(n);
        let batch: Vec<(String, Map<String, Value>)> = (i..end)
            .map(|k| {
                let email = format!("history{k:07}@bench.test");
                let fields = json!({"Email": email, "Plan": "pro", "Seats": k})
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                (email, fields)
            })
            .collect();
        rekey::people::upsert(&core.db, org_id, batch, core.now())
            .await
            .expect("people");
        i = end;
    }
    eprintln!(
        "[backfill] wrote {n} outbox records in {:.1} s; peak RSS so far {:.0} MiB",
        written.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    rekey::sync::delivery::enable(core, org_id, &conn.name, &[], Some(500), &Actor::cli())
        .await
        .expect("enable");
    let started = rekey::sync::backfill::start(
        core,
        org_id,
        &conn.name,
        rekey::sync::backfill::Window::All,
        false,
        &Actor::cli(),
    )
    .await
    .expect("backfill");
    let before = peak_rss_mib();
    let t = Instant::now();
    loop {
        rekey::sync::run::run_due(core, "bench").await.expect("run");
        let s = rekey::sync::delivery::status(core, org_id, &conn.name)
            .await
            .expect("status");
        if s.backfill.as_ref().is_some_and(|b| b.state != "running") {
            break;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "[backfill] {} outbox records into PostgreSQL, batch 500: {:.0} records/s ({secs:.1} s; target ≥ 20,000/s); \
         peak RSS {:.0} MiB before the backfill, {:.0} MiB after (target < 100 MiB)",
        started.total,
        started.total as f64 / secs,
        before,
        peak_rss_mib()
    );
}

/// The `rekey` target: batches of 500 into a second rekey's People API
/// (`POST /v1/people/changes`) over HTTP with a bearer token.
async fn rekey_target(core: &Core, org_id: &str, records: &[Record]) {
    let Some(w) = World::new("sqlite").await else {
        return;
    };
    let (mut child, url, _) = w.serve();
    w.json(&["org", "create", "recv"], None);
    let m2m = w.json(
        &[
            "m2m",
            "create",
            "--org",
            "recv",
            "--name",
            "bench",
            "--scope",
            "read_write",
        ],
        None,
    );
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{url}/oauth2/token"))
        .basic_auth(
            m2m["client_id"].as_str().unwrap_or(""),
            m2m["client_secret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    let settings: BTreeMap<String, String> = [("base_url", url.as_str()), ("scope", "read_write")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let conn = connections::create(
        core,
        &Actor::cli(),
        NewConnection {
            org_id,
            kind: "rekey",
            name: "bench-rekey",
            auth: None,
            settings: &settings,
            endpoints: &BTreeMap::new(),
        },
    )
    .await
    .expect("connection");
    let creds: Map<String, Value> = json!({"access_token": token["access_token"]})
        .as_object()
        .cloned()
        .unwrap_or_default();
    let s = conn.settings();
    let mut t = target::open(Open {
        core,
        conn: &conn,
        settings: &s,
        credentials: &creds,
        signing_secret: "",
    })
    .await
    .expect("open");
    let n = records.len();
    let start = Instant::now();
    for chunk in records.chunks(BATCH) {
        t.send(&Batch {
            org_id,
            records: chunk,
        })
        .await
        .expect("send");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "[rekey target] {n} records, batch {BATCH}, into a second rekey (SQLite) over HTTP: {:.0} records/s ({secs:.2} s)",
        n as f64 / secs
    );
    let _ = child.kill();
}
