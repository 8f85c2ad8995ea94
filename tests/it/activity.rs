//! The activity log of a connection: what happened to it, newest first,
//! paged and filtered, from the CLI and the admin API alike.

use serde_json::Value;

use crate::connections::{authorize, pair};
use crate::dual;
use crate::harness::*;

fn activity(env: &Env, extra: &[&str]) -> Value {
    let mut a = vec![
        "connection",
        "activity",
        "--org",
        "acme",
        "--name",
        "upstream",
    ];
    a.extend_from_slice(extra);
    env.json(&a)
}

fn types(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

dual!(
    records_authorizations_and_probes_and_pages_with_filters,
    |env| {
        let p = pair(&env, "1h", &[]).await;
        assert_eq!(types(&activity(&env, &[])), Vec::<String>::new());
        authorize(&env, &p, "authorize").await;
        env.ok(&["connection", "test", "--org", "acme", "--name", "upstream"]);
        env.json(&[
            "connection",
            "refresh",
            "--org",
            "acme",
            "--name",
            "upstream",
        ]);
        let all = activity(&env, &[]);
        let t = types(&all);
        // newest first
        assert_eq!(t.first().map(String::as_str), Some("refresh"), "{all}");
        for want in ["authorization", "probe", "status", "refresh"] {
            assert!(t.iter().any(|x| x == want), "{want} missing: {all}");
        }
        let auth = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "authorization")
            .unwrap();
        assert!(auth["id"].is_string() && auth["at"].is_string() && auth["detail"].is_object());
        assert!(
            !all.to_string().contains("rk_at_") && !all.to_string().contains("rk_rt_"),
            "no secret in the log"
        );
        // by type
        let probes = activity(&env, &["--type", "probe"]);
        assert_eq!(types(&probes), ["probe", "probe"], "{probes}");
        let two = activity(&env, &["--type", "probe", "--type", "authorization"]);
        assert_eq!(types(&two).len(), 3);
        // by time: a duration ago, an RFC 3339 time
        assert_eq!(types(&activity(&env, &["--since", "1h"])).len(), t.len());
        assert!(types(&activity(&env, &["--since", "2999-01-01T00:00:00Z"])).is_empty());
        // pages: one at a time, nothing repeated, nothing skipped
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut a = vec!["--limit", "2"];
            if let Some(c) = &after {
                a.extend(["--after", c.as_str()]);
            }
            let page = activity(&env, &a);
            // every page counts the whole filter, exactly
            assert_eq!(
                page["total"],
                all["items"].as_array().unwrap().len(),
                "{page}"
            );
            seen.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["id"].as_str().unwrap().to_string()),
            );
            match page["next"].as_str() {
                Some(n) => after = Some(n.to_string()),
                None => break,
            }
        }
        let ids: Vec<String> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(seen, ids);
        // bad filters: a clear error naming the valid ones
        let out = env.run(&[
            "connection",
            "activity",
            "--org",
            "acme",
            "--name",
            "upstream",
            "--type",
            "bogus",
        ]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("authorization, refresh, probe"));
        let out = env.run(&[
            "connection",
            "activity",
            "--org",
            "acme",
            "--name",
            "upstream",
            "--since",
            "yesterday-ish",
        ]);
        assert_eq!(out.status.code(), Some(1));
        // the admin API answers the same
        let (c, _) = admin_login(&p.csrv, "admin@acme.test").await;
        let r = c
            .get(
                p.csrv.at(
                    "/api/v1/orgs/acme/connections/upstream/activity?type=probe&since=1h&limit=1",
                ),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page: Value = r.json().await.unwrap();
        assert_eq!(types(&page), ["probe"]);
        assert_eq!(
            page["total"], 2,
            "the filter's total, not the page's: {page}"
        );
        assert_eq!(page["items"][0], probes["items"][0]);
        let next = page["next"].as_str().unwrap();
        let r = c
            .get(p.csrv.at(&format!(
                "/api/v1/orgs/acme/connections/upstream/activity?type=probe&after={next}"
            )))
            .send()
            .await
            .unwrap();
        let page: Value = r.json().await.unwrap();
        assert_eq!(page["items"][0], probes["items"][1]);
        assert!(page["next"].is_null());
        let r = c
            .get(
                p.csrv
                    .at("/api/v1/orgs/acme/connections/upstream/activity?type=nope"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        drop(p);
    }
);
