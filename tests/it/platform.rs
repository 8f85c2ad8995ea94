//! Access keys, machine-to-machine clients and the People API they protect.

use std::time::Duration;

use serde_json::{json, Value};

use crate::dual;
use crate::harness::*;

async fn put_people(srv: &Server, auth: (&str, &str), body: Value) -> (u16, Value) {
    let r = client()
        .put(srv.at("/v1/people"))
        .header(auth.0, auth.1)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn get_path(srv: &Server, auth: (&str, &str), path: &str) -> (u16, Value) {
    let r = client()
        .get(srv.at(path))
        .header(auth.0, auth.1)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn sigterm(srv: &mut Server) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &srv.child.id().to_string()])
        .status();
    let _ = srv.child.wait();
}

dual!(access_keys_create_reset_overlap_revoke_expire, |env| {
    env.ok(&["org", "create", "acme"]);
    let k = env.json(&[
        "key",
        "create",
        "--org",
        "acme",
        "--name",
        "etl",
        "--scope",
        "read_write",
    ]);
    let k1 = k["key"].as_str().unwrap().to_string();
    assert!(k1.starts_with("rk_ak_") && k["id"].is_string());
    let mut srv = env.serve();
    let (s, v) = put_people(
        &srv,
        ("Accesskey", &k1),
        json!({"Email": "ann@x.io", "Name": "Ann"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, me) = get_path(&srv, ("Accesskey", &k1), "/v1/me").await;
    assert_eq!(
        (
            s,
            me["auth"].as_str().unwrap(),
            me["scope"].as_str().unwrap()
        ),
        (200, "access_key", "read_write")
    );

    // reset without overlap: the old key dies at once
    let r = env.json(&["key", "reset", "--org", "acme", "--name", "etl"]);
    let k2 = r["key"].as_str().unwrap().to_string();
    let (s, bad_old) = get_path(&srv, ("Accesskey", &k1), "/v1/people?email=ann@x.io").await;
    assert_eq!(s, 401);
    assert_eq!(
        get_path(&srv, ("Accesskey", &k2), "/v1/people?email=ann@x.io")
            .await
            .0,
        200
    );
    // reset with overlap: both work until the overlap ends
    let r = env.json(&[
        "key",
        "reset",
        "--org",
        "acme",
        "--name",
        "etl",
        "--overlap",
        "2s",
    ]);
    let k3 = r["key"].as_str().unwrap().to_string();
    assert_eq!(get_path(&srv, ("Accesskey", &k2), "/v1/me").await.0, 200);
    assert_eq!(get_path(&srv, ("Accesskey", &k3), "/v1/me").await.0, 200);
    env.advance(Duration::from_secs(3));
    assert_eq!(get_path(&srv, ("Accesskey", &k2), "/v1/me").await.0, 401);
    assert_eq!(get_path(&srv, ("Accesskey", &k3), "/v1/me").await.0, 200);

    // expired and revoked keys, and garbage: the same answer
    let short = env.json(&[
        "key",
        "create",
        "--org",
        "acme",
        "--name",
        "short",
        "--scope",
        "read",
        "--expires",
        "1s",
    ]);
    let short = short["key"].as_str().unwrap().to_string();
    assert_eq!(get_path(&srv, ("Accesskey", &short), "/v1/me").await.0, 200);
    env.json(&["key", "revoke", "--org", "acme", "--name", "etl"]);
    env.advance(Duration::from_secs(2));
    let (s1, b1) = get_path(&srv, ("Accesskey", &k3), "/v1/people?email=ann@x.io").await;
    let (s2, b2) = get_path(&srv, ("Accesskey", &short), "/v1/people?email=ann@x.io").await;
    let (s3, b3) = get_path(
        &srv,
        ("Accesskey", "rk_ak_garbage"),
        "/v1/people?email=ann@x.io",
    )
    .await;
    assert_eq!((s1, s2, s3), (401, 401, 401));
    assert!(b1 == b2 && b2 == b3 && b3 == bad_old, "{b1} {b2} {b3}");

    // last used is tracked (flushed in batches; a graceful stop flushes)
    sigterm(&mut srv);
    let list = env.json(&["key", "list", "--org", "acme"]);
    let etl = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "etl")
        .unwrap();
    assert_eq!(etl["status"], "revoked");
    assert!(etl["last_used"].is_string(), "{list}");
    assert!(!env
        .ok(&["key", "list", "--org", "acme", "--json"])
        .contains("rk_ak_"));
    let short = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "short")
        .unwrap();
    assert_eq!(short["status"], "expired");
});

