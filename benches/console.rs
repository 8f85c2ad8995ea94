//! The console at scale, through the release binary: one application with
//! 100,000 authorizations (1,000 users, a refresh token each), 5,000 orgs
//! and 100,000 access keys across them (every other one on a 90-day
//! schedule, about a third past due), seeded straight into the store;
//! then the server time of the Authorizations tab's first page and of a
//! deep one (after 90,000 rows), of the operator's org list, first and
//! deep page, and of the pages that rank every credential in SQL (the
//! operator's credentials age, and the landing page's "due or due within a
//! week") — each the median and p95 of 30 requests over loopback, on
//! SQLite and PostgreSQL. Target: under 100 ms each on SQLite. `cargo
//! bench --bench console` (REKEY_BENCH_GRANTS, REKEY_BENCH_ORGS,
//! REKEY_BENCH_KEYS to change the sizes).

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let grants = env_n("REKEY_BENCH_GRANTS", 100_000);
    let orgs = env_n("REKEY_BENCH_ORGS", 5_000);
    let keys = env_n("REKEY_BENCH_KEYS", 100_000);
    for backend in backends() {
        let Some(w) = World::new(backend).await else {
            continue;
        };
        let (mut child, api) = admin_world(&w).await;
        w.json(
            &[
                "operator",
                "create",
                "--email",
                "op@platform.test",
                "--password-stdin",
            ],
            Some(PASSWORD),
        );
        let r = api
            .http
            .post(format!("{}/api/v1/orgs/acme/apps", api.url))
            .header("X-CSRF-Token", &api.csrf)
            .json(&json!({"name": "web", "scope": "read", "callbacks": ["https://web.example/cb"]}))
            .send()
            .await
            .expect("app");
        let app_pk = r.json::<Value>().await.expect("json")["id"]
            .as_str()
            .expect("id")
            .to_string();
        let t = Instant::now();
        let deep = seed(&w, &app_pk, grants, orgs, keys).await;
        println!(
            "[{backend}] seeded {grants} authorizations, {orgs} orgs and {keys} access keys in {:.1} s",
            t.elapsed().as_secs_f64()
        );

        let admin = console(&api.url, "admin@acme.test").await;
        let op = console(&api.url, "op@platform.test").await;
        let tab = format!("{}/ui/orgs/acme/apps/web/authorizations", api.url);
        report(
            backend,
            "Authorizations tab, first page",
            &admin,
            &tab,
            &format!("{grants} authorizations"),
        )
        .await;
        report(
            backend,
            "Authorizations tab, deep page",
            &admin,
            &format!("{tab}?after={}", deep.0),
            "after 90% of the rows",
        )
        .await;
        let list = format!("{}/ui/orgs", api.url);
        report(
            backend,
            "org list, first page",
            &op,
            &list,
            &format!("{} orgs", orgs + 1),
        )
        .await;
        report(
            backend,
            "org list, deep page",
            &op,
            &format!("{list}?after={}", deep.1),
            "after 98% of the orgs",
        )
        .await;
        let ranked = format!("{keys} access keys ranked");
        let age = format!("{}/ui/age", api.url);
        report(
            backend,
            "credentials age, every org, first page",
            &op,
            &age,
            &ranked,
        )
        .await;
        let home = format!("{}/ui/", api.url);
        report(backend, "landing page (operator)", &op, &home, &ranked).await;
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A signed-in console (session cookie).
async fn console(url: &str, email: &str) -> reqwest::Client {
    let c = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = c
        .get(format!("{url}/ui/login"))
        .send()
        .await
        .expect("login page")
        .text()
        .await
        .expect("text");
    let at = page.find("name=\"csrf\" value=\"").expect("csrf") + 19;
    let csrf = page[at..].split('"').next().expect("csrf").to_string();
    let r = c
        .post(format!("{url}/ui/login"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", PASSWORD),
            ("next", "/ui/"),
        ])
        .send()
        .await
        .expect("sign in");
    assert_eq!(r.status(), 303, "sign in");
    c
}

async fn report(backend: &str, what: &str, c: &reqwest::Client, url: &str, size: &str) {
    let mut times = Vec::new();
    for i in 0..33 {
        let t = Instant::now();
        let r = c.get(url).send().await.expect("get");
        assert_eq!(r.status(), 200, "{url}");
        let body = r.text().await.expect("body");
        assert!(body.contains("<table"), "{url}");
        if i >= 3 {
            times.push(t.elapsed());
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "[{backend}] {what} ({size}): median {:.1} ms, p95 {:.1} ms (target < 100 ms on SQLite)",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 95 / 100])
    );
}

