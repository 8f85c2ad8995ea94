//! Rotating rekey's own secrets (access keys, machine-client and
//! application secrets) with verified cut-over: the previous secret is
//! retired only once nobody has used it for the cut-over window; at the
//! deadline the rotation stops `stalled`, naming the last user and address,
//! and the previous secret keeps working until a person finishes it. The
//! new secret and the rotation's record are written in one transaction.

use std::time::Duration;

use serde_json::Value;

use crate::dual;
use crate::harness::*;

/// `GET /v1/me` with access key `key`, sent by `agent`: the status.
async fn me(srv: &Server, key: &str, agent: &str) -> u16 {
    client()
        .get(srv.at("/v1/me"))
        .header("Accesskey", key)
        .header("User-Agent", agent)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A client-credentials token for `cid` with `secret`, sent by `agent`.
async fn token(srv: &Server, cid: &str, secret: &str, agent: &str) -> u16 {
    client()
        .post(srv.at("/oauth2/token"))
        .basic_auth(cid, Some(secret))
        .header("User-Agent", agent)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Client authentication of an application at the revocation endpoint (a
/// token it does not know is revoked with 200, RFC 7009 §2.2).
async fn app_auth(srv: &Server, cid: &str, secret: &str, agent: &str) -> u16 {
    client()
        .post(srv.at("/oauth2/revoke"))
        .basic_auth(cid, Some(secret))
        .header("User-Agent", agent)
        .form(&[("token", "rk_at_not-a-token")])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn secret_of(v: &Value) -> String {
    v["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no secret in {v}"))
        .to_string()
}

/// The detail of the rotation's last record of `step`.
fn step_detail(v: &Value, step: &str) -> String {
    v["steps"]
        .as_array()
        .and_then(|s| s.iter().rev().find(|s| s["name"] == step))
        .and_then(|s| s["detail"].as_str())
        .unwrap_or_default()
        .to_string()
}

dual!(
    an_access_key_in_use_is_kept_past_its_window_and_retired_once_unused,
    |env| {
        env.ok(&["org", "create", "acme"]);
        let old = env.json(&[
            "key", "create", "--org", "acme", "--name", "etl", "--scope", "read",
        ])["key"]
            .as_str()
            .unwrap()
            .to_string();
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        // who uses the key: its last use, written within a few seconds
        assert_eq!(me(&srv, &old, "etl-job/1.0").await, 200);
        let pre = poll(
            &env,
            &["rotate", "--org", "acme", "--key", "etl", "--preflight"],
            |v| v["consumers"][0]["user_agent"] == "etl-job/1.0",
        )
        .await;
        assert_eq!(pre["consumers"][0]["ip"], "127.0.0.1", "{pre}");
        let v = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--key",
            "etl",
            "--cutover-window",
            "60s",
            "--deadline",
            "1h",
        ]);
        assert_eq!(v["status"], "waiting_cutover", "{v}");
        let id = v["id"].as_str().unwrap().to_string();
        let new = secret_of(&v);
        assert_eq!(me(&srv, &new, "etl-job/2.0").await, 200);
        // the old key goes on being used, through the window and past it
        assert_eq!(me(&srv, &old, "etl-job/1.0").await, 200);
        env.advance(Duration::from_secs(40));
        assert_eq!(me(&srv, &old, "etl-job/1.0").await, 200);
        env.advance(Duration::from_secs(30));
        assert_eq!(
            me(&srv, &old, "etl-job/1.0").await,
            200,
            "the window has passed, but the old key is in use: it still works"
        );
        tokio::time::sleep(Duration::from_millis(3000)).await;
        let v = env.json(&["rotation", "show", &id]);
        assert_eq!(v["status"], "waiting_cutover", "{v}");
        let detail = step_detail(&v, "cutover");
        assert!(
            detail.contains("127.0.0.1") && detail.contains("etl-job/1.0"),
            "the wait names who still uses the old key: {v}"
        );
        assert_eq!(me(&srv, &old, "etl-job/1.0").await, 200);
        let not_moved = &v["not_moved"];
        assert_eq!(not_moved[0]["user_agent"], "etl-job/1.0", "{v}");
        assert_eq!(not_moved[0]["secret"], "previous", "{v}");
        // it stops being used; a whole window passes without a use
        env.advance(Duration::from_secs(90));
        let v = wait_for_status(&env, &id, "completed").await;
        assert!(step_detail(&v, "cutover").contains("not been used"), "{v}");
        assert_eq!(me(&srv, &old, "etl-job/1.0").await, 401);
        assert_eq!(me(&srv, &new, "etl-job/2.0").await, 200);
        let keys = env.json(&["key", "list", "--org", "acme"]);
        assert!(keys[0]["previous_key_valid_until"].is_null(), "{keys}");
    }
);

dual!(
    an_access_key_used_until_the_deadline_stalls_and_finish_now_retires_it,
    |env| {
        env.ok(&["org", "create", "acme"]);
        let old = env.json(&[
            "key", "create", "--org", "acme", "--name", "etl", "--scope", "read",
        ])["key"]
            .as_str()
            .unwrap()
            .to_string();
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        let v = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--key",
            "etl",
            "--cutover-window",
            "5m",
            "--deadline",
            "10m",
        ]);
        let id = v["id"].as_str().unwrap().to_string();
        let new = secret_of(&v);
        // used at least once every window (5 min), up to the deadline
        assert_eq!(me(&srv, &old, "nightly-etl/3.1").await, 200);
        for step in [240, 240, 110] {
            env.advance(Duration::from_secs(step));
            assert_eq!(me(&srv, &old, "nightly-etl/3.1").await, 200);
        }
        // the deadline passes with the old key still in use
        env.advance(Duration::from_secs(20));
        let v = wait_for_status(&env, &id, "stalled").await;
        let reason = v["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("127.0.0.1") && reason.contains("nightly-etl/3.1"),
            "the stall names the last user and address: {v}"
        );
        assert_eq!(
            me(&srv, &old, "nightly-etl/3.1").await,
            200,
            "stalled breaks no one"
        );
        assert_eq!(me(&srv, &new, "etl-job/2.0").await, 200);
        let keys = env.json(&["key", "list", "--org", "acme"]);
        assert_eq!(keys[0]["previous_key_live"], true, "{keys}");
        // no new rotation (or reset) over a previous key still held
        let out = env.run(&["rotate", "--org", "acme", "--key", "etl"]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&id), "names the rotation to finish: {err}");
        let out = env.run(&["key", "reset", "--org", "acme", "--name", "etl"]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(me(&srv, &old, "nightly-etl/3.1").await, 200);
        // a person finishes it at once: the old key goes, naming who breaks
        let f = env.json(&["rotation", "finish", &id, "--now"]);
        assert_eq!(f["status"], "completed", "{f}");
        let breaks = f["breaks"].to_string();
        assert!(
            breaks.contains("nightly-etl/3.1") && breaks.contains("127.0.0.1"),
            "{f}"
        );
        assert_eq!(me(&srv, &old, "nightly-etl/3.1").await, 401);
        assert_eq!(me(&srv, &new, "etl-job/2.0").await, 200);
    }
);

