//! Delivery end to end: org `acme`'s People changes carried to the People
//! API of a second rekey server (the provider, org `prov`) over a `rekey`
//! connection; the grant revoked at the provider while records keep coming;
//! the delivery pausing and catching up by itself once re-authenticated,
//! every record arriving exactly once, in order. Backfill, its dry run and
//! the bad inputs that must change nothing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::connections::{authorize, pair, Pair};
use crate::dual;
use crate::harness::*;

/// The consumer's deliveries look every 100 ms.
pub const FAST: &[(&str, &str)] = &[("REKEY_DELIVERY_INTERVAL", "100ms")];

/// `n` records `{prefix}{i}@example.com` (and one at another domain every
/// tenth), written to acme's People API in batches of 1000.
pub async fn write_people(srv: &Server, key: &str, prefix: &str, n: usize) {
    let http = client();
    let mut i = 0;
    while i < n {
        let end = (i + 1000).min(n);
        let records: Vec<Value> = (i..end)
            .map(|k| {
                let domain = if k % 10 == 9 {
                    "other.org"
                } else {
                    "example.com"
                };
                json!({"Email": format!("{prefix}{k}@{domain}"), "Seq": k, "Plan": "pro"})
            })
            .collect();
        let r = http
            .put(srv.at("/v1/people"))
            .header("Accesskey", key)
            .json(&json!({ "records": records }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        i = end;
    }
}

/// The provider's own outbox for `prov`, in order: what its People API
/// applied, one row per applied change (a duplicate would show twice).
pub async fn applied_at_provider(p: &Pair) -> Vec<String> {
    let pool = sqlx::SqlitePool::connect(&p.provider.db_url).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as("SELECT email FROM outbox ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows.into_iter().map(|(e,)| e).collect()
}

/// acme's outbox emails in order (what should arrive).
fn expected(prefix_counts: &[(&str, usize)], filter: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for (prefix, n) in prefix_counts {
        for k in 0..*n {
            let domain = if k % 10 == 9 {
                "other.org"
            } else {
                "example.com"
            };
            if filter.is_none_or(|f| f == domain) {
                out.push(format!("{prefix}{k}@{domain}"));
            }
        }
    }
    out
}

pub fn status(env: &Env) -> Value {
    env.json(&[
        "delivery",
        "status",
        "--org",
        "acme",
        "--connection",
        "upstream",
    ])
}

pub async fn wait_state(env: &Env, want: &str, limit: Duration) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(
        || {
            last = status(env);
            last["state"] == want
        },
        limit,
    )
    .await;
    assert!(ok, "delivery never reached {want}: {last}");
    last
}

pub fn acme_key(env: &Env) -> String {
    env.json(&[
        "key",
        "create",
        "--org",
        "acme",
        "--name",
        "writer",
        "--scope",
        "read_write",
    ])["key"]
        .as_str()
        .unwrap()
        .to_string()
}

dual!(
    a_revoked_grant_pauses_delivery_and_reauthentication_catches_up_exactly_once,
    |env| {
        let p = pair(&env, "1h", FAST).await;
        let c = authorize(&env, &p, "authorize").await;
        let settings = c["settings"].clone();
        let key = acme_key(&env);
        // history before the delivery exists is not sent (it is a backfill)
        write_people(&p.csrv, &key, "before", 20).await;
        let e = env.json(&[
            "delivery",
            "enable",
            "--org",
            "acme",
            "--connection",
            "upstream",
        ]);
        assert_eq!(e["created"], true, "{e}");
        assert_eq!(e["state"], "caught_up", "{e}");
        assert!(e.get("signing_secret").is_none(), "only custom_rest signs");
        write_people(&p.csrv, &key, "live", 100).await;
        wait_state(&env, "caught_up", Duration::from_secs(20)).await;
        let s = wait_until(|| status(&env)["lag_records"] == 0, Duration::from_secs(20)).await;
        assert!(s);
        assert_eq!(
            applied_at_provider(&p).await,
            expected(&[("live", 100)], None)
        );

        // the provider revokes the grant
        let auths = p.provider.json(&[
            "app",
            "authorizations",
            "--org",
            "prov",
            "--name",
            "consumer",
        ]);
        let live = auths
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["status"] == "Active")
            .unwrap();
        p.provider.json(&[
            "app",
            "revoke-authorization",
            "--org",
            "prov",
            "--name",
            "consumer",
            "--id",
            live["id"].as_str().unwrap(),
        ]);
        // 5,000 more records while the grant is dead
        write_people(&p.csrv, &key, "dark", 5000).await;
        let paused = wait_state(&env, "paused_auth", Duration::from_secs(30)).await;
        assert_eq!(paused["connection_status"], "needs_reauth", "{paused}");
        let c = env.json(&["connection", "show", "--org", "acme", "--name", "upstream"]);
        assert_eq!(c["status"], "needs_reauth");
        assert_eq!(paused["lag_records"], 5000, "nothing skipped: {paused}");
        // still paused a while later: it does not spin or drop
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(status(&env)["state"], "paused_auth");
        assert_eq!(applied_at_provider(&p).await.len(), 100);

        // re-authenticated: delivery resumes by itself
        let c = authorize(&env, &p, "reauthenticate").await;
        assert_eq!(c["status"], "connected");
        assert_eq!(c["settings"], settings, "settings survive re-authorization");
        let s = wait_state(&env, "caught_up", Duration::from_secs(60)).await;
        let ok = wait_until(|| status(&env)["lag_records"] == 0, Duration::from_secs(30)).await;
        assert!(ok, "{s}");
        let s = status(&env);
        assert_eq!(s["last_catch_up"]["records"], 5000, "{s}");
        assert!(s["last_catch_up"]["paused_s"].as_i64().is_some(), "{s}");
        // every record exactly once, in order
        assert_eq!(
            applied_at_provider(&p).await,
            expected(&[("live", 100), ("dark", 5000)], None)
        );
    }
);

dual!(
    backfill_replays_history_once_with_progress_and_dry_run,
    |env| {
        let p = pair(&env, "1h", FAST).await;
        authorize(&env, &p, "authorize").await;
        let key = acme_key(&env);
        write_people(&p.csrv, &key, "old", 300).await;
        env.json(&[
            "delivery",
            "enable",
            "--org",
            "acme",
            "--connection",
            "upstream",
            "--filter-domain",
            "example.com",
            "--batch",
            "50",
        ]);
        write_people(&p.csrv, &key, "new", 30).await;
        wait_until(|| status(&env)["lag_records"] == 0, Duration::from_secs(20)).await;
        // a dry run counts and changes nothing
        let dry = env.json(&[
            "delivery",
            "backfill",
            "--org",
            "acme",
            "--connection",
            "upstream",
            "--dry-run",
        ]);
        assert_eq!(dry["dry_run"], true);
        // everything live delivery has passed: 300 old and 30 new, a tenth
        // of each filtered out
        assert_eq!(dry["total"], 297, "{dry}");
        assert!(dry["backfill"].is_null());
        assert!(status(&env)["backfill"].is_null());
        // bad windows: clear errors, nothing started
        for bad in [
            vec!["--since", "2999-01-01T00:00:00Z"],
            vec!["--from-seq", "0"],
            vec!["--from-seq", "99999999"],
        ] {
            let mut args = vec![
                "delivery",
                "backfill",
                "--org",
                "acme",
                "--connection",
                "upstream",
            ];
            args.extend(bad.iter());
            let out = env.run(&args);
            assert_eq!(out.status.code(), Some(1), "{bad:?}");
            assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
        }
        assert!(status(&env)["backfill"].is_null());
        // the real one, followed by the CLI to the end
        let b = env.json(&[
            "delivery",
            "backfill",
            "--org",
            "acme",
            "--connection",
            "upstream",
        ]);
        assert_eq!(b["backfill"]["state"], "done", "{b}");
        assert_eq!(b["backfill"]["done"], 297);
        assert_eq!(b["backfill"]["total"], 297);
        let s = status(&env);
        assert_eq!(s["backfill"]["done"], 297, "{s}");
        // live records first, then history: the provider applied each once
        // (the new ones the backfill sent again were skipped there)
        let got = applied_at_provider(&p).await;
        let mut want = expected(&[("new", 30)], Some("example.com"));
        want.extend(expected(&[("old", 300)], Some("example.com")));
        assert_eq!(got, want);
        // a second backfill of the same window writes nothing new at the
        // provider: it already holds those sequences
        env.json(&[
            "delivery",
            "backfill",
            "--org",
            "acme",
            "--connection",
            "upstream",
        ]);
        assert_eq!(applied_at_provider(&p).await.len(), want.len());
    }
);

dual!(bad_delivery_input_changes_nothing, |env| {
    env.ok(&["org", "create", "acme"]);
    env.json(&[
        "connection",
        "create",
        "--org",
        "acme",
        "--kind",
        "rekey",
        "--name",
        "reader",
        "--setting",
        "base_url=https://rekey.example.com",
        "--setting",
        "scope=read",
    ]);
    env.json(&[
        "connection",
        "create",
        "--org",
        "acme",
        "--kind",
        "redis",
        "--name",
        "cache",
        "--setting",
        "host=127.0.0.1",
    ]);
    let refused = |args: &[&str], says: &str| {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.contains(says), "{args:?}: {err}");
    };
    refused(
        &[
            "delivery",
            "enable",
            "--org",
            "acme",
            "--connection",
            "cache",
        ],
        "cannot receive",
    );
    refused(
        &[
            "delivery",
            "enable",
            "--org",
            "acme",
            "--connection",
            "reader",
        ],
        "read_write",
    );
    refused(
        &[
            "delivery",
            "enable",
            "--org",
            "acme",
            "--connection",
            "reader",
            "--filter-domain",
            "not a domain",
        ],
        "not a domain",
    );
    refused(
        &[
            "delivery",
            "status",
            "--org",
            "acme",
            "--connection",
            "reader",
        ],
        "not found",
    );
    let list = env.json(&["delivery", "list", "--org", "acme"]);
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
});
