//! Verified cut-over that sees consumers, not service keys (issue 23, item
//! 7), against the real local Redis: a consumer caching the credential for
//! its `refresh_after_s` never holds a retired one, consumers behind one
//! key are readers of their own (`X-Rekey-Consumer`), and sessions Redis
//! keeps after the old password is removed hold no cut-over.

use std::time::Duration;

use serde_json::{json, Value};

use crate::dual;
use crate::harness::*;
use crate::rotation::{logs_in, redis_world};

/// The credentials endpoint's whole answer for connection `cache`, read
/// with `key` as `consumer` (none: the header is left out).
async fn read(srv: &Server, id: &str, key: &str, consumer: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .get(srv.at(&format!("/api/v1/orgs/acme/connections/{id}/credentials")))
        .bearer_auth(key);
    if let Some(c) = consumer {
        req = req.header("X-Rekey-Consumer", c);
    }
    req.send().await.unwrap()
}

async fn password(srv: &Server, id: &str, key: &str, consumer: Option<&str>) -> String {
    let r = read(srv, id, key, consumer).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["credentials"]["password"].as_str().unwrap().to_string()
}

fn cache_id(env: &Env) -> String {
    env.json(&["connection", "show", "--org", "acme", "--name", "cache"])["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Lets `user` read Redis's session list and end sessions, so the
/// rotation (acting as the user) can count and end them.
async fn may_manage_sessions(user: &str) {
    let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(user)
        .arg("+client|list")
        .arg("+client|kill")
        .query_async(&mut con)
        .await
        .unwrap();
}

/// A session of `user` opened with `password`, kept open.
async fn session(user: &str, password: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{user}:{password}@127.0.0.1:6379/").as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn pings(con: &mut redis::aio::MultiplexedConnection) -> bool {
    redis::cmd("PING").query_async::<String>(con).await.is_ok()
}

dual!(
    a_caching_consumer_beside_a_fresh_reader_never_holds_a_retired_credential,
    |env| {
        let old = "the-old-password-cc01";
        let Some(user) = redis_world(&env, old, true).await else {
            return;
        };
        let v = env.json(&[
            "connection",
            "update",
            "--org",
            "acme",
            "--name",
            "cache",
            "--refresh-after",
            "5m",
        ]);
        assert_eq!(v["refresh_after_s"], 300, "{v}");
        let bad = env.run(&[
            "connection",
            "update",
            "--org",
            "acme",
            "--name",
            "cache",
            "--refresh-after",
            "2h",
        ]);
        assert_eq!(bad.status.code(), Some(1), "longer than an hour is refused");
        let key = service_key(&env);
        let id = cache_id(&env);
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);

        // The caching consumer reads once and is told how long it may keep it.
        let r = read(&srv, &id, &key, None).await;
        assert_eq!(r.headers()["cache-control"], "private, max-age=300");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["refresh_after_s"], 300, "{v}");
        assert_eq!(v["credentials"]["password"], old);

        let v = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "cache",
            "--cutover-window",
            "0s",
            "--deadline",
            "1h",
        ]);
        let rid = v["id"].as_str().unwrap().to_string();
        wait_for_status(&env, &rid, "waiting_cutover").await;

        // A fresh reader behind the same key reads the new one: the key has
        // "moved", but the caching consumer's copy may be used for 5 minutes.
        let new = password(&srv, &id, &key, None).await;
        assert_ne!(new, old);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let v = env.json(&["rotation", "show", &rid]);
        assert_eq!(v["status"], "waiting_cutover", "{v}");
        assert_eq!(v["not_moved"], json!([]), "{v}");
        let said = v["steps"].to_string();
        assert!(said.contains("from its cache until"), "{v}");
        // Until when: the copy of version 1 in `cached`, each reader's own
        // in `cached_until_at`, in JSON, text and the console alike.
        assert_eq!(v["cached"][0]["version"], 1, "{v}");
        let until = v["cached"][0]["until_at"].as_str().unwrap().to_string();
        assert!(until.ends_with('Z'), "{v}");
        assert!(v["consumers"][0]["cached_until_at"].is_string(), "{v}");
        let text = env.ok(&["rotation", "show", &rid]);
        assert!(
            text.contains(&format!(
                "may use its cached copy of version 1 until {until}"
            )),
            "{text}"
        );
        env.json_stdin(
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
            PASSWORD,
        );
        let (web, _) = crate::console::sign_in(&srv, "admin@acme.test").await;
        let (status, html) =
            crate::console::get(&web, &srv, &format!("/ui/orgs/acme/rotations/{rid}")).await;
        assert_eq!(status, 200);
        assert!(html.contains("May cache until"), "{html}");
        assert!(html.contains(&format!("version 1 until {until}")), "{html}");
        // The caching consumer's last use of its copy, just before its
        // refresh_after passes, still works.
        env.advance(Duration::from_secs(290));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            env.json(&["rotation", "show", &rid])["status"],
            "waiting_cutover"
        );
        assert!(
            logs_in(&user, old).await,
            "a copy within refresh_after works"
        );

        // Once it has passed, the previous credential goes, without a timer
        // of its own: the job was released to exactly that time.
        env.advance(Duration::from_secs(11));
        let v = wait_for_status(&env, &rid, "completed").await;
        assert!(!logs_in(&user, old).await, "{v}");
        assert!(logs_in(&user, &new).await);
    }
);

