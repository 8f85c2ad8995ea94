//! Helpers for driving the authorization server from the outside, as a
//! browser and a client application would.

use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;

use crate::harness::*;

pub const CALLBACK: &str = "http://127.0.0.1:9/callback";
pub const USER: &str = "user@acme.test";

pub struct World {
    pub env: Env,
    pub srv: Server,
    pub client_id: String,
    pub secret: String,
}

/// Org `acme` with an admin, a read_write user `USER`, and an application
/// `portal` (extra `app create` flags in `app_args`).
pub async fn world(env: Env, app_args: &[&str], server_env: &[(&str, &str)]) -> World {
    env.org_with_admin("acme");
    env.json_stdin(
        &[
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            USER,
            "--permission",
            "read_write",
            "--password-stdin",
        ],
        PASSWORD,
    );
    let mut args = vec![
        "app",
        "create",
        "--org",
        "acme",
        "--name",
        "portal",
        "--scope",
        "read_write",
        "--callback",
        CALLBACK,
    ];
    args.extend_from_slice(app_args);
    let app = env.json(&args);
    let srv = env.serve_with(server_env);
    World {
        client_id: app["client_id"].as_str().unwrap().to_string(),
        secret: app["client_secret"].as_str().unwrap().to_string(),
        env,
        srv,
    }
}

/// The `value` of the input named `name` in an HTML page.
pub fn field(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let v = tag.find("value=\"")? + 7;
    Some(tag[v..v + tag[v..].find('"')?].to_string())
}

/// Runs the browser side: open `url`, sign in as `email`, consent with
/// `decision`. Returns the redirect the server answered with.
pub async fn browse(
    url: &str,
    email: &str,
    password: &str,
    decision: &str,
) -> Result<url::Url, (u16, String)> {
    let c = client();
    let r = c.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    if status == 302 {
        return Ok(url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap());
    }
    let page = r.text().await.unwrap();
    if status != 200 {
        return Err((status, page));
    }
    assert!(page.contains("<form method=\"post\""), "{page}");
    let csrf = field(&page, "csrf").expect("csrf field");
    let r = c
        .post(url)
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let page = r.text().await.unwrap();
    if status != 200 {
        return Err((status, page));
    }
    assert!(page.contains("name=\"decision\" value=\"allow\""), "{page}");
    let csrf = field(&page, "csrf").expect("csrf field");
    let r = c
        .post(url)
        .form(&[("csrf", csrf.as_str()), ("decision", decision)])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if status != 302 {
        return Err((status, r.text().await.unwrap()));
    }
    Ok(url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap())
}

pub fn param(u: &url::Url, name: &str) -> Option<String> {
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.to_string())
}

/// A PKCE (verifier, S256 challenge) pair.
pub fn pkce() -> (String, String) {
    let verifier = format!("{}{}", ulid::Ulid::new(), ulid::Ulid::new()).to_lowercase();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub fn seed_authorize_url(w: &World, scope: &str, state: &str, challenge: Option<&str>) -> String {
    let mut u = url::Url::parse(&w.srv.at("/v1/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("clientId", &w.client_id)
        .append_pair("redirectUri", CALLBACK)
        .append_pair("scopes", scope)
        .append_pair("state", state);
    if let Some(ch) = challenge {
        u.query_pairs_mut()
            .append_pair("code_challenge", ch)
            .append_pair("code_challenge_method", "S256");
    }
    u.to_string()
}

/// POST to the seed token endpoint; (status, body).
pub async fn seed_token(w: &World, body: Value) -> (u16, Value) {
    let r = client()
        .post(w.srv.at("/v1/users/oauth/token"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

/// POST a form to a standard endpoint, client_secret_post; (status, body).
pub async fn std_post(w: &World, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let mut f: Vec<(&str, &str)> = vec![("client_id", &w.client_id), ("client_secret", &w.secret)];
    f.extend_from_slice(form);
    let r = client().post(w.srv.at(path)).form(&f).send().await.unwrap();
    let s = r.status().as_u16();
    let text = r.text().await.unwrap();
    (s, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `GET /v1/me` with a bearer token; (status, body).
pub async fn me(w: &World, token: &str) -> (u16, Value) {
    let r = client()
        .get(w.srv.at("/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Authorize as `USER` (with PKCE) and exchange the code: (access, refresh).
pub async fn tokens(w: &World, scope: &str) -> (String, String) {
    let (verifier, challenge) = pkce();
    let back = browse(
        &seed_authorize_url(w, scope, "s1", Some(&challenge)),
        USER,
        PASSWORD,
        "allow",
    )
    .await
    .unwrap();
    let code = param(&back, "code").expect("code");
    let (s, v) = seed_token(
        w,
        json!({"clientId": w.client_id, "clientSecret": w.secret, "grantType": "authorization_code",
               "redirectUri": CALLBACK, "code": code, "codeVerifier": verifier}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    (
        v["data"]["accessToken"].as_str().unwrap().to_string(),
        v["data"]["refreshToken"].as_str().unwrap().to_string(),
    )
}

pub async fn refresh(w: &World, rt: &str) -> (u16, Value) {
    seed_token(w, json!({"clientId": w.client_id, "clientSecret": w.secret, "grantType": "refresh_Token", "refreshToken": rt})).await
}

pub fn authorizations(w: &World) -> Value {
    w.env
        .json(&["app", "authorizations", "--org", "acme", "--name", "portal"])
}
