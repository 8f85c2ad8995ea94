//! The authorization server, end to end over HTTP, on both databases.

use serde_json::{json, Value};

use crate::dual;
use crate::harness::*;
use crate::oauth_support::*;

dual!(seed_flow_refresh_rotation_and_reuse_detection, |env| {
    let w = world(env, &[], &[]).await;
    let (verifier, challenge) = pkce();
    let back = browse(
        &seed_authorize_url(&w, "read_write", "xyz", Some(&challenge)),
        USER,
        PASSWORD,
        "allow",
    )
    .await
    .unwrap();
    assert!(back.as_str().starts_with(CALLBACK));
    assert_eq!(param(&back, "state").as_deref(), Some("xyz"));
    let code = param(&back, "code").unwrap();
    let (s, v) = seed_token(
        &w,
        json!({"clientId": w.client_id, "clientSecret": w.secret, "grantType": "authorization_code",
        "redirectUri": CALLBACK, "code": code, "codeVerifier": verifier}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"], true);
    assert_eq!(v["errorCode"], Value::Null);
    assert!(v["requestId"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(v["data"]["TokenType"], "Bearer");
    assert_eq!(v["data"]["expiresIn"], 3600);
    let at = v["data"]["accessToken"].as_str().unwrap().to_string();
    let rt = v["data"]["refreshToken"].as_str().unwrap().to_string();
    assert!(at.starts_with("rk_at_") && rt.starts_with("rk_rt_"));
    let (s, me1) = me(&w, &at).await;
    assert_eq!(s, 200);
    assert_eq!(me1["org"], "acme");
    assert_eq!(me1["user"], USER);
    assert_eq!(me1["scope"], "read_write");
    assert_eq!(me1["auth"], "oauth_access_token");

    // rotation: a new pair each time, the old refresh token dead at once
    let (s, v) = refresh(&w, &rt).await;
    assert_eq!(s, 200, "{v}");
    let rt2 = v["data"]["refreshToken"].as_str().unwrap().to_string();
    let at2 = v["data"]["accessToken"].as_str().unwrap().to_string();
    assert_ne!(rt2, rt);
    assert_eq!(me(&w, &at2).await.0, 200);
    let auths = authorizations(&w);
    assert_eq!(auths[0]["status"], "Active");
    assert_eq!(auths[0]["user"], USER);

    // reuse of the rotated token: refused, and the whole authorization dies
    let (s, v) = refresh(&w, &rt).await;
    assert_eq!(s, 400);
    assert_eq!(v["result"], false);
    assert_eq!(v["errorCode"], "invalid_grant");
    assert_eq!(refresh(&w, &rt2).await.0, 400);
    assert_eq!(me(&w, &at2).await.0, 401);
    assert_eq!(me(&w, &at).await.0, 401);
    let auths = authorizations(&w);
    assert_eq!(auths[0]["status"], "Revoked");
    assert!(
        auths[0]["reason"].as_str().unwrap().contains("reuse"),
        "{auths}"
    );
    let events = w
        .env
        .json(&["audit", "list", "--action", "oauth.refresh.reuse_detected"]);
    assert_eq!(events.as_array().unwrap().len(), 1);
    assert!(events[0]["detail"]["first_presenter"]["ip"].is_string());
    assert!(events[0]["detail"]["second_presenter"]["ip"].is_string());
    // no secret in the audit log
    let all = w.env.ok(&["audit", "list", "--json"]);
    for s in [&at, &rt, &rt2, &w.secret] {
        assert!(!all.contains(s.as_str()));
    }
});

dual!(concurrent_refreshes_exactly_one_wins, |env| {
    let w = world(env, &[], &[]).await;
    let (_, rt) = tokens(&w, "read_write").await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let url = w.srv.at("/v1/users/oauth/token");
        let body = json!({"clientId": w.client_id, "clientSecret": w.secret, "grantType": "refresh_token", "refreshToken": rt});
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            400 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, 1, "exactly one of 50 concurrent refreshes succeeds");
});

dual!(standard_endpoints_with_the_oauth2_crate, |env| {
    use oauth2::basic::BasicClient;
    use oauth2::{
        AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IntrospectionUrl,
        PkceCodeChallenge, RedirectUrl, Scope, TokenIntrospectionResponse, TokenResponse, TokenUrl,
    };
    let w = world(env, &[], &[]).await;
    // discovery
    let meta: Value = client()
        .get(w.srv.at("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], w.srv.url);
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    // the documentation it advertises is a page that answers
    let docs = meta["service_documentation"].as_str().unwrap();
    assert!(docs.starts_with(&w.srv.url), "{docs}");
    let r = client().get(docs).send().await.unwrap();
    assert_eq!(r.status(), 200, "{docs}");
    let oc = BasicClient::new(ClientId::new(w.client_id.clone()))
        .set_client_secret(ClientSecret::new(w.secret.clone()))
        .set_auth_uri(
            AuthUrl::new(meta["authorization_endpoint"].as_str().unwrap().to_string()).unwrap(),
        )
        .set_token_uri(TokenUrl::new(meta["token_endpoint"].as_str().unwrap().to_string()).unwrap())
        .set_introspection_url(
            IntrospectionUrl::new(meta["introspection_endpoint"].as_str().unwrap().to_string())
                .unwrap(),
        )
        .set_redirect_uri(RedirectUrl::new(CALLBACK.to_string()).unwrap());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf) = oc
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("read_write".into()))
        .set_pkce_challenge(challenge)
        .url();
    let back = browse(url.as_str(), USER, PASSWORD, "allow").await.unwrap();
    assert_eq!(
        param(&back, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    let tok = oc
        .exchange_code(AuthorizationCode::new(param(&back, "code").unwrap()))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let at = tok.access_token().secret().clone();
    assert_eq!(me(&w, &at).await.0, 200);
    let rt = tok.refresh_token().unwrap().clone();
    let tok2 = oc
        .exchange_refresh_token(&rt)
        .request_async(&http)
        .await
        .unwrap();
    assert_ne!(tok2.refresh_token().unwrap().secret(), rt.secret());
    // the old refresh token is refused with invalid_grant
    let err = oc
        .exchange_refresh_token(&rt)
        .request_async(&http)
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("invalid_grant"), "{err:?}");
    // introspection (a new grant, since reuse revoked the first)
    let (verifier, challenge) = pkce();
    let mut u = url::Url::parse(&w.srv.at("/oauth2/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &w.client_id)
        .append_pair("redirect_uri", CALLBACK)
        .append_pair("scope", "read")
        .append_pair("state", "st")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let back = browse(u.as_str(), USER, PASSWORD, "allow").await.unwrap();
    let tok = oc
        .exchange_code(AuthorizationCode::new(param(&back, "code").unwrap()))
        .set_pkce_verifier(oauth2::PkceCodeVerifier::new(verifier))
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(tok.scopes().unwrap()[0].as_str(), "read");
    let intro = oc
        .introspect(tok.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(intro.active());
    assert_eq!(intro.username(), Some(USER));
    // revoke the refresh token: the authorization and its access token end
    // (the crate refuses revocation over plain http, so this one is posted by hand)
    let (s, _) = std_post(
        &w,
        "/oauth2/revoke",
        &[
            ("token", tok.refresh_token().unwrap().secret()),
            ("token_type_hint", "refresh_token"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    let intro = oc
        .introspect(tok.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(!intro.active());
    assert_eq!(me(&w, tok.access_token().secret()).await.0, 401);
    let auths = authorizations(&w);
    assert!(
        auths
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status"] == "Revoked"),
        "{auths}"
    );
});

dual!(token_endpoint_refuses_bad_input, |env| {
    let w = world(env, &[], &[("REKEY_AUTHORIZATION_CODE_TTL", "1s")]).await;
    let (verifier, challenge) = pkce();
    let code_for = |ch: String| {
        let url = seed_authorize_url(&w, "read_write", "s", Some(&ch));
        async move {
            param(
                &browse(&url, USER, PASSWORD, "allow").await.unwrap(),
                "code",
            )
            .unwrap()
        }
    };
    let code = code_for(challenge.clone()).await;
    let base = json!({"clientId": w.client_id, "clientSecret": w.secret, "grantType": "authorization_code",
        "redirectUri": CALLBACK, "code": code, "codeVerifier": verifier});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases = [
        (
            with("clientSecret", json!("rk_cs_wrong")),
            401,
            "invalid_client",
        ),
        (
            with("clientId", json!("app_unknown")),
            401,
            "invalid_client",
        ),
        (
            with("redirectUri", json!("http://127.0.0.1:9/other")),
            400,
            "invalid_grant",
        ),
        (
            with("codeVerifier", json!("a".repeat(43))),
            400,
            "invalid_grant",
        ),
        (with("codeVerifier", Value::Null), 400, "invalid_grant"),
        (
            with("grantType", json!("password")),
            400,
            "unsupported_grant_type",
        ),
        (with("code", json!("rk_ac_nonsense")), 400, "invalid_grant"),
        (with("unknownField", json!(1)), 400, "invalid_request"),
    ];
    for (body, status, code) in cases {
        let (s, v) = seed_token(&w, body.clone()).await;
        assert_eq!(
            (s, v["errorCode"].as_str().unwrap()),
            (status, code),
            "{body} -> {v}"
        );
        assert_eq!(v["result"], false);
        assert!(v["errorDesc"].as_str().is_some_and(|d| !d.is_empty()));
    }
    // malformed JSON and wrong content type, in the envelope
    let r = client()
        .post(w.srv.at("/v1/users/oauth/token"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["result"], false);
    let r = client()
        .post(w.srv.at("/v1/users/oauth/token"))
        .form(&[("a", "b")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // the standard endpoint wants a form
    let r = client()
        .post(w.srv.at("/oauth2/token"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    // none of that consumed the code: it still works once…
    let (s, v) = seed_token(&w, base.clone()).await;
    assert_eq!(s, 200, "{v}");
    let at = v["data"]["accessToken"].as_str().unwrap().to_string();
    assert_eq!(me(&w, &at).await.0, 200);
    // …and replaying it revokes what it produced
    let (s, v) = seed_token(&w, base.clone()).await;
    assert_eq!(
        (s, v["errorCode"].as_str().unwrap()),
        (400, "invalid_grant")
    );
    assert_eq!(me(&w, &at).await.0, 401);
    // an expired code
    let (verifier, challenge) = pkce();
    let code = code_for(challenge).await;
    w.env.advance(std::time::Duration::from_secs(2));
    let (s, v) = seed_token(
        &w,
        json!({"clientId": w.client_id, "clientSecret": w.secret, "grantType": "authorization_code",
        "redirectUri": CALLBACK, "code": code, "codeVerifier": verifier}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["errorDesc"].as_str().unwrap().contains("expired"), "{v}");

    // another org's client cannot use this org's code
    w.env.ok(&["org", "create", "beta"]);
    let other = w.env.json(&[
        "app",
        "create",
        "--org",
        "beta",
        "--name",
        "portal",
        "--scope",
        "read_write",
        "--callback",
        CALLBACK,
    ]);
    let (verifier, challenge) = pkce();
    let code = code_for(challenge).await;
    let (s, v) = seed_token(&w, json!({"clientId": other["client_id"], "clientSecret": other["client_secret"], "grantType": "authorization_code",
        "redirectUri": CALLBACK, "code": code, "codeVerifier": verifier})).await;
    assert_eq!(
        (s, v["errorCode"].as_str().unwrap()),
        (400, "invalid_grant")
    );
});

dual!(authorize_endpoint_refuses_bad_requests, |env| {
    let w = world(env, &[], &[]).await;
    let c = client();
    // unknown client and unregistered redirect: an error page, never a redirect
    for q in [
        format!("clientId=app_nope&redirectUri={CALLBACK}&scopes=read"),
        format!(
            "clientId={}&redirectUri=http://127.0.0.1:9/callbackX&scopes=read",
            w.client_id
        ),
        format!(
            "clientId={}&redirectUri=https://evil.example/cb&scopes=read",
            w.client_id
        ),
    ] {
        let r = c
            .get(w.srv.at(&format!("/v1/authorize?{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{q}");
        assert!(r.headers().get("location").is_none());
    }
    // other errors go back to the redirect URI
    let redirect_error = |q: String| {
        let c = c.clone();
        let url = w.srv.at(&format!("/oauth2/authorize?{q}"));
        async move {
            let r = c.get(url).send().await.unwrap();
            assert_eq!(r.status(), 302);
            let loc = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
            assert!(loc.as_str().starts_with(CALLBACK));
            (param(&loc, "error").unwrap(), param(&loc, "state"))
        }
    };
    let id = &w.client_id;
    let (_, ch) = pkce();
    assert_eq!(redirect_error(format!("response_type=code&client_id={id}&redirect_uri={CALLBACK}&scope=read&state=1&code_challenge={ch}&code_challenge_method=plain")).await, ("invalid_request".into(), Some("1".into())));
    assert_eq!(
        redirect_error(format!(
            "response_type=token&client_id={id}&redirect_uri={CALLBACK}&scope=read"
        ))
        .await
        .0,
        "unsupported_response_type"
    );
    assert_eq!(
        redirect_error(format!(
            "response_type=code&client_id={id}&redirect_uri={CALLBACK}&scope=admin"
        ))
        .await
        .0,
        "invalid_scope"
    );
    // scope escalation beyond the application's scope
    w.env.json(&[
        "app", "update", "--org", "acme", "--name", "portal", "--scope", "read",
    ]);
    assert_eq!(
        redirect_error(format!(
            "response_type=code&client_id={id}&redirect_uri={CALLBACK}&scope=read_write"
        ))
        .await
        .0,
        "invalid_scope"
    );
    // deny
    let back = browse(
        &seed_authorize_url(&w, "read", "st8", None),
        USER,
        PASSWORD,
        "deny",
    )
    .await
    .unwrap();
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&back, "state").as_deref(), Some("st8"));
    assert!(param(&back, "code").is_none());
    // wrong password: no consent page
    let err = browse(
        &seed_authorize_url(&w, "read", "s", None),
        USER,
        "wrong-password-1",
        "allow",
    )
    .await
    .unwrap_err();
    assert_eq!(err.0, 401);
    // a user of another org cannot sign in to this org's application
    w.env.ok(&["org", "create", "beta"]);
    w.env.json_stdin(
        &[
            "user",
            "create",
            "--org",
            "beta",
            "--email",
            "b@beta.test",
            "--permission",
            "read_write",
            "--password-stdin",
        ],
        PASSWORD,
    );
    assert_eq!(
        browse(
            &seed_authorize_url(&w, "read", "s", None),
            "b@beta.test",
            PASSWORD,
            "allow"
        )
        .await
        .unwrap_err()
        .0,
        401
    );
    // a forged post (no CSRF) changes nothing
    let r = client()
        .post(seed_authorize_url(&w, "read", "s", None))
        .form(&[("email", USER), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
});

dual!(effective_scope_follows_the_user, |env| {
    let w = world(env, &[], &[]).await;
    let (at, rt) = tokens(&w, "read_write").await;
    assert_eq!(me(&w, &at).await.1["scope"], "read_write");
    w.env.ok(&[
        "user",
        "set-permission",
        "--org",
        "acme",
        "--email",
        USER,
        "--permission",
        "read",
    ]);
    assert_eq!(
        me(&w, &at).await.1["scope"],
        "read",
        "permission drop applies at once"
    );
    w.env.ok(&[
        "user",
        "set-permission",
        "--org",
        "acme",
        "--email",
        USER,
        "--permission",
        "read_write",
    ]);
    w.env
        .ok(&["user", "deactivate", "--org", "acme", "--email", USER]);
    let (s, _) = me(&w, &at).await;
    assert_eq!(s, 401);
    assert_eq!(refresh(&w, &rt).await.0, 400);
    assert_eq!(authorizations(&w)[0]["status"], "Invalid");
    // reactivation does not bring the old authorization back
    w.env
        .ok(&["user", "activate", "--org", "acme", "--email", USER]);
    assert_eq!(me(&w, &at).await.0, 401);
    assert_eq!(authorizations(&w)[0]["status"], "Invalid");
    // the bearer challenge
    let r = client()
        .get(w.srv.at("/v1/me"))
        .bearer_auth("rk_at_bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));
    let r = client().get(w.srv.at("/v1/me")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
});

dual!(application_lifecycle, |env| {
    let w = world(env, &[], &[]).await;
    let (at, rt) = tokens(&w, "read_write").await;
    let d = w
        .env
        .json(&["app", "deactivate", "--org", "acme", "--name", "portal"]);
    assert_eq!(d["status"], "deactivated");
    assert_eq!(me(&w, &at).await.0, 401);
    let (s, v) = refresh(&w, &rt).await;
    assert_eq!(
        (s, v["errorCode"].as_str().unwrap()),
        (401, "invalid_client")
    );
    w.env
        .json(&["app", "activate", "--org", "acme", "--name", "portal"]);
    assert_eq!(
        me(&w, &at).await.0,
        200,
        "tokens were blocked, not destroyed"
    );
    let (s, v) = refresh(&w, &rt).await;
    assert_eq!(s, 200, "{v}");
    let at2 = v["data"]["accessToken"].as_str().unwrap().to_string();
    let rt2 = v["data"]["refreshToken"].as_str().unwrap().to_string();
    w.env
        .json(&["app", "delete", "--org", "acme", "--name", "portal"]);
    assert_eq!(me(&w, &at2).await.0, 401);
    let (s, v) = refresh(&w, &rt2).await;
    assert_eq!(
        (s, v["errorCode"].as_str().unwrap()),
        (401, "invalid_client")
    );
    let r = client()
        .get(seed_authorize_url(&w, "read", "s", None))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "client id is unknown");
    let events = w.env.json(&["audit", "list", "--action", "app."]);
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["app.delete", "app.activate", "app.deactivate", "app.create"]
    );
});

dual!(secret_regeneration_with_and_without_overlap, |env| {
    let mut w = world(env, &[], &[]).await;
    let old = w.secret.clone();
    let r = w.env.json(&[
        "app",
        "regenerate-secret",
        "--org",
        "acme",
        "--name",
        "portal",
        "--overlap",
        "1h",
    ]);
    let new = r["client_secret"].as_str().unwrap().to_string();
    assert_eq!(r["client_id"], w.client_id.as_str());
    let (_, rt) = tokens(&w, "read").await; // uses the old secret, still valid
    w.secret = new.clone();
    let (s, v) = refresh(&w, &rt).await;
    assert_eq!(s, 200, "{v}");
    let rt2 = v["data"]["refreshToken"].as_str().unwrap().to_string();
    let r = w.env.json(&[
        "app",
        "regenerate-secret",
        "--org",
        "acme",
        "--name",
        "portal",
    ]);
    let newest = r["client_secret"].as_str().unwrap().to_string();
    for s in [&old, &new] {
        w.secret = s.clone();
        let (status, _) = refresh(&w, &rt2).await;
        assert_eq!(status, 401, "old secrets stop at once");
    }
    w.secret = newest;
    assert_eq!(refresh(&w, &rt2).await.0, 200);
});

dual!(expiry_and_grace_window, |env| {
    let w = world(
        env,
        &["--refresh-token-ttl", "1s", "--access-token-ttl", "1s"],
        &[],
    )
    .await;
    let (at, rt) = tokens(&w, "read").await;
    w.env.advance(std::time::Duration::from_secs(2));
    assert_eq!(me(&w, &at).await.0, 401);
    let (s, v) = refresh(&w, &rt).await;
    assert_eq!(s, 400);
    assert!(v["errorDesc"].as_str().unwrap().contains("expired"));
    assert_eq!(authorizations(&w)[0]["status"], "Expired");

    // a grace window: the replay gets the same successor pair, nothing is revoked
    w.env.json(&[
        "app",
        "update",
        "--org",
        "acme",
        "--name",
        "portal",
        "--refresh-token-ttl",
        "1h",
        "--access-token-ttl",
        "1h",
        "--refresh-grace",
        "30s",
    ]);
    let (_, rt) = tokens(&w, "read").await;
    let (s1, v1) = refresh(&w, &rt).await;
    let (s2, v2) = refresh(&w, &rt).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(v1["data"]["refreshToken"], v2["data"]["refreshToken"]);
    assert_eq!(v1["data"]["accessToken"], v2["data"]["accessToken"]);
    let rt2 = v1["data"]["refreshToken"].as_str().unwrap();
    assert_eq!(
        refresh(&w, rt2).await.0,
        200,
        "one live refresh token, still working"
    );
});

dual!(revocation_endpoints, |env| {
    let w = world(env, &[], &[]).await;
    let (at, rt) = tokens(&w, "read").await;
    // revoking an access token ends that token only
    let (s, _) = std_post(
        &w,
        "/oauth2/revoke",
        &[("token", &at), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(me(&w, &at).await.0, 401);
    let (s, v) = refresh(&w, &rt).await;
    assert_eq!(s, 200);
    let at2 = v["data"]["accessToken"].as_str().unwrap().to_string();
    let rt2 = v["data"]["refreshToken"].as_str().unwrap().to_string();
    // the seed revoke ends the authorization and its access tokens
    let r = client()
        .post(w.srv.at("/v1/users/oauth/revoke"))
        .json(&json!({"clientId": w.client_id, "clientSecret": w.secret, "refreshToken": rt2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["result"], true);
    assert_eq!(me(&w, &at2).await.0, 401);
    assert_eq!(refresh(&w, &rt2).await.0, 400);
    let a = authorizations(&w);
    assert_eq!(a[0]["status"], "Revoked");
    assert_eq!(a[0]["reason"], "revoked by the client");
    // unknown tokens: success, no change (RFC 7009)
    let (s, _) = std_post(&w, "/oauth2/revoke", &[("token", "rk_rt_unknown")]).await;
    assert_eq!(s, 200);
    // admin revocation of one authorization
    let (at3, _) = tokens(&w, "read").await;
    let id = authorizations(&w)[0]["id"].as_str().unwrap().to_string();
    let r = w.env.json(&[
        "app",
        "revoke-authorization",
        "--org",
        "acme",
        "--name",
        "portal",
        "--id",
        &id,
    ]);
    assert_eq!(r["status"], "Revoked");
    assert_eq!(r["reason"], "revoked by an admin");
    assert_eq!(me(&w, &at3).await.0, 401);
    // introspection needs client authentication and sees only its org
    let r = client()
        .post(w.srv.at("/oauth2/introspect"))
        .form(&[("token", at3.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (s, v) = std_post(&w, "/oauth2/introspect", &[("token", &at3)]).await;
    assert_eq!((s, v["active"].clone()), (200, json!(false)));
});

dual!(admin_api_for_applications, |env| {
    let admin = env.org_with_admin("acme");
    let beta_admin = env.org_with_admin("beta");
    let srv = env.serve();
    let (c, csrf) = admin_login(&srv, &admin).await;
    let r = c.post(srv.at("/api/v1/orgs/acme/apps")).header("X-CSRF-Token", &csrf)
        .json(&json!({"name": "crm", "scope": "read", "callbacks": ["https://crm.example/cb"], "refresh_grace": "10s"}))
        .send().await.unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert!(v["client_secret"].as_str().unwrap().starts_with("rk_cs_"));
    assert_eq!(v["app"]["refresh_grace"], 10);
    // validation: http callback on a public host, duplicate name, missing CSRF
    let r = c
        .post(srv.at("/api/v1/orgs/acme/apps"))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({"name": "x", "scope": "read", "callbacks": ["http://crm.example/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .post(srv.at("/api/v1/orgs/acme/apps"))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({"name": "crm", "scope": "read", "callbacks": ["https://crm.example/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = c
        .post(srv.at("/api/v1/orgs/acme/apps"))
        .json(&json!({"name": "y", "scope": "read", "callbacks": ["https://crm.example/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let list: Value = get_json(&c, srv.at("/api/v1/orgs/acme/apps")).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let r = c
        .patch(srv.at("/api/v1/orgs/acme/apps/crm"))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({"scope": "read_write"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["scope"], "read_write");
    let r = c
        .post(srv.at("/api/v1/orgs/acme/apps/crm/deactivate"))
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "deactivated");
    let r = c
        .post(srv.at("/api/v1/orgs/acme/apps/crm/regenerate-secret"))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({"overlap": "5m"}))
        .send()
        .await
        .unwrap();
    assert!(r.json::<Value>().await.unwrap()["client_secret"]
        .as_str()
        .unwrap()
        .starts_with("rk_cs_"));
    let r = c
        .get(srv.at("/api/v1/orgs/acme/apps/crm/authorizations"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
    // another org's admin sees nothing of acme
    let (b, bcsrf) = admin_login(&srv, &beta_admin).await;
    assert_eq!(
        b.get(srv.at("/api/v1/orgs/acme/apps"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        b.delete(srv.at("/api/v1/orgs/acme/apps/crm"))
            .header("X-CSRF-Token", &bcsrf)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let r = c
        .delete(srv.at("/api/v1/orgs/acme/apps/crm"))
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        c.get(srv.at("/api/v1/orgs/acme/apps/crm"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
});
