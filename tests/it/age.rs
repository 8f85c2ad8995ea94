//! `rekey credentials age`: every credential rekey issues or holds, worst
//! first, with schedules on rekey's own secrets (`key|m2m|app update
//! --rotation-interval`).

use std::time::Duration;

use serde_json::Value;

use crate::dual;
use crate::harness::*;

fn rows(v: &Value) -> Vec<Value> {
    v.as_array().unwrap().clone()
}

fn find<'a>(rows: &'a [Value], kind: &str, name: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["type"] == kind && r["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {rows:?}"))
}

dual!(credentials_age_lists_everything_worst_first, |env| {
    let email = env.org_with_admin("acme");
    env.json(&[
        "key", "create", "--org", "acme", "--name", "ci", "--scope", "read",
    ]);
    env.json(&[
        "m2m", "create", "--org", "acme", "--name", "sync", "--scope", "read",
    ]);
    env.json(&[
        "app",
        "create",
        "--org",
        "acme",
        "--name",
        "portal",
        "--scope",
        "read",
        "--callback",
        "https://portal.example/cb",
    ]);
    connection(&env, "redis", "cache", &["host=127.0.0.1", "port=1"]);
    store_unprobed(&env, "cache", "password", "a-password-0201");

    // schedules on rekey's own secrets
    let k = env.json(&[
        "key",
        "update",
        "--org",
        "acme",
        "--name",
        "ci",
        "--rotation-interval",
        "30d",
    ]);
    assert_eq!(k["rotation_interval_s"], 30 * 86_400, "{k}");
    assert_eq!(k["due"], false);
    env.json(&[
        "m2m",
        "update",
        "--org",
        "acme",
        "--name",
        "sync",
        "--rotation-interval",
        "1h",
    ]);
    let a = env.json(&[
        "app",
        "update",
        "--org",
        "acme",
        "--name",
        "portal",
        "--rotation-interval",
        "2h",
    ]);
    assert_eq!(a["rotation_interval_s"], 7200, "{a}");
    assert_eq!(a["name"], "portal");
    // out of range: refused, nothing changes
    let out = env.run(&[
        "key",
        "update",
        "--org",
        "acme",
        "--name",
        "ci",
        "--rotation-interval",
        "1m",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("between 1h and 3650d"));
    let out = env.run(&[
        "key",
        "update",
        "--org",
        "acme",
        "--name",
        "nope",
        "--rotation-interval",
        "1d",
    ]);
    assert_eq!(out.status.code(), Some(1));

    env.advance(Duration::from_secs(3 * 3600));
    let all = rows(&env.json(&["credentials", "age"]));
    for kind in [
        "connection",
        "access_key",
        "m2m_secret",
        "app_secret",
        "master_key",
    ] {
        assert!(all.iter().any(|r| r["type"] == kind), "{kind} in {all:?}");
    }
    // worst first: the most overdue (the m2m secret, due after 1h) leads
    assert_eq!(all[0]["type"], "m2m_secret", "{all:?}");
    assert_eq!(all[0]["due"], true);
    assert_eq!(all[1]["type"], "app_secret");
    assert_eq!(all[1]["due"], true);
    let key = find(&all, "access_key", "ci");
    assert_eq!(key["due"], false);
    assert!(key["age_s"].as_i64().unwrap() >= 3 * 3600);
    for r in &all {
        for f in ["type", "name", "age_s", "since", "rotation", "due"] {
            assert!(!r[f].is_null(), "{f} in {r}");
        }
    }
    let conn = find(&all, "connection", "cache");
    assert_eq!(conn["rotation"], "automatic");
    assert_eq!(conn["org"], "acme");

    // one org's: no platform rows; --older-than filters
    let acme = rows(&env.json(&["credentials", "age", "--org", "acme"]));
    assert!(acme.iter().all(|r| r["org"] == "acme"), "{acme:?}");
    assert_eq!(acme.len(), 4);
    let old = rows(&env.json(&["credentials", "age", "--org", "acme", "--older-than", "1d"]));
    assert!(old.is_empty(), "{old:?}");

    // a reset makes the key new again
    env.json(&["key", "reset", "--org", "acme", "--name", "ci"]);
    let acme = rows(&env.json(&["credentials", "age", "--org", "acme"]));
    assert!(find(&acme, "access_key", "ci")["age_s"].as_i64().unwrap() < 60);
    env.json(&[
        "m2m",
        "regenerate-secret",
        "--org",
        "acme",
        "--name",
        "sync",
    ]);
    let acme = rows(&env.json(&["credentials", "age", "--org", "acme"]));
    assert_eq!(find(&acme, "m2m_secret", "sync")["due"], false);

    // the admin API: an org admin sees their org, not the platform's view
    let srv = env.serve();
    let (c, _) = admin_login(&srv, &email).await;
    let r = c
        .get(srv.at("/api/v1/orgs/acme/credentials/age"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap().as_array().unwrap().len(),
        4
    );
    let r = c
        .get(srv.at("/api/v1/credentials/age"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .get(srv.at("/api/v1/credentials/age?org=acme&older_than=1d"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), serde_json::json!([]));
});