dual!(consumers_behind_one_key_are_readers_of_their_own, |env| {
    let old = "the-old-password-cc02";
    if redis_world(&env, old, true).await.is_none() {
        return;
    }
    env.json(&[
        "connection",
        "update",
        "--org",
        "acme",
        "--name",
        "cache",
        "--refresh-after",
        "0s",
    ]);
    let key = service_key(&env);
    let other = env.json(&["service-key", "create", "--name", "other"])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let id = cache_id(&env);
    let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);

    // A bad consumer name is refused, and nothing is recorded.
    let long = "x".repeat(129);
    for bad in [long.as_str(), "tab\there", " "] {
        let r = read(&srv, &id, &other, Some(bad)).await;
        assert_eq!(r.status(), 400, "{bad:?}");
    }
    let r = read(&srv, &id, &key, Some("billing")).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["refresh_after_s"], 0);
    assert_eq!(password(&srv, &id, &key, Some("search")).await, old);

    let pre = env.json(&[
        "rotate",
        "--org",
        "acme",
        "--connection",
        "cache",
        "--preflight",
    ]);
    let consumers: Vec<&str> = pre["readers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["consumer"].as_str().unwrap())
        .collect();
    assert_eq!(consumers, ["billing", "search"], "{pre}");
    assert!(
        !pre.to_string().contains("service:other"),
        "nothing recorded: {pre}"
    );

    let v = env.json(&[
        "rotate",
        "--org",
        "acme",
        "--connection",
        "cache",
        "--cutover-window",
        "0s",
        "--deadline",
        "1h",
    ]);
    let rid = v["id"].as_str().unwrap().to_string();
    wait_for_status(&env, &rid, "waiting_cutover").await;
    let v = env.json(&["rotation", "show", &rid]);
    assert_eq!(v["consumers"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["not_moved"].as_array().unwrap().len(), 2, "{v}");

    // billing moves; search has not: the key alone proves nothing.
    assert_ne!(password(&srv, &id, &key, Some("billing")).await, old);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = env.json(&["rotation", "show", &rid]);
    assert_eq!(v["status"], "waiting_cutover", "{v}");
    assert_eq!(v["not_moved"][0]["consumer"], "search", "{v}");
    assert_eq!(v["not_moved"].as_array().unwrap().len(), 1, "{v}");

    // search's re-read wakes the cut-over at once (its next look was an
    // hour away, at the deadline).
    assert_ne!(password(&srv, &id, &key, Some("search")).await, old);
    wait_for_status(&env, &rid, "completed").await;
});

