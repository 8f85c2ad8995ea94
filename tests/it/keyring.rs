//! Keyring: no plaintext at rest, rotation that survives SIGKILL, ciphertexts
//! bound to their row, the generated key file.

use std::time::Duration;

use crate::dual;
use crate::foundation::tamper;
use crate::harness::*;
use serde_json::{json, Value};

/// Logs in `n` times; returns the (cookie token, csrf) pairs.
async fn sessions(srv: &Server, email: &str, n: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = client()
            .post(srv.at("/api/v1/session"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        let token = cookie
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_string();
        let v: Value = r.json().await.unwrap();
        out.push((token, v["csrf_token"].as_str().unwrap().to_string()));
    }
    out
}

async fn whoami(srv: &Server, token: &str) -> Value {
    let r = reqwest::Client::new()
        .get(srv.at("/api/v1/session"))
        .header("cookie", format!("rekey_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Every row of every table, as text.
async fn dump(env: &Env) -> Vec<u8> {
    match env.engine {
        Engine::Sqlite => {
            let mut bytes = std::fs::read(env.dir.path().join("rekey.db")).unwrap();
            if let Ok(wal) = std::fs::read(env.dir.path().join("rekey.db-wal")) {
                bytes.extend(wal);
            }
            bytes
        }
        Engine::Postgres => {
            let p = sqlx::PgPool::connect(&env.db_url).await.unwrap();
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
            )
            .fetch_all(&p)
            .await
            .unwrap();
            let mut out = Vec::new();
            for t in tables {
                let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {t} t"))
                    .fetch_all(&p)
                    .await
                    .unwrap();
                for r in rows {
                    out.extend(r.into_bytes());
                    out.push(b'\n');
                }
            }
            p.close().await;
            out
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn b64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

dual!(no_plaintext_at_rest_after_rotation, |env| {
    let admin = env.org_with_admin("acme");
    let srv = env.serve();
    let sess = sessions(&srv, &admin, 3).await;
    drop(srv);
    let old_key = env.master_key.clone();
    let new_key = env.ok(&["keyring", "generate"]).trim().to_string();
    let mut env = env;
    env.master_key = format!("{new_key},{old_key}");
    let r = env.json(&["keyring", "rotate"]);
    assert_eq!(r["done"], true);
    let st = env.json(&["keyring", "status"]);
    assert_eq!(st["pending"], 0);
    let data = dump(&env).await;
    let mut secrets: Vec<Vec<u8>> = vec![
        PASSWORD.into(),
        b64(&old_key),
        b64(&new_key),
        old_key.clone().into(),
        new_key.clone().into(),
    ];
    for (t, c) in &sess {
        secrets.push(t.clone().into());
        secrets.push(c.clone().into());
    }
    for s in &secrets {
        assert!(
            !contains(&data, s),
            "plaintext secret found in the database: {}",
            String::from_utf8_lossy(s)
        );
    }
    assert!(
        contains(&data, b"admin@acme.test"),
        "the scan reads real data"
    );
});

dual!(rotation_killed_midway_resumes, |env| {
    let admin = env.org_with_admin("acme");
    let srv = env.serve();
    let sess = sessions(&srv, &admin, 40).await;
    let old_key = env.master_key.clone();
    let new_key = env.ok(&["keyring", "generate"]).trim().to_string();
    let mut env = env;
    env.master_key = format!("{new_key},{old_key}");
    let total = env.json(&["keyring", "status"])["pending"]
        .as_i64()
        .unwrap();
    assert!(total >= 41, "{total}");
    let mut c = env.cmd();
    c.args([
        "keyring",
        "rotate",
        "--batch-size",
        "2",
        "--pause",
        "100ms",
        "--json",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let pending = env.json(&["keyring", "status"])["pending"]
        .as_i64()
        .unwrap();
    assert!(
        pending > 0 && pending < total,
        "killed midway: {pending} of {total} left"
    );
    // the server (old key list) and the restarted rotation both read everything
    let r = env.json(&["keyring", "rotate"]);
    assert_eq!(r["done"], true);
    assert_eq!(env.json(&["keyring", "status"])["pending"], 0);
    assert_eq!(env.json(&["keyring", "verify"])["failures"], json!([]));
    // with only the new key configured, every session still works
    drop(srv);
    env.master_key = new_key;
    assert_eq!(env.json(&["keyring", "verify"])["failures"], json!([]));
    let srv = env.serve();
    for (t, csrf) in sess.iter().take(5) {
        assert_eq!(whoami(&srv, t).await["csrf_token"], csrf.as_str());
    }
});

dual!(ciphertext_moved_to_another_row_does_not_open, |env| {
    let admin = env.org_with_admin("acme");
    let srv = env.serve();
    let _ = sessions(&srv, &admin, 2).await;
    assert_eq!(env.json(&["keyring", "verify"])["failures"], json!([]));
    tamper(
        &env,
        "UPDATE sealed SET ciphertext = (SELECT ciphertext FROM sealed WHERE owner_table = 'admin_sessions' ORDER BY owner_id LIMIT 1)
         WHERE owner_table = 'admin_sessions' AND owner_id = (SELECT MAX(owner_id) FROM sealed WHERE owner_table = 'admin_sessions')",
    )
    .await;
    let out = env.run(&["keyring", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 failed"));
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_generates_a_private_key_file() {
    let mut env = Env::new(Engine::Sqlite).await.unwrap();
    env.master_key = String::new();
    let mut c = env.cmd();
    c.env_remove("REKEY_MASTER_KEY")
        .env_remove("REKEY_DATABASE_URL")
        .args(["org", "create", "acme"]);
    let out = c.output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("generated one"));
    let key = env.data_dir().join("master.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(env.data_dir().join("rekey.db").exists());
    // the key file is used from then on, and rotation with --generate works
    let mut c = env.cmd();
    c.env_remove("REKEY_MASTER_KEY")
        .env_remove("REKEY_DATABASE_URL")
        .args(["keyring", "rotate", "--generate", "--remove-old", "--json"]);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["old_keys_removed"], true);
    let mut c = env.cmd();
    c.env_remove("REKEY_MASTER_KEY")
        .env_remove("REKEY_DATABASE_URL")
        .args(["keyring", "verify"]);
    assert!(c.output().unwrap().status.success());
}