/// Seeds the store; returns the keyset of the deep pages: the
/// authorization at 90 % (`MILLIS.ID`) and the org slug at 98 %.
async fn seed(
    w: &World,
    app_pk: &str,
    grants: usize,
    orgs: usize,
    keys: usize,
) -> (String, String) {
    let now = 1_800_000_000_000_i64;
    let users = 1_000.min(grants.max(1));
    let mut stmts: Vec<String> = Vec::new();
    let org_id: String;
    let mut deep_grant = String::new();
    let deep_org = format!("bench-org-{:05}", orgs * 98 / 100);
    {
        let q = "SELECT id FROM orgs WHERE slug = 'acme'";
        org_id = match w.backend {
            "postgres" => {
                let p = sqlx::PgPool::connect(&w.db_url).await.expect("pg");
                sqlx::query_scalar::<_, String>(q)
                    .fetch_one(&p)
                    .await
                    .expect("org")
            }
            _ => {
                let p = sqlx::SqlitePool::connect(&w.db_url).await.expect("sqlite");
                sqlx::query_scalar::<_, String>(q)
                    .fetch_one(&p)
                    .await
                    .expect("org")
            }
        };
    }
    for chunk in (0..users).collect::<Vec<_>>().chunks(500) {
        let v: Vec<String> = chunk
            .iter()
            .map(|u| format!("('bench-user-{u:05}', '{org_id}', 'user{u:05}@acme.test', 'x', 'read', FALSE, TRUE, {now}, {now})"))
            .collect();
        stmts.push(format!(
            "INSERT INTO users (id, org_id, email, password_hash, permission, is_admin, active, created_at, updated_at) VALUES {}",
            v.join(",")
        ));
    }
    // Newest first on the tab: grant i is created at now - i seconds; the
    // deep page starts after the one at 90 %.
    let deep_i = grants * 9 / 10;
    for chunk in (0..grants).collect::<Vec<_>>().chunks(500) {
        let g: Vec<String> = chunk
            .iter()
            .map(|i| {
                let at = now - (*i as i64) * 1000;
                if *i == deep_i {
                    deep_grant = format!("{at}.bench-grant-{i:07}");
                }
                format!("('bench-grant-{i:07}', '{org_id}', '{app_pk}', 'bench-user-{:05}', 'read', {at}, {at})", i % users)
            })
            .collect();
        stmts.push(format!(
            "INSERT INTO oauth_grants (id, org_id, client_pk, user_id, scope, created_at, last_used_at) VALUES {}",
            g.join(",")
        ));
        let t: Vec<String> = chunk
            .iter()
            .map(|i| {
                let at = now - (*i as i64) * 1000;
                format!(
                    "('bench-rt-{i:07}', 'bench-grant-{i:07}', {at}, {})",
                    at + 30 * 86_400_000
                )
            })
            .collect();
        stmts.push(format!(
            "INSERT INTO oauth_refresh_tokens (digest, grant_id, issued_at, expires_at) VALUES {}",
            t.join(",")
        ));
    }
    for chunk in (0..orgs).collect::<Vec<_>>().chunks(500) {
        let o: Vec<String> = chunk
            .iter()
            .map(|i| format!("('bench-org-id-{i:05}', 'bench-org-{i:05}', 'Bench org {i}', {now})"))
            .collect();
        stmts.push(format!(
            "INSERT INTO orgs (id, slug, name, created_at) VALUES {}",
            o.join(",")
        ));
    }
    // Access keys across the orgs, made evenly over the 135 days back from
    // the real now (the server's clock): every other one on a 90-day
    // schedule, so a third of those are past due, whatever the count.
    let real = rekey::clock::wall_ms();
    let step = 135 * 86_400_000 / i64::try_from(keys.max(1)).expect("keys");
    for chunk in (0..keys).collect::<Vec<_>>().chunks(500) {
        let k: Vec<String> = chunk
            .iter()
            .map(|i| {
                let at = real - (*i as i64) * step;
                let owner = if orgs == 0 {
                    org_id.clone()
                } else {
                    format!("bench-org-id-{:05}", i % orgs)
                };
                format!(
                    "('bench-key-{i:06}', '{owner}', 'k{i:06}', 'read', 'bench-digest-{i:06}', {at}, {at})"
                )
            })
            .collect();
        stmts.push(format!(
            "INSERT INTO access_keys (id, org_id, name, scope, digest, created_at, updated_at) VALUES {}",
            k.join(",")
        ));
        let sch: Vec<String> = chunk
            .iter()
            .filter(|i| *i % 2 == 0)
            .map(|i| {
                let at = real - (*i as i64) * step;
                format!("('key', 'bench-key-{i:06}', {}, {at})", 90 * 86_400_000_i64)
            })
            .collect();
        if !sch.is_empty() {
            stmts.push(format!(
                "INSERT INTO secret_schedules (target_type, target_id, rotation_interval_ms, rotated_at) VALUES {}",
                sch.join(",")
            ));
        }
    }
    match w.backend {
        "postgres" => {
            let p = sqlx::PgPool::connect(&w.db_url).await.expect("pg");
            let mut tx = p.begin().await.expect("tx");
            for s in &stmts {
                sqlx::query(s).execute(&mut *tx).await.expect("seed");
            }
            tx.commit().await.expect("commit");
            sqlx::query("ANALYZE").execute(&p).await.expect("analyze");
        }
        _ => {
            let p = sqlx::SqlitePool::connect(&w.db_url).await.expect("sqlite");
            let mut tx = p.begin().await.expect("tx");
            for s in &stmts {
                sqlx::query(s).execute(&mut *tx).await.expect("seed");
            }
            tx.commit().await.expect("commit");
            sqlx::query("ANALYZE").execute(&p).await.expect("analyze");
        }
    }
    (deep_grant, deep_org)
}
