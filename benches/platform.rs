//! Load benchmark of the platform API against the release binary: People
//! upserts (batches of 1, 100 and 1,000 records), authenticated reads with
//! each credential type, and client-credentials token issuance, on SQLite
//! and PostgreSQL. `cargo bench --bench platform` (REKEY_BENCH_SECS, default 5).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::var("REKEY_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!("rekey platform API load benchmark ({secs} s per scenario)");
    for backend in backends() {
        if let Some(w) = World::new(backend).await {
            bench(&w, Duration::from_secs(secs)).await;
        }
    }
}

async fn bench(w: &World, dur: Duration) {
    w.json(&["org", "create", "acme"], None);
    let key = w.json(
        &[
            "key",
            "create",
            "--org",
            "acme",
            "--name",
            "bench",
            "--scope",
            "read_write",
        ],
        None,
    )["key"]
        .as_str()
        .expect("key")
        .to_string();
    let m2m = w.json(
        &[
            "m2m",
            "create",
            "--org",
            "acme",
            "--name",
            "bench",
            "--scope",
            "read_write",
        ],
        None,
    );
    let (cid, csec) = (
        m2m["client_id"].as_str().expect("id").to_string(),
        m2m["client_secret"].as_str().expect("secret").to_string(),
    );
    let (mut srv, url, _) = w.serve();

    // Bodies are built before the clock starts, so the load generator spends
    // its share of the cores on sending, not on serialising JSON.
    let mut next = 0usize;
    for batch in [1usize, 100, 1000] {
        let workers = if batch == 1000 { 4 } else { 16 };
        let per_worker = (20_000 / batch).clamp(8, 2000);
        let states: Vec<Vec<bytes::Bytes>> = (0..workers)
            .map(|_| {
                (0..per_worker)
                    .map(|_| {
                        let records: Vec<Value> = (0..batch)
                            .map(|i| {
                                next += 1;
                                json!({"Email": format!("p{next}@bench.io"), "Name": "Bench", "Score": i, "Active": true})
                            })
                            .collect();
                        bytes::Bytes::from(json!({"records": records}).to_string())
                    })
                    .collect()
            })
            .collect();
        let (u, k) = (format!("{url}/v1/people"), key.clone());
        let rep = run(
            &format!("PUT /v1/people batch {batch}"),
            workers,
            dur,
            states,
            move |c, mut bodies: Vec<bytes::Bytes>| {
                let (u, k) = (u.clone(), k.clone());
                async move {
                    // cycle: later rounds are updates of the same records
                    let body = bodies.pop()?;
                    bodies.insert(0, body.clone());
                    let r = c
                        .put(&u)
                        .header("Accesskey", &k)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .ok()?;
                    Some((r.status() == 200, bodies))
                }
            },
        )
        .await;
        rep.print(w.backend);
        println!(
            "{:<34} {:<9} {:>10.0} records/s",
            format!("  = records upserted, batch {batch}"),
            w.backend,
            (rep.ok * batch) as f64 / rep.secs
        );
    }

    // the record the read scenarios fetch
    let r = reqwest::Client::new()
        .put(format!("{url}/v1/people"))
        .header("Accesskey", &key)
        .json(&json!({"Email": "reader@bench.io", "Name": "Reader"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);

    // a bearer token from client credentials
    let r = reqwest::Client::new()
        .post(format!("{url}/oauth2/token"))
        .basic_auth(&cid, Some(&csec))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    let v: Value = r.json().await.expect("json");
    let bearer = v["access_token"].as_str().expect("at").to_string();

    for (name, header, value) in [
        ("GET /v1/people (Accesskey)", "Accesskey", key.clone()),
        (
            "GET /v1/people (Bearer, m2m)",
            "Authorization",
            format!("Bearer {bearer}"),
        ),
    ] {
        let readers = 32;
        let (u, h, v) = (
            format!("{url}/v1/people?email=reader@bench.io"),
            header,
            value.clone(),
        );
        let rep = run(name, readers, dur, vec![(); readers], move |c, ()| {
            let (u, v) = (u.clone(), v.clone());
            async move {
                let r = c.get(&u).header(h, &v).send().await.ok()?;
                Some((r.status() == 200, ()))
            }
        })
        .await;
        rep.print(w.backend);
        wrk(
            &format!("{name} (wrk)"),
            w.backend,
            &format!("{url}/v1/people?email=reader@bench.io"),
            &format!("wrk.headers[\"{header}\"] = \"{value}\"\n"),
            dur,
        );
    }

    let (u, i, s) = (format!("{url}/oauth2/token"), cid.clone(), csec.clone());
    let rep = run(
        "client-credentials token",
        16,
        dur,
        vec![(); 16],
        move |c, ()| {
            let (u, i, s) = (u.clone(), i.clone(), s.clone());
            async move {
                let r = c
                    .post(&u)
                    .basic_auth(&i, Some(&s))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await
                    .ok()?;
                Some((r.status() == 200, ()))
            }
        },
    )
    .await;
    rep.print(w.backend);
    {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{cid}:{csec}"));
        let lua = format!(
            "wrk.method = \"POST\"\nwrk.body = \"grant_type=client_credentials\"\nwrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\nwrk.headers[\"Authorization\"] = \"Basic {basic}\"\n"
        );
        // Group commit batches what is in flight: the figure depends on how
        // many requests are, so it is shown at two concurrencies.
        for conns in [32, 64] {
            wrk_with(
                &format!("client-credentials token (wrk {conns})"),
                w.backend,
                &format!("{url}/oauth2/token"),
                &lua,
                dur,
                conns,
            );
        }
    }
    let _ = srv.kill();
    let _ = srv.wait();
}
