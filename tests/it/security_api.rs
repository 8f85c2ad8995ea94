//! Regression tests for the API side of the security review: scopes that
//! shrink, numbers out of range, optional bodies without a content type and
//! machine token lifetimes (issue items 5, 8, 12 and 13).

use serde_json::{json, Value};

use crate::attacker::Listener;
use crate::harness::*;
use crate::oauth_support::{self, authorizations, std_post, tokens};

async fn sqlite() -> Env {
    Env::new(Engine::Sqlite).await.unwrap()
}

async fn put_person(srv: &Server, token: &str) -> u16 {
    client()
        .put(srv.at("/v1/people"))
        .bearer_auth(token)
        .json(&json!({"records": [{"Email": "ann@example.com"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Item 5: after `app update --scope read`, a read_write grant refreshes to
/// `read`, its tokens may no longer write, and the views say `read`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shrunk_app_scope_caps_existing_grants() {
    let w = oauth_support::world(sqlite().await, &[], &[]).await;
    let (at, rt) = tokens(&w, "read_write").await;
    assert_eq!(put_person(&w.srv, &at).await, 200);
    w.env.json(&[
        "app", "update", "--org", "acme", "--name", "portal", "--scope", "read",
    ]);
    // the access token already issued is capped at once
    assert_eq!(put_person(&w.srv, &at).await, 403);
    let (s, v) = std_post(
        &w,
        "/oauth2/token",
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["scope"], "read", "{v}");
    let at2 = v["access_token"].as_str().unwrap();
    assert_eq!(put_person(&w.srv, at2).await, 403);
    let (s, v) = std_post(&w, "/oauth2/introspect", &[("token", at2)]).await;
    assert_eq!(s, 200);
    assert_eq!(v["scope"], "read", "{v}");
    assert_eq!(authorizations(&w)[0]["scope"], "read");
    // the user's permission caps it the same way
    w.env.json(&[
        "app",
        "update",
        "--org",
        "acme",
        "--name",
        "portal",
        "--scope",
        "read_write",
    ]);
    w.env.json(&[
        "user",
        "set-permission",
        "--org",
        "acme",
        "--email",
        oauth_support::USER,
        "--permission",
        "read",
    ]);
    assert_eq!(put_person(&w.srv, at2).await, 403);
    assert_eq!(authorizations(&w)[0]["scope"], "read");
}

/// Item 8: durations past any sane range are refused before anything is
/// written, and a provider's absurd `expires_in` is an error, not a panic
/// that poisons the connection list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_durations_are_refused_before_anything_is_written() {
    let env = sqlite().await;
    env.org_with_admin("acme");
    for expires in ["99999999999d", "18446744073709551615"] {
        let out = env.run(&[
            "key",
            "create",
            "--org",
            "acme",
            "--name",
            "k",
            "--scope",
            "read",
            "--expires",
            expires,
        ]);
        assert!(!out.status.success(), "--expires {expires} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("duration"), "{err}");
    }
    let keys = env.json(&["key", "list", "--org", "acme"]);
    assert_eq!(keys.as_array().unwrap().len(), 0, "{keys}");

    // a provider answering an expiry billions of years away
    let provider = Listener::start(
        200,
        &[("content-type", "application/json")],
        r#"{"access_token":"at-1","refresh_token":"rt-1","token_type":"Bearer","expires_in":9000000000000000}"#,
    )
    .await;
    let srv = env.serve();
    env.json(&[
        "connection",
        "create",
        "--org",
        "acme",
        "--kind",
        "jira",
        "--name",
        "tickets",
        "--setting",
        "cloud_id=abc",
        "--endpoint",
        &format!("token_url={}/token", provider.url),
    ]);
    env.json_stdin(
        &[
            "connection",
            "set-client",
            "--org",
            "acme",
            "--name",
            "tickets",
            "--client-id",
            "own",
            "--client-secret-stdin",
        ],
        "own-secret",
    );
    let mut c = env.cmd();
    c.env("REKEY_PUBLIC_URL", &srv.url).args([
        "connection",
        "authorize",
        "--org",
        "acme",
        "--name",
        "tickets",
        "--json",
    ]);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // the admin opens the link (binding the flow to their browser) and the
    // provider sends that browser back with a code
    let (browser, _) = admin_login(&srv, "admin@acme.test").await;
    let r = browser
        .get(v["authorize_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let u = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let state = oauth_support::param(&u, "state").unwrap();
    let r = browser
        .get(srv.at(&format!("/oauth/callback?code=c1&state={state}")))
        .send()
        .await
        .unwrap();
    assert!(!r.status().is_success(), "an absurd expiry was stored");
    assert!(provider.saw("code=c1"));
    // nothing stored, and every view still answers
    let conn = env.json(&["connection", "show", "--org", "acme", "--name", "tickets"]);
    assert_ne!(conn["status"], "connected", "{conn}");
    env.json(&["connection", "list", "--org", "acme"]);
    let (c, _) = admin_login(&srv, "admin@acme.test").await;
    let r = c
        .get(srv.at("/api/v1/orgs/acme/connections"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Item 12: an optional body sent without a content type is refused, not
/// silently dropped (which regenerated the secret but kept the tokens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_body_without_content_type_is_refused() {
    let env = sqlite().await;
    let admin = env.org_with_admin("acme");
    let m2m = env.json(&[
        "m2m", "create", "--org", "acme", "--name", "sync", "--scope", "read",
    ]);
    let (id, secret) = (
        m2m["client_id"].as_str().unwrap().to_string(),
        m2m["client_secret"].as_str().unwrap().to_string(),
    );
    let srv = env.serve();
    let (c, csrf) = admin_login(&srv, &admin).await;
    let r = c
        .post(srv.at("/api/v1/orgs/acme/m2m/sync/regenerate-secret"))
        .header("x-csrf-token", &csrf)
        .body(r#"{"revoke_tokens":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = c
        .post(srv.at("/api/v1/orgs/acme/m2m/sync/regenerate-secret"))
        .header("x-csrf-token", &csrf)
        .header("content-type", "application/json")
        .body(r#"{"revoke_tokens":tru"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // nothing changed: the old secret still works
    let r = client()
        .post(srv.at("/oauth2/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // an empty body is still fine
    let r = c
        .post(srv.at("/api/v1/orgs/acme/m2m/sync/regenerate-secret"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Item 13: machine access tokens live at most `m2m_token_ttl_max`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_tokens_cannot_outlive_the_cap() {
    let env = sqlite().await;
    env.org_with_admin("acme");
    let out = env.run(&[
        "m2m",
        "create",
        "--org",
        "acme",
        "--name",
        "long",
        "--scope",
        "read",
        "--access-token-ttl",
        "366d",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("m2m_token_ttl_max"));
    let m2m = env.json(&[
        "m2m", "create", "--org", "acme", "--name", "sync", "--scope", "read",
    ]);
    let id = m2m["client_id"].as_str().unwrap();
    let secret = m2m["client_secret"].as_str().unwrap();
    for (max, limit) in [(None, 3600), (Some("10m"), 600)] {
        let srv = match max {
            Some(m) => env.serve_with(&[("REKEY_M2M_TOKEN_TTL_MAX", m)]),
            None => env.serve(),
        };
        let r = client()
            .post(srv.at("/oauth2/token"))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let expires = v["expires_in"].as_i64().unwrap();
        assert!(expires > 0 && expires <= limit, "{v}");
    }
}

/// Info item: the authorize page answers an unknown client and a wrong
/// redirect URI the same way (no client-id enumeration).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_page_does_not_tell_unknown_clients_from_wrong_callbacks() {
    let w = oauth_support::world(sqlite().await, &[], &[]).await;
    let page = |client_id: &str, redirect: &str| {
        let url = format!(
            "{}/oauth2/authorize?response_type=code&scope=read&state=s&client_id={}&redirect_uri={}",
            w.srv.url,
            client_id,
            url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
        );
        async move {
            let r = client().get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let unknown = page("app_01doesnotexist", oauth_support::CALLBACK).await;
    let wrong = page(&w.client_id, "http://127.0.0.1:9/elsewhere").await;
    assert_eq!(unknown.0, 400);
    assert_eq!(unknown, wrong);
}

/// Info item: a client introspects only its own tokens unless it was
/// granted introspection (a resource server's machine client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_clients_cannot_introspect_a_token_unless_granted() {
    let w = oauth_support::world(sqlite().await, &[], &[]).await;
    let (at, rt) = tokens(&w, "read").await;
    let other = w.env.json(&[
        "app",
        "create",
        "--org",
        "acme",
        "--name",
        "other",
        "--scope",
        "read",
        "--callback",
        oauth_support::CALLBACK,
    ]);
    let plain = w.env.json(&[
        "m2m", "create", "--org", "acme", "--name", "plain", "--scope", "read",
    ]);
    let rs = w.env.json(&[
        "m2m",
        "create",
        "--org",
        "acme",
        "--name",
        "resource-server",
        "--scope",
        "read",
        "--introspect",
    ]);
    assert_eq!(rs["introspect"], true);
    let ask = |creds: &Value, token: &str| {
        let (id, secret) = (
            creds["client_id"].as_str().unwrap().to_string(),
            creds["client_secret"].as_str().unwrap().to_string(),
        );
        let url = w.srv.at("/oauth2/introspect");
        let token = token.to_string();
        async move {
            let v: Value = client()
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["active"].as_bool().unwrap()
        }
    };
    for t in [&at, &rt] {
        assert!(!ask(&other, t).await, "another app sees nothing");
        assert!(
            !ask(&plain, t).await,
            "an ungranted machine client sees nothing"
        );
        assert!(ask(&rs, t).await, "the granted resource server sees it");
    }
    let (s, v) = std_post(&w, "/oauth2/introspect", &[("token", &at)]).await;
    assert_eq!(
        (s, v["active"].clone()),
        (200, json!(true)),
        "its own client sees it"
    );
}

/// The console's "End overlap" has its API twin for access keys, machine
/// clients and applications: the previous value stops working at once, the
/// newest keeps working, and it is audited like the console's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_ends_an_overlap_like_the_console() {
    let env = sqlite().await;
    let admin = env.org_with_admin("acme");
    let old_key = env.json(&[
        "key", "create", "--org", "acme", "--name", "ci", "--scope", "read",
    ])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let m2m = env.json(&[
        "m2m", "create", "--org", "acme", "--name", "sync", "--scope", "read",
    ]);
    let (id, old_secret) = (
        m2m["client_id"].as_str().unwrap().to_string(),
        m2m["client_secret"].as_str().unwrap().to_string(),
    );
    env.json(&[
        "app",
        "create",
        "--org",
        "acme",
        "--name",
        "crm",
        "--scope",
        "read",
        "--callback",
        "https://crm.example/cb",
    ]);
    let srv = env.serve();
    let (c, csrf) = admin_login(&srv, &admin).await;
    let post = |path: &str, body: Option<Value>| {
        let r = c.post(srv.at(path)).header("X-CSRF-Token", &csrf);
        match body {
            Some(b) => r.json(&b),
            None => r,
        }
        .send()
    };
    let people = |key: String| {
        let url = srv.at("/v1/people?limit=1");
        async move {
            client()
                .get(url)
                .header("Accesskey", key)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let token = |secret: String| {
        let (url, id) = (srv.at("/oauth2/token"), id.clone());
        async move {
            client()
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap()
                .status()
        }
    };

    // an access key reset with an overlap: both work, until it is ended
    let r = post(
        "/api/v1/orgs/acme/keys/ci/reset",
        Some(json!({"overlap": "1h"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let new_key = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(people(old_key.clone()).await, 200);
    let r = post("/api/v1/orgs/acme/keys/ci/end-overlap", None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["previous_key_live"], false, "{v}");
    assert_eq!(people(old_key).await, 401);
    assert_eq!(people(new_key).await, 200);

    // a machine client's secret regenerated with an overlap
    let r = post(
        "/api/v1/orgs/acme/m2m/sync/regenerate-secret",
        Some(json!({"overlap": "1h"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let new_secret = r.json::<Value>().await.unwrap()["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(token(old_secret.clone()).await, 200);
    let r = post("/api/v1/orgs/acme/m2m/sync/end-overlap", None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["previous_secret_live"], false, "{v}");
    assert_eq!(token(old_secret).await, 401);
    assert_eq!(token(new_secret).await, 200);

    // an application's
    let r = post(
        "/api/v1/orgs/acme/apps/crm/regenerate-secret",
        Some(json!({"overlap": "1h"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = get_json(&c, srv.at("/api/v1/orgs/acme/apps/crm")).await;
    assert_eq!(v["previous_secret_live"], true, "{v}");
    let r = post("/api/v1/orgs/acme/apps/crm/end-overlap", None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["previous_secret_live"], false, "{v}");

    // an unknown name changes nothing and says so; no CSRF, no change
    let r = post("/api/v1/orgs/acme/keys/nope/end-overlap", None)
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .post(srv.at("/api/v1/orgs/acme/m2m/sync/end-overlap"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let audit = env.json(&["audit", "list", "--action", "key.end_overlap"]);
    assert_eq!(audit.as_array().map(Vec::len), Some(1), "{audit}");
}

/// The console's orgs page and create form have their API twins, for the
/// operator alone: a page by slug with the exact total, a new org (201,
/// audited), a taken slug 409, a bad one 400; an org admin gets 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_lists_and_creates_orgs_through_the_api() {
    let env = sqlite().await;
    let admin = env.org_with_admin("acme");
    env.ok(&["org", "create", "beta"]);
    let ops = "ops@platform.test";
    env.json_stdin(
        &["operator", "create", "--email", ops, "--password-stdin"],
        PASSWORD,
    );
    let srv = env.serve();
    let (o, ocsrf) = admin_login(&srv, ops).await;
    let p = get_json(&o, srv.at("/api/v1/orgs?limit=1")).await;
    assert_eq!(p["total"], 2, "{p}");
    assert_eq!(p["items"][0]["slug"], "acme", "{p}");
    assert!(p["items"][0]["created_at"].is_string(), "{p}");
    let next = p["next_after"].as_str().unwrap().to_string();
    let p = get_json(&o, srv.at(&format!("/api/v1/orgs?limit=1&after={next}"))).await;
    assert_eq!(p["items"][0]["slug"], "beta", "{p}");
    assert!(p["next_after"].is_null(), "{p}");

    let r = o
        .post(srv.at("/api/v1/orgs"))
        .header("X-CSRF-Token", &ocsrf)
        .json(&json!({"slug": "gamma", "name": "Gamma Ltd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["slug"].as_str(), v["name"].as_str()),
        (Some("gamma"), Some("Gamma Ltd"))
    );
    for (body, status) in [
        (json!({"slug": "gamma"}), 409),
        (json!({"slug": "no spaces"}), 400),
        (json!({"slug": "delta", "color": "red"}), 400),
    ] {
        let r = o
            .post(srv.at("/api/v1/orgs"))
            .header("X-CSRF-Token", &ocsrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{body}");
    }
    let p = get_json(&o, srv.at("/api/v1/orgs?limit=10")).await;
    assert_eq!(p["total"], 3, "{p}");
    let audit = env.json(&["audit", "list", "--action", "org.create"]);
    assert_eq!(audit.as_array().map(Vec::len), Some(3), "{audit}");

    // an org admin neither lists nor creates orgs
    let (c, csrf) = admin_login(&srv, &admin).await;
    let r = c.get(srv.at("/api/v1/orgs")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(srv.at("/api/v1/orgs"))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({"slug": "epsilon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let p = get_json(&o, srv.at("/api/v1/orgs?limit=10")).await;
    assert_eq!(p["total"], 3, "{p}");
}
