//! Security issue #22 through the real binary: no target password reaches
//! a log (item 3), and no driver or probe connection to a target that
//! never answers hangs (item 4).
//!
//! These tests are about the connections rekey opens to targets, not about
//! its own store, so they run on SQLite only.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;

/// What the proxy does with a client packet that carries a password
/// statement (`SET PASSWORD`, `ALTER USER … IDENTIFIED BY`, `ALTER ROLE …
/// PASSWORD`): only those are slowed, so the rest of a rotation (logins,
/// probes) runs at full speed and the test stays fast.
#[derive(Clone, Copy)]
enum Hold {
    /// A slow target: the statement is forwarded after this long.
    Delay(Duration),
    /// A target that never answers it: the statement is dropped.
    Swallow,
}

/// A MySQL command packet (sequence 0: not part of the login handshake)
/// whose text sets a password.
fn sets_password(chunk: &[u8]) -> bool {
    let is_command = chunk.len() > 5 && chunk[3] == 0;
    let text = String::from_utf8_lossy(chunk);
    is_command && (text.contains("PASSWORD") || text.contains("IDENTIFIED BY"))
}

/// A TCP proxy on 127.0.0.1 in front of `upstream`; returns its port.
async fn proxy(upstream: &'static str, hold: Hold) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if sets_password(&buf[..n]) {
                        match hold {
                            Hold::Delay(d) => tokio::time::sleep(d).await,
                            Hold::Swallow => continue,
                        }
                    }
                    if sw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A listener that accepts connections and never says a word; returns its
/// port. The sockets stay open for the life of the test.
async fn tarpit() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    port
}

/// Runs the CLI with extra environment variables; the output whatever the
/// exit status.
fn run_with(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = env.cmd();
    c.args(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    c.stdin(std::process::Stdio::null());
    c.output().expect("run rekey")
}

fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A fresh MariaDB account with password `pw`; returns its name and a root pool.
async fn maria_user(pw: &str) -> (String, sqlx::MySqlPool) {
    let user = format!("rk_{}", &ulid::Ulid::new().to_string().to_lowercase()[..12]);
    let root = sqlx::MySqlPool::connect("mysql://root@127.0.0.1:3306/mysql")
        .await
        .unwrap();
    sqlx::query(&format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{pw}'"))
        .execute(&root)
        .await
        .unwrap();
    (user, root)
}

/// The stored current password of connection `name` (a server is started
/// for the credentials endpoint and stopped again).
async fn stored_password(env: &Env, key: &str, name: &str) -> String {
    let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "0"), ("REKEY_KEEPER_INTERVAL", "0")]);
    stored_credential(env, &srv, key, name).await["password"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Item 3: a slow MariaDB (every password statement answered after 1.5 s,
/// past sqlx's 1 s slow-statement threshold, logged at WARN, the CLI's
/// default level) and a debug log level (every statement logged): neither
/// the old nor the new password appears in anything the CLI prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_passwords_stay_out_of_the_log() {
    if !require(mariadb_up(), "MariaDB") {
        return;
    }
    let Some(env) = Env::new(Engine::Sqlite).await else {
        return;
    };
    env.ok(&["org", "create", "acme"]);
    let old = "the-old-password-h3-0001";
    let (user, root) = maria_user(old).await;
    let port = proxy("127.0.0.1:3306", Hold::Delay(Duration::from_millis(1500))).await;
    connection(
        &env,
        "mysql",
        "maria",
        &[
            "host=127.0.0.1",
            &format!("port={port}"),
            "database=information_schema",
            &format!("username={user}"),
        ],
    );
    set_credential(&env, "maria", &["password"], &[old]);
    let key = service_key(&env);
    let rotate = [
        "rotate",
        "--org",
        "acme",
        "--connection",
        "maria",
        "--wait",
        "--json",
    ];

    // the default log level: the slow statement is what would be logged
    let first = run_with(&env, &[], &rotate);
    let log1 = all_output(&first);
    assert!(first.status.success(), "{log1}");
    let v: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(v["status"], "completed", "{v}");
    let new1 = stored_password(&env, &key, "maria").await;
    assert_ne!(new1, old);

    // every statement logged
    let second = run_with(&env, &[("REKEY_LOG", "debug")], &rotate);
    let log2 = all_output(&second);
    assert!(second.status.success(), "{log2}");
    let new2 = stored_password(&env, &key, "maria").await;
    assert_ne!(new2, new1);

    for (log, passwords) in [(&log1, [old, &new1]), (&log2, [&new1, &new2])] {
        for pw in passwords {
            assert!(
                !log.contains(pw),
                "a password is in the CLI's output:\n{log}"
            );
        }
    }
    let _ = sqlx::query(&format!("DROP USER '{user}'@'%'"))
        .execute(&root)
        .await;
}

/// Item 3 on PostgreSQL: the driver sends a SCRAM verifier, never the
/// password, but the verifier is a secret too (it lets its holder pose as
/// the server): at debug level neither reaches the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_verifiers_stay_out_of_the_log() {
    let pg_up = std::net::TcpStream::connect("127.0.0.1:5432").is_ok();
    if !require(pg_up, "PostgreSQL") {
        return;
    }
    let Some(env) = Env::new(Engine::Sqlite).await else {
        return;
    };
    env.ok(&["org", "create", "acme"]);
    let role = format!("rk_{}", ulid::Ulid::new().to_string().to_lowercase());
    let old = "the-old-password-h3-0002";
    let admin = sqlx::PgPool::connect(&pg_admin_url()).await.unwrap();
    sqlx::query(&format!("CREATE ROLE {role} LOGIN PASSWORD '{old}'"))
        .execute(&admin)
        .await
        .unwrap();
    connection(
        &env,
        "postgres",
        "warehouse",
        &[
            "host=127.0.0.1",
            "database=postgres",
            &format!("username={role}"),
        ],
    );
    set_credential(&env, "warehouse", &["password"], &[old]);
    let out = run_with(
        &env,
        &[("REKEY_LOG", "debug")],
        &[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "warehouse",
            "--wait",
            "--json",
        ],
    );
    let log = all_output(&out);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains(old), "{log}");
    assert!(
        !log.contains("SCRAM-SHA-256$"),
        "a SCRAM verifier is in the CLI's output:\n{log}"
    );
    let _ = sqlx::query(&format!("DROP ROLE {role}"))
        .execute(&admin)
        .await;
}

