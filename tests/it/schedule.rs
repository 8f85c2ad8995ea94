//! Scheduled rotations across orgs: one org's backlog of due connections
//! that a person must rotate does not keep another org's automatic
//! rotation from starting, and the ones waiting for a person are written
//! down (with why) once, not looked at again on every pass.

use std::time::Duration;

use crate::dual;
use crate::harness::*;
use crate::rotation::redis_world;

/// More due manual connections in one org than one pass of the scheduler
/// looks at (500), all due before another org's automatic one.
const BACKLOG: usize = 600;

dual!(
    one_orgs_manual_backlog_does_not_starve_another_orgs_rotation,
    |env| {
        // org acme: one Redis connection that rekey rotates by itself
        let old = "the-old-password-0023";
        let Some(_user) = redis_world(&env, old, true).await else {
            return;
        };
        // org bigco: connections a person rotates (custom_rest is manual)
        env.ok(&["org", "create", "bigco"]);
        let api = crate::attacker::Listener::start(200, &[], "{}").await;
        env.json(&[
            "connection",
            "create",
            "--org",
            "bigco",
            "--kind",
            "custom_rest",
            "--name",
            "runbook",
            "--setting",
            &format!("base_url={}", api.url),
        ]);
        env.json_stdin(
            &[
                "connection",
                "set-credential",
                "--org",
                "bigco",
                "--name",
                "runbook",
                "--field",
                "api_key",
                "--value-stdin",
            ],
            "an-api-key-000000000023",
        );
        for (org, name) in [("bigco", "runbook"), ("acme", "cache")] {
            env.json(&[
                "connection",
                "update",
                "--org",
                org,
                "--name",
                name,
                "--rotation-interval",
                "90d",
            ]);
        }
        // BACKLOG more like it, and every one of bigco's due a day before
        // acme's connection.
        exec_sql(
            &env,
            &format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {BACKLOG})
             INSERT INTO connections (id, org_id, name, kind, auth, status, status_changed_at,
                 settings, endpoints, has_credentials, failures, created_at, updated_at,
                 rotation_interval_ms, last_rotated_at)
             SELECT c.id || '-' || n.i, c.org_id, c.name || '-' || n.i, c.kind, c.auth, c.status,
                 c.status_changed_at, c.settings, c.endpoints, c.has_credentials, c.failures,
                 c.created_at, c.updated_at, c.rotation_interval_ms, c.last_rotated_at
             FROM connections c, n WHERE c.name = 'runbook'"
        ),
        )
        .await;
        exec_sql(
        &env,
        "UPDATE connections SET last_rotated_at =
             (SELECT COALESCE(a.last_rotated_at, a.created_at) FROM connections a WHERE a.name = 'cache') - 86400000
         WHERE org_id = (SELECT id FROM orgs WHERE slug = 'bigco')",
    )
    .await;
        env.advance(Duration::from_secs(91 * 86400));
        let due = env.json(&["connection", "list", "--org", "bigco", "--rotation-due"]);
        assert_eq!(due.as_array().unwrap().len(), BACKLOG + 1);

        // One pass at start, then none for an hour: acme's rotation must start
        // in that first pass.
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1h")]);
        let list = poll(&env, &["rotation", "list", "--org", "acme"], |v| {
            !v.as_array().unwrap().is_empty()
        })
        .await;
        let started = list.as_array().unwrap();
        assert_eq!(
            started.len(),
            1,
            "acme's due rotation did not start: {list}"
        );
        assert_eq!(started[0]["target"]["name"], "cache");
        assert_eq!(started[0]["started_by"], "schedule");

        // bigco's are written down as waiting for a person, with why: in the
        // connection's view and in the age view.
        let show = poll(
            &env,
            &["connection", "show", "--org", "bigco", "--name", "runbook"],
            |v| v["rotation_waiting"].is_string(),
        )
        .await;
        let why = show["rotation_waiting"].as_str().unwrap_or_default();
        assert!(
            why.contains("a person rotates")
                && why.contains("rekey rotate --org bigco --connection runbook"),
            "{show}"
        );
        assert!(show["rotation_waiting_since"].is_string(), "{show}");
        let text = env.ok(&["connection", "show", "--org", "bigco", "--name", "runbook"]);
        assert!(text.contains("rotation waits for a person since"), "{text}");
        let age = env.json(&["credentials", "age", "--org", "bigco"]);
        let waiting = age
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["waiting"]
                    .as_str()
                    .is_some_and(|w| w.contains("a person rotates"))
            })
            .count();
        // a pass writes down up to 500; the next pass (the started rotation
        // woke one) the rest
        let age = if waiting < BACKLOG + 1 {
            poll(&env, &["credentials", "age", "--org", "bigco"], |v| {
                v.as_array()
                    .unwrap()
                    .iter()
                    .filter(|r| r["waiting"].is_string())
                    .count()
                    == BACKLOG + 1
            })
            .await
        } else {
            age
        };
        assert_eq!(
            age.as_array()
                .unwrap()
                .iter()
                .filter(|r| r["waiting"].is_string())
                .count(),
            BACKLOG + 1,
            "every due runbook connection is shown waiting"
        );
        // the warning names them once, not on every pass
        assert!(
            srv.logged(&["a person must act", "bigco/runbook"]),
            "no warning about the connections waiting for a person"
        );
        let warned = srv.count(&["a person must act"]);
        let mut srv = srv;
        srv.kill();
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            srv.count(&["a person must act"]),
            0,
            "warned again about connections already written down"
        );
        assert!(warned >= 1);
        // once a person replaces the credential it is no longer due or waiting
        env.json_stdin(
            &[
                "connection",
                "set-credential",
                "--org",
                "bigco",
                "--name",
                "runbook",
                "--field",
                "api_key",
                "--value-stdin",
            ],
            "an-api-key-000000000024",
        );
        let show = env.json(&["connection", "show", "--org", "bigco", "--name", "runbook"]);
        assert_eq!(show["rotation_due"], false, "{show}");
        assert!(show["rotation_waiting"].is_null(), "{show}");
    }
);