dual!(
    redis_sessions_kept_by_the_target_do_not_hold_the_cutover,
    |env| {
        let old = "the-old-password-cc03";
        let Some(user) = redis_world(&env, old, true).await else {
            return;
        };
        may_manage_sessions(&user).await;
        env.json(&[
            "connection",
            "update",
            "--org",
            "acme",
            "--name",
            "cache",
            "--refresh-after",
            "0s",
        ]);
        // A pool that opened its session before the rotation and never
        // reconnects.
        let mut pooled = session(&user, old).await;
        assert!(pings(&mut pooled).await);

        let v = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "cache",
            "--cutover-window",
            "0s",
            "--wait",
        ]);
        assert_eq!(v["status"], "completed", "{v}");
        let rid = v["id"].as_str().unwrap().to_string();
        let v = env.json(&["rotation", "show", &rid]);
        assert_eq!(v["sessions"]["kept"], 1, "{v}");
        assert!(pings(&mut pooled).await, "Redis keeps it working");
        assert!(!logs_in(&user, old).await);

        // An incident that asks ends them after the retire.
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "0")]);
        let new = crate::rotation::stored_password(&env, &srv, &service_key(&env)).await;
        drop(srv);
        // That read was this test's, not a consumer's: its key goes.
        env.ok(&["service-key", "revoke", "--name", "platform"]);
        let mut pooled = session(&user, &new).await;
        let v = env.json(&[
            "incident",
            "start",
            "--reason",
            "leaked",
            "--scope",
            "org:acme",
            "--kind",
            "redis",
            "--end-sessions",
            "--wait",
        ]);
        assert_eq!(v["items"][0]["status"], "verified", "{v}");
        let list = env.json(&["rotation", "list", "--org", "acme"]);
        let latest = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] != rid.as_str())
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let v = env.json(&["rotation", "show", &latest]);
        assert!(v["sessions"]["ended"].as_u64().unwrap() >= 1, "{v}");
        assert!(!pings(&mut pooled).await, "the session was ended");
    }
);

/// The cut-over step's record of a rotation as `rotation show` gives it:
/// the JSON step's detail, and the text for people.
fn cutover_said(env: &Env, rid: &str) -> (String, String) {
    let v = env.json(&["rotation", "show", rid]);
    let detail = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "cutover")
        .map(|s| s["detail"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    (detail, env.ok(&["rotation", "show", rid]))
}

// Once every reader has moved to the new version the cut-over step stops
// saying it waits for readers (JSON and text alike), also while a copy
// cached before the rotation keeps the previous credential and while the
// window runs.
dual!(
    the_cutover_stops_waiting_for_readers_once_they_moved,
    |env| {
        let old = "the-old-password-cc04";
        if redis_world(&env, old, true).await.is_none() {
            return;
        }
        let key = service_key(&env);
        let id = cache_id(&env);
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        assert_eq!(password(&srv, &id, &key, None).await, old);
        let v = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "cache",
            "--cutover-window",
            "1h",
            "--deadline",
            "24h",
        ]);
        let rid = v["id"].as_str().unwrap().to_string();
        wait_for_status(&env, &rid, "waiting_cutover").await;
        let (detail, _) = cutover_said(&env, &rid);
        assert!(
            detail.starts_with(
                "waiting for readers still on the previous credential: service:platform"
            ),
            "{detail}"
        );

        // The reader moves: its re-read wakes the cut-over, whose record now
        // says everyone moved and what the previous version is kept for (the
        // copy cached for refresh_after, 300 s by default).
        assert_ne!(password(&srv, &id, &key, None).await, old);
        let mut said = (String::new(), String::new());
        let moved = wait_until(
            || {
                said = cutover_said(&env, &rid);
                said.0.starts_with("every reader has moved to version")
            },
            Duration::from_secs(15),
        )
        .await;
        assert!(moved, "{said:?}");
        let (detail, text) = said;
        assert!(!detail.contains("waiting for readers"), "{detail}");
        assert!(detail.contains("from its cache until"), "{detail}");
        assert!(!text.contains("waiting for readers"), "{text}");
        assert!(text.contains("every reader has moved to version"), "{text}");
        let v = env.json(&["rotation", "show", &rid]);
        assert_eq!(v["not_moved"], json!([]), "{v}");
        assert_eq!(v["status"], "waiting_cutover", "{v}");

        // The cached copy's time passes: the window is what is left.
        env.advance(Duration::from_secs(301));
        let mut said = (String::new(), String::new());
        let window = wait_until(
            || {
                said = cutover_said(&env, &rid);
                said.0.contains("(the cut-over window)")
            },
            Duration::from_secs(15),
        )
        .await;
        assert!(window, "{said:?}");
        assert!(
            said.0.starts_with("every reader has moved to version"),
            "{said:?}"
        );
        assert!(!said.1.contains("waiting for readers"), "{said:?}");
    }
);
