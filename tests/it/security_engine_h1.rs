//! Security issue #22, items 11, 7, 8 and 12: a lost or exposed master key
//! file, the server following a keyring rotation, settings that decide where
//! a credential goes frozen while one is held, the refresh keeper's lease and
//! its `invalid_grant` reading, and test hooks only in debug builds.

use crate::dual;
use crate::harness::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------- #11 ----

/// This world with its key in `{data_dir}/master.key` instead of
/// `REKEY_MASTER_KEY` (an empty variable means "not set").
fn with_key_file(mut env: Env) -> Env {
    env.master_key = String::new();
    env
}

fn key_file(env: &Env) -> std::path::PathBuf {
    env.data_dir().join("master.key")
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

dual!(lost_key_file_is_an_error_not_a_new_key, |env| {
    let env = with_key_file(env);
    env.org_with_admin("acme");
    let path = key_file(&env);
    assert!(path.exists(), "the first command generated the key file");
    std::fs::remove_file(&path).unwrap();

    let out = env.run(&["org", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("restore"), "says to restore it: {err}");
    assert!(
        err.contains(&path.display().to_string()),
        "names the path: {err}"
    );
    assert!(!path.exists(), "no new key was generated");
    // the server refuses to start the same way
    let out = env.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(!path.exists(), "no new key was generated");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_file_readable_by_others_is_refused() {
    let env = with_key_file(Env::new(Engine::Sqlite).await.unwrap());
    env.ok(&["org", "create", "acme"]);
    let path = key_file(&env);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();

    let out = env.run(&["org", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains(&path.display().to_string()) && err.contains("chmod 600"),
        "names the file and the fix: {err}"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644,
        "refused, not silently changed"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    env.ok(&["org", "list"]);
}

/// Logs in; returns the session cookie's token and its CSRF token.
async fn login(srv: &Server, email: &str) -> (String, String) {
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
        .and_then(|c| c.split_once('='))
        .unwrap()
        .1
        .to_string();
    let v: Value = r.json().await.unwrap();
    (token, v["csrf_token"].as_str().unwrap().to_string())
}

/// The session's CSRF token as the server reads it back (a sealed value).
async fn session_csrf(srv: &Server, token: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(srv.at("/api/v1/session"))
        .header("cookie", format!("rekey_session={token}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

dual!(server_follows_keyring_rotation_by_the_cli, |env| {
    let env = with_key_file(env);
    let admin = env.org_with_admin("acme");
    let srv = env.serve();
    let (before, csrf_before) = login(&srv, &admin).await;

    let r = env.json(&["keyring", "rotate", "--generate", "--remove-old"]);
    assert_eq!(r["old_keys_removed"], true);

    // a session sealed under the removed key, re-encrypted by the CLI
    let (status, v) = session_csrf(&srv, &before).await;
    assert_eq!(status, 200, "the running server opens the new key: {v}");
    assert_eq!(v["csrf_token"], csrf_before.as_str());
    // a value the server seals now is under the new key
    let (after, csrf_after) = login(&srv, &admin).await;
    assert_eq!(env.json(&["keyring", "status"])["pending"], 0);
    assert_eq!(env.json(&["keyring", "verify"])["failures"], json!([]));
    let (status, v) = session_csrf(&srv, &after).await;
    assert_eq!(status, 200);
    assert_eq!(v["csrf_token"], csrf_after.as_str());
});

// ----------------------------------------------------------------- #7 ----

/// A TCP listener that records every byte anyone sends it.
struct Listener {
    port: u16,
    got: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Listener {
    async fn start() -> Listener {
        use tokio::io::AsyncReadExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (g, a) = (got.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let g = g.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        g.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        Listener {
            port,
            got,
            accepted,
        }
    }

    fn heard(&self) -> (usize, Vec<u8>) {
        (
            self.accepted.load(std::sync::atomic::Ordering::SeqCst),
            self.got.lock().unwrap().clone(),
        )
    }
}

const REDIS_PASSWORD: &str = "the-held-password-0007";

dual!(
    settings_that_decide_where_a_credential_goes_are_frozen,
    |env| {
        let admin = env.org_with_admin("acme");
        connection(&env, "redis", "cache", &["host=127.0.0.1", "port=1"]);
        store_unprobed(&env, "cache", "password", REDIS_PASSWORD);
        let before = env.json(&["connection", "show", "--org", "acme", "--name", "cache"]);
        let listener = Listener::start().await;
        let port = format!("port={}", listener.port);

        // CLI: refused, naming the setting and the way to change it
        let out = env.run(&[
            "connection",
            "update",
            "--org",
            "acme",
            "--name",
            "cache",
            "--setting",
            &port,
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(
            err.contains("port")
                && err.contains("revoke-authorization")
                && err.contains("set-credential"),
            "names the setting and the way: {err}"
        );
        assert!(!err.contains(REDIS_PASSWORD));
        // an endpoint override is a destination too
        let out = env.run(&[
            "connection",
            "update",
            "--org",
            "acme",
            "--name",
            "cache",
            "--endpoint",
            &format!("api_url=http://127.0.0.1:{}/", listener.port),
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
        assert!(stderr_of(&out).contains("api_url"), "{}", stderr_of(&out));

        // the admin API: 409 in its format, the same check
        let srv = env.serve_with(&[("REKEY_KEEPER_INTERVAL", "0")]);
        let (c, csrf) = admin_login(&srv, &admin).await;
        for body in [
            json!({"settings": {"port": listener.port.to_string()}}),
            json!({"settings": {"host": "localhost"}}),
            json!({"endpoints": {"s3_url": format!("http://127.0.0.1:{}/", listener.port)}}),
        ] {
            let r = c
                .patch(srv.at("/api/v1/orgs/acme/connections/cache"))
                .header("X-CSRF-Token", &csrf)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 409, "{body}");
            let v: Value = r.json().await.unwrap();
            assert!(
                v.to_string().contains("revoke"),
                "says how to change it: {v}"
            );
        }
        // a setting that does not decide where still changes
        let r = c
            .patch(srv.at("/api/v1/orgs/acme/connections/cache"))
            .header("X-CSRF-Token", &csrf)
            .json(&json!({"settings": {"username": "default", "port": "1"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        // nothing changed, and Test still goes to the old place
        let after = env.json(&["connection", "show", "--org", "acme", "--name", "cache"]);
        assert_eq!(after["settings"], before["settings"]);
        assert_eq!(after["endpoints"], before["endpoints"]);
        assert_eq!(after["has_credentials"], true);
        let r = c
            .post(srv.at("/api/v1/orgs/acme/connections/cache/test"))
            .header("X-CSRF-Token", &csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        env.run(&["connection", "test", "--org", "acme", "--name", "cache"]);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let (accepted, bytes) = listener.heard();
        assert_eq!(accepted, 0, "nobody connected to the listener");
        assert!(bytes.is_empty());

        // the documented way: revoke, update, set the credential again
        env.json(&[
            "connection",
            "revoke-authorization",
            "--org",
            "acme",
            "--name",
            "cache",
        ]);
        let v = env.json(&[
            "connection",
            "update",
            "--org",
            "acme",
            "--name",
            "cache",
            "--setting",
            &port,
        ]);
        assert_eq!(v["settings"]["port"], listener.port.to_string());
        assert_eq!(v["has_credentials"], false);
    }
);

// ----------------------------------------------------------------- #8 ----

dual!(invalid_grant_for_the_held_token_means_needs_reauth, |env| {
    use crate::connections::{authorize, pair};
    let p = pair(&env, "1h", &[]).await;
    let c = authorize(&env, &p, "authorize").await;
    assert_eq!(c["status"], "connected");
    // the provider kills the grant: the token rekey holds is refused
    crate::connections::revoke_at_provider(&p);
    let r = env.json(&[
        "connection",
        "refresh",
        "--org",
        "acme",
        "--name",
        "upstream",
    ]);
    assert_eq!(r["status"], "needs_reauth", "{r}");
    let events = env.json(&["audit", "list", "--action", "connection.needs_reauth"]);
    let events: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "connection.needs_reauth")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["target"], "upstream");
    // the keeper's lock was given back: a later refresh is not refused as busy
    let r = env.json(&[
        "connection",
        "refresh",
        "--org",
        "acme",
        "--name",
        "upstream",
    ]);
    assert_eq!(r["status"], "needs_reauth");
});

/// How many events of `action` `env`'s audit log holds.
fn audited(env: &Env, action: &str) -> usize {
    env.json(&["audit", "list", "--action", action, "--limit", "10000"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .count()
}

dual!(
    a_keeper_stalled_past_its_lease_sends_nothing_on_waking,
    |env| {
        use crate::connections::{authorize, pair};
        use std::time::Duration;
        let p = pair(&env, "1h", &[]).await;
        let c = authorize(&env, &p, "authorize").await;
        assert_eq!(c["status"], "connected", "{c}");
        let id = c["id"].as_str().unwrap().to_string();
        // The access token comes due (the consumer's clock; the provider's runs on).
        env.advance(Duration::from_secs(3600));

        // Instance A: its keeper claims the refresh, reads the refresh token and
        // stalls (REKEY_TEST_PAUSE_BEFORE_REFRESH) right before its lease check.
        let release = env.dir.path().join("release-refresh");
        let a = env.serve_with(&[
            ("REKEY_KEEPER_INTERVAL", "1"),
            ("REKEY_TEST_PAUSE_BEFORE_REFRESH", release.to_str().unwrap()),
        ]);
        assert!(
            wait_until(
                || a.logged(&["paused before the refresh lease check", &id]),
                Duration::from_secs(30)
            )
            .await,
            "A took the refresh lease and stalled"
        );

        // A stalls past its lease; instance B's keeper takes the refresh over and
        // rotates the refresh token A read.
        env.advance(Duration::from_secs(61)); // refresh_jobs::LEASE_MS is 60 s
        let b = env.serve_with(&[("REKEY_KEEPER_INTERVAL", "1")]);
        assert!(
            wait_until(
                || audited(&env, "connection.refresh") == 1,
                Duration::from_secs(30)
            )
            .await,
            "B refreshed the connection"
        );

        // A wakes up holding the refresh token B already rotated.
        std::fs::write(&release, "").unwrap();
        let woke = wait_until(
            || {
                a.logged(&[
                    "lost the refresh lease before the refresh token was sent",
                    &id,
                ]) || a.logged(&["another refresh had already replaced it", &id])
            },
            Duration::from_secs(30),
        )
        .await;
        assert!(woke, "A finished its refresh attempt");

        // The provider's grant is live: no reuse detection, nothing revoked.
        assert_eq!(
            p.provider
                .json(&["audit", "list", "--action", "oauth.refresh.reuse_detected"])
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["action"] == "oauth.refresh.reuse_detected")
                .count(),
            0,
            "the provider saw a rotated refresh token presented again"
        );
        let auths = p.provider.json(&[
            "app",
            "authorizations",
            "--org",
            "prov",
            "--name",
            "consumer",
        ]);
        let auths = auths.as_array().unwrap();
        assert_eq!(auths.len(), 1, "{auths:?}");
        assert_eq!(auths[0]["status"], "Active", "{auths:?}");
        assert!(
            a.logged(&[
                "lost the refresh lease before the refresh token was sent",
                &id
            ]),
            "A gave up at its lease check"
        );
        // Only B's refresh was stored, and the connection works: its access
        // token at the provider, and its refresh token for a refresh after.
        assert_eq!(audited(&env, "connection.refresh"), 1);
        let v = env.json(&["connection", "show", "--org", "acme", "--name", "upstream"]);
        assert_eq!(v["status"], "connected", "{v}");
        let v = env.json(&["connection", "test", "--org", "acme", "--name", "upstream"]);
        assert_eq!(v["last_test"]["ok"], true, "{v}");
        let v = env.json(&[
            "connection",
            "refresh",
            "--org",
            "acme",
            "--name",
            "upstream",
        ]);
        assert_eq!(v["status"], "connected", "{v}");
        assert_eq!(audited(&env, "connection.refresh"), 2);
        assert_eq!(audited(&env, "connection.needs_reauth"), 0);
        drop((a, b, p));
    }
);
