//! The OpenAPI document (`/api/v1/openapi.json`) and its docs page
//! (`/api/docs`): every route the router serves under `/api/v1`, `/v1` and
//! `/oauth2` is in the document (a new route without its annotation fails
//! here), nothing is documented that is not served, each surface documents
//! its own error body, and the page loads nothing from another origin.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::dual;
use crate::harness::*;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Every `(method, path)` a `.route("PATH", get(…).post(…))` call in the
/// sources serves: the router as the code declares it.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).expect("read source");
                for (path, methods) in route_calls(&text) {
                    for m in methods {
                        out.insert((m, path.clone()));
                    }
                }
            }
        }
    }
    out
}

/// The `.route(…)` calls of one file: the path literal and the methods of
/// the method router beside it.
fn route_calls(text: &str) -> Vec<(String, Vec<String>)> {
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(".route(") {
        let args = &rest[i + ".route(".len()..];
        // The call's arguments, up to its closing parenthesis.
        let mut depth = 1usize;
        let mut end = args.len();
        for (j, c) in args.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let inner = &args[..end];
        rest = &args[end..];
        let Some(q1) = inner.find('"') else { continue };
        let Some(q2) = inner[q1 + 1..].find('"') else {
            continue;
        };
        let path = inner[q1 + 1..q1 + 1 + q2].to_string();
        let router = &inner[q1 + 2 + q2..];
        let mut methods = Vec::new();
        for m in METHODS {
            // `get(`, `.post(`, `axum::routing::delete(`; not `apps::delete)`.
            let pat = format!("{m}(");
            let mut from = 0;
            while let Some(k) = router[from..].find(&pat) {
                let at = from + k;
                let before = router[..at].chars().next_back();
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    methods.push(m.to_string());
                }
                from = at + pat.len();
            }
        }
        calls.push((path, methods));
    }
    calls
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((m.to_string(), path.clone()));
            }
        }
    }
    out
}

async fn fetch_doc(srv: &Server) -> Value {
    let r = client()
        .get(srv.at("/api/v1/openapi.json"))
        .send()
        .await
        .expect("get openapi.json");
    assert_eq!(r.status(), 200);
    assert!(r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json")));
    r.json().await.expect("openapi.json parses")
}

#[test]
fn the_route_scanner_reads_method_routers() {
    let src = r#"
        .route("/a/{x}", get(m::get).post(m::create).delete(m::delete))
        .route(
            "/b",
            axum::routing::delete(m::revoke),
        )
        .route("/c", post(m::authorize))
    "#;
    let calls = route_calls(src);
    assert_eq!(
        calls,
        vec![
            (
                "/a/{x}".into(),
                vec!["get".into(), "post".into(), "delete".into()]
            ),
            ("/b".into(), vec!["delete".into()]),
            ("/c".into(), vec!["post".into()]),
        ]
    );
}

dual!(every_served_route_is_in_the_openapi_document, |env| {
    let srv = env.serve();
    let doc = fetch_doc(&srv).await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "not OpenAPI 3.1: {}",
        doc["openapi"]
    );
    let served = routes_in_source();
    // The scanner must see the router, or this test could not fail.
    for must in [
        ("post", "/api/v1/session"),
        ("patch", "/api/v1/orgs/{org}/apps/{app}"),
        ("delete", "/api/v1/orgs/{org}/keys/{name}"),
        (
            "post",
            "/api/v1/orgs/{org}/connections/{conn}/reauthenticate",
        ),
        ("get", "/api/v1/incidents/{id}/report"),
        ("put", "/v1/people"),
        ("get", "/v1/me"),
        ("post", "/v1/users/oauth/token"),
        ("post", "/oauth2/introspect"),
        ("get", "/oauth2/authorize"),
    ] {
        assert!(
            served.contains(&(must.0.to_string(), must.1.to_string())),
            "the route scanner missed {must:?}"
        );
    }
    let docs = documented(&doc);
    let missing: Vec<_> = served
        .iter()
        .filter(|(_, p)| {
            p.starts_with("/api/v1/") || p.starts_with("/v1/") || p.starts_with("/oauth2/")
        })
        .filter(|r| !docs.contains(*r))
        .collect();
    assert!(
        missing.is_empty(),
        "served but not in the OpenAPI document (add #[utoipa::path] and list it in src/api/openapi.rs): {missing:?}"
    );
    let phantom: Vec<_> = docs.iter().filter(|r| !served.contains(*r)).collect();
    assert!(phantom.is_empty(), "documented but not served: {phantom:?}");

    // Operation ids are unique, and every operation says what it answers.
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            assert!(
                ids.insert(id.clone()),
                "operationId {id:?} repeats ({m} {path})"
            );
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses
                    .keys()
                    .any(|s| s.starts_with('2') || s.starts_with('3')),
                "{m} {path} documents no success"
            );
        }
    }
});

