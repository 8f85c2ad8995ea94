//! Security issue #22 through the real binary: no target password reaches
//! a log (item 3), and no driver or probe connection to a target that
//! never answers hangs (item 4).
//!
//! These tests are about the connections rekey opens to targets, not about
//! its own store, so they run on SQLite only.

use std::process::Output;
use std::time::Duration;

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
