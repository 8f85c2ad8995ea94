//! Console lists walked past a page by their Next links, on both stores:
//! the credential age view (its order computed across every kind of
//! credential), an org's rotations, the operator's rotation queue (two
//! segments in one keyset) and the incidents. Each row is seen once, in
//! the list's order, the stated total is exact on every page, and another
//! org's rows never show.

use std::time::Duration;

use serde_json::Value;

use crate::console::{each_once, get, next_link, operator_sign_in, pager, sign_in, walk};
use crate::dual;
use crate::harness::*;

/// Creates `names` as `what` (`keys`, `m2m`) of `org` through the admin
/// API.
async fn own_credentials(srv: &Server, admin: &str, org: &str, what: &str, names: &[String]) {
    let (c, csrf) = admin_login(srv, admin).await;
    for name in names {
        let r = c
            .post(srv.at(&format!("/api/v1/orgs/{org}/{what}")))
            .header("X-CSRF-Token", &csrf)
            .json(&serde_json::json!({"name": name, "scope": "read"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{what} {name}");
    }
}

/// The text of a page's table cells labelled `label`, tags stripped, in
/// page order.
fn cells(html: &str, label: &str) -> Vec<String> {
    let open = format!("<td data-label=\"{label}\">");
    html.split(&open)
        .skip(1)
        .map(|part| {
            let cell = part.split("</td>").next().unwrap();
            let mut text = String::new();
            let mut in_tag = false;
            for ch in cell.chars() {
                match ch {
                    '<' => in_tag = true,
                    '>' => in_tag = false,
                    c if !in_tag => text.push(c),
                    _ => {}
                }
            }
            text.trim().to_string()
        })
        .collect()
}

/// Walks the age view from `path` by its Next links: each credential as
/// "KIND NAME" (as the table names it) in page order, the totals the
/// pages state, and the number of pages.
async fn walk_age(
    c: &reqwest::Client,
    srv: &Server,
    path: &str,
) -> (Vec<String>, Vec<String>, usize) {
    let (mut seen, mut totals, mut pages) = (vec![], vec![], 0);
    let mut at = Some(path.to_string());
    while let Some(p) = at.take() {
        pages += 1;
        assert!(pages < 20, "the pages never end");
        let (s, html) = get(c, srv, &p).await;
        assert_eq!(s, 200, "{p}: {html}");
        let shown = cells(&html, "Credential");
        assert_eq!(
            html.matches("<rect ").count(),
            shown.len(),
            "{p}: one bar per credential of the page"
        );
        seen.extend(shown);
        let pg = pager(&html, 0).unwrap_or_else(|| panic!("{p}: no pager: {html}"));
        totals.push(pg.split(" in all").next().unwrap().trim().to_string());
        if pages > 1 {
            assert!(pg.contains(">first page</a>"), "{p}: a way back");
        }
        at = next_link(pg);
    }
    (seen, totals, pages)
}

/// The age view's rows as the console names them ("access key ci").
fn named(rows: &Value) -> Vec<String> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let kind = match r["type"].as_str().unwrap() {
                "access_key" => "access key",
                "m2m_secret" => "machine client",
                "app_secret" => "application",
                "provider_client" => "provider client",
                "master_key" => "master key",
                other => other,
            };
            format!("{kind} {}", r["name"].as_str().unwrap())
        })
        .collect()
}

