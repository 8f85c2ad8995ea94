//! Shared by the load benchmarks: a world (database, CLI, release server)
//! and a closed-loop load runner that prints throughput and latency.

#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Mutex;

pub const BIN: &str = env!("CARGO_BIN_EXE_rekey");
pub const PASSWORD: &str = "correct-horse-battery-staple";

pub struct World {
    pub dir: tempfile::TempDir,
    pub db_url: String,
    pub key: String,
    pub backend: &'static str,
    pg_db: Option<String>,
}

fn pg_admin() -> String {
    std::env::var("REKEY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl World {
    pub async fn new(backend: &'static str) -> Option<World> {
        let dir = tempfile::tempdir().ok()?;
        let key = String::from_utf8(
            Command::new(BIN)
                .args(["keyring", "generate"])
                .output()
                .ok()?
                .stdout,
        )
        .ok()?
        .trim()
        .to_string();
        let (db_url, pg_db) = if backend == "postgres" {
            let admin = match sqlx::PgPool::connect(&pg_admin()).await {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("SKIPPED postgres: {e}");
                    return None;
                }
            };
            let name = format!(
                "rekey_bench_{}",
                ulid::Ulid::new().to_string().to_lowercase()
            );
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .ok()?;
            let base = pg_admin();
            (format!("{}/{name}", &base[..base.rfind('/')?]), Some(name))
        } else {
            (
                format!("sqlite:{}", dir.path().join("rekey.db").display()),
                None,
            )
        };
        Some(World {
            dir,
            db_url,
            key,
            backend,
            pg_db,
        })
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("REKEY_DATABASE_URL", &self.db_url)
            .env("REKEY_MASTER_KEY", &self.key)
            .env("REKEY_ARGON2_MEMORY_KIB", "1024")
            .env("REKEY_ARGON2_ITERATIONS", "1")
            .env("REKEY_DATA_DIR", self.dir.path())
            .current_dir(self.dir.path());
        c
    }

    pub fn json(&self, args: &[&str], stdin: Option<&str>) -> serde_json::Value {
        let mut c = self.cmd();
        c.args(args)
            .arg("--json")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn");
        if let Some(s) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(s.as_bytes())
                .expect("write");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    }

    /// Starts the server; returns it and its base URL and the time until it answered.
    pub fn serve(&self) -> (Child, String, Duration) {
        serve_cmd(self.cmd())
    }
}