/// The error body a surface speaks, as its 4xx answers document it.
fn error_schema(doc: &Value, method: &str, path: &str, status: &str) -> String {
    doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

dual!(each_surface_documents_its_own_error_body, |env| {
    env.org_with_admin("acme");
    let srv = env.serve();
    let doc = fetch_doc(&srv).await;
    for (method, path, status, schema) in [
        ("get", "/api/v1/orgs/{org}/apps", "401", "AdminErrorBody"),
        ("post", "/api/v1/orgs/{org}/apps", "403", "AdminErrorBody"),
        ("get", "/v1/people", "401", "OAuthErrorBody"),
        ("post", "/oauth2/token", "400", "OAuthErrorBody"),
        ("post", "/v1/users/oauth/token", "401", "SeedErrorBody"),
    ] {
        assert_eq!(
            error_schema(&doc, method, path, status),
            schema,
            "{method} {path} {status}"
        );
    }
    for name in ["AdminErrorBody", "OAuthErrorBody", "SeedErrorBody"] {
        assert!(
            doc["components"]["schemas"][name]["example"].is_object(),
            "{name} has no example"
        );
    }
    // And the server answers in those shapes.
    let c = client();
    let r = c
        .get(srv.at("/api/v1/orgs/acme/apps"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].is_string() && v["message"].is_string(), "{v}");
    let r = c.get(srv.at("/v1/people")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"].is_string() && v["error_description"].is_string(),
        "{v}"
    );
    let r = c
        .post(srv.at("/v1/users/oauth/token"))
        .json(&serde_json::json!({"clientId": "nobody", "clientSecret": "x", "grantType": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"], false, "{v}");
    assert!(
        v["errorCode"].is_string() && v["requestId"].is_string(),
        "{v}"
    );
});

dual!(the_docs_page_loads_nothing_from_another_origin, |env| {
    let srv = env.serve();
    let c = client();
    let r = c.get(srv.at("/api/docs")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(csp.contains("default-src 'self'"), "CSP: {csp}");
    assert!(r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html")));
    let page = r.text().await.unwrap();
    // Without script the page still leads to the document.
    assert!(page.contains("<noscript>") && page.contains("href=\"/api/v1/openapi.json\""));
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in page.split(attr).skip(1) {
            let url = part.split('"').next().unwrap_or_default();
            assert!(
                url.starts_with('/') && !url.starts_with("//"),
                "the page names another origin: {url}"
            );
            if url.starts_with("/api/docs/") {
                assets.push(url.to_string());
            }
        }
    }
    assert!(
        assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css"))
    );
    for a in assets {
        let r = c.get(srv.at(&a)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{a}");
        let ctype = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let want = if a.ends_with(".js") {
            "text/javascript"
        } else {
            "text/css"
        };
        assert!(ctype.starts_with(want), "{a}: {ctype}");
        let text = r.text().await.unwrap();
        assert!(
            !text.contains("http://") && !text.contains("https://") && !text.contains("@import"),
            "{a} names another origin"
        );
        if a.ends_with(".js") {
            assert!(text.contains("/api/v1/openapi.json"));
        }
    }
});

// What the contract test (scripts/contract) found, each kept as a test.

dual!(
    a_bad_query_string_is_refused_in_the_admin_error_format,
    |env| {
        let admin = env.org_with_admin("acme");
        let srv = env.serve();
        let (c, _) = admin_login(&srv, &admin).await;
        for path in [
            "/api/v1/credentials/age?org=acme&bogus=1",
            "/api/v1/orgs/acme/credentials/age?older_than=rzp",
            "/api/v1/incidents/x/report?nope=1",
        ] {
            let r = c.get(srv.at(path)).send().await.unwrap();
            assert_eq!(r.status(), 400, "{path}");
            let v: Value = r
                .json()
                .await
                .unwrap_or_else(|e| panic!("{path}: not JSON ({e})"));
            assert_eq!(v["error"], "invalid_request", "{path}: {v}");
            assert!(v["message"].is_string(), "{path}: {v}");
        }
    }
);

dual!(an_optional_body_of_json_null_is_no_body, |env| {
    let admin = env.org_with_admin("acme");
    env.json(&[
        "app",
        "create",
        "--org",
        "acme",
        "--name",
        "billing",
        "--scope",
        "read",
        "--callback",
        "https://billing.example.com/cb",
    ]);
    let srv = env.serve();
    let (c, csrf) = admin_login(&srv, &admin).await;
    let r = c
        .post(srv.at("/api/v1/orgs/acme/apps/billing/regenerate-secret"))
        .header("x-csrf-token", &csrf)
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert!(
        v["client_secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("rk_cs_")),
        "{v}"
    );
});

dual!(
    a_duration_in_seconds_past_a_hundred_years_is_refused,
    |env| {
        // The document says at most 100 years, as a string duration is; a bare
        // number of seconds was taken unbounded and carried into time
        // arithmetic (an access key "expiring" past i64 milliseconds).
        let admin = env.org_with_admin("acme");
        let srv = env.serve();
        let (c, csrf) = admin_login(&srv, &admin).await;
        for expires in [
            serde_json::json!(3_153_600_001u64),
            serde_json::json!(u64::MAX),
        ] {
            let r = c
                .post(srv.at("/api/v1/orgs/acme/keys"))
                .header("x-csrf-token", &csrf)
                .json(&serde_json::json!({"name": "etl", "scope": "read", "expires": expires}))
                .send()
                .await
                .unwrap_or_else(|e| panic!("expires {expires}: no answer ({e})"));
            let status = r.status();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 400, "expires {expires}: {v}");
            assert_eq!(v["error"], "invalid_request", "{v}");
        }
        // Nothing was created.
        let keys: Value = get_json(&c, srv.at("/api/v1/orgs/acme/keys")).await;
        assert_eq!(keys, serde_json::json!([]));
        // A hundred years is still a duration.
        let r = c
            .post(srv.at("/api/v1/orgs/acme/keys"))
            .header("x-csrf-token", &csrf)
            .json(&serde_json::json!({"name": "etl", "scope": "read", "expires": 3_153_600_000u64}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
);

dual!(
    a_nul_character_is_a_bad_request_never_a_server_error,
    |env| {
        // Found by the contract test on PostgreSQL, which cannot store a NUL
        // in a text (SQLite could, so the same request was a 400 on one
        // store and a stored NUL on the other). Refused at the edge on both,
        // in the endpoint's own format, changing nothing.
        let admin = env.org_with_admin("acme");
        let key = crate::delivery::acme_key(&env);
        let srv = env.serve();
        let changes = |source: &str| {
            client()
                .post(srv.at("/v1/people/changes"))
                .header("Accesskey", &key)
                .json(&serde_json::json!({"changes": [], "source": source}))
                .send()
        };
        let r = changes("<\u{0}\u{b5}").await.unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_request", "{v}");
        assert!(
            v["error_description"]
                .as_str()
                .unwrap_or_default()
                .contains("NUL"),
            "{v}"
        );
        // A backslash followed by the letters u0000 is no NUL.
        let r = changes("a\\u0000b").await.unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
        let (c, csrf) = admin_login(&srv, &admin).await;
        // in a query
        let r = c
            .get(srv.at("/api/v1/orgs/acme/users?q=%00"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_request", "{v}");
        assert!(v["message"].as_str().unwrap().contains("NUL"), "{v}");
        // in a JSON body: nothing is created
        let users = |c: reqwest::Client| {
            let url = srv.at("/api/v1/orgs/acme/users");
            async move { get_json(&c, url).await["total"].as_i64().expect("total") }
        };
        let before = users(c.clone()).await;
        let r = c
            .post(srv.at("/api/v1/orgs/acme/users"))
            .header("X-CSRF-Token", &csrf)
            .json(&serde_json::json!({"email": "eve\u{0}@acme.test", "permission": "read"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert!(v["message"].as_str().unwrap().contains("NUL"), "{v}");
        assert_eq!(users(c.clone()).await, before);
        // in a console form: the console's own error page
        let r = client()
            .post(srv.at("/ui/login"))
            .form(&[("email", "eve\u{0}@acme.test"), ("password", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let ct = r.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        assert!(ct.starts_with("text/html"), "{ct}");
        assert!(r.text().await.unwrap().contains("NUL"));
        // in an OAuth form: RFC 6749's error body
        let r = client()
            .post(srv.at("/oauth2/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "a\u{0}b"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_request", "{v}");
        // in a path
        let r = c
            .get(srv.at("/api/v1/orgs/ac%00me/users"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
);