dual!(
    the_age_view_pages_by_keyset_in_its_worst_first_order,
    |env| {
        let admin = env.org_with_admin("acme");
        let other = env.org_with_admin("globex");
        let ops = "op@platform.test";
        let srv = env.serve();
        let keys: Vec<String> = (0..57).map(|i| format!("key-{i:02}")).collect();
        let m2m: Vec<String> = (0..6).map(|i| format!("m2m-{i:02}")).collect();
        // the machine clients first: their ids sort before the keys', and
        // their kind after
        own_credentials(&srv, &admin, "acme", "m2m", &m2m).await;
        own_credentials(&srv, &admin, "acme", "keys", &keys).await;
        own_credentials(&srv, &other, "globex", "keys", &["g-key".to_string()]).await;
        // Both segments of the order and ties in each: keys 00–19 are on
        // an hourly schedule (past due once the clock moves 2h), 20–29 on
        // a yearly one; 30–56 and the machine clients share one creation
        // time (a tie across the first page's end), so kind and id break
        // their ties, and so do 00–09's due dates.
        exec_sql(
            &env,
            "INSERT INTO secret_schedules (target_type, target_id, rotation_interval_ms)
             SELECT 'key', id, CASE WHEN name < 'key-20' THEN 3600000 ELSE 31536000000 END
             FROM access_keys WHERE name < 'key-30'",
        )
        .await;
        exec_sql(
            &env,
            "UPDATE access_keys SET created_at = (SELECT MIN(created_at) FROM access_keys)
             WHERE name < 'key-10' OR name >= 'key-30'",
        )
        .await;
        exec_sql(
            &env,
            "UPDATE oauth_clients SET created_at = (SELECT MIN(created_at) FROM access_keys)",
        )
        .await;
        env.advance(Duration::from_secs(2 * 3600));
        let (api, _) = admin_login(&srv, &admin).await;
        let r = api
            .get(srv.at("/api/v1/orgs/acme/credentials/age"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let list: Value = r.json().await.unwrap();
        assert_eq!(list.as_array().unwrap().len(), 63, "{list}");
        assert_eq!(list[0]["due"], true, "past due first");
        assert_eq!(
            list.as_array()
                .unwrap()
                .iter()
                .filter(|r| r["due"] == true)
                .count(),
            20
        );

        // the console walks the same order, each credential once
        let (c, _) = sign_in(&srv, &admin).await;
        let (seen, totals, pages) = walk_age(&c, &srv, "/ui/orgs/acme/age").await;
        assert_eq!(pages, 2, "50 + 13");
        assert!(totals.iter().all(|t| t == "63"), "{totals:?}");
        assert_eq!(seen, named(&list), "the API's order, page by page");
        let mut want = keys
            .iter()
            .map(|k| format!("access key {k}"))
            .collect::<Vec<_>>();
        want.extend(m2m.iter().map(|m| format!("machine client {m}")));
        each_once(&seen, &want);
        let (_, html) = get(&c, &srv, "/ui/orgs/acme/age").await;
        assert!(
            html.contains("63 credentials, worst first; 20 past due."),
            "{html}"
        );

        // the API pages the same way when asked, and answers as before
        // when not
        let mut paged = vec![];
        let mut after: Option<String> = None;
        for _ in 0..20 {
            let q = match &after {
                None => "limit=9".to_string(),
                Some(a) => format!("limit=9&after={}", urlencode(a)),
            };
            let r = api
                .get(srv.at(&format!("/api/v1/orgs/acme/credentials/age?{q}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["total"], 63);
            assert_eq!(v["due"], 20);
            paged.extend(v["items"].as_array().unwrap().iter().cloned());
            match v["next_after"].as_str() {
                Some(a) => after = Some(a.to_string()),
                None => break,
            }
        }
        let paged = Value::Array(paged);
        assert_eq!(named(&paged), named(&list));
        assert_eq!(paged[0], list[0], "the same fields");
        let r = api
            .get(srv.at("/api/v1/orgs/acme/credentials/age?after=nodot"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);

        // another org: its own only; a cursor of acme's shows globex's
        let (g, _) = sign_in(&srv, &other).await;
        let (seen, totals, _) = walk_age(&g, &srv, "/ui/orgs/globex/age").await;
        assert_eq!(seen, vec!["access key g-key".to_string()]);
        assert_eq!(totals, vec!["1".to_string()]);
        let (_, html) = get(&c, &srv, "/ui/orgs/acme/age").await;
        let acme_next = next_link(pager(&html, 0).unwrap()).unwrap();
        let cursor = acme_next.split("after=").nth(1).unwrap().to_string();
        let (s, html) = get(&g, &srv, &format!("/ui/orgs/globex/age?after={cursor}")).await;
        assert_eq!(s, 200);
        assert!(!html.contains("key-"), "{html}");
        assert_eq!(get(&c, &srv, "/ui/orgs/globex/age").await.0, 404);

        // a cursor that is not one is a clear error page
        for bad in ["nodot", "1:0:x:1.abc", "1:7:5:1.abc"] {
            let (s, html) = get(&c, &srv, &format!("/ui/orgs/acme/age?after={bad}")).await;
            assert_eq!(s, 400, "{bad}: {html}");
            assert!(html.contains("page cursor"), "{html}");
        }

        // the operator's view: every org's and the platform's own, in the
        // order of the API's whole list
        let (o, _) = operator_sign_in(&env, &srv).await;
        let (oapi, _) = admin_login(&srv, ops).await;
        let all: Value = get_json(&oapi, srv.at("/api/v1/credentials/age")).await;
        let n = all.as_array().unwrap().len();
        assert!(n >= 65, "acme's, globex's and a master key: {n}");
        let (seen, totals, pages) = walk_age(&o, &srv, "/ui/age").await;
        assert_eq!(pages, n.div_ceil(50));
        assert!(totals.iter().all(|t| *t == n.to_string()), "{totals:?}");
        assert_eq!(seen, named(&all));
        assert!(seen.iter().any(|s| s.starts_with("master key ")));
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

/// Seeds `n` rotations of org `slug` directly (ids `PREFIX-100`…): every
/// third unfinished (`running`), the rest completed; two at each start
/// time, so the id breaks ties.
async fn rotations_in(env: &Env, slug: &str, prefix: &str, n: usize) {
    exec_sql(
        env,
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
             INSERT INTO rotations (id, org_id, target_type, target_id, target_name, status, steps,
                 job_id, cutover_window_ms, deadline_at, started_by, started_at, finished_at)
             SELECT '{prefix}-' || (100 + i), (SELECT id FROM orgs WHERE slug = '{slug}'),
                 'connection', '{prefix}-target-' || i, '{prefix}-conn-' || i,
                 CASE WHEN i % 3 = 0 THEN 'running' ELSE 'completed' END, '[]',
                 'no-job', 60000, 1700100000000, 'test',
                 1700000000000 + (i / 2) * 1000,
                 CASE WHEN i % 3 = 0 THEN NULL ELSE 1700050000000 + i END
             FROM n"
        ),
    )
    .await;
}

/// `rotations_in`'s rows as (id, started_at, finished) in id order.
fn seeded(prefix: &str, n: i64) -> Vec<(String, i64, bool)> {
    (1..=n)
        .map(|i| {
            (
                format!("{prefix}-{}", 100 + i),
                1_700_000_000_000 + (i / 2) * 1000,
                i % 3 != 0,
            )
        })
        .collect()
}

dual!(rotations_and_the_operators_queue_page_by_keyset, |env| {
    let admin = env.org_with_admin("acme");
    env.org_with_admin("globex");
    rotations_in(&env, "acme", "ra", 53).await;
    rotations_in(&env, "globex", "rg", 4).await;
    // no job runs the seeded rotations
    let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1h")]);

    // an org's rotations: newest first, the id breaking ties
    let mut want = seeded("ra", 53);
    want.sort_by(|a, b| (b.1, &b.0).cmp(&(a.1, &a.0)));
    let want_ids: Vec<String> = want.iter().map(|r| r.0.clone()).collect();
    let (c, _) = sign_in(&srv, &admin).await;
    let marker = "<td data-label=\"Rotation\"><a href=\"/ui/orgs/acme/rotations/";
    let (seen, totals, pages) = walk(&c, &srv, "/ui/orgs/acme/rotations", marker, 0).await;
    assert_eq!(pages, 2, "50 + 3");
    assert!(totals.iter().all(|t| t == "53"), "{totals:?}");
    assert_eq!(seen, want_ids, "newest first, each once");
    // filtered by status, the pager keeps the filter
    let (seen, totals, _) = walk(
        &c,
        &srv,
        "/ui/orgs/acme/rotations?status=running",
        marker,
        0,
    )
    .await;
    assert_eq!(seen.len(), 17);
    assert!(totals.iter().all(|t| t == "17"), "{totals:?}");
    let (s, html) = get(&c, &srv, "/ui/orgs/acme/rotations?after=nodot").await;
    assert_eq!(s, 400, "{html}");
    assert_eq!(
        get(&c, &srv, "/ui/rotations").await.0,
        403,
        "the operator's"
    );

    // the operator's queue: unfinished first, oldest first; then the
    // finished, newest first; every org's
    let mut all: Vec<(String, String, i64, bool)> = seeded("ra", 53)
        .into_iter()
        .map(|(id, at, f)| ("acme".to_string(), id, at, f))
        .chain(
            seeded("rg", 4)
                .into_iter()
                .map(|(id, at, f)| ("globex".to_string(), id, at, f)),
        )
        .collect();
    all.sort_by(|a, b| {
        let key =
            |r: &(String, String, i64, bool)| (r.3, if r.3 { -r.2 } else { r.2 }, r.1.clone());
        key(a).cmp(&key(b))
    });
    let want: Vec<String> = all
        .iter()
        .map(|(org, id, _, _)| format!("{org}/rotations/{id}"))
        .collect();
    let (o, _) = operator_sign_in(&env, &srv).await;
    let marker = "<td data-label=\"Rotation\"><a href=\"/ui/orgs/";
    let (seen, totals, pages) = walk(&o, &srv, "/ui/rotations", marker, 0).await;
    assert_eq!(pages, 2, "50 + 7");
    assert!(totals.iter().all(|t| t == "57"), "{totals:?}");
    assert_eq!(seen, want, "the queue's order, each once");
    for bad in ["nodot", "x:5.ra-101", "2:5.ra-101"] {
        let (s, html) = get(&o, &srv, &format!("/ui/rotations?after={bad}")).await;
        assert_eq!(s, 400, "{bad}: {html}");
        assert!(html.contains("page cursor"), "{html}");
    }
});

dual!(
    incidents_page_by_keyset_for_the_operator_and_an_org,
    |env| {
        let admin = env.org_with_admin("acme");
        env.org_with_admin("globex");
        for (slug, prefix, n) in [("acme", "ia", 55), ("globex", "ig", 3)] {
            exec_sql(
            &env,
            &format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
                 INSERT INTO incidents (id, scope, org_id, reason, kinds, include_own, overlap_ms,
                     status, job_id, started_by, started_at, finished_at)
                 SELECT '{prefix}-' || (100 + i), 'org:{slug}', (SELECT id FROM orgs WHERE slug = '{slug}'),
                     'seeded', '[]', FALSE, 0, 'completed', 'no-job', 'test',
                     1700000000000 + (i / 2) * 1000, 1700000100000
                 FROM n"
            ),
        )
        .await;
        }
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1h")]);
        let ids = |prefix: &str, n: i64| -> Vec<String> {
            (1..=n).map(|i| format!("{prefix}-{}", 100 + i)).collect()
        };
        let marker = "<td data-label=\"Campaign\"><a href=\"/ui/incidents/";

        // an org admin: their org's campaigns, newest first, each once
        let (c, _) = sign_in(&srv, &admin).await;
        let (seen, totals, pages) = walk(&c, &srv, "/ui/incidents", marker, 0).await;
        assert_eq!(pages, 2, "50 + 5");
        assert!(totals.iter().all(|t| t == "55"), "{totals:?}");
        let mut want = ids("ia", 55);
        want.sort_by_key(|id| {
            let i: i64 = id[3..].parse::<i64>().unwrap() - 100;
            (std::cmp::Reverse(i / 2), std::cmp::Reverse(id.clone()))
        });
        assert_eq!(seen, want, "newest first, the id breaking ties");

        // the operator: every org's
        let (o, _) = operator_sign_in(&env, &srv).await;
        let (seen, totals, pages) = walk(&o, &srv, "/ui/incidents", marker, 0).await;
        assert_eq!(pages, 2, "50 + 8");
        assert!(totals.iter().all(|t| t == "58"), "{totals:?}");
        let mut all = ids("ia", 55);
        all.extend(ids("ig", 3));
        each_once(&seen, &all);
        let (s, html) = get(&o, &srv, "/ui/incidents?after=nodot").await;
        assert_eq!(s, 400, "{html}");

        // the API's twin: the whole answer as ever (an array, newest
        // first), and by page with `limit` or `after`
        let (api, _) = admin_login(&srv, &admin).await;
        let whole = get_json(&api, srv.at("/api/v1/incidents")).await;
        let whole_ids: Vec<String> = whole
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(whole_ids, want, "the whole list unchanged");
        let walk_api = |api: reqwest::Client| {
            let srv = &srv;
            async move {
                let pages = api_pages(&api, srv.at("/api/v1/incidents?limit=7")).await;
                let mut seen = Vec::<String>::new();
                for v in &pages {
                    let items = v["items"].as_array().unwrap();
                    assert!(items.len() <= 7, "{v}");
                    for i in items {
                        assert_eq!(i["items"], serde_json::json!([]), "counted, not listed");
                        seen.push(i["id"].as_str().unwrap().to_string());
                    }
                }
                let total = pages.last().unwrap()["total"].as_i64().unwrap();
                (seen, total, pages.len())
            }
        };
        let (seen, total, pages) = walk_api(api.clone()).await;
        assert_eq!((total, pages), (55, 8));
        assert_eq!(seen, want, "the pages in the whole list's order");
        let (oapi, _) = admin_login(&srv, "op@platform.test").await;
        let (seen, total, _) = walk_api(oapi.clone()).await;
        assert_eq!(total, 58);
        each_once(&seen, &all);
        for bad in ["limit=0", "limit=abc", "after=nodot", "limit=5&sort=id"] {
            let r = oapi
                .get(srv.at(&format!("/api/v1/incidents?{bad}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{bad}");
        }

        // and the CLI's, as the operator
        let (mut seen, mut after) = (Vec::<String>::new(), None::<String>);
        loop {
            let mut args = vec!["incident", "list", "--limit", "25"];
            if let Some(a) = &after {
                args.extend(["--after", a.as_str()]);
            }
            let v = env.json(&args);
            assert_eq!(v["total"], 58, "{v}");
            seen.extend(
                v["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["id"].as_str().unwrap().to_string()),
            );
            after = v["next_after"].as_str().map(str::to_string);
            if after.is_none() {
                break;
            }
        }
        each_once(&seen, &all);
        assert_eq!(
            env.run(&["incident", "list", "--limit", "0"]).status.code(),
            Some(2)
        );
    }
);

/// The "due or due within a week" rows of the landing page, as "KIND
/// NAME" with their badge's status.
fn due_rows(html: &str) -> Vec<(String, String)> {
    let Some(section) = html.split("<h2>Due or due within a week</h2>").nth(1) else {
        return vec![];
    };
    let section = section.split("</table>").next().unwrap();
    section
        .split("<td data-label=\"Status\">")
        .skip(1)
        .map(|row| {
            let status = row
                .split("\">")
                .nth(1)
                .and_then(|s| s.split('<').next())
                .unwrap()
                .to_string();
            let what = row
                .split("<td data-label=\"What\"><a href=\"")
                .nth(1)
                .and_then(|s| s.split("\">").nth(1))
                .and_then(|s| s.split(" (").next())
                .unwrap()
                .to_string();
            (what, status)
        })
        .collect()
}

dual!(
    the_landing_page_shows_the_first_page_of_credentials_due,
    |env| {
        let admin = env.org_with_admin("acme");
        let other = env.org_with_admin("globex");
        let srv = env.serve();
        let keys: Vec<String> = (0..70).map(|i| format!("k-{i:02}")).collect();
        own_credentials(&srv, &admin, "acme", "keys", &keys).await;
        let gkeys: Vec<String> = (0..5).map(|i| format!("g-{i:02}")).collect();
        own_credentials(&srv, &other, "globex", "keys", &gkeys).await;
        // k-00–29 and g-00–02 hourly (past due once the clock moves 2h),
        // k-30–59 and g-03 every 5 days (due within the week), k-60–69
        // every 30 days (not yet), g-04 on none; k-40–59 share a creation
        // time, so kind and id break their ties
        exec_sql(
            &env,
            "INSERT INTO secret_schedules (target_type, target_id, rotation_interval_ms)
             SELECT 'key', id,
                 CASE WHEN name IN ('g-00', 'g-01', 'g-02') OR (name LIKE 'k-%' AND name < 'k-30')
                        THEN 3600000
                      WHEN name = 'g-03' OR (name LIKE 'k-%' AND name < 'k-60') THEN 432000000
                      ELSE 2592000000 END
             FROM access_keys WHERE name <> 'g-04'",
        )
        .await;
        exec_sql(
            &env,
            "UPDATE access_keys SET created_at = (SELECT MIN(created_at) FROM access_keys)
             WHERE name >= 'k-40' AND name < 'k-60'",
        )
        .await;
        // k-60–69, not due, the oldest: a page of the age view read whole
        // from its start holds them before those due soon
        exec_sql(
            &env,
            "UPDATE access_keys SET created_at = (SELECT MIN(created_at) FROM access_keys) - 86400000
             WHERE name >= 'k-60' AND name LIKE 'k-%'",
        )
        .await;
        env.advance(Duration::from_secs(2 * 3600));
        let soon = |name: &str| ("k-30".."k-60").contains(&name) || name == "g-03";
        // What the page showed when it read the whole age view: its rows
        // due or due soon, worst first, the first 50.
        let expect = |whole: &Value| -> Vec<(String, String)> {
            whole
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| {
                    r["due"] == true
                        || (soon(r["name"].as_str().unwrap()) && !r["next_due_at"].is_null())
                })
                .take(50)
                .map(|r| {
                    (
                        format!("access key {}", r["name"].as_str().unwrap()),
                        if r["due"] == true { "due" } else { "due soon" }.to_string(),
                    )
                })
                .collect()
        };

        // an org admin: their org's, 30 past due then 20 of the 30 due
        // soon
        let (api, _) = admin_login(&srv, &admin).await;
        let whole: Value = get_json(&api, srv.at("/api/v1/orgs/acme/credentials/age")).await;
        let want = expect(&whole);
        assert_eq!(want.len(), 50);
        assert_eq!(want.iter().filter(|w| w.1 == "due").count(), 30);
        let (c, _) = sign_in(&srv, &admin).await;
        let (s, home) = get(&c, &srv, "/ui/").await;
        assert_eq!(s, 200);
        assert_eq!(due_rows(&home), want, "the rows the whole list gave");
        assert!(!home.contains("g-0"), "another org's: {home}");

        // the operator: every org's, in one order
        let (o, _) = operator_sign_in(&env, &srv).await;
        let (oapi, _) = admin_login(&srv, "op@platform.test").await;
        let all: Value = get_json(&oapi, srv.at("/api/v1/credentials/age")).await;
        let want = expect(&all);
        assert_eq!(want.len(), 50);
        assert_eq!(want.iter().filter(|w| w.1 == "due").count(), 33);
        assert!(want.contains(&("access key g-01".to_string(), "due".to_string())));
        let (_, home) = get(&o, &srv, "/ui/").await;
        assert_eq!(due_rows(&home), want);
        assert!(
            home.contains("<td data-label=\"Org\">globex</td>"),
            "{home}"
        );

        // once fewer are due, every one of them, and nothing else
        exec_sql(
            &env,
            "DELETE FROM secret_schedules WHERE target_id IN
               (SELECT id FROM access_keys WHERE name >= 'k-05' AND name < 'k-55')",
        )
        .await;
        let whole: Value = get_json(&api, srv.at("/api/v1/orgs/acme/credentials/age")).await;
        let want = expect(&whole);
        assert_eq!(want.len(), 10, "k-00–04 past due, k-55–59 soon");
        let (_, home) = get(&c, &srv, "/ui/").await;
        assert_eq!(due_rows(&home), want);
    }
);
