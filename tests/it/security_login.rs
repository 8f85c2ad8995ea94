//! Regression tests for the inbound side of the security review: login
//! throttling, password hashing under load, client IPs, metrics labels,
//! connection limits, configuration errors and file modes (issue items 2,
//! 3, 6, 7, 9, 10, 11, 14 and 15). Each attacks the real binary.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

async fn sqlite() -> Env {
    Env::new(Engine::Sqlite).await.unwrap()
}

async fn login(srv: &Server, body: Value, xff: Option<&str>) -> reqwest::Response {
    let mut r = client().post(srv.at("/api/v1/session")).json(&body);
    if let Some(x) = xff {
        r = r.header("x-forwarded-for", x);
    }
    r.send().await.unwrap()
}

fn audit(env: &Env, action: &str) -> Vec<Value> {
    env.json(&["audit", "list", "--action", action, "--limit", "1000"])
        .as_array()
        .unwrap()
        .clone()
}

async fn metric(srv: &Server, name: &str) -> f64 {
    let text = client()
        .get(srv.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in metrics:\n{text}"))
}

/// Item 3: the check and the count are one step, so a burst of parallel
/// guesses gets no more tries than the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_get_no_more_than_the_account_limit() {
    let env = sqlite().await;
    let admin = env.org_with_admin("acme");
    let srv = env.serve();
    let guesses = (0..40).map(|i| {
        let body = json!({"email": admin, "password": format!("wrong-guess-{i:04}")});
        let srv = &srv;
        async move { login(srv, body, None).await.status().as_u16() }
    });
    let statuses = futures::future::join_all(guesses).await;
    let tried = statuses.iter().filter(|s| **s == 401).count();
    assert!(tried <= 5, "{tried} guesses were checked: {statuses:?}");
    assert!(
        statuses.iter().all(|s| [401, 429].contains(s)),
        "{statuses:?}"
    );
    // the right password is refused too, until the window ends
    let r = login(&srv, json!({"email": admin, "password": PASSWORD}), None).await;
    assert_eq!(r.status(), 429);
}

/// Item 6: the client's own `X-Forwarded-For` entries are not believed; the
/// address the trusted proxy appended is the one throttled and audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_forwarded_for_does_not_escape_the_ip_limit() {
    let env = sqlite().await;
    env.org_with_admin("acme");
    let srv = env.serve_with(&[
        ("REKEY_TRUST_FORWARDED_FOR", "true"),
        ("REKEY_LOGIN_MAX_FAILURES_PER_IP", "5"),
    ]);
    let mut statuses = Vec::new();
    for i in 0..8 {
        let spoofed = format!("10.9.{}.{}", i / 250, i % 250 + 1);
        let r = login(
            &srv,
            json!({"email": format!("nobody{i}@acme.test"), "password": "guess-guess-guess"}),
            Some(&format!("{spoofed}, 203.0.113.9")),
        )
        .await;
        statuses.push(r.status().as_u16());
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert_eq!(&statuses[5..], &[429; 3], "{statuses:?}");
    let failed = audit(&env, "session.login_failed");
    assert_eq!(failed.len(), 5);
    for row in &failed {
        assert_eq!(row["ip"], "203.0.113.9", "{row}");
    }
}

