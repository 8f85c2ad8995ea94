//! The last console lists that were shown whole, paged by keyset on both
//! stores: an org's deliveries (each status read with the page's others,
//! its counts checked against the outbox as seeded) and a campaign's items
//! (by number, filtered by status, with the progress per org and kind
//! still counted over every item). Each row is seen once, the stated total
//! is exact on every page, and another org's rows never show.

use serde_json::Value;

use crate::console::{
    csrf_of, each_once, get, next_link, operator_sign_in, pager, post, sign_in, walk,
};
use crate::dual;
use crate::harness::*;

/// The outbox as seeded: acme's records 1–10, odd ones at example.com
/// (9 in mixed case), even ones at other.org.
fn passes(filter: usize, seq: i64) -> bool {
    match filter {
        0 => true,
        1 => seq % 2 == 1,
        _ => true,
    }
}

/// Delivery `i`'s filter (0: none, 1: example.com, 2: other.org and
/// example.com) and cursor.
fn seeded_delivery(i: i64) -> (usize, i64) {
    ((i % 3) as usize, (i % 5) * 2)
}

/// Seeds org `slug`'s connections `PREFIX-100…` (kind rekey), each with a
/// delivery as `seeded_delivery` says; no job runs them.
async fn deliveries_in(env: &Env, slug: &str, prefix: &str, n: i64) {
    let org = format!("(SELECT id FROM orgs WHERE slug = '{slug}')");
    exec_sql(
        env,
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last})
             INSERT INTO connections (id, org_id, name, kind, auth, status, status_changed_at,
                 settings, endpoints, has_credentials, failures, created_at, updated_at)
             SELECT 'c-{prefix}-' || (100 + i), {org}, '{prefix}-' || (100 + i), 'rekey', 'oauth2',
                 'connected', 1700000000000, '{{}}', '{{}}', FALSE, 0, 1700000000000, 1700000000000
             FROM n",
            last = n - 1
        ),
    )
    .await;
    exec_sql(
        env,
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last})
             INSERT INTO deliveries (id, org_id, connection_id, state, filter_domains, batch,
                 cursor_seq, created_at, updated_at)
             SELECT 'd-{prefix}-' || (100 + i), {org}, 'c-{prefix}-' || (100 + i), 'caught_up',
                 CASE i % 3 WHEN 0 THEN '[]' WHEN 1 THEN '[\"example.com\"]'
                      ELSE '[\"other.org\", \"example.com\"]' END,
                 500, (i % 5) * 2, 1700000000000, 1700000000000
             FROM n",
            last = n - 1
        ),
    )
    .await;
}

/// A backfill of delivery `delivery` as of `started_at`.
async fn backfill(env: &Env, id: &str, delivery: &str, started_at: i64, state: &str) {
    exec_sql(
        env,
        &format!(
            "INSERT INTO backfills (id, delivery_id, org_id, from_seq, to_seq, cursor_seq, total,
                 done, state, started_at, updated_at)
             SELECT '{id}', id, org_id, 0, 4, 2, 4, 2, '{state}', {started_at}, {started_at}
             FROM deliveries WHERE id = '{delivery}'"
        ),
    )
    .await;
}

fn names(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["connection"].as_str().unwrap().to_string())
        .collect()
}