dual!(
    a_machine_client_secret_in_use_is_kept_past_its_window,
    |env| {
        env.ok(&["org", "create", "acme"]);
        let m2m = env.json(&[
            "m2m", "create", "--org", "acme", "--name", "sync", "--scope", "read",
        ]);
        let cid = m2m["client_id"].as_str().unwrap().to_string();
        let old = m2m["client_secret"].as_str().unwrap().to_string();
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        let v = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--m2m",
            "sync",
            "--cutover-window",
            "60s",
        ]);
        assert_eq!(v["status"], "waiting_cutover", "{v}");
        let id = v["id"].as_str().unwrap().to_string();
        let new = secret_of(&v);
        assert_eq!(token(&srv, &cid, &new, "sync/2").await, 200);
        assert_eq!(token(&srv, &cid, &old, "sync/1").await, 200);
        env.advance(Duration::from_secs(45));
        assert_eq!(token(&srv, &cid, &old, "sync/1").await, 200);
        env.advance(Duration::from_secs(45));
        assert_eq!(
            token(&srv, &cid, &old, "sync/1").await,
            200,
            "past the window, in use: still works"
        );
        tokio::time::sleep(Duration::from_millis(3000)).await;
        let v = env.json(&["rotation", "show", &id]);
        assert_eq!(v["status"], "waiting_cutover", "{v}");
        assert!(step_detail(&v, "cutover").contains("sync/1"), "{v}");
        env.advance(Duration::from_secs(90));
        wait_for_status(&env, &id, "completed").await;
        assert_eq!(token(&srv, &cid, &old, "sync/1").await, 401);
        assert_eq!(token(&srv, &cid, &new, "sync/2").await, 200);
    }
);

dual!(an_application_secret_in_use_stalls_at_the_deadline, |env| {
    env.ok(&["org", "create", "acme"]);
    let app = env.json(&[
        "app",
        "create",
        "--org",
        "acme",
        "--name",
        "crm",
        "--scope",
        "read",
        "--callback",
        "https://crm.example/cb",
    ]);
    let cid = app["client_id"].as_str().unwrap().to_string();
    let old = app["client_secret"].as_str().unwrap().to_string();
    let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
    assert_eq!(app_auth(&srv, &cid, &old, "crm-web/7").await, 200);
    let v = env.json(&[
        "rotate",
        "--org",
        "acme",
        "--app",
        "crm",
        "--cutover-window",
        "2m",
        "--deadline",
        "5m",
    ]);
    let id = v["id"].as_str().unwrap().to_string();
    let new = secret_of(&v);
    assert_eq!(app_auth(&srv, &cid, &old, "crm-web/7").await, 200);
    for step in [100, 100, 90] {
        env.advance(Duration::from_secs(step));
        assert_eq!(app_auth(&srv, &cid, &old, "crm-web/7").await, 200);
    }
    env.advance(Duration::from_secs(20));
    let v = wait_for_status(&env, &id, "stalled").await;
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("crm-web/7") && reason.contains("127.0.0.1"),
        "{v}"
    );
    assert_eq!(app_auth(&srv, &cid, &old, "crm-web/7").await, 200);
    let f = env.json(&["rotation", "finish", &id, "--now"]);
    assert_eq!(f["status"], "completed", "{f}");
    assert!(f["breaks"].to_string().contains("crm-web/7"), "{f}");
    assert_eq!(app_auth(&srv, &cid, &old, "crm-web/7").await, 401);
    assert_eq!(app_auth(&srv, &cid, &new, "crm-web/8").await, 200);
});