dual!(machine_clients_client_credentials, |env| {
    env.ok(&["org", "create", "acme"]);
    env.json_stdin(
        &[
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            "svc@acme.test",
            "--permission",
            "read",
            "--password-stdin",
        ],
        PASSWORD,
    );
    let m = env.json(&[
        "m2m",
        "create",
        "--org",
        "acme",
        "--name",
        "sync",
        "--scope",
        "read_write",
        "--user",
        "svc@acme.test",
    ]);
    let (id, secret) = (
        m["client_id"].as_str().unwrap().to_string(),
        m["client_secret"].as_str().unwrap().to_string(),
    );
    assert!(m["id"].is_string());
    let free = env.json(&[
        "m2m",
        "create",
        "--org",
        "acme",
        "--name",
        "free",
        "--scope",
        "read_write",
    ]);
    let srv = env.serve();
    let c = client();
    // basic authentication
    let r = c
        .post(srv.at("/oauth2/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(
        v.get("refresh_token").is_none(),
        "no refresh token for client credentials"
    );
    let t1 = v["access_token"].as_str().unwrap().to_string();
    let (s, me) = get_path(&srv, ("Authorization", &format!("Bearer {t1}")), "/v1/me").await;
    assert_eq!(s, 200);
    assert_eq!(me["auth"], "client_credentials");
    assert_eq!(
        me["scope"], "read",
        "capped by the mapped user's permission"
    );
    // post authentication, and the seed endpoint
    let r = c
        .post(srv.at("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c.post(srv.at("/v1/users/oauth/token")).json(&json!({"clientId": free["client_id"], "clientSecret": free["client_secret"], "grantType": "Client_Credentials"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"], true);
    assert!(v["data"].get("refreshToken").is_none());
    let free_token = v["data"]["accessToken"].as_str().unwrap().to_string();
    assert_eq!(
        get_path(
            &srv,
            ("Authorization", &format!("Bearer {free_token}")),
            "/v1/me"
        )
        .await
        .1["scope"],
        "read_write"
    );
    // a read token may not write
    let r = c
        .put(srv.at("/v1/people"))
        .bearer_auth(&t1)
        .json(&json!({"Email": "a@b.io"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "insufficient_scope"
    );
    // a machine client cannot use the authorization-code grant
    let r = c
        .post(srv.at("/oauth2/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("redirect_uri", "https://a.b/c"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unauthorized_client"
    );

    // regenerate: the old secret is refused at once; tokens already minted keep working
    let r = env.json(&[
        "m2m",
        "regenerate-secret",
        "--org",
        "acme",
        "--name",
        "sync",
    ]);
    let secret2 = r["client_secret"].as_str().unwrap().to_string();
    assert_eq!(r["client_id"], id.as_str());
    let r = c
        .post(srv.at("/oauth2/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        get_path(&srv, ("Authorization", &format!("Bearer {t1}")), "/v1/me")
            .await
            .0,
        200
    );
    // …unless the regeneration also revokes them
    env.json(&[
        "m2m",
        "regenerate-secret",
        "--org",
        "acme",
        "--name",
        "sync",
        "--revoke-tokens",
    ]);
    assert_eq!(
        get_path(&srv, ("Authorization", &format!("Bearer {t1}")), "/v1/me")
            .await
            .0,
        401
    );
    let _ = secret2;
    let list = env.json(&["m2m", "list", "--org", "acme"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains("rk_cs_"));

    // the mapped user deactivated: tokens and new tokens refused
    let m = env.json(&[
        "m2m",
        "regenerate-secret",
        "--org",
        "acme",
        "--name",
        "sync",
    ]);
    let s3 = m["client_secret"].as_str().unwrap().to_string();
    let r = c
        .post(srv.at("/oauth2/token"))
        .basic_auth(&id, Some(&s3))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let t3 = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    env.ok(&[
        "user",
        "deactivate",
        "--org",
        "acme",
        "--email",
        "svc@acme.test",
    ]);
    assert_eq!(
        get_path(&srv, ("Authorization", &format!("Bearer {t3}")), "/v1/me")
            .await
            .0,
        401
    );
    let r = c
        .post(srv.at("/oauth2/token"))
        .basic_auth(&id, Some(&s3))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unauthorized_client"
    );
    // deactivate / delete the free client
    env.json(&["m2m", "deactivate", "--org", "acme", "--name", "free"]);
    assert_eq!(
        get_path(
            &srv,
            ("Authorization", &format!("Bearer {free_token}")),
            "/v1/me"
        )
        .await
        .0,
        401
    );
    env.json(&["m2m", "activate", "--org", "acme", "--name", "free"]);
    assert_eq!(
        get_path(
            &srv,
            ("Authorization", &format!("Bearer {free_token}")),
            "/v1/me"
        )
        .await
        .0,
        200
    );
    env.json(&["m2m", "delete", "--org", "acme", "--name", "free"]);
    assert_eq!(
        get_path(
            &srv,
            ("Authorization", &format!("Bearer {free_token}")),
            "/v1/me"
        )
        .await
        .0,
        401
    );
});

dual!(people_upsert_read_page_delete_and_outbox, |env| {
    env.ok(&["org", "create", "acme"]);
    env.ok(&["org", "create", "beta"]);
    let rw = env.json(&[
        "key",
        "create",
        "--org",
        "acme",
        "--name",
        "rw",
        "--scope",
        "read_write",
    ])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let ro = env.json(&[
        "key", "create", "--org", "acme", "--name", "ro", "--scope", "read",
    ])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let beta = env.json(&[
        "key",
        "create",
        "--org",
        "beta",
        "--name",
        "rw",
        "--scope",
        "read_write",
    ])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let srv = env.serve();
    let (s, v) = put_people(
        &srv,
        ("Accesskey", &rw),
        json!({"Email": " Ann@X.io ", "Name": "Ann", "Score": 7, "Vip": true, "Note": null}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            v["inserted"].as_i64(),
            v["updated"].as_i64(),
            v["results"][0]["status"].as_str()
        ),
        (Some(1), Some(0), Some("inserted"))
    );
    // merge: given fields replace, others stay; duplicates within a batch apply in order
    let (s, v) = put_people(
        &srv,
        ("Accesskey", &rw),
        json!({"records": [
            {"Email": "ann@x.io", "Score": 8},
            {"Email": "bob@x.io", "Name": "Bob"},
            {"Email": "bob@x.io", "City": "Oslo"},
            {"Name": "no email"},
            {"Email": "c@x.io", "Nested": {"a": 1}},
        ]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let st: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(st, ["updated", "inserted", "updated", "error", "error"]);
    assert_eq!(
        (
            v["inserted"].as_i64(),
            v["updated"].as_i64(),
            v["failed"].as_i64()
        ),
        (Some(1), Some(2), Some(2))
    );
    assert!(v["results"][3]["error"].as_str().unwrap().contains("Email"));
    let (s, ann) = get_path(&srv, ("Accesskey", &ro), "/v1/people?email=ANN@x.io").await;
    assert_eq!(s, 200);
    assert_eq!(
        ann,
        json!({"Email": "ann@x.io", "Name": "Ann", "Score": 8, "Vip": true, "Note": null})
    );
    assert_eq!(
        get_path(&srv, ("Accesskey", &ro), "/v1/people?email=bob@x.io")
            .await
            .1,
        json!({"Email": "bob@x.io", "Name": "Bob", "City": "Oslo"})
    );
    // isolation: another org's key never sees acme's people
    assert_eq!(
        get_path(&srv, ("Accesskey", &beta), "/v1/people?email=ann@x.io")
            .await
            .0,
        404
    );
    assert_eq!(
        get_path(&srv, ("Accesskey", &beta), "/v1/people").await.1["records"],
        json!([])
    );
    // read scope cannot write
    let (s, v) = put_people(&srv, ("Accesskey", &ro), json!({"Email": "z@x.io"})).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("insufficient_scope")));

    // keyset pages: 25 more records, pages of 10, stable and complete
    let batch: Vec<Value> = (0..25)
        .map(|i| json!({"Email": format!("p{i:02}@x.io"), "N": i}))
        .collect();
    assert_eq!(
        put_people(&srv, ("Accesskey", &rw), json!({"records": batch}))
            .await
            .0,
        200
    );
    let mut seen = Vec::new();
    let mut path = "/v1/people?limit=10".to_string();
    loop {
        let (s, page) = get_path(&srv, ("Accesskey", &ro), &path).await;
        assert_eq!(s, 200);
        for r in page["records"].as_array().unwrap() {
            seen.push(r["Email"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/people?limit=10&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 27);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
    assert_eq!(
        get_path(&srv, ("Accesskey", &ro), "/v1/people?limit=0")
            .await
            .0,
        400
    );
    assert_eq!(
        get_path(&srv, ("Accesskey", &ro), "/v1/people?cursor=%%%")
            .await
            .0,
        400
    );

    // delete
    let r = client()
        .delete(srv.at("/v1/people?email=bob@x.io"))
        .header("Accesskey", &rw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .delete(srv.at("/v1/people?email=bob@x.io"))
        .header("Accesskey", &rw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client()
        .delete(srv.at("/v1/people?email=ann@x.io"))
        .header("Accesskey", &ro)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // the outbox: one change per upserted record and per delete, in order
    let rows = outbox(&env).await;
    assert_eq!(rows.len(), 1 + 3 + 25 + 1);
    assert!(
        rows.windows(2).all(|w| w[0].0 < w[1].0),
        "monotonic sequence"
    );
    let last = rows.last().unwrap();
    assert_eq!(
        (last.1.as_str(), last.2.as_str(), last.3.clone()),
        ("bob@x.io", "delete", None)
    );
    let first = &rows[0];
    assert_eq!(first.2, "upsert");
    assert_eq!(
        serde_json::from_str::<Value>(first.3.as_ref().unwrap()).unwrap()["Name"],
        "Ann"
    );
});

/// (seq, email, op, record) of acme's outbox, in order.
async fn outbox(env: &Env) -> Vec<(i64, String, String, Option<String>)> {
    let sql = "SELECT o.seq, o.email, o.op, o.record FROM outbox o JOIN orgs g ON g.id = o.org_id WHERE g.slug = 'acme' ORDER BY o.seq";
    match env.engine {
        Engine::Sqlite => {
            let p = sqlx::SqlitePool::connect(&env.db_url).await.unwrap();
            sqlx::query_as(sql).fetch_all(&p).await.unwrap()
        }
        Engine::Postgres => {
            let p = sqlx::PgPool::connect(&env.db_url).await.unwrap();
            sqlx::query_as(sql).fetch_all(&p).await.unwrap()
        }
    }
}

dual!(people_bad_input_changes_nothing, |env| {
    env.ok(&["org", "create", "acme"]);
    let rw = env.json(&[
        "key",
        "create",
        "--org",
        "acme",
        "--name",
        "rw",
        "--scope",
        "read_write",
    ])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let srv = env.serve();
    let too_many: Vec<Value> = (0..1001)
        .map(|i| json!({"Email": format!("u{i}@x.io")}))
        .collect();
    for (body, why) in [
        (json!({"Name": "no email"}), "missing Email"),
        (json!({"records": too_many}), "1,001 records"),
        (json!({"Email": "a@x.io", "Deep": {"x": 1}}), "nested value"),
        (
            json!({"records": [{"Email": "a@x.io"}], "extra": 1}),
            "unknown envelope field",
        ),
        (
            json!({"records": {"Email": "a@x.io"}}),
            "records not an array",
        ),
        (json!({"Email": "not-an-email"}), "bad email"),
        (json!([]), "not an object"),
    ] {
        let (s, v) = put_people(&srv, ("Accesskey", &rw), body).await;
        assert_eq!(s, 400, "{why}: {v}");
        assert_eq!(v["error"], "invalid_request", "{why}");
        assert!(
            v["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{why}"
        );
    }
    let r = client()
        .put(srv.at("/v1/people"))
        .header("Accesskey", &rw)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = client()
        .put(srv.at("/v1/people"))
        .header("Accesskey", &rw)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = client()
        .put(srv.at("/v1/people"))
        .json(&json!({"Email": "a@x.io"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        get_path(&srv, ("Accesskey", &rw), "/v1/people").await.1["records"],
        json!([])
    );
    assert!(outbox(&env).await.is_empty(), "nothing written");
});