/// The budget the item-4 tests give rekey: short, so a test that would
/// hang without it ends quickly.
const BUDGET: [(&str, &str); 2] = [
    ("REKEY_TARGET_CONNECT_TIMEOUT", "1s"),
    ("REKEY_TARGET_STATEMENT_TIMEOUT", "1s"),
];

/// Runs the CLI with the short budget; `None` when it has not ended
/// after `limit` (it is killed then): it hung.
fn run_within(env: &Env, args: &[&str], stdin: &str, limit: Duration) -> Option<Output> {
    let mut c = env.cmd();
    c.args(args)
        .envs(BUDGET)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("spawn rekey");
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).expect("write stdin");
    }
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return Some(child.wait_with_output().expect("output"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Item 4: a MySQL, a PostgreSQL and a Redis connection whose target
/// accepts TCP and never answers. `connection test` fails within the
/// budget, naming what timed out and where; `rotate --wait` fails at its
/// check instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_never_answers_times_out() {
    let Some(env) = Env::new(Engine::Sqlite).await else {
        return;
    };
    env.ok(&["org", "create", "acme"]);
    let port = tarpit().await;
    let at = format!("127.0.0.1:{port}");
    for kind in ["mysql", "postgres", "redis"] {
        let name = format!("{kind}-tarpit");
        let port_setting = format!("port={port}");
        let mut settings = vec!["host=127.0.0.1", &port_setting, "username=app"];
        if kind != "redis" {
            settings.push("database=app");
        }
        connection(&env, kind, &name, &settings);
        // stored despite its failed probe (`--force`), which times out too
        let args = [
            "connection",
            "set-credential",
            "--org",
            "acme",
            "--name",
            &name,
            "--field",
            "password",
            "--value-stdin",
            "--force",
            "--json",
        ];
        let out = run_within(&env, &args, "the-password-h3-0003", Duration::from_secs(20))
            .unwrap_or_else(|| panic!("set-credential of {kind} hung"));
        assert!(out.status.success(), "{kind}: {}", all_output(&out));

        let started = Instant::now();
        let out = run_within(
            &env,
            &[
                "connection",
                "test",
                "--org",
                "acme",
                "--name",
                &name,
                "--json",
            ],
            "",
            Duration::from_secs(20),
        )
        .unwrap_or_else(|| panic!("connection test of {kind} hung"));
        let took = started.elapsed();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{kind}: {}", all_output(&out)));
        let message = v["last_test"]["message"].as_str().unwrap_or_default();
        assert_eq!(v["last_test"]["outcome"], "failed", "{kind}: {v}");
        assert!(
            message.contains("timed out") && message.contains(&at),
            "{kind}: the message names what timed out and where: {v}"
        );
        assert!(!message.contains("the-password-h3-0003"), "{v}");
        // a 1 s budget, and a process to start: well under the old 10 s
        assert!(took < Duration::from_secs(6), "{kind}: took {took:?}");

        let out = run_within(
            &env,
            &[
                "rotate",
                "--org",
                "acme",
                "--connection",
                &name,
                "--wait",
                "--json",
            ],
            "",
            Duration::from_secs(30),
        )
        .unwrap_or_else(|| panic!("rotate of {kind} hung"));
        assert_eq!(out.status.code(), Some(1), "{kind}: {}", all_output(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["status"], "failed", "{kind}: {v}");
        let reason = v["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("timed out") && reason.contains(&at),
            "{kind}: {v}"
        );
    }
}

/// Item 4, a statement: MariaDB answers the login, then never answers the
/// statement that sets the password. The apply step times out within the
/// budget, is retried, and the rotation ends `failed` naming the timeout;
/// nothing changed at the target, and the old password still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_is_never_answered_times_out() {
    if !require(mariadb_up(), "MariaDB") {
        return;
    }
    let Some(env) = Env::new(Engine::Sqlite).await else {
        return;
    };
    env.ok(&["org", "create", "acme"]);
    let old = "the-old-password-h3-0004";
    let (user, root) = maria_user(old).await;
    let port = proxy("127.0.0.1:3306", Hold::Swallow).await;
    connection(
        &env,
        "mysql",
        "maria",
        &[
            "host=127.0.0.1",
            &format!("port={port}"),
            "database=information_schema",
            &format!("username={user}"),
        ],
    );
    set_credential(&env, "maria", &["password"], &[old]);

    // The failed attempts are retried after a backoff: the test clock is
    // moved on meanwhile, in steps shorter than a lease.
    let clock = {
        let env_clock = env.clock_file();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let now: i64 = std::fs::read_to_string(&env_clock)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                let _ = std::fs::write(&env_clock, (now + 5_000).to_string());
            }
        })
    };
    let args = [
        "rotate",
        "--org",
        "acme",
        "--connection",
        "maria",
        "--wait",
        "--json",
    ];
    let out = tokio::task::spawn_blocking({
        let mut c = env.cmd();
        c.args(args)
            .envs(BUDGET)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        move || {
            let mut child = c.spawn().expect("spawn rekey");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(60) {
                if let Ok(Some(_)) = child.try_wait() {
                    return Some(child.wait_with_output().expect("output"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    })
    .await
    .unwrap();
    clock.abort();
    let out = out.expect("the rotation hung on a statement that is never answered");
    let log = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "failed", "{v}");
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("apply:")
            && reason.contains("timed out")
            && reason.contains(&format!("127.0.0.1:{port}")),
        "{v}"
    );
    assert!(!log.contains(old), "{log}");
    // nothing reached the target: the old password still logs in
    let url = format!("mysql://{user}:{old}@127.0.0.1:3306/information_schema");
    {
        use sqlx::Connection;
        assert!(sqlx::MySqlConnection::connect(&url).await.is_ok());
    }
    let _ = sqlx::query(&format!("DROP USER '{user}'@'%'"))
        .execute(&root)
        .await;
}