/// Item 7: made-up methods and paths do not become label values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_methods_and_paths_do_not_grow_metrics() {
    let env = sqlite().await;
    let srv = env.serve();
    let c = client();
    let before = c
        .get(srv.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for i in 0..100 {
        let method = format!("M{}{}", "X".repeat(1_000), i);
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = c
            .request(m, srv.at(&format!("/made-up/{i}/{}", "p".repeat(500))))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error());
        let r = c
            .get(srv.at(&format!("/another/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let after = c
        .get(srv.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!after.contains("XXXX"), "a method became a label");
    assert!(!after.contains("/made-up/") && !after.contains("/another/"));
    assert!(after.contains(r#"method="other""#), "{after}");
    assert!(after.contains(r#"route="unmatched""#), "{after}");
    assert!(
        after.len() < before.len() + 8_000,
        "metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
}

fn addr(srv: &Server) -> String {
    srv.url.trim_start_matches("http://").to_string()
}

/// True when the server closes `sock` (EOF or reset) within `limit`.
async fn closed_within(sock: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, sock.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // a 408 or similar before the close
        }
    }
}

/// Item 9: a socket that sends half a header, or nothing more after a
/// request, is closed; past `max_connections` new connections wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_sockets_are_closed_and_connections_capped() {
    let env = sqlite().await;
    let srv = env.serve_with(&[
        ("REKEY_HEADER_READ_TIMEOUT", "1s"),
        ("REKEY_IDLE_TIMEOUT", "2s"),
        ("REKEY_MAX_CONNECTIONS", "2"),
    ]);
    // slow header
    let mut slow = tokio::net::TcpStream::connect(addr(&srv)).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    // idle after one full request (keep-alive)
    let mut idle = tokio::net::TcpStream::connect(addr(&srv)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // both places are taken: a third connection is not served yet
    let mut third = tokio::net::TcpStream::connect(addr(&srv)).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(early.is_err(), "served past max_connections");
    assert!(
        closed_within(&mut slow, Duration::from_secs(10)).await,
        "slow header kept open"
    );
    assert!(
        closed_within(&mut idle, Duration::from_secs(10)).await,
        "idle socket kept open"
    );
    // …and once they are closed the waiting one is served
    let n = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf))
        .await
        .expect("third connection served")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

/// Item 10: what is typed into the email field is checked before anything
/// is counted or recorded, and unknown identities are recorded by digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_typed_as_email_never_reaches_the_audit_log() {
    let env = sqlite().await;
    env.org_with_admin("acme");
    let srv = env.serve();
    let typed = "Tr0ub4dor&3-my-real-password";
    let r = login(&srv, json!({"email": typed, "password": "x"}), None).await;
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(!body.contains(typed), "{body}");
    let huge = format!("{}@acme.test", "a".repeat(900_000));
    let r = login(&srv, json!({"email": huge, "password": "x"}), None).await;
    assert_eq!(r.status(), 400);
    assert!(audit(&env, "session.login_failed").is_empty());
    // a well-formed email of no account: recorded by digest only
    let r = login(
        &srv,
        json!({"email": "ghost.person@elsewhere.test", "password": "guess-guess-guess"}),
        None,
    )
    .await;
    assert_eq!(r.status(), 401);
    let all = env.ok(&["audit", "list", "--limit", "1000", "--json"]);
    assert!(!all.contains(typed));
    assert!(!all.contains("ghost.person"), "{all}");
    let failed = audit(&env, "session.login_failed");
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("login:unknown:"),
        "{}",
        failed[0]
    );
    // nor is it in the throttle table
    let db = sqlx::SqlitePool::connect(&env.db_url).await.unwrap();
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM rate_limits")
        .fetch_all(&db)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    assert!(
        keys.iter()
            .all(|k| !k.contains("ghost") && !k.contains('@')),
        "{keys:?}"
    );
}

/// Item 11: one password hash per attempt, however many orgs the email is
/// an admin of (the work, and so the timing, does not tell them apart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hash_per_login_whatever_the_memberships() {
    let env = sqlite().await;
    let admin = env.org_with_admin("acme");
    for slug in ["beta", "gamma"] {
        env.ok(&["org", "create", slug]);
        env.json_stdin(
            &[
                "user",
                "create",
                "--org",
                slug,
                "--email",
                &admin,
                "--permission",
                "read_write",
                "--admin",
                "--password-stdin",
            ],
            "another-password-entirely",
        );
    }
    let srv = env.serve();
    let base = metric(&srv, "rekey_password_hashes_total").await;
    let r = login(
        &srv,
        json!({"email": admin, "password": "wrong-password-123"}),
        None,
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        metric(&srv, "rekey_password_hashes_total").await,
        base + 1.0
    );
    let r = login(
        &srv,
        json!({"email": "nobody@acme.test", "password": "wrong-password-123"}),
        None,
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        metric(&srv, "rekey_password_hashes_total").await,
        base + 2.0
    );
    // without `org` the oldest membership is the one checked; `org` picks another
    let r = login(&srv, json!({"email": admin, "password": PASSWORD}), None).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["session"]["org"], "acme");
    let r = login(
        &srv,
        json!({"email": admin, "password": "another-password-entirely", "org": "gamma"}),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["session"]["org"], "gamma");
}

/// Item 2: a burst of logins is answered 503 + Retry-After past the pool
/// and its queue, instead of running every hash at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_burst_is_refused_past_the_hashing_pool() {
    let env = sqlite().await;
    env.org_with_admin("acme");
    let srv = env.serve_with(&[
        ("REKEY_PASSWORD_HASH_CONCURRENCY", "1"),
        ("REKEY_PASSWORD_HASH_QUEUE", "1"),
        // slow enough that the burst overlaps
        ("REKEY_ARGON2_MEMORY_KIB", "8192"),
        ("REKEY_ARGON2_ITERATIONS", "8"),
        ("REKEY_LOGIN_MAX_FAILURES_PER_IP", "1000"),
    ]);
    let burst = (0..30).map(|i| {
        let srv = &srv;
        async move {
            let r = login(
                srv,
                json!({"email": format!("n{i}@acme.test"), "password": "guess-guess-guess"}),
                None,
            )
            .await;
            let retry = r.headers().get("retry-after").is_some();
            (r.status().as_u16(), retry)
        }
    });
    let out = futures::future::join_all(burst).await;
    let busy: Vec<_> = out.iter().filter(|(s, _)| *s == 503).collect();
    assert!(!busy.is_empty(), "no attempt was refused: {out:?}");
    assert!(
        busy.iter().all(|(_, retry)| *retry),
        "503 without Retry-After"
    );
    assert!(out.iter().all(|(s, _)| [401, 503].contains(s)), "{out:?}");
    assert!(metric(&srv, "rekey_password_hash_refused_total").await >= busy.len() as f64);
    // refused attempts were not counted against the IP: the pool is free again
    let r = login(
        &srv,
        json!({"email": "late@acme.test", "password": "guess-guess-guess"}),
        None,
    )
    .await;
    assert_eq!(r.status(), 401);
}

