//! `rekey incident blast-radius`: a leaked value of every kind rekey issues
//! or holds, matched, explained and killed; an unknown one leaves only an
//! audit event with its digest prefix.

use serde_json::Value;

use crate::dual;
use crate::harness::*;
use crate::oauth_support::*;

fn radius(env: &Env, value: &str) -> (i32, Value) {
    let out = env.run_stdin(
        &["incident", "blast-radius", "--secret-stdin", "--json"],
        Some(value),
    );
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v)
}

dual!(blast_radius_names_every_kind_of_value_and_kills_it, |env| {
    let w = world(env, &[], &[]).await;
    let env = &w.env;
    let (at, rt) = tokens(&w, "read").await;
    let key = env.json(&[
        "key", "create", "--org", "acme", "--name", "ci", "--scope", "read",
    ])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let m2m = env.json(&[
        "m2m", "create", "--org", "acme", "--name", "sync", "--scope", "read",
    ]);
    let m2m_secret = m2m["client_secret"].as_str().unwrap().to_string();
    let skey = service_key(env);
    connection(
        env,
        "redis",
        "cache",
        &["host=127.0.0.1", "port=1", "username=svc"],
    );
    store_unprobed(env, "cache", "password", "held-redis-password-77");

    let (code, v) = radius(env, &key);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["type"], "access_key");
    assert_eq!(v["live"], true);
    assert_eq!(v["org"], "acme");
    assert_eq!(v["speaks_for"]["scope"], "read");
    assert_eq!(v["kill"], "rekey key revoke --org acme --name ci");

    let (_, v) = radius(env, &w.secret);
    assert_eq!(v["type"], "app_secret", "{v}");
    assert_eq!(v["unlocks"]["authorizations"], 1, "{v}");
    let (_, v) = radius(env, &m2m_secret);
    assert_eq!(v["type"], "m2m_secret", "{v}");
    let (_, v) = radius(env, &at);
    assert_eq!(v["type"], "access_token", "{v}");
    assert_eq!(v["speaks_for"]["user"], USER);
    assert_eq!(v["live"], true);
    let (_, v) = radius(env, &rt);
    assert_eq!(v["type"], "refresh_token", "{v}");
    assert!(
        v["kill"]
            .as_str()
            .unwrap()
            .starts_with("rekey app revoke-authorization --org acme --name portal --id "),
        "{v}"
    );
    let (_, v) = radius(env, &skey);
    assert_eq!(v["type"], "service_key", "{v}");
    let (_, v) = radius(env, "held-redis-password-77");
    assert_eq!(v["type"], "connection_credential", "{v}");
    assert_eq!(v["name"], "cache");
    assert_eq!(v["slot"], "current");
    assert_eq!(v["kill"], "rekey rotate --org acme --connection cache");

    // without --json, text for people: no JSON fragment in it; with
    // --json, one JSON document and nothing else
    for value in [&key, &w.secret, &m2m_secret, &at, &rt, &skey] {
        let out = env.run_stdin(&["incident", "blast-radius", "--secret-stdin"], Some(value));
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("{\"") && !text.contains("\":") && !text.contains("[\""),
            "raw JSON in the text: {text}"
        );
        assert!(text.contains("speaks for: "), "{text}");
        assert!(text.contains("kill it: rekey "), "{text}");
        assert!(!text.contains("null"), "{text}");
        eprintln!("{text}");
    }
    let out = env.run_stdin(
        &["incident", "blast-radius", "--secret-stdin"],
        Some("held-redis-password-77"),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("{\"") && !text.contains("\":") && !text.contains("[\""),
        "raw JSON in the text: {text}"
    );
    assert!(
        text.contains("unlocks: connection cache; settings "),
        "{text}"
    );
    assert!(text.contains("host=127.0.0.1"), "{text}");
    let out = env.run_stdin(
        &["incident", "blast-radius", "--secret-stdin", "--json"],
        Some(&key),
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("only JSON with --json");
    assert_eq!(doc["type"], "access_key");

    // by name
    let v = env.json(&["incident", "blast-radius", "--key", "ci", "--org", "acme"]);
    assert_eq!(v["type"], "access_key");

    // unknown: exit 1, and only a digest prefix in the audit log
    let (code, v) = radius(env, "never-issued-value-0042");
    assert_eq!(code, 1);
    assert_eq!(v["found"], false);
    assert_eq!(v["message"], "not issued or held by this rekey");
    let audit = env.ok(&["audit", "list", "--limit", "1000", "--json"]);
    assert!(audit.contains("incident.blast_radius") && audit.contains("digest_prefix"));
    for secret in [
        &key,
        &at,
        &rt,
        &w.secret,
        "never-issued-value-0042",
        "held-redis-password-77",
    ] {
        assert!(!audit.contains(secret), "a value reached the audit log");
    }

    // --revoke kills it at once
    let out = env.run_stdin(
        &[
            "incident",
            "blast-radius",
            "--secret-stdin",
            "--revoke",
            "--json",
        ],
        Some(&rt),
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["revoke"]["revoked"], true, "{v}");
    let (s, _) = refresh(&w, &rt).await;
    assert_ne!(s, 200, "the refresh token is refused");
    let (_, v) = radius(env, &rt);
    assert_eq!(v["live"], false, "{v}");
    let out = env.run_stdin(
        &[
            "incident",
            "blast-radius",
            "--secret-stdin",
            "--revoke",
            "--json",
        ],
        Some(&key),
    );
    assert!(out.status.success());
    let (_, v) = radius(env, &key);
    assert_eq!(v["live"], false, "{v}");
    let r = client()
        .get(w.srv.at("/v1/people?limit=1"))
        .header("Accesskey", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
});

