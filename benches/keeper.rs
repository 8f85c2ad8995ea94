//! The refresh keeper under load: N OAuth connections (default 10,000)
//! authorized against a local rekey provider whose access tokens live 60 s,
//! then the keeper runs for several token lifetimes. Prints refreshes per
//! second and how many connections ever held a lapsed token (target: 0).
//! `cargo bench --bench keeper` (REKEY_BENCH_CONNECTIONS, REKEY_BENCH_KEEPER_SECS).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;
use tokio::sync::Semaphore;

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("REKEY_BENCH_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let secs: u64 = std::env::var("REKEY_BENCH_KEEPER_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    println!("rekey refresh keeper benchmark: {n} connections, tokens live 60 s, keeper observed {secs} s");
    let only = std::env::var("REKEY_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    for backend in ["sqlite", "postgres"]
        .into_iter()
        .filter(|b| only.contains(b))
    {
        let (Some(provider), Some(consumer)) =
            (World::new("sqlite").await, World::new(backend).await)
        else {
            continue;
        };
        bench(&provider, &consumer, n, Duration::from_secs(secs)).await;
    }
}

fn field(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\"")).expect("field");
    let v = at + html[at..].find("value=\"").expect("value") + 7;
    html[v..v + html[v..].find('"').expect("quote")].to_string()
}