/// Item 14: a malformed `rekey.toml` names the key and position, never the
/// value (which for `master_key` is the key itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_config_does_not_echo_the_master_key() {
    let env = sqlite().await;
    let secret = "c2VjcmV0LW1hc3Rlci1rZXktbWF0ZXJpYWwtMDEyMzQ1Ng";
    let path = env.dir.path().join("broken.toml");
    for (text, line) in [
        (
            format!("log = \"info\"\nmaster_key = \"{secret}\n"),
            "line 2",
        ),
        (format!("log = \"info\"\nmaster_key = {secret}\n"), "line 2"),
        (format!("master_key = [\"{secret}\"]\n"), "master_key"),
        (
            format!("database_url = [\"postgres://u:{secret}@h/db\"]\n"),
            "database_url",
        ),
    ] {
        std::fs::write(&path, &text).unwrap();
        // without the environment's master key and database, which would
        // override the file's values
        let out = env
            .cmd()
            .env_remove("REKEY_MASTER_KEY")
            .env_remove("REKEY_DATABASE_URL")
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--config",
                path.to_str().unwrap(),
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains(secret), "echoed the secret: {err}");
        assert!(
            !err.contains("c2VjcmV0"),
            "echoed part of the secret: {err}"
        );
        assert!(err.contains(line), "{err}");
    }
}

/// A setting the file gets wrong, not only its syntax, is reported by file
/// and line (the README's promise): a bad value, an unknown setting, and a
/// value the checks after parsing refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_name_file_and_line() {
    let env = sqlite().await;
    let path = env.dir.path().join("settings.toml");
    for (text, want) in [
        (
            "log = \"info\"\njobs_interval = \"soon\"\n",
            &["settings.toml line 2, column 1", "jobs_interval", "soon"][..],
        ),
        (
            "log = \"info\"\n\nbogus_setting = 1\n",
            &[
                "settings.toml line 3, column 1",
                "unknown setting bogus_setting",
            ][..],
        ),
        (
            "log = \"info\"\nlisten = \"nowhere\"\n",
            &["settings.toml line 2, column 1", "listen", "nowhere"][..],
        ),
        (
            "body_limit = \"big\"\n",
            &["settings.toml line 1, column 1", "body_limit"][..],
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let out = env
            .cmd()
            .args(["org", "list", "--config", path.to_str().unwrap()])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        for w in want {
            assert!(err.contains(w), "{text}: {w:?} not in {err}");
        }
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

/// Unknown `REKEY_*` variables are reported, where a person sees them: on
/// a command's stderr, and in the server's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_environment_variables_are_reported() {
    let env = sqlite().await;
    let out = env
        .cmd()
        .env("REKEY_LISTEM", "127.0.0.1:9000")
        .args(["org", "list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown environment variable REKEY_LISTEM ignored"),
        "{err}"
    );
    let srv = env.serve_with(&[("REKEY_JOBS_INTERVALL", "1s")]);
    assert!(
        srv.logged(&["unknown environment variable REKEY_JOBS_INTERVALL ignored"]),
        "not in the server's log"
    );
}

/// Item 15: the data directory is 0700 and the database files 0600.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = sqlite().await;
    let data = env.dir.path().join("fresh-data");
    let mut c = std::process::Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REKEY_DATA_DIR", &data)
        .env("REKEY_MASTER_KEY", &env.master_key)
        .env("REKEY_ARGON2_MEMORY_KIB", "1024")
        .env("REKEY_ARGON2_ITERATIONS", "1")
        .current_dir(env.dir.path())
        .args(["org", "create", "acme"]);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    let db = data.join("rekey.db");
    assert_eq!(mode(&db), 0o600);
    for suffix in ["-wal", "-shm"] {
        let p = data.join(format!("rekey.db{suffix}"));
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    // an older install's readable files are made private on the next start
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut c2 = std::process::Command::new(BIN);
    c2.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REKEY_DATA_DIR", &data)
        .env("REKEY_MASTER_KEY", &env.master_key)
        .current_dir(env.dir.path())
        .args(["org", "list"]);
    assert!(c2.output().unwrap().status.success());
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&db), 0o600);
}
