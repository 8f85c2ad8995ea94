//! Load benchmark of the authorization server against the release binary:
//! authorization-code exchange, refresh with rotation, introspection and a
//! Bearer-authenticated `GET /v1/me`, on SQLite and on PostgreSQL.
//!
//! `cargo bench --bench oauth` (set REKEY_BENCH_SECS to change the 5 s per
//! scenario). The load generator shares the machine's cores with the server,
//! so the figures are a floor, not a ceiling.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

const CALLBACK: &str = "http://127.0.0.1:9/cb";

fn field(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\"")).expect("field");
    let v = at + html[at..].find("value=\"").expect("value") + 7;
    html[v..v + html[v..].find('"').expect("quote")].to_string()
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::var("REKEY_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!("rekey OAuth load benchmark ({secs} s per scenario, closed loop)");
    for backend in backends() {
        if let Some(w) = World::new(backend).await {
            bench(&w, Duration::from_secs(secs)).await;
        }
    }
}

async fn bench(w: &World, dur: Duration) {
    w.json(&["org", "create", "acme"], None);
    w.json(
        &[
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            "u@acme.test",
            "--permission",
            "read_write",
            "--password-stdin",
        ],
        Some(PASSWORD),
    );
    let app = w.json(
        &[
            "app",
            "create",
            "--org",
            "acme",
            "--name",
            "bench",
            "--scope",
            "read_write",
            "--callback",
            CALLBACK,
        ],
        None,
    );
    let id = app["client_id"].as_str().expect("id").to_string();
    let secret = app["client_secret"].as_str().expect("secret").to_string();
    let (mut srv, url, _) = w.serve();

    // A browser signs in once, then consents repeatedly to mint codes.
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let authz = format!("{url}/oauth2/authorize?response_type=code&client_id={id}&redirect_uri={CALLBACK}&scope=read_write&state=s");
    let page = browser
        .get(&authz)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("page");
    let csrf = field(&page, "csrf");
    let page = browser
        .post(&authz)
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "u@acme.test"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("login")
        .text()
        .await
        .expect("consent");
    let csrf = field(&page, "csrf");
    let n_codes = 4000;
    let mut codes = Vec::with_capacity(n_codes);
    for _ in 0..n_codes {
        let r = browser
            .post(&authz)
            .form(&[("csrf", csrf.as_str()), ("decision", "allow")])
            .send()
            .await
            .expect("consent");
        let loc = url::Url::parse(r.headers()["location"].to_str().expect("loc")).expect("url");
        codes.push(
            loc.query_pairs()
                .find(|(k, _)| k == "code")
                .expect("code")
                .1
                .to_string(),
        );
    }

    let workers = 16;
    let chunk = codes.len().div_ceil(workers);
    let states: Vec<(Vec<String>, Vec<String>)> = codes
        .chunks(chunk)
        .map(|c| (c.to_vec(), Vec::new()))
        .collect();
    let token_url = format!("{url}/oauth2/token");
    let refresh_tokens = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let (tu, i, s, rts) = (
        token_url.clone(),
        id.clone(),
        secret.clone(),
        refresh_tokens.clone(),
    );
    let rep = run(
        "authorization-code exchange",
        workers,
        dur,
        states,
        move |c, (mut codes, got): (Vec<String>, Vec<String>)| {
            let (tu, i, s, rts) = (tu.clone(), i.clone(), s.clone(), rts.clone());
            async move {
                let code = codes.pop()?;
                let r = c
                    .post(&tu)
                    .basic_auth(&i, Some(&s))
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("code", &code),
                        ("redirect_uri", CALLBACK),
                    ])
                    .send()
                    .await
                    .ok()?;
                let ok = r.status() == 200;
                if ok {
                    let v: Value = r.json().await.ok()?;
                    rts.lock()
                        .await
                        .push(v["refresh_token"].as_str()?.to_string());
                }
                Some((ok, (codes, got)))
            }
        },
    )
    .await;
    rep.print(w.backend);

    let rts = refresh_tokens.lock().await.clone();
    let access = {
        let r = reqwest::Client::new()
            .post(&token_url)
            .basic_auth(&id, Some(&secret))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", rts[0].as_str()),
            ])
            .send()
            .await
            .expect("refresh");
        let v: Value = r.json().await.expect("json");
        v["access_token"].as_str().expect("at").to_string()
    };
    // Refresh at two concurrencies (a latency-throughput pair), each on
    // its own half of the refresh tokens.
    let rts: Vec<String> = rts[1..].to_vec();
    let half = rts.len() / 2;
    for (clients, pool) in [(8usize, rts[..half].to_vec()), (16, rts[half..].to_vec())] {
        let chunk = pool.len().div_ceil(clients).max(1);
        let states: Vec<(Vec<String>, usize)> =
            pool.chunks(chunk).map(|c| (c.to_vec(), 0)).collect();
        let (tu, i, s) = (token_url.clone(), id.clone(), secret.clone());
        let rep = run(
            &format!("refresh with rotation ({clients} clients)"),
            clients,
            dur,
            states,
            move |c, (mut chain, k): (Vec<String>, usize)| {
                let (tu, i, s) = (tu.clone(), i.clone(), s.clone());
                async move {
                    if chain.is_empty() {
                        return None;
                    }
                    let slot = k % chain.len();
                    let r = c
                        .post(&tu)
                        .basic_auth(&i, Some(&s))
                        .form(&[
                            ("grant_type", "refresh_token"),
                            ("refresh_token", chain[slot].as_str()),
                        ])
                        .send()
                        .await
                        .ok()?;
                    let ok = r.status() == 200;
                    if ok {
                        let v: Value = r.json().await.ok()?;
                        chain[slot] = v["refresh_token"].as_str()?.to_string();
                    } else {
                        chain.remove(slot);
                    }
                    Some((ok, (chain, k + 1)))
                }
            },
        )
        .await;
        rep.print(w.backend);
    }

    let readers = 32;
    let (iu, i, s, a) = (
        format!("{url}/oauth2/introspect"),
        id.clone(),
        secret.clone(),
        access.clone(),
    );
    let rep = run(
        "introspection",
        readers,
        dur,
        vec![(); readers],
        move |c, ()| {
            let (iu, i, s, a) = (iu.clone(), i.clone(), s.clone(), a.clone());
            async move {
                let r = c
                    .post(&iu)
                    .basic_auth(&i, Some(&s))
                    .form(&[("token", a.as_str())])
                    .send()
                    .await
                    .ok()?;
                let ok = r.status() == 200 && r.text().await.ok()?.contains("\"active\":true");
                Some((ok, ()))
            }
        },
    )
    .await;
    rep.print(w.backend);

    let (mu, a) = (format!("{url}/v1/me"), access.clone());
    let rep = run(
        "GET /v1/me (Bearer)",
        readers,
        dur,
        vec![(); readers],
        move |c, ()| {
            let (mu, a) = (mu.clone(), a.clone());
            async move {
                let r = c.get(&mu).bearer_auth(&a).send().await.ok()?;
                Some((r.status() == 200, ()))
            }
        },
    )
    .await;
    rep.print(w.backend);
    {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        wrk(
            "introspection (wrk)",
            w.backend,
            &format!("{url}/oauth2/introspect"),
            &format!(
                "wrk.method = \"POST\"\nwrk.body = \"token={access}\"\nwrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\nwrk.headers[\"Authorization\"] = \"Basic {basic}\"\n"
            ),
            dur,
        );
        wrk(
            "GET /v1/me Bearer (wrk)",
            w.backend,
            &format!("{url}/v1/me"),
            &format!("wrk.headers[\"Authorization\"] = \"Bearer {access}\"\n"),
            dur,
        );
    }
    let _ = srv.kill();
    let _ = srv.wait();
}