dual!(blast_radius_facts_are_current, |env| {
    let w = world(env, &[], &[]).await;
    let env = &w.env;
    tokens(&w, "read").await;
    let key = env.json(&[
        "key", "create", "--org", "acme", "--name", "ci", "--scope", "read",
    ])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let skey = service_key(env);
    connection(
        env,
        "redis",
        "cache",
        &["host=127.0.0.1", "port=1", "username=svc"],
    );
    store_unprobed(env, "cache", "password", "held-redis-password-78");

    // an access key used from this address: its last use and where from
    let r = client()
        .get(w.srv.at("/v1/people?limit=1"))
        .header("Accesskey", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // uses are written in batches (every 5 s)
    let mut v = Value::Null;
    let seen = wait_until(
        || {
            v = radius(env, &key).1;
            v["last_used_from"] == "127.0.0.1"
        },
        std::time::Duration::from_secs(15),
    )
    .await;
    assert!(seen, "{v}");
    assert!(v["last_used_at"].is_string(), "{v}");

    // a service key that read a credential is not "never used"
    let creds = stored_credential(env, &w.srv, &skey, "cache").await;
    assert_eq!(creds["password"], "held-redis-password-78");
    let (_, mut v) = radius(env, &skey);
    assert!(v["last_used_at"].is_string(), "{v}");
    assert_eq!(v["last_used_from"], "127.0.0.1", "{v}");

    // the application's secret, presented at the token endpoint above:
    // its last use and where from
    let seen = wait_until(
        || {
            v = radius(env, &w.secret).1;
            v["last_used_from"] == "127.0.0.1"
        },
        std::time::Duration::from_secs(15),
    )
    .await;
    assert!(seen, "{v}");
    assert_eq!(v["type"], "app_secret", "{v}");
    assert!(v["last_used_at"].is_string(), "{v}");

    // a campaign cuts the application's tokens off and regenerates its
    // secret with an overlap: the old secret (still valid for the overlap)
    // no longer unlocks the authorizations the campaign revoked
    let (_, before) = radius(env, &w.secret);
    assert_eq!(before["unlocks"]["authorizations"], 1, "{before}");
    let out = env.run(&[
        "incident",
        "start",
        "--reason",
        "leak",
        "--scope",
        "org:acme",
        "--include-own",
        "--overlap",
        "1h",
        "--kind",
        "s3",
        "--wait",
        "--json",
    ]);
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, after) = radius(env, &w.secret);
    assert_eq!(after["type"], "app_secret", "{after}");
    assert_eq!(after["unlocks"]["authorizations"], 0, "{after}");
});
