//! Foundations the rotation engine stands on: a clock tests can move, and
//! test outcomes that never claim more than was proven.

use std::time::Duration;

use serde_json::Value;

use crate::dual;
use crate::harness::*;

dual!(
    a_credential_nothing_can_verify_is_unverified_never_ok,
    |env| {
        env.ok(&["org", "create", "acme"]);
        env.json(&[
            "connection",
            "create",
            "--org",
            "acme",
            "--kind",
            "segment",
            "--name",
            "lake",
        ]);
        // Segment's write keys can only send events: no request checks one.
        let v = env.json_stdin(
            &[
                "connection",
                "set-credential",
                "--org",
                "acme",
                "--name",
                "lake",
                "--field",
                "write_key",
                "--value-stdin",
            ],
            "a-segment-write-key-0001",
        );
        assert_eq!(v["last_test"]["outcome"], "unverified", "{v}");
        assert_eq!(v["last_test"]["ok"], false);
        assert!(v["last_test"]["time"].as_str().is_some());
        assert_eq!(v["last_test"]["time"], v["last_test"]["at"]);
        assert!(v["status_reason"]
            .as_str()
            .unwrap()
            .contains("not verified"));
        // `connection test` says so and does not exit 0
        let out = env.run(&[
            "connection",
            "test",
            "--org",
            "acme",
            "--name",
            "lake",
            "--json",
        ]);
        assert_eq!(out.status.code(), Some(3));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["last_test"]["outcome"], "unverified");
        assert_eq!(v["last_test"]["ok"], false);
    }
);

dual!(the_test_clock_moves_every_process_at_once, |env| {
    env.org_with_admin("acme");
    let k = env.json(&[
        "key",
        "create",
        "--org",
        "acme",
        "--name",
        "short",
        "--scope",
        "read",
        "--expires",
        "1h",
    ]);
    let key = k["key"].as_str().unwrap().to_string();
    let srv = env.serve();
    let me = |key: String| {
        let url = srv.at("/v1/me");
        async move {
            client()
                .get(url)
                .header("Accesskey", key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(me(key.clone()).await, 200);
    env.advance(Duration::from_secs(59 * 60));
    assert_eq!(me(key.clone()).await, 200);
    env.advance(Duration::from_secs(2 * 60));
    // the server and the CLI both see the key expired, without a real hour
    assert_eq!(me(key.clone()).await, 401);
    let list = env.json(&["key", "list", "--org", "acme"]);
    assert_eq!(list[0]["status"], "expired", "{list}");
});

dual!(
    credential_slots_carry_versions_and_times_never_values,
    |env| {
        env.ok(&["org", "create", "acme"]);
        env.json(&[
            "connection",
            "create",
            "--org",
            "acme",
            "--kind",
            "postgres",
            "--name",
            "pg",
            "--setting",
            "host=127.0.0.1",
            "--setting",
            "database=postgres",
            "--setting",
            "username=postgres",
        ]);
        let set = |pw: &str| {
            env.json_stdin(
                &[
                    "connection",
                    "set-credential",
                    "--org",
                    "acme",
                    "--name",
                    "pg",
                    "--field",
                    "password",
                    "--value-stdin",
                ],
                pw,
            )
        };
        set("first-password-value");
        let v = env.json(&["connection", "show", "--org", "acme", "--name", "pg"]);
        let cur = &v["slots"]["current"];
        assert_eq!(cur["version"], 1, "{v}");
        assert!(cur["created_at"].as_str().is_some());
        assert!(
            cur["verified_at"].as_str().is_some(),
            "the probe logged in: {v}"
        );
        assert!(v["slots"]["pending"].is_null() && v["slots"]["previous"].is_null());
        assert!(v["credential_age_s"].as_i64().unwrap() >= 0);
        env.advance(Duration::from_secs(3600));
        set("second-password-value");
        let v = env.json(&["connection", "show", "--org", "acme", "--name", "pg"]);
        assert_eq!(v["slots"]["current"]["version"], 2, "{v}");
        assert!(v["credential_age_s"].as_i64().unwrap() < 3600);
        let text = v.to_string();
        assert!(!text.contains("first-password") && !text.contains("second-password"));
    }
);

// `rekey … | head -1`: the reader goes away; the command ends quietly
// (exit 0, no panic), with or without --json.
dual!(a_closed_pipe_ends_the_command_quietly, |env| {
    for i in 0..3 {
        env.ok(&["org", "create", &format!("org{i}")]);
    }
    for json in [false, true] {
        let mut c = env.cmd();
        c.args(["org", "list"]);
        if json {
            c.arg("--json");
        }
        let mut child = c
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before anything is written
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(out.status.code(), Some(0), "{err}");
    }
});

// Without --json a person reads text: `connection show`, `rotate
// --preflight` and `credentials age` (seconds, not `0s`, for a fresh one).
dual!(text_output_is_for_people, |env| {
    env.ok(&["org", "create", "acme"]);
    connection(
        &env,
        "redis",
        "cache",
        &["host=127.0.0.1", "port=1", "username=svc"],
    );
    store_unprobed(&env, "cache", "password", "held-password-0311");
    let show = env.ok(&["connection", "show", "--org", "acme", "--name", "cache"]);
    assert!(!show.trim_start().starts_with('{'), "{show}");
    assert!(show.contains("cache (redis basic)"), "{show}");
    assert!(show.contains("credential current: version 1"), "{show}");
    assert!(!show.contains("held-password-0311"), "{show}");
    let pre = env.ok(&[
        "rotate",
        "--org",
        "acme",
        "--connection",
        "cache",
        "--preflight",
    ]);
    assert!(!pre.trim_start().starts_with('{'), "{pre}");
    assert!(pre.contains("nothing to wait for"), "{pre}");
    env.advance(Duration::from_secs(5));
    let age = env.ok(&["credentials", "age", "--org", "acme"]);
    assert!(!age.contains(" 0s "), "{age}");
});