async fn bench(provider: &World, consumer: &World, n: usize, observe: Duration) {
    provider.json(&["org", "create", "prov"], None);
    provider.json(
        &[
            "user",
            "create",
            "--org",
            "prov",
            "--email",
            "u@prov.test",
            "--permission",
            "read_write",
            "--password-stdin",
        ],
        Some(PASSWORD),
    );
    let (mut psrv, purl, _) = provider.serve();
    consumer.json(&["org", "create", "acme"], None);
    consumer.json(
        &[
            "operator",
            "create",
            "--email",
            "op@acme.test",
            "--password-stdin",
        ],
        Some(PASSWORD),
    );
    // setup with the keeper off
    let mut c = consumer.cmd();
    c.env("REKEY_KEEPER_INTERVAL", "0");
    let (mut csrv, curl, _) = serve_cmd(c);
    let app = provider.json(
        &[
            "app",
            "create",
            "--org",
            "prov",
            "--name",
            "consumer",
            "--scope",
            "read_write",
            "--callback",
            &format!("{curl}/oauth/callback"),
            "--access-token-ttl",
            "60s",
        ],
        None,
    );
    // A `rekey`-kind provider is chosen by a setting, so each connection
    // presents its own client (the operator's kind-wide client is only sent
    // to the catalog's own endpoints).
    let (client_id, client_secret) = (
        app["client_id"].as_str().expect("id").to_string(),
        app["client_secret"].as_str().expect("secret").to_string(),
    );
    let admin = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    let r = admin
        .post(format!("{curl}/api/v1/session"))
        .json(&json!({"email": "op@acme.test", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    let csrf = r.json::<Value>().await.expect("json")["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_string();
    // the provider's browser signs in once
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(16));
    let mut set = tokio::task::JoinSet::new();
    let mut consent_csrf: Option<String> = None;
    for i in 0..n {
        let name = format!("c{i:05}");
        let r = admin
            .post(format!("{curl}/api/v1/orgs/acme/connections"))
            .header("X-CSRF-Token", &csrf)
            .json(&json!({"kind": "rekey", "name": name, "settings": {"base_url": purl, "scope": "read_write"}}))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201);
        let r = admin
            .post(format!("{curl}/api/v1/orgs/acme/connections/{name}/client"))
            .header("X-CSRF-Token", &csrf)
            .json(&json!({"client_id": client_id, "client_secret": client_secret}))
            .send()
            .await
            .expect("set client");
        assert_eq!(r.status(), 200);
        let r = admin
            .post(format!(
                "{curl}/api/v1/orgs/acme/connections/{name}/authorize"
            ))
            .header("X-CSRF-Token", &csrf)
            .send()
            .await
            .expect("authorize");
        let url = r.json::<Value>().await.expect("json")["authorize_url"]
            .as_str()
            .expect("url")
            .to_string();
        if consent_csrf.is_none() {
            let page = browser
                .get(&url)
                .send()
                .await
                .expect("page")
                .text()
                .await
                .expect("text");
            let c = field(&page, "csrf");
            let page = browser
                .post(&url)
                .form(&[
                    ("csrf", c.as_str()),
                    ("email", "u@prov.test"),
                    ("password", PASSWORD),
                ])
                .send()
                .await
                .expect("login")
                .text()
                .await
                .expect("text");
            consent_csrf = Some(field(&page, "csrf"));
        }
        let (b, cc, g) = (
            browser.clone(),
            consent_csrf.clone().unwrap_or_default(),
            gate.clone(),
        );
        set.spawn(async move {
            let _p = g.acquire_owned().await;
            let r = b
                .post(&url)
                .form(&[("csrf", cc.as_str()), ("decision", "allow")])
                .send()
                .await
                .expect("consent");
            let back = r.headers()["location"]
                .to_str()
                .expect("location")
                .to_string();
            let r = reqwest::get(&back).await.expect("callback");
            assert_eq!(r.status(), 200);
        });
        while set.len() > 64 {
            let _ = set.join_next().await;
        }
    }
    while set.join_next().await.is_some() {}
    println!(
        "{:<9} authorized {n} connections in {:.1} s",
        consumer.backend,
        started.elapsed().as_secs_f64()
    );
    let _ = csrv.kill();
    let _ = csrv.wait();

    // Everything due at once: the keeper's capacity shows in how fast the
    // backlog drains; then it keeps up with the steady state.
    exec(consumer, "UPDATE connections SET refresh_due_at = 0").await;
    let mut c = consumer.cmd();
    c.env("REKEY_KEEPER_INTERVAL", "1");
    let (mut csrv, _, _) = serve_cmd(c);
    let start = Instant::now();
    let first = refreshes(consumer).await;
    // Tokens of the first connections authorized may have expired during
    // the setup (the keeper was off): lapses count once the backlog is gone.
    let expired_at_start = lapsed(consumer).await;
    let mut max_lapsed = 0i64;
    let mut lapsed_ever = 0i64;
    let mut drained: Option<f64> = None;
    while start.elapsed() < observe {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if drained.is_some() {
            let l = lapsed(consumer).await;
            max_lapsed = max_lapsed.max(l);
            lapsed_ever += l;
        } else if refreshes(consumer).await - first >= n as i64 {
            drained = Some(start.elapsed().as_secs_f64());
        }
    }
    println!("{:<9} keeper: {expired_at_start} tokens had expired during setup, before the keeper started", consumer.backend);
    match drained {
        Some(t) => println!(
            "{:<9} keeper: backlog of {n} due connections refreshed in {t:.1} s = {:.0} refreshes/s (includes server start)",
            consumer.backend,
            n as f64 / t
        ),
        None => println!("{:<9} keeper: the backlog of {n} was not drained within {} s", consumer.backend, observe.as_secs()),
    }
    let done = refreshes(consumer).await - first;
    let needs = needs_reauth(consumer).await;
    println!(
        "{:<9} keeper: {done} refreshes in {:.0} s (average {:.0}/s); after the backlog, connections with a lapsed token: max {max_lapsed} at any sample ({lapsed_ever} in all samples, every 0.5 s); needs_reauth: {needs}",
        consumer.backend,
        observe.as_secs_f64(),
        done as f64 / observe.as_secs_f64()
    );
    let _ = csrv.kill();
    let _ = csrv.wait();
    let _ = psrv.kill();
    let _ = psrv.wait();
}

async fn scalar(w: &World, sql: &str) -> i64 {
    if w.backend == "postgres" {
        let p = sqlx::PgPool::connect(&w.db_url).await.expect("pg");
        let v: i64 = sqlx::query_scalar(sql).fetch_one(&p).await.unwrap_or(0);
        p.close().await;
        v
    } else {
        let p = sqlx::SqlitePool::connect(&w.db_url).await.expect("sqlite");
        let v: i64 = sqlx::query_scalar(sql).fetch_one(&p).await.unwrap_or(0);
        p.close().await;
        v
    }
}

async fn exec(w: &World, sql: &str) {
    if w.backend == "postgres" {
        let p = sqlx::PgPool::connect(&w.db_url).await.expect("pg");
        sqlx::query(sql).execute(&p).await.expect("exec");
        p.close().await;
    } else {
        let p = sqlx::SqlitePool::connect(&w.db_url).await.expect("sqlite");
        sqlx::query(sql).execute(&p).await.expect("exec");
        p.close().await;
    }
}

/// Refreshes audited: on the chain, or (PostgreSQL) committed and staged
/// for the chainer.
async fn refreshes(w: &World) -> i64 {
    scalar(
        w,
        "SELECT (SELECT COUNT(*) FROM audit_events WHERE action = 'connection.refresh')
              + (SELECT COUNT(*) FROM audit_pending WHERE action = 'connection.refresh')",
    )
    .await
}

async fn lapsed(w: &World) -> i64 {
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    scalar(w, &format!("SELECT COUNT(*) FROM connections WHERE has_credentials = TRUE AND access_expires_at < {now}")).await
}

async fn needs_reauth(w: &World) -> i64 {
    scalar(
        w,
        "SELECT COUNT(*) FROM connections WHERE status = 'needs_reauth'",
    )
    .await
}