/// Starts `rekey serve` from `c` (a [`World::cmd`] with extra settings);
/// returns it, its base URL and the time until it listened.
#[allow(dead_code)]
pub fn serve_cmd(mut c: Command) -> (Child, String, Duration) {
    let started = Instant::now();
    c.args(["serve", "--listen", "127.0.0.1:0"])
        .env("REKEY_LOG", "warn,rekey::server=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // What went wrong in the server is part of a benchmark's answer.
            if line.contains("ERROR") || line.contains(" WARN") {
                eprintln!("[server] {line}");
            }
            if !sent {
                if let Some(i) = line.find("listening on http://") {
                    let url: String = line[i + 13..]
                        .chars()
                        .take_while(|c| !c.is_whitespace())
                        .collect();
                    let _ = tx.send(url);
                    sent = true;
                }
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server start");
    (child, url, started.elapsed())
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(name) = self.pg_db.take() {
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(async {
                        if let Ok(p) = sqlx::PgPool::connect(&pg_admin()).await {
                            let _ = sqlx::query(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .execute(&p)
                            .await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

pub struct Report {
    pub name: String,
    pub ok: usize,
    pub failed: usize,
    pub secs: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Report {
    pub fn print(&self, backend: &str) {
        println!(
            "{:<34} {:<9} {:>8} ok {:>5} failed {:>10.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
            self.name,
            backend,
            self.ok,
            self.failed,
            self.ok as f64 / self.secs,
            self.p50_ms,
            self.p99_ms
        );
    }
}

/// Runs `workers` closed loops of `op` for `duration` (or until `op`
/// returns None, meaning the worker ran out of work).
pub async fn run<S, F, Fut>(
    name: &str,
    workers: usize,
    duration: Duration,
    states: Vec<S>,
    op: F,
) -> Report
where
    S: Send + 'static,
    F: Fn(reqwest::Client, S) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Option<(bool, S)>> + Send,
{
    let lat = Arc::new(Mutex::new(Vec::<f64>::new()));
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    let mut states = states.into_iter();
    for _ in 0..workers {
        let Some(mut st) = states.next() else { break };
        let op = op.clone();
        let lat = lat.clone();
        let failed = failed.clone();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .expect("client");
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while start.elapsed() < duration {
                let t = Instant::now();
                match op(client.clone(), st).await {
                    Some((ok, next)) => {
                        if ok {
                            mine.push(t.elapsed().as_secs_f64() * 1000.0);
                        } else {
                            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        st = next;
                    }
                    None => break,
                }
            }
            lat.lock().await.extend(mine);
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    let secs = start
        .elapsed()
        .as_secs_f64()
        .min(duration.as_secs_f64().max(0.001));
    let mut l = lat.lock().await.clone();
    l.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let pct = |p: f64| {
        if l.is_empty() {
            0.0
        } else {
            l[((l.len() as f64 * p) as usize).min(l.len() - 1)]
        }
    };
    Report {
        name: name.to_string(),
        ok: l.len(),
        failed: failed.load(std::sync::atomic::Ordering::Relaxed),
        secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

/// Runs wrk (when installed: `apt-get install wrk`) with a Lua request
/// script; a lighter load generator than reqwest, so the server gets more of
/// the cores. Prints one line like the closed-loop runner.
pub fn wrk(name: &str, backend: &str, target: &str, lua: &str, dur: Duration) {
    wrk_with(name, backend, target, lua, dur, 32)
}

/// [`wrk`] with `connections` open connections.
pub fn wrk_with(
    name: &str,
    backend: &str,
    target: &str,
    lua: &str,
    dur: Duration,
    connections: usize,
) {
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("{name:<34} {backend:<9} (wrk not installed: apt-get install wrk)");
        return;
    }
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("s.lua");
    if std::fs::write(&path, lua).is_err() {
        return;
    }
    let Ok(out) = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), "--latency", "-d"])
        .arg(format!("{}s", dur.as_secs().max(1)))
        .arg("-s")
        .arg(&path)
        .arg(target)
        .output()
    else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let grab = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_string()
    };
    let non2xx = text
        .lines()
        .find(|l| l.contains("Non-2xx"))
        .unwrap_or("")
        .trim()
        .to_string();
    println!(
        "{:<34} {:<9} {:>10} req/s   p50 {:>8}   p99 {:>8}   {non2xx}",
        name,
        backend,
        grab("Requests/sec:"),
        grab("50%"),
        grab("99%")
    );
}

/// The backends to run (`REKEY_BENCH_BACKENDS=sqlite`, default both).
pub fn backends() -> Vec<&'static str> {
    let only = std::env::var("REKEY_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    ["sqlite", "postgres"]
        .into_iter()
        .filter(|b| only.contains(b))
        .collect()
}

/// The admin API as an org admin (session cookie and CSRF token).
pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
    pub csrf: String,
}

impl Api {
    pub async fn post(&self, path: &str, body: Value) -> reqwest::StatusCode {
        self.http
            .post(format!("{}{path}", self.url))
            .header("X-CSRF-Token", &self.csrf)
            .json(&body)
            .send()
            .await
            .map(|r| r.status())
            .unwrap_or(reqwest::StatusCode::BAD_GATEWAY)
    }

    /// Starts an incident campaign over `scope` and polls it every 100 ms
    /// until it is no longer running or `timeout` has passed; `on_tick`
    /// sees each status document. Returns the last one.
    pub async fn campaign(
        &self,
        reason: &str,
        scope: &str,
        timeout: Duration,
        mut on_tick: impl FnMut(&Value),
    ) -> Value {
        let r = self
            .http
            .post(format!("{}/api/v1/incidents", self.url))
            .header("X-CSRF-Token", &self.csrf)
            .json(&json!({"reason": reason, "scope": scope}))
            .send()
            .await
            .expect("start");
        assert_eq!(r.status(), 201, "campaign start");
        let id = r.json::<Value>().await.expect("json")["id"]
            .as_str()
            .expect("id")
            .to_string();
        let deadline = Instant::now() + timeout;
        let mut v = Value::Null;
        while Instant::now() < deadline {
            // The paged answer (one item): its counts are the whole
            // campaign's, counted in SQL. Reading every item ten times a
            // second would measure the watcher, not the campaign.
            v = self
                .http
                .get(format!("{}/api/v1/incidents/{id}?limit=1", self.url))
                .send()
                .await
                .expect("status")
                .json()
                .await
                .expect("json");
            on_tick(&v);
            if v["status"] != "running" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        v
    }

    /// Creates connection `name` with `settings` and stores `password`.
    pub async fn connection(
        &self,
        kind: &str,
        name: &str,
        settings: Value,
        password: &str,
    ) -> bool {
        let a = self
            .post(
                "/api/v1/orgs/acme/connections",
                json!({"kind": kind, "name": name, "settings": settings}),
            )
            .await;
        let b = self
            .post(
                &format!("/api/v1/orgs/acme/connections/{name}/credential"),
                json!({"fields": {"password": password}}),
            )
            .await;
        a.is_success() && b.is_success()
    }
}

/// Runs `f` over `items`, 16 at a time.
pub async fn each<T, F, Fut>(items: Vec<T>, f: F) -> usize
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    use futures::StreamExt;
    futures::stream::iter(items.into_iter().map(f))
        .buffer_unordered(16)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await
}

pub async fn redis_targets(api: &Api, run: &str, n: usize) -> Option<Vec<String>> {
    let client = redis::Client::open("redis://127.0.0.1:6379/").ok()?;
    let Ok(mut con) = client.get_multiplexed_async_connection().await else {
        eprintln!("SKIPPED Redis: unreachable");
        return None;
    };
    for i in 0..n {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(format!("rkb_{run}_{i}"))
            .arg("on")
            .arg("resetpass")
            .arg(format!(">pw-{i}-0123456789"))
            .arg("+ping")
            .arg("+acl|setuser")
            .arg("+acl|dryrun")
            .query_async(&mut con)
            .await
            .ok()?;
    }
    let names: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
    let made = each((0..n).collect(), |i| async move {
        api.connection(
            "redis",
            &format!("r{i}"),
            json!({"host": "127.0.0.1", "username": format!("rkb_{run}_{i}")}),
            &format!("pw-{i}-0123456789"),
        )
        .await
    })
    .await;
    (made == n).then_some(names)
}

pub async fn drop_redis_users(run: &str, n: usize) {
    if let Ok(client) = redis::Client::open("redis://127.0.0.1:6379/") {
        if let Ok(mut con) = client.get_multiplexed_async_connection().await {
            for i in 0..n {
                let _: Result<(), _> = redis::cmd("ACL")
                    .arg("DELUSER")
                    .arg(format!("rkb_{run}_{i}"))
                    .query_async(&mut con)
                    .await;
            }
        }
    }
}

/// Org `acme` with an admin, a release server running its jobs every
/// second (keeper off), and the admin API logged in as that admin.
pub async fn admin_world(w: &World) -> (Child, Api) {
    w.json(&["org", "create", "acme"], None);
    w.json(
        &[
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            "admin@acme.test",
            "--permission",
            "read_write",
            "--admin",
            "--password-stdin",
        ],
        Some(PASSWORD),
    );
    let mut c = w.cmd();
    c.env("REKEY_JOBS_INTERVAL", "1s")
        .env("REKEY_KEEPER_INTERVAL", "0");
    let (child, url, _) = serve_cmd(c);
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    let r = http
        .post(format!("{url}/api/v1/session"))
        .json(&json!({"email": "admin@acme.test", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    let csrf = r.json::<Value>().await.expect("json")["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_string();
    (child, Api { http, url, csrf })
}
