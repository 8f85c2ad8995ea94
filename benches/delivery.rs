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
    backfill().await;
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
/// into PostgreSQL, run the way a user runs it: the history is written
/// into a store on SQLite, then `rekey serve` starts on that store and
/// `rekey delivery backfill --detach` hands the backfill to it (windows
/// read after the cursor, batches of 500, the cursor committed under the
/// lease after each). Prints records/s and the server's peak RSS (VmHWM,
/// with its anonymous and file-backed parts), which must stay flat
/// whatever the backlog (target: under 100 MiB).
async fn backfill() {
    let n = env_n("REKEY_BENCH_BACKFILL", 1_000_000);
    let (Some(store), Some(w)) = (World::new("sqlite").await, World::new("postgres").await) else {
        return;
    };
    {
        let config = Config {
            data_dir: store.dir.path().to_path_buf(),
            database_url: Some(store.db_url.clone()),
            master_key: Some(store.key.clone()),
            ..Config::default()
        };
        let (core, _) = Core::open(config, true).await.expect("core");
        let org =
            rekey::identity::orgs::create(&core.db, &Actor::cli(), "history", None, core.now())
                .await
                .expect("org");
        let conn = pg_connection(&core, &org.id, &w, "bench-backfill").await;
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
            rekey::people::upsert(&core.db, &org.id, batch, core.now())
                .await
                .expect("people");
            i = end;
        }
        rekey::sync::delivery::enable(&core, &org.id, &conn.name, &[], Some(500), &Actor::cli())
            .await
            .expect("enable");
        core.db.close().await;
        eprintln!(
            "[backfill] wrote {n} outbox records in {:.1} s",
            written.elapsed().as_secs_f64()
        );
    }
    let (mut server, _, _) = store.serve();
    let pid = server.id();
    let idle = rss(pid);
    let of = ["--org", "history", "--connection", "bench-backfill"];
    let mut args = vec!["delivery", "backfill"];
    args.extend(of);
    args.push("--detach");
    let started = store.json(&args, None);
    let total = started["total"].as_i64().unwrap_or(0);
    let t = Instant::now();
    let mut status_args = vec!["delivery", "status"];
    status_args.extend(of);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(250));
        let s = store.json(&status_args, None);
        let state = s["backfill"]["state"].as_str().unwrap_or("");
        if !state.is_empty() && state != "running" {
            assert_eq!(state, "done", "{s}");
            break;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let peak = rss(pid);
    let _ = server.kill();
    let _ = server.wait();
    println!(
        "[backfill] {total} outbox records into PostgreSQL by `rekey serve`, batch 500: {:.0} records/s \
         ({secs:.1} s; target ≥ 20,000/s); the server's peak RSS {:.0} MiB (anonymous {:.0}, file-backed {:.0}; \
         {:.0} MiB idle before the backfill; target < 100 MiB)",
        total as f64 / secs,
        peak.hwm,
        peak.anon,
        peak.file,
        idle.hwm
    );
}

/// A process's resident memory in MiB: its peak (VmHWM) and what it holds
/// now, split into anonymous memory and pages of mapped files.
struct Rss {
    hwm: f64,
    anon: f64,
    file: f64,
}

fn rss(pid: u32) -> Rss {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    Rss {
        hwm: field("VmHWM:"),
        anon: field("RssAnon:"),
        file: field("RssFile:"),
    }
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