dual!(
    the_new_secret_and_the_rotation_are_written_in_one_transaction,
    |env| {
        env.ok(&["org", "create", "acme"]);
        env.json(&[
            "key", "create", "--org", "acme", "--name", "etl", "--scope", "read",
        ]);
        env.json(&[
            "m2m", "create", "--org", "acme", "--name", "sync", "--scope", "read",
        ]);
        let before = (
            env.json(&["key", "list", "--org", "acme"]),
            env.json(&["m2m", "list", "--org", "acme"]),
        );
        for target in ["--key", "--m2m"] {
            let name = if target == "--key" { "etl" } else { "sync" };
            // a failure injected after the new secret is written, before
            // the commit: nothing of it, nor of the rotation, is left
            let out = env
                .cmd()
                .args([
                    "rotate",
                    "--org",
                    "acme",
                    target,
                    name,
                    "--cutover-window",
                    "1h",
                    "--json",
                ])
                .env("REKEY_TEST_FAIL_AFTER_ISSUE", "1")
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(1),
                "{target}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!String::from_utf8_lossy(&out.stdout).contains("rk_"));
        }
        assert_eq!(
            env.json(&["rotation", "list", "--org", "acme"]),
            serde_json::json!([])
        );
        let after = (
            env.json(&["key", "list", "--org", "acme"]),
            env.json(&["m2m", "list", "--org", "acme"]),
        );
        assert_eq!(before, after, "the key and the client are unchanged");
        let audit = env.ok(&["audit", "list", "--limit", "1000", "--json"]);
        for action in ["rotation.start", "key.reset", "m2m.regenerate_secret"] {
            assert!(!audit.contains(action), "{action} recorded: {audit}");
        }
        // without the fault the same rotation goes through
        let v = env.json(&["rotate", "--org", "acme", "--key", "etl"]);
        assert_eq!(v["status"], "waiting_cutover", "{v}");
    }
);

dual!(
    end_overlap_during_a_cut_over_completes_the_rotation,
    |env| {
        env.ok(&["org", "create", "acme"]);
        let old = env.json(&[
            "key", "create", "--org", "acme", "--name", "etl", "--scope", "read",
        ])["key"]
            .as_str()
            .unwrap()
            .to_string();
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        let v = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--key",
            "etl",
            "--cutover-window",
            "60s",
        ]);
        let id = v["id"].as_str().unwrap().to_string();
        let new = secret_of(&v);
        assert_eq!(me(&srv, &old, "etl-job/1.0").await, 200);
        // a person ends the old key by hand (a leak): it stops at once,
        // and the rotation finds nothing left to retire
        env.json(&["key", "end-overlap", "--org", "acme", "--name", "etl"]);
        assert_eq!(me(&srv, &old, "etl-job/1.0").await, 401);
        assert_eq!(me(&srv, &new, "etl-job/2.0").await, 200);
        env.advance(Duration::from_secs(61));
        let v = wait_for_status(&env, &id, "completed").await;
        assert!(
            step_detail(&v, "cutover").contains("already stopped working"),
            "{v}"
        );
        // a new rotation may follow
        let v = env.json(&["rotate", "--org", "acme", "--key", "etl"]);
        assert_eq!(v["status"], "waiting_cutover", "{v}");
    }
);

// #23 item 8: the answer of a retry, like a start's, may carry one of
// rekey's own secrets (shown once): it is never cached.
dual!(a_retried_own_rotation_is_answered_no_store, |env| {
    env.ok(&["org", "create", "acme"]);
    let email = env.admin_of("acme");
    let old = env.json(&[
        "key", "create", "--org", "acme", "--name", "etl", "--scope", "read",
    ])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
    let (c, csrf) = admin_login(&srv, &email).await;
    let r = c
        .post(srv.at("/api/v1/orgs/acme/rotations"))
        .header("X-CSRF-Token", &csrf)
        .json(&serde_json::json!({"key": "etl", "cutover_window": "1m", "deadline": "2m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: Value = r.json().await.unwrap();
    assert!(v["secret"].as_str().is_some(), "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    // the old key stays in use (within every 1 min window) past the
    // deadline: stalled
    assert_eq!(me(&srv, &old, "nightly-etl/3.1").await, 200);
    for step in [50, 50] {
        env.advance(Duration::from_secs(step));
        assert_eq!(me(&srv, &old, "nightly-etl/3.1").await, 200);
    }
    env.advance(Duration::from_secs(25));
    wait_for_status(&env, &id, "stalled").await;
    let r = c
        .post(srv.at(&format!("/api/v1/orgs/acme/rotations/{id}/retry")))
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["cache-control"], "no-store");
});