dual!(
    the_deliveries_list_pages_by_keyset_with_its_statuses_read_together,
    |env| {
        let admin = env.org_with_admin("acme");
        let other = env.org_with_admin("globex");
        // acme's outbox, sequences 1–10 in a fresh database (one insert
        // each, so each takes the next sequence); globex's after it.
        for seq in 1..=10 {
            let email = match seq {
                9 => "Mixed@Example.COM".to_string(),
                s if s % 2 == 1 => format!("u{s}@example.com"),
                s => format!("u{s}@other.org"),
            };
            exec_sql(
                &env,
                &format!(
                    "INSERT INTO outbox (org_id, email, op, record, at)
                     SELECT id, '{email}', 'upsert', '{{}}', {} FROM orgs WHERE slug = 'acme'",
                    1_700_000_000_000i64 + seq * 1000
                ),
            )
            .await;
        }
        for seq in 11..=13 {
            exec_sql(
                &env,
                &format!(
                    "INSERT INTO outbox (org_id, email, op, record, at)
                     SELECT id, 'g{seq}@example.com', 'upsert', '{{}}', 1700000000000 FROM orgs WHERE slug = 'globex'"
                ),
            )
            .await;
        }
        deliveries_in(&env, "acme", "dl", 57).await;
        deliveries_in(&env, "globex", "gl", 2).await;
        // a name holding dots (the cursor's separator), without a filter
        exec_sql(
            &env,
            "INSERT INTO connections (id, org_id, name, kind, auth, status, status_changed_at,
                 settings, endpoints, has_credentials, failures, created_at, updated_at)
             SELECT 'c-dotted', id, 'db.prod.eu', 'postgres', 'basic', 'connected', 1700000000000,
                 '{}', '{}', FALSE, 0, 1700000000000, 1700000000000 FROM orgs WHERE slug = 'acme'",
        )
        .await;
        exec_sql(
            &env,
            "INSERT INTO deliveries (id, org_id, connection_id, state, filter_domains, batch,
                 cursor_seq, created_at, updated_at)
             SELECT 'd-dotted', org_id, id, 'paused_by_user', '[]', 100, 10, 1700000000000, 1700000000000
             FROM connections WHERE id = 'c-dotted'",
        )
        .await;
        // backfills: the latest of each delivery is the one shown (a tie
        // in time broken by the id)
        for i in [100, 110, 150] {
            let d = format!("d-dl-{i}");
            backfill(&env, &format!("b-old-{i}"), &d, 1_700_000_001_000, "done").await;
            backfill(&env, &format!("b-new-{i}"), &d, 1_700_000_002_000, "done").await;
        }
        backfill(&env, "b-tie-a", "d-dl-120", 1_700_000_003_000, "done").await;
        backfill(&env, "b-tie-b", "d-dl-120", 1_700_000_003_000, "running").await;
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1h")]);

        let mut want: Vec<String> = (0..57).map(|i| format!("dl-{}", 100 + i)).collect();
        want.insert(0, "db.prod.eu".into());

        // the admin API's whole list: as before, `items` only, by name,
        // every status counted as the outbox says
        let (api, _) = admin_login(&srv, &admin).await;
        let r = api
            .get(srv.at("/api/v1/orgs/acme/deliveries"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let all: Value = r.json().await.unwrap();
        assert_eq!(
            all.as_object().unwrap().keys().collect::<Vec<_>>(),
            vec!["items"],
            "{all}"
        );
        assert_eq!(names(&all["items"]), want);
        for s in all["items"].as_array().unwrap() {
            let name = s["connection"].as_str().unwrap();
            assert_eq!(s["head_seq"], 10, "{s}");
            let (filter, cursor) = match name.strip_prefix("dl-") {
                Some(n) => seeded_delivery(n.parse::<i64>().unwrap() - 100),
                None => (0, 10),
            };
            let lag = (cursor + 1..=10).filter(|q| passes(filter, *q)).count();
            let kept = (1..=10).filter(|q| passes(filter, *q)).count();
            assert_eq!(s["last_delivered_seq"], cursor, "{s}");
            assert_eq!(s["lag_records"], lag, "{name}: {s}");
            assert_eq!(s["lag"]["records"], lag, "{name}: {s}");
            assert_eq!(s["retention"]["full_backfill_records"], kept, "{name}: {s}");
            assert_eq!(s["lag_s"].as_i64().unwrap() > 0, lag > 0, "{name}: {s}");
            let latest = match name {
                "dl-100" | "dl-110" | "dl-150" => Value::from(format!("b-new-{}", &name[3..])),
                "dl-120" => Value::from("b-tie-b"),
                _ => Value::Null,
            };
            assert_eq!(s["backfill"]["id"], latest, "{name}: {s}");
        }
        // one delivery's own status is the list's
        let one: Value = get_json(
            &api,
            srv.at("/api/v1/orgs/acme/connections/dl-101/delivery"),
        )
        .await;
        let listed = &all["items"][2];
        assert_eq!(listed["connection"], "dl-101");
        for f in [
            "lag_records",
            "retention",
            "backfill",
            "state",
            "filter_domains",
            "head_seq",
        ] {
            assert_eq!(one[f], listed[f], "{f}");
        }

        // paged when asked: each once, the total exact, then the end
        let mut paged = vec![];
        let mut after: Option<String> = None;
        for round in 0.. {
            assert!(round < 20, "the pages never end");
            let q = match &after {
                None => "limit=7".to_string(),
                Some(a) => format!("limit=7&after={}", urlencode(a)),
            };
            let v: Value =
                get_json(&api, srv.at(&format!("/api/v1/orgs/acme/deliveries?{q}"))).await;
            assert_eq!(v["total"], 58, "{v}");
            assert!(v["items"].as_array().unwrap().len() <= 7);
            paged.extend(names(&v["items"]));
            match v["next_after"].as_str() {
                Some(a) => after = Some(a.to_string()),
                None => break,
            }
        }
        assert_eq!(paged, want);
        for bad in ["after=nodot", "limit=0", "limit=many", "limit=1001"] {
            let r = api
                .get(srv.at(&format!("/api/v1/orgs/acme/deliveries?{bad}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{bad}");
        }
        // the CLI's list keeps its contract too
        let cli = env.json(&["delivery", "list", "--org", "acme"]);
        assert_eq!(names(&cli["items"]), want);

        // the console walks the same order, 50 a page, each once
        let (c, _) = sign_in(&srv, &admin).await;
        let marker = "<td data-label=\"Connection\"><a href=\"/ui/orgs/acme/connections/";
        let (seen, totals, pages) = walk(&c, &srv, "/ui/orgs/acme/deliveries", marker, 0).await;
        assert_eq!(pages, 2, "50 + 8");
        assert!(totals.iter().all(|t| t == "58"), "{totals:?}");
        let seen: Vec<String> = seen
            .iter()
            .map(|s| s.trim_end_matches("#delivery").to_string())
            .collect();
        assert_eq!(seen, want, "by name, each once");
        each_once(&seen, &want);
        let (_, html) = get(&c, &srv, "/ui/orgs/acme/deliveries").await;
        assert!(
            html.contains("aria-label=\"backfill of dl-120\""),
            "a running backfill shows: {html}"
        );

        // another org: its own only; a cursor of acme's shows globex's
        let (g, _) = sign_in(&srv, &other).await;
        let gm = "<td data-label=\"Connection\"><a href=\"/ui/orgs/globex/connections/";
        let (gseen, gtotals, _) = walk(&g, &srv, "/ui/orgs/globex/deliveries", gm, 0).await;
        assert_eq!(gseen.len(), 2);
        assert_eq!(gtotals, vec!["2".to_string()]);
        let acme_next = next_link(pager(&html, 0).unwrap()).unwrap();
        let cursor = acme_next.split("after=").nth(1).unwrap().to_string();
        let (s, ghtml) = get(
            &g,
            &srv,
            &format!("/ui/orgs/globex/deliveries?after={cursor}"),
        )
        .await;
        assert_eq!(s, 200);
        assert!(!ghtml.contains("dl-1"), "{ghtml}");
        assert_eq!(get(&c, &srv, "/ui/orgs/globex/deliveries").await.0, 404);
        let r = api
            .get(srv.at("/api/v1/orgs/globex/deliveries?limit=5"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);

        // a cursor that is not one is a clear error page
        let (s, html) = get(&c, &srv, "/ui/orgs/acme/deliveries?after=nodot").await;
        assert_eq!(s, 400, "{html}");
        assert!(html.contains("page cursor"), "{html}");
    }
);

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The fields of a campaign's whole answer (`GET /api/v1/incidents/{id}`,
/// `rekey incident status ID --json`), sorted.
const WHOLE: [&str; 16] = [
    "counts",
    "finished_at",
    "id",
    "include_own",
    "items",
    "kinds",
    "overlap_s",
    "progress",
    "reason",
    "scope",
    "started_at",
    "started_by",
    "status",
    "total",
    "verified_pct",
    "waiting",
];

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

/// Walks `GET /api/v1/incidents/{id}?{query}` by `next_after`: the items'
/// numbers in page order, and each page's answer.
async fn walk_api(
    api: &reqwest::Client,
    srv: &Server,
    id: &str,
    query: &str,
) -> (Vec<i64>, Vec<Value>) {
    let pages = api_pages(api, srv.at(&format!("/api/v1/incidents/{id}?{query}"))).await;
    let seen = pages
        .iter()
        .flat_map(|v| v["items"].as_array().unwrap())
        .map(|i| i["n"].as_i64().unwrap())
        .collect();
    (seen, pages)
}

/// `rekey incident status ARGS --json` of a campaign with failed items:
/// exit 1, the answer on stdout all the same.
fn cli_status(env: &Env, args: &[&str]) -> Value {
    let mut a = vec!["incident", "status"];
    a.extend(args);
    a.push("--json");
    let out = env.run(&a);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{a:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Item `n` of the seeded campaign: (org, kind, status).
fn item(n: i64) -> (&'static str, &'static str, &'static str) {
    let org = match n % 3 {
        0 => "globex",
        1 => "acme",
        _ => "platform",
    };
    let kind = if n % 2 == 0 { "redis" } else { "postgres" };
    let status = [
        "failed",
        "waiting_person",
        "acting",
        "pending",
        "done",
        "verified",
    ][(n % 6) as usize];
    (org, kind, status)
}

const ITEMS: i64 = 130;

/// A campaign's page has two pagers: its progress per org and kind (0),
/// then its items (1).
const ITEMS_PAGER: usize = 1;

dual!(
    a_campaigns_items_page_by_number_and_filter_by_status,
    |env| {
        let admin = env.org_with_admin("acme");
        env.org_with_admin("globex");
        exec_sql(
            &env,
            "INSERT INTO incidents (id, scope, org_id, reason, kinds, include_own, overlap_ms,
                 status, job_id, started_by, started_at)
             VALUES ('inc-big', 'all', NULL, 'platform-wide leak', '[]', FALSE, 0, 'running',
                 'no-job', 'test', 1700000000000)",
        )
        .await;
        exec_sql(
            &env,
            &format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ITEMS})
                 INSERT INTO incident_items (incident_id, n, org_id, target_type, target_id,
                     target_name, kind, action, status, waiting_on, detail, updated_at)
                 SELECT 'inc-big', i,
                     CASE i % 3 WHEN 0 THEN (SELECT id FROM orgs WHERE slug = 'globex')
                                WHEN 1 THEN (SELECT id FROM orgs WHERE slug = 'acme') END,
                     CASE i % 3 WHEN 2 THEN 'provider_client' ELSE 'connection' END,
                     't-' || i, 'target-' || (1000 + i),
                     CASE WHEN i % 2 = 0 THEN 'redis' ELSE 'postgres' END,
                     CASE i % 3 WHEN 2 THEN 'operator' ELSE 'rotate' END,
                     CASE i % 6 WHEN 0 THEN 'failed' WHEN 1 THEN 'waiting_person'
                                WHEN 2 THEN 'acting' WHEN 3 THEN 'pending'
                                WHEN 4 THEN 'done' ELSE 'verified' END,
                     CASE WHEN i % 6 = 1 THEN 'org_admins' END,
                     'detail ' || i, 1700000000000
                 FROM n"
            ),
        )
        .await;
        // no job runs the seeded campaign
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1h")]);
        let page = "/ui/incidents/inc-big";
        let marker = "<td data-label=\"#\">";
        let numbers = |keep: &dyn Fn(i64) -> bool| -> Vec<String> {
            (1..=ITEMS)
                .filter(|n| keep(*n))
                .map(|n| n.to_string())
                .collect()
        };

        // the operator: every item, by number, 50 a page, each once
        let (o, _) = operator_sign_in(&env, &srv).await;
        let (seen, totals, pages) = walk(&o, &srv, page, marker, ITEMS_PAGER).await;
        assert_eq!(pages, 3, "50 + 50 + 30");
        assert!(totals.iter().all(|t| *t == ITEMS.to_string()), "{totals:?}");
        assert_eq!(seen, numbers(&|_| true), "by number, each once");

        // the first page: progress over every item, per org and kind, and
        // the filter's choices with their counts; it refreshes itself
        let (s, html) = get(&o, &srv, page).await;
        assert_eq!(s, 200);
        assert!(html.contains("data-live="), "a running campaign is live");
        assert!(html.contains(&format!("of {ITEMS} items")), "{html}");
        let settled = |n: i64| matches!(item(n).2, "verified" | "failed");
        for org in ["acme", "globex", "platform"] {
            for kind in ["postgres", "redis"] {
                let of: Vec<i64> = (1..=ITEMS)
                    .filter(|n| item(*n).0 == org && item(*n).1 == kind)
                    .collect();
                let done = of.iter().filter(|n| settled(**n)).count();
                let pct = done * 100 / of.len();
                let bar = format!(
                    "aria-label=\"{org} {kind}\">{pct}%</progress> {done} of {}",
                    of.len()
                );
                assert!(html.contains(&bar), "{bar}: {html}");
            }
        }
        let count = |status: &str| (1..=ITEMS).filter(|n| item(*n).2 == status).count();
        for status in [
            "failed",
            "waiting_person",
            "acting",
            "pending",
            "done",
            "verified",
        ] {
            let tab = format!("?status={status}\">{status} ({})</a>", count(status));
            assert!(html.contains(&tab), "{tab}: {html}");
        }
        assert!(html.contains(&format!("aria-current=\"page\">all ({ITEMS})</a>")));
        assert!(!html.contains(">cancelled ("), "no item is cancelled");
        // what waits on whom: the first 20 named, the rest one link away
        let waiting = count("waiting_person");
        assert_eq!(html.matches("— waits on org_admins").count(), 20, "{html}");
        assert!(
            html.contains(&format!("{} more waiting</a>", waiting - 20)),
            "{html}"
        );

        // filtered: only that status, the total its own, the filter kept
        // by the pager
        for status in ["failed", "waiting_person", "verified"] {
            let (seen, totals, _) = walk(
                &o,
                &srv,
                &format!("{page}?status={status}"),
                marker,
                ITEMS_PAGER,
            )
            .await;
            assert_eq!(seen, numbers(&|n| item(n).2 == status), "{status}");
            assert!(
                totals.iter().all(|t| *t == count(status).to_string()),
                "{status}: {totals:?}"
            );
        }
        let (_, html) = get(&o, &srv, &format!("{page}?status=failed")).await;
        assert!(
            html.contains(&format!(
                "aria-current=\"page\">failed ({})</a>",
                count("failed")
            )),
            "{html}"
        );
        assert!(
            html.contains("name=\"status\" value=\"failed\""),
            "retry keeps the filter"
        );
        // a filter no item matches: said so
        let (s, html) = get(&o, &srv, &format!("{page}?status=cancelled")).await;
        assert_eq!(s, 200);
        assert!(html.contains("No item is cancelled."), "{html}");

        // what the API lists whole agrees with the counts
        let (api, _) = admin_login(&srv, "op@platform.test").await;
        let v: Value = get_json(&api, srv.at("/api/v1/incidents/inc-big")).await;
        assert_eq!(v["items"].as_array().unwrap().len(), ITEMS as usize);
        assert_eq!(v["counts"]["failed"], count("failed"));
        assert_eq!(v["waiting"].as_array().unwrap().len(), waiting);
        // ... with the fields it always had, and nothing of a page
        assert_eq!(keys(&v), WHOLE, "{v}");

        // one page at a time when asked: each item once, by number, the
        // same items as the whole answer, the totals exact on every page,
        // the campaign's counts as the whole answer's, and at most 20 of
        // those waiting named
        let (seen, pages) = walk_api(&api, &srv, "inc-big", "limit=7").await;
        assert_eq!(pages.len(), (ITEMS as usize).div_ceil(7));
        assert_eq!(seen, (1..=ITEMS).collect::<Vec<_>>());
        let items: Vec<Value> = pages
            .iter()
            .flat_map(|p| p["items"].as_array().unwrap().clone())
            .collect();
        assert_eq!(Value::Array(items), v["items"], "the whole answer's items");
        for p in &pages {
            assert!(p["items"].as_array().unwrap().len() <= 7);
            assert_eq!(p["items_total"], ITEMS, "{p}");
            assert_eq!(p["total"], ITEMS);
            for f in [
                "id",
                "scope",
                "reason",
                "counts",
                "progress",
                "verified_pct",
            ] {
                assert_eq!(p[f], v[f], "{f}");
            }
            let named = p["waiting"].as_array().unwrap();
            assert_eq!(named.len(), 20);
            assert_eq!(named[..], v["waiting"].as_array().unwrap()[..20]);
        }
        let mut page_keys = WHOLE.to_vec();
        page_keys.extend(["items_total", "next_after"]);
        page_keys.sort();
        assert_eq!(keys(&pages[0]), page_keys);
        // filtered by status: that status's items only, its own total
        for status in ["failed", "verified"] {
            let (seen, pages) =
                walk_api(&api, &srv, "inc-big", &format!("status={status}&limit=4")).await;
            let want: Vec<i64> = (1..=ITEMS).filter(|n| item(*n).2 == status).collect();
            assert_eq!(seen, want, "{status}");
            assert!(pages
                .iter()
                .all(|p| p["items_total"] == want.len() && p["total"] == ITEMS));
        }
        // a status alone asks for a page (of 50): every waiting item,
        // past the 20 that `waiting` names
        let (seen, pages) = walk_api(&api, &srv, "inc-big", "status=waiting_person").await;
        assert_eq!(pages.len(), 1);
        assert_eq!(seen.len(), waiting);
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "after=x",
            "after=-3",
            "status=bogus",
        ] {
            let r = api
                .get(srv.at(&format!("/api/v1/incidents/inc-big?{bad}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{bad}");
        }

        // the CLI: the whole campaign as before, or a page with --limit
        // (exit 1 either way: items failed)
        let whole = cli_status(&env, &["inc-big"]);
        assert_eq!(keys(&whole), WHOLE);
        assert_eq!(whole["items"], v["items"]);
        let mut seen = vec![];
        let mut after: Option<String> = None;
        for round in 0.. {
            assert!(round < 10, "the pages never end");
            let mut args = vec!["inc-big", "--limit", "40"];
            if let Some(a) = &after {
                args.extend(["--after", a.as_str()]);
            }
            let p = cli_status(&env, &args);
            assert_eq!(keys(&p), page_keys);
            assert_eq!(p["items_total"], ITEMS);
            seen.extend(
                p["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["n"].as_i64().unwrap()),
            );
            match p["next_after"].as_str() {
                Some(a) => after = Some(a.to_string()),
                None => break,
            }
        }
        assert_eq!(seen, (1..=ITEMS).collect::<Vec<_>>());
        let failed = cli_status(&env, &["inc-big", "--item-status", "failed"]);
        assert_eq!(failed["items_total"], count("failed"));
        assert!(failed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "failed"));
        let out = env.run(&["incident", "status", "inc-big", "--limit", "0"]);
        assert_eq!(out.status.code(), Some(2), "a usage error");

        // the cancel question counts them too
        let (s, html) = get(&o, &srv, &format!("{page}/cancel")).await;
        assert_eq!(s, 200);
        assert!(html.contains("Cancel campaign inc-big?"), "{html}");
        assert!(
            html.contains(&format!(
                "{} of {ITEMS} items are settled",
                count("verified") + count("failed")
            )),
            "{html}"
        );

        // the campaigns' list counts every item without listing them
        let (_, html) = get(&o, &srv, "/ui/incidents").await;
        assert!(html.contains(&format!("% of {ITEMS}</td>")), "{html}");

        // bad input: a clear error page
        for bad in ["status=bogus", "after=x", "after=-1", "after=1.5"] {
            let (s, html) = get(&o, &srv, &format!("{page}?{bad}")).await;
            assert_eq!(s, 400, "{bad}: {html}");
        }
        let (_, html) = get(&o, &srv, &format!("{page}?after=x")).await;
        assert!(html.contains("page cursor"), "{html}");

        // an org admin: their org's items only, counted and paged alike
        let (c, _) = sign_in(&srv, &admin).await;
        let (seen, totals, pages) = walk(&c, &srv, page, marker, ITEMS_PAGER).await;
        let theirs = numbers(&|n| item(n).0 == "acme");
        assert_eq!(pages, 1, "44 items");
        assert_eq!(totals, vec![theirs.len().to_string()]);
        assert_eq!(seen, theirs);
        let (_, html) = get(&c, &srv, page).await;
        assert!(!html.contains("globex"), "{html}");
        assert!(!html.contains("aria-label=\"platform "), "{html}");
        assert!(
            html.contains(&format!("of {} items", theirs.len())),
            "{html}"
        );
        // ... and in the API's pages alike
        let (acme_api, _) = admin_login(&srv, &admin).await;
        let (seen, pages) = walk_api(&acme_api, &srv, "inc-big", "limit=9").await;
        let theirs_n: Vec<i64> = (1..=ITEMS).filter(|n| item(*n).0 == "acme").collect();
        assert_eq!(seen, theirs_n);
        assert!(pages
            .iter()
            .all(|p| p["items_total"] == theirs_n.len() && p["total"] == theirs_n.len()));
        assert!(pages.iter().all(|p| p["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["org"] == "acme")));
        // (acme's items are n % 6 = 1 or 4: waiting on a person, or done)
        let (seen, _, _) = walk(
            &c,
            &srv,
            &format!("{page}?status=done"),
            marker,
            ITEMS_PAGER,
        )
        .await;
        assert_eq!(
            seen,
            numbers(&|n| item(n).0 == "acme" && item(n).2 == "done")
        );
        assert!(!seen.is_empty());
        let (_, html) = get(&c, &srv, "/ui/incidents").await;
        assert!(
            html.contains(&format!("% of {}</td>", theirs.len())),
            "{html}"
        );
        // the landing page names what waits on each, read by SQL: acme's
        // admin sees acme's waiting items (none of acme's failed: no Retry
        // in the operator's campaign), the operator every org's
        let acme_waiting = numbers(&|n| item(n).0 == "acme" && item(n).2 == "waiting_person");
        let (_, home) = get(&c, &srv, "/ui/").await;
        assert_eq!(
            home.matches("Campaign item: ").count(),
            acme_waiting.len().min(50),
            "{home}"
        );
        assert!(
            home.contains("Campaign item: connection target-1007"),
            "{home}"
        );
        assert!(!home.contains(r#"name="item""#), "{home}");
        let failed = numbers(&|n| item(n).2 == "failed");
        let waiting = numbers(&|n| item(n).2 == "waiting_person");
        let (_, home) = get(&o, &srv, "/ui/").await;
        assert_eq!(
            home.matches("Campaign item: ").count(),
            (failed.len() + waiting.len()).min(50),
            "{home}"
        );
        // worst first, each failed item with its Retry
        let first = |s: &str| home.find(s).unwrap_or(usize::MAX);
        assert!(
            first(">failed</span>") < first(">waiting_person</span>"),
            "{home}"
        );
        assert!(
            home.contains(&format!(r#"name="item" value="{}""#, failed[0])),
            "{home}"
        );
        // until one waits on the operator: only the operator sees it
        exec_sql(
            &env,
            "UPDATE incident_items SET status = 'waiting_person', waiting_on = 'operator'
             WHERE incident_id = 'inc-big' AND n = 2",
        )
        .await;
        let (_, home) = get(&o, &srv, "/ui/").await;
        assert_eq!(
            home.matches("Campaign item: ").count(),
            (failed.len() + waiting.len() + 1).min(50),
            "{home}"
        );
        assert!(
            home.contains("Campaign item: provider_client target-1002"),
            "{home}"
        );
        assert!(home.contains("Set the provider"), "{home}");
        let (_, home) = get(&c, &srv, "/ui/").await;
        assert!(!home.contains("target-1002"), "{home}");

        // an org with no item in it: not found
        env.org_with_admin("initech");
        let (i, _) = sign_in(&srv, "admin@initech.test").await;
        assert_eq!(get(&i, &srv, page).await.0, 404);
        assert_eq!(get(&i, &srv, &format!("{page}?status=failed")).await.0, 404);
        assert_eq!(get(&i, &srv, &format!("{page}/cancel")).await.0, 404);
        let (i_api, _) = admin_login(&srv, "admin@initech.test").await;
        for q in ["", "?limit=5", "?status=failed"] {
            let r = i_api
                .get(srv.at(&format!("/api/v1/incidents/inc-big{q}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 404, "{q}");
        }

        // the operator cancels one waiting item from its row, then the
        // campaign from its confirmation
        let (_, html) = get(&o, &srv, page).await;
        let ocsrf = csrf_of(&html);
        let one = waiting[0].to_string();
        let r = post(
            &o,
            &srv,
            &format!("{page}/cancel"),
            &[("csrf", ocsrf.as_str()), ("item", one.as_str())],
        )
        .await;
        assert_eq!(r.status(), 303);
        let p = cli_status(&env, &["inc-big", "--item-status", "cancelled"]);
        assert_eq!(p["items_total"], 1, "{p}");
        assert_eq!(
            p["items"][0]["n"].to_string(),
            waiting[0].to_string(),
            "{p}"
        );
        assert_eq!(cli_status(&env, &["inc-big"])["status"], "running");
        let r = post(
            &o,
            &srv,
            &format!("{page}/cancel"),
            &[("csrf", ocsrf.as_str())],
        )
        .await;
        assert_eq!(r.status(), 303);
        assert_eq!(cli_status(&env, &["inc-big"])["status"], "cancelled");
    }
);

/// Statuses the progress test's items take, in turn.
const TURN: [&str; 7] = [
    "failed",
    "verified",
    "pending",
    "done",
    "acting",
    "cancelled",
    "waiting_person",
];

/// The items of the wide campaign: (org slug, or "" for the platform's
/// own; kind as the table names it; stored kind; status). Sixty orgs with
/// two kinds each (1–5 items a group, failed, settled and open in varied
/// shares: many ties), acme with two, one org with a third kind whose
/// items all failed (the worst), and the platform's own.
fn wide_items() -> Vec<(String, String, Option<String>, &'static str)> {
    let mut out = vec![];
    let mut org = |slug: &str, j: usize| {
        for (k, kind) in ["postgres", "redis"].iter().enumerate() {
            for m in 0..1 + (j * 2 + k) % 5 {
                let status = TURN[(j * 3 + k * 5 + m * (1 + j % 3)) % 7];
                out.push((
                    slug.to_string(),
                    kind.to_string(),
                    Some(kind.to_string()),
                    status,
                ));
            }
        }
    };
    for j in 1..=60 {
        org(&format!("o-{j:03}"), j);
    }
    org("acme", 61);
    for _ in 0..4 {
        out.push((
            "o-042".into(),
            "snowflake".into(),
            Some("snowflake".into()),
            "failed",
        ));
    }
    for status in ["verified", "verified", "done"] {
        out.push((String::new(), "provider_client".into(), None, status));
    }
    out
}

/// The groups of `items` (those of `org`, or all with `None`) as the
/// progress table orders them: most failed first, then least settled
/// (permille), then org ("" first) and kind; each "ORG KIND" as the table
/// labels its bar (the platform's own as "platform").
fn worst_first(
    items: &[(String, String, Option<String>, &'static str)],
    org: Option<&str>,
) -> Vec<(String, i64, i64, i64)> {
    let mut groups: std::collections::BTreeMap<(String, String), (i64, i64, i64)> =
        Default::default();
    for (o, kind, _, status) in items.iter().filter(|i| org.is_none_or(|x| i.0 == x)) {
        let g = groups.entry((o.clone(), kind.clone())).or_default();
        g.0 += 1;
        g.1 += i64::from(*status == "failed");
        g.2 += i64::from(matches!(*status, "verified" | "failed" | "cancelled"));
    }
    let mut rows: Vec<_> = groups.into_iter().collect();
    rows.sort_by_key(|((o, k), (total, failed, settled))| {
        (-failed, settled * 1000 / total, o.clone(), k.clone())
    });
    rows.into_iter()
        .map(|((o, k), (total, failed, settled))| {
            let o = if o.is_empty() {
                "platform".to_string()
            } else {
                o
            };
            (format!("{o} {k}"), total, failed, settled)
        })
        .collect()
}

/// The progress table's rows on a campaign's page, as "ORG KIND".
fn group_rows(html: &str) -> Vec<String> {
    let table = html
        .split("<h2 id=\"h-groups\">")
        .nth(1)
        .and_then(|t| t.split("</section>").next())
        .unwrap_or_else(|| panic!("no progress table: {html}"));
    let cell = |row: &str, label: &str| -> String {
        row.split(&format!("<td data-label=\"{label}\">"))
            .nth(1)
            .and_then(|c| c.split('<').next())
            .unwrap()
            .to_string()
    };
    table
        .split("<tr>")
        .skip(2)
        .map(|row| format!("{} {}", cell(row, "Org"), cell(row, "Kind")))
        .collect()
}

dual!(
    a_campaigns_progress_per_org_and_kind_pages_worst_first,
    |env| {
        let admin = env.org_with_admin("acme");
        env.org_with_admin("initech");
        let orgs: Vec<String> = (1..=60)
            .map(|j| format!("('org-{j}', 'o-{j:03}', 'o {j}', 1700000000000)"))
            .collect();
        exec_sql(
            &env,
            &format!(
                "INSERT INTO orgs (id, slug, name, created_at) VALUES {}",
                orgs.join(", ")
            ),
        )
        .await;
        exec_sql(
            &env,
            "INSERT INTO incidents (id, scope, org_id, reason, kinds, include_own, overlap_ms,
                 status, job_id, started_by, started_at)
             VALUES ('inc-wide', 'all', NULL, 'every org', '[]', FALSE, 0, 'running',
                 'no-job', 'test', 1700000000000)",
        )
        .await;
        let items = wide_items();
        let rows: Vec<String> = items
            .iter()
            .enumerate()
            .map(|(i, (org, _, kind, status))| {
                let org_id = match org.as_str() {
                    "" => "NULL".to_string(),
                    slug => format!("(SELECT id FROM orgs WHERE slug = '{slug}')"),
                };
                let (target, kind) = match kind {
                    Some(k) => ("connection", format!("'{k}'")),
                    None => ("provider_client", "NULL".to_string()),
                };
                format!(
                    "('inc-wide', {n}, {org_id}, '{target}', 't-{n}', 'target-{n}', {kind},
                      'rotate', '{status}', 'detail', 1700000000000)",
                    n = i + 1
                )
            })
            .collect();
        exec_sql(
            &env,
            &format!(
                "INSERT INTO incident_items (incident_id, n, org_id, target_type, target_id,
                     target_name, kind, action, status, detail, updated_at) VALUES {}",
                rows.join(", ")
            ),
        )
        .await;
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1h")]);
        let want = worst_first(&items, None);
        let want_names: Vec<String> = want.iter().map(|g| g.0.clone()).collect();
        assert_eq!(want.len(), 60 * 2 + 2 + 1 + 1);
        assert_eq!(want[0].0, "o-042 snowflake", "the worst: the most failed");

        // the console: worst first, 50 a page, each group once, the exact
        // total on every page, by the progress table's own pager
        let (o, _) = operator_sign_in(&env, &srv).await;
        let page = "/ui/incidents/inc-wide";
        let (mut seen, mut totals, mut pages) = (vec![], vec![], vec![]);
        let mut at = Some(page.to_string());
        while let Some(p) = at.take() {
            assert!(pages.len() < 10, "the pages never end");
            let (s, html) = get(&o, &srv, &p).await;
            assert_eq!(s, 200, "{p}: {html}");
            let rows = group_rows(&html);
            assert!(rows.len() <= 50);
            seen.extend(rows);
            let pg = pager(&html, 0).unwrap_or_else(|| panic!("{p}: no pager: {html}"));
            totals.push(pg.split(" in all").next().unwrap().trim().to_string());
            at = next_link(pg);
            pages.push((p, html));
        }
        assert_eq!(pages.len(), 3, "50 + 50 + 24");
        assert!(
            totals.iter().all(|t| *t == want.len().to_string()),
            "{totals:?}"
        );
        assert_eq!(seen, want_names, "worst first, each once");
        each_once(&seen, &want_names);
        // every bar says its group's figures
        for (name, total, failed, settled) in &want {
            let html = &pages
                .iter()
                .find(|(_, h)| group_rows(h).contains(name))
                .unwrap()
                .1;
            let bar = format!(
                "aria-label=\"{name}\">{pct}%</progress> {settled} of {total}",
                pct = settled * 100 / total
            );
            assert!(html.contains(&bar), "{bar}");
            if *failed > 0 {
                assert!(
                    html.contains(&format!(
                        "<td data-label=\"Failed\"><span class=\"badge bad\">{failed}</span></td><td data-label=\"Progress\"><progress max=\"100\" value=\"{}\" aria-label=\"{name}\"",
                        settled * 100 / total
                    )),
                    "{name}"
                );
            }
        }

        // the two lists page apart, each link keeping the other's place:
        // on the table's second page, the items' Next keeps it, and so do
        // the status filter and a retry
        let (second, html) = &pages[1];
        assert!(second.contains("groups_after="), "{second}");
        let items_next = next_link(pager(html, 1).unwrap()).unwrap();
        assert!(items_next.contains("groups_after="), "{items_next}");
        assert!(items_next.ends_with("&after=50"), "{items_next}");
        let (s, html2) = get(&o, &srv, &items_next).await;
        assert_eq!(s, 200);
        assert_eq!(group_rows(&html2), group_rows(html), "the table stays");
        assert!(
            html2.contains("?status=failed&#38;groups_after="),
            "{html2}"
        );
        assert!(html2.contains("name=\"groups_after\" value=\""), "{html2}");
        let groups_next = next_link(pager(&html2, 0).unwrap()).unwrap();
        assert!(
            groups_next.contains("?after=50&groups_after="),
            "{groups_next}"
        );
        for bad in ["nodot", "x:1:o.redis", "1:2.redis"] {
            let (s, html) = get(&o, &srv, &format!("{page}?groups_after={bad}")).await;
            assert_eq!(s, 400, "{bad}: {html}");
            assert!(html.contains("page cursor"), "{html}");
        }

        // the API: the same groups in the same order, a page at a time
        let (api, _) = admin_login(&srv, "op@platform.test").await;
        let walk_progress = |c: reqwest::Client| {
            let srv = &srv;
            async move {
                let mut seen = vec![];
                let url = srv.at("/api/v1/incidents/inc-wide/progress?limit=7");
                for v in api_pages(&c, url).await {
                    for g in v["items"].as_array().unwrap() {
                        seen.push((
                            format!(
                                "{} {}",
                                g["org"].as_str().unwrap_or("platform"),
                                g["kind"].as_str().unwrap()
                            ),
                            g["total"].as_i64().unwrap(),
                            g["failed"].as_i64().unwrap(),
                            g["settled"].as_i64().unwrap(),
                            g["progress"].as_i64().unwrap(),
                            v["total"].as_i64().unwrap(),
                        ));
                    }
                }
                seen
            }
        };
        let seen = walk_progress(api.clone()).await;
        assert_eq!(seen.len(), want.len());
        let groups = want.len() as i64;
        for (got, want) in seen.iter().zip(&want) {
            assert_eq!(
                (&got.0, got.1, got.2, got.3, got.4, got.5),
                (
                    &want.0,
                    want.1,
                    want.2,
                    want.3,
                    want.3 * 100 / want.1,
                    groups
                )
            );
        }
        for bad in ["after=nodot", "after=1:x:o.redis", "limit=0", "limit=1001"] {
            let r = api
                .get(srv.at(&format!("/api/v1/incidents/inc-wide/progress?{bad}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{bad}");
        }

        // an org admin: their org's groups only, in the console and the API
        let mine = worst_first(&items, Some("acme"));
        assert_eq!(mine.len(), 2);
        let (c, _) = sign_in(&srv, &admin).await;
        let (_, html) = get(&c, &srv, page).await;
        assert_eq!(
            group_rows(&html),
            mine.iter().map(|g| g.0.clone()).collect::<Vec<_>>()
        );
        assert!(pager(&html, 0).unwrap().starts_with("2 in all"), "{html}");
        let (acme_api, _) = admin_login(&srv, &admin).await;
        let seen = walk_progress(acme_api).await;
        assert_eq!(
            seen.iter().map(|g| g.0.clone()).collect::<Vec<_>>(),
            mine.iter().map(|g| g.0.clone()).collect::<Vec<_>>()
        );
        assert!(seen.iter().all(|g| g.5 == 2));
        // an org with no item in it: not found
        let (i_api, _) = admin_login(&srv, "admin@initech.test").await;
        let r = i_api
            .get(srv.at("/api/v1/incidents/inc-wide/progress"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
);
