//! Test harness: a fresh database per test (a temporary SQLite file, or a
//! fresh PostgreSQL database), the real `rekey` binary for the CLI and for
//! `rekey serve` on an ephemeral port.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub const BIN: &str = env!("CARGO_BIN_EXE_rekey");

pub fn pg_admin_url() -> String {
    std::env::var("REKEY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// One test's world.
pub struct Env {
    pub engine: Engine,
    pub dir: tempfile::TempDir,
    pub db_url: String,
    pub master_key: String,
    pg_db: Option<String>,
}

impl Env {
    /// A fresh world; `None` (after printing SKIPPED) when the engine is
    /// PostgreSQL and it is unreachable outside CI. In CI it must run.
    pub async fn new(engine: Engine) -> Option<Env> {
        let dir = tempfile::tempdir().expect("tempdir");
        let master_key = run_plain(&["keyring", "generate"]).trim().to_string();
        let (db_url, pg_db) = match engine {
            Engine::Sqlite => (
                format!("sqlite:{}", dir.path().join("rekey.db").display()),
                None,
            ),
            Engine::Postgres => {
                let admin = match sqlx::PgPool::connect(&pg_admin_url()).await {
                    Ok(p) => p,
                    Err(e) => {
                        if in_ci() {
                            panic!("PostgreSQL is required in CI but unreachable: {e}");
                        }
                        eprintln!(
                            "SKIPPED: PostgreSQL unreachable at {} ({e})",
                            pg_admin_url()
                        );
                        return None;
                    }
                };
                let name = format!(
                    "rekey_test_{}",
                    ulid::Ulid::new().to_string().to_lowercase()
                );
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create database");
                admin.close().await;
                let base = pg_admin_url();
                let url = match base.rfind('/') {
                    Some(i) => format!("{}/{name}", &base[..i]),
                    None => panic!("bad postgres url"),
                };
                (url, Some(name))
            }
        };
        Some(Env {
            engine,
            dir,
            db_url,
            master_key,
            pg_db,
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A `rekey` command with this world's database, key and light argon2.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("REKEY_DATABASE_URL", &self.db_url)
            .env("REKEY_MASTER_KEY", &self.master_key)
            .env("REKEY_DATA_DIR", self.data_dir())
            .env("REKEY_ARGON2_MEMORY_KIB", "1024")
            .env("REKEY_ARGON2_ITERATIONS", "1")
            .env("REKEY_TEST_CLOCK_FILE", self.clock_file())
            .current_dir(self.dir.path());
        c
    }

    /// The test clock's offset file: every process of this world reads its
    /// time as the system time plus the offset in it.
    pub fn clock_file(&self) -> PathBuf {
        self.dir.path().join("clock-offset-ms")
    }

    /// Moves this world's clock forward by `d` (instead of sleeping through
    /// it): every server and CLI command of the world sees it at once.
    #[allow(dead_code)]
    pub fn advance(&self, d: Duration) {
        let now: i64 = std::fs::read_to_string(self.clock_file())
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let next = now + i64::try_from(d.as_millis()).expect("duration");
        // Written aside and renamed over (atomic): every `now` of a running
        // server reads the file, and one that caught it truncated, half
        // written, would read no offset and mint tokens already expired.
        let tmp = self.dir.path().join("clock-offset-ms.next");
        std::fs::write(&tmp, next.to_string()).expect("write clock");
        std::fs::rename(&tmp, self.clock_file()).expect("move clock");
    }

    /// Runs the CLI; returns the output whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_stdin(args, None)
    }

    pub fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = self.cmd();
        c.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn rekey");
        if let Some(s) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(s.as_bytes())
                .expect("write stdin");
        } else {
            drop(child.stdin.take());
        }
        child.wait_with_output().expect("wait rekey")
    }

    /// Runs the CLI, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rekey {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Runs the CLI with `--json`, asserts success, parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let s = self.ok(&a);
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("rekey {args:?}: not JSON ({e}): {s}"))
    }

    pub fn json_stdin(&self, args: &[&str], stdin: &str) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.run_stdin(&a, Some(stdin));
        assert!(
            out.status.success(),
            "rekey {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    }

    /// An org with an admin user `admin@SLUG.test` whose password is `PASSWORD`.
    pub fn org_with_admin(&self, slug: &str) -> String {
        self.ok(&["org", "create", slug]);
        self.admin_of(slug)
    }

    /// An admin user `admin@SLUG.test` (password `PASSWORD`) of the
    /// existing org `slug`.
    pub fn admin_of(&self, slug: &str) -> String {
        let email = format!("admin@{slug}.test");
        self.json_stdin(
            &[
                "user",
                "create",
                "--org",
                slug,
                "--email",
                &email,
                "--permission",
                "read_write",
                "--admin",
                "--password-stdin",
            ],
            PASSWORD,
        );
        email
    }

    /// Starts `rekey serve` on an ephemeral port.
    pub fn serve(&self) -> Server {
        self.serve_with(&[])
    }

    pub fn serve_with(&self, extra_env: &[(&str, &str)]) -> Server {
        let mut c = self.cmd();
        c.args(["serve", "--listen", "127.0.0.1:0"])
            .env("REKEY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("spawn rekey serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(i) = line.find("listening on http://") {
                        let rest = &line[i + "listening on ".len()..];
                        let url: String = rest
                            .chars()
                            .take_while(|c| !c.is_whitespace() && *c != '"')
                            .collect();
                        let _ = tx.send(Ok(url));
                        sent = true;
                    }
                }
                lines.lock().unwrap().push(line);
            }
            if !sent {
                let _ = tx.send(Err(lines.lock().unwrap().join("\n")));
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(u)) => u,
            Ok(Err(log)) => panic!("rekey serve exited before listening:\n{log}"),
            Err(_) => panic!("rekey serve did not start within 30 s"),
        };
        Server { child, url, log }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(name) = self.pg_db.take() {
            // Best effort, on a thread of its own (Drop cannot await).
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        if let Ok(p) = sqlx::PgPool::connect(&pg_admin_url()).await {
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

pub const PASSWORD: &str = "correct-horse-battery-staple";

fn run_plain(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("run rekey");
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub struct Server {
    pub child: Child,
    pub url: String,
    /// Its stderr (the log, `REKEY_LOG=info`) so far, one entry a line.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Whether a line of its log so far contains every one of `parts`.
    #[allow(dead_code)]
    pub fn logged(&self, parts: &[&str]) -> bool {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter().any(|l| parts.iter().all(|p| l.contains(p)))
    }

    /// The lines of its log so far at WARN or ERROR, for a failure to show
    /// (a peer's 500 names only a request id).
    #[allow(dead_code)]
    pub fn troubles(&self) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .cloned()
            .collect()
    }

    /// How many lines of its log so far contain every one of `parts`.
    #[allow(dead_code)]
    pub fn count(&self, parts: &[&str]) -> usize {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    /// Freezes the process (SIGSTOP): it holds its connections and answers
    /// nothing until [`Server::resume`], so a peer's request to it hangs
    /// mid-flight.
    #[allow(dead_code)]
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    #[allow(dead_code)]
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill {sig} {}", self.child.id());
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP client with a cookie store and no redirects followed.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Logs in to the admin API; returns (client with session cookie, csrf token).
#[allow(dead_code)]
pub async fn admin_login(srv: &Server, email: &str) -> (reqwest::Client, String) {
    let c = client();
    let r = c
        .post(srv.at("/api/v1/session"))
        .json(&serde_json::json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200, "login failed");
    let v: serde_json::Value = r.json().await.expect("json");
    (c, v["csrf_token"].as_str().expect("csrf").to_string())
}

#[allow(dead_code)]
pub async fn wait_until<F: FnMut() -> bool>(mut f: F, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// [`wait_until`] for a check that reads asynchronously (the database).
#[allow(dead_code)]
pub async fn wait_until_async<F, Fut>(mut f: F, limit: Duration) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Runs one test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! dual {
    ($name:ident, |$env:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn body($env: $crate::harness::Env) $body
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(e) = $crate::harness::Env::new($crate::harness::Engine::Sqlite).await {
                    body(e).await
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(e) = $crate::harness::Env::new($crate::harness::Engine::Postgres).await {
                    body(e).await
                }
            }
        }
    };
}

/// Is Redis listening on 127.0.0.1:6379?
#[allow(dead_code)]
pub fn redis_up() -> bool {
    std::net::TcpStream::connect_timeout(&"127.0.0.1:6379".parse().unwrap(), Duration::from_secs(1))
        .is_ok()
}

/// A service a test needs: SKIPPED off CI when it is down, a failure in CI.
#[allow(dead_code)]
pub fn require(up: bool, what: &str) -> bool {
    if !up {
        assert!(!in_ci(), "{what} is required in CI but unreachable");
        eprintln!("SKIPPED: {what} unreachable");
    }
    up
}

/// Is MariaDB listening on 127.0.0.1:3306?
#[allow(dead_code)]
pub fn mariadb_up() -> bool {
    std::net::TcpStream::connect_timeout(&"127.0.0.1:3306".parse().unwrap(), Duration::from_secs(1))
        .is_ok()
}

/// A service key for reading connection credentials (`platform`).
#[allow(dead_code)]
pub fn service_key(env: &Env) -> String {
    env.json(&["service-key", "create", "--name", "platform"])["key"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Connection `name` of org `acme`'s stored current credential, read as
/// platform code reads it (the credentials endpoint, with a service key).
#[allow(dead_code)]
pub async fn stored_credential(
    env: &Env,
    srv: &Server,
    key: &str,
    name: &str,
) -> serde_json::Value {
    let id = env.json(&["connection", "show", "--org", "acme", "--name", name])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let v: serde_json::Value = client()
        .get(srv.at(&format!("/api/v1/orgs/acme/connections/{id}/credentials")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["credentials"].clone()
}

/// Waits (up to 60 s: a loaded CI machine runs many servers at once) for
/// rotation `id` to reach status `want`.
#[allow(dead_code)]
pub async fn wait_for_status(env: &Env, id: &str, want: &str) -> serde_json::Value {
    for _ in 0..600 {
        let v = env.json(&["rotation", "show", id]);
        if v["status"] == want {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "rotation {id} never reached {want}: {}",
        env.json(&["rotation", "show", id])
    );
}

/// Creates connection `name` of org `acme` with `settings` (`key=value`).
#[allow(dead_code)]
pub fn connection(env: &Env, kind: &str, name: &str, settings: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "connection",
        "create",
        "--org",
        "acme",
        "--kind",
        kind,
        "--name",
        name,
    ];
    for s in settings {
        args.extend(["--setting", s]);
    }
    env.json(&args)
}

/// Stores `values` (one per field, in order) as connection `name`'s credential.
#[allow(dead_code)]
pub fn set_credential(
    env: &Env,
    name: &str,
    fields: &[&str],
    values: &[&str],
) -> serde_json::Value {
    let mut args = vec![
        "connection",
        "set-credential",
        "--org",
        "acme",
        "--name",
        name,
    ];
    for f in fields {
        args.extend(["--field", f]);
    }
    args.push("--value-stdin");
    env.json_stdin(&args, &format!("{}\n", values.join("\n")))
}

/// Stores `value` as connection `name`'s `field` without a passing probe
/// (`--force`: the target is not reachable in the test).
#[allow(dead_code)]
pub fn store_unprobed(env: &Env, name: &str, field: &str, value: &str) -> serde_json::Value {
    env.json_stdin(
        &[
            "connection",
            "set-credential",
            "--org",
            "acme",
            "--name",
            name,
            "--field",
            field,
            "--value-stdin",
            "--force",
        ],
        value,
    )
}

/// GETs `url` with `c` and reads its body as JSON (whatever the status).
#[allow(dead_code)]
pub async fn get_json(c: &reqwest::Client, url: String) -> serde_json::Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

/// Walks a paged admin API list from `url` (its query without `after`) by
/// `next_after` to the end: every page's answer, each asserted 200.
#[allow(dead_code)]
pub async fn api_pages(c: &reqwest::Client, url: String) -> Vec<serde_json::Value> {
    let mut pages: Vec<serde_json::Value> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        assert!(pages.len() < 40, "the pages never end: {url}");
        let mut at = reqwest::Url::parse(&url).unwrap();
        if let Some(a) = &after {
            at.query_pairs_mut().append_pair("after", a);
        }
        let r = c.get(at.clone()).send().await.unwrap();
        assert_eq!(r.status(), 200, "{at}");
        let v: serde_json::Value = r.json().await.unwrap();
        after = v["next_after"].as_str().map(str::to_string);
        pages.push(v);
        if after.is_none() {
            return pages;
        }
    }
}

/// Runs `args` (a `--json` command) every 100 ms, up to 20 s, until `done`
/// holds for its answer; returns the last answer.
#[allow(dead_code)]
pub async fn poll(
    env: &Env,
    args: &[&str],
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut v = serde_json::Value::Null;
    for _ in 0..200 {
        v = env.json(args);
        if done(&v) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    v
}

/// The first column of the first row `sql` answers on the world's database,
/// as an integer (`None` when no row).
#[allow(dead_code)]
pub async fn query_i64(env: &Env, sql: &str) -> Option<i64> {
    match env.engine {
        Engine::Sqlite => {
            let p = sqlx::SqlitePool::connect(&env.db_url).await.unwrap();
            let v = sqlx::query_scalar(sql).fetch_optional(&p).await.unwrap();
            p.close().await;
            v
        }
        Engine::Postgres => {
            let p = sqlx::PgPool::connect(&env.db_url).await.unwrap();
            let v = sqlx::query_scalar(sql).fetch_optional(&p).await.unwrap();
            p.close().await;
            v
        }
    }
}

/// Runs `sql` on the world's database.
pub async fn exec_sql(env: &Env, sql: &str) {
    match env.engine {
        Engine::Sqlite => {
            let p = sqlx::SqlitePool::connect(&env.db_url).await.unwrap();
            sqlx::query(sql).execute(&p).await.unwrap();
            p.close().await;
        }
        Engine::Postgres => {
            let p = sqlx::PgPool::connect(&env.db_url).await.unwrap();
            sqlx::query(sql).execute(&p).await.unwrap();
            p.close().await;
        }
    }
}
