//! Snowflake key-pair rotation. There is no Snowflake here, so the driver's
//! live path (the same code) talks to a stand-in for Snowflake's SQL API
//! that holds to its documented formats: a key-pair JWT whose issuer is
//! `ACCOUNT.USER.SHA256:<fingerprint>` and whose RS256 signature verifies
//! with the public key in one of the user's two slots; `DESC USER` rows of
//! property/value/default/description with `RSA_PUBLIC_KEY_FP` and
//! `RSA_PUBLIC_KEY_2_FP`; `ALTER USER … SET/UNSET RSA_PUBLIC_KEY[_2]`.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use rsa::pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::signature::Verifier;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::dual;
use crate::harness::*;

/// The user's two public-key slots (base64 DER bodies) and every
/// statement run, in order.
#[derive(Default)]
struct Account {
    slots: [Option<String>; 2],
    statements: Vec<String>,
}

type Shared = Arc<Mutex<Account>>;

fn fingerprint(body: &str) -> String {
    format!(
        "SHA256:{}",
        B64.encode(Sha256::digest(B64.decode(body).unwrap()))
    )
}

/// Is the request's key-pair JWT valid for user SVC of account XY12345?
fn authorized(a: &Account, headers: &HeaderMap) -> bool {
    if headers
        .get("x-snowflake-authorization-token-type")
        .and_then(|v| v.to_str().ok())
        != Some("KEYPAIR_JWT")
    {
        return false;
    }
    let Some(jwt) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    let Ok(claims) = B64URL.decode(parts[1]) else {
        return false;
    };
    let claims: Value = serde_json::from_slice(&claims).unwrap();
    if claims["sub"] != "XY12345.SVC" {
        return false;
    }
    let iss = claims["iss"].as_str().unwrap_or_default();
    a.slots.iter().flatten().any(|body| {
        if iss != format!("XY12345.SVC.{}", fingerprint(body)) {
            return false;
        }
        let key = rsa::RsaPublicKey::from_public_key_der(&B64.decode(body).unwrap()).unwrap();
        let sig = rsa::pkcs1v15::Signature::try_from(B64URL.decode(parts[2]).unwrap().as_slice())
            .unwrap();
        rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .is_ok()
    })
}

async fn statements(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut a = s.lock().unwrap();
    if !authorized(&a, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "JWT token is invalid."})),
        );
    }
    let sql = body["statement"].as_str().unwrap_or_default().to_string();
    a.statements.push(sql.clone());
    let slot = |name: &str| if name == "RSA_PUBLIC_KEY" { 0 } else { 1 };
    if sql == "DESC USER SVC" {
        let fp = |i: usize| {
            a.slots[i]
                .as_deref()
                .map(fingerprint)
                .unwrap_or("null".into())
        };
        return (
            StatusCode::OK,
            Json(json!({
                "resultSetMetaData": {"rowType": [
                    {"name": "property"}, {"name": "value"}, {"name": "default"}, {"name": "description"}
                ]},
                "data": [
                    ["NAME", "SVC", "null", "Name"],
                    ["RSA_PUBLIC_KEY_FP", fp(0), "null", "Fingerprint of user's RSA public key."],
                    ["RSA_PUBLIC_KEY_2_FP", fp(1), "null", "Fingerprint of user's second RSA public key."]
                ]
            })),
        );
    }
    if let Some(rest) = sql.strip_prefix("ALTER USER SVC SET ") {
        let (name, value) = rest.split_once(" = ").unwrap();
        a.slots[slot(name)] = Some(value.trim_matches('\'').to_string());
    } else if let Some(name) = sql.strip_prefix("ALTER USER SVC UNSET ") {
        a.slots[slot(name)] = None;
    } else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": format!("unexpected statement {sql}")})),
        );
    }
    (
        StatusCode::OK,
        Json(json!({"data": [["Statement executed successfully."]]})),
    )
}

async fn databases(State(s): State<Shared>, headers: HeaderMap) -> StatusCode {
    if authorized(&s.lock().unwrap(), &headers) {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

async fn stand_in(first_key: &rsa::RsaPrivateKey) -> (Shared, String) {
    let body = B64.encode(
        first_key
            .to_public_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes(),
    );
    let shared: Shared = Arc::new(Mutex::new(Account {
        slots: [Some(body), None],
        statements: vec![],
    }));
    let app = Router::new()
        .route("/api/v2/statements", post(statements))
        .route("/api/v2/databases", get(databases))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (shared, url)
}

dual!(snowflake_key_pair_rotates_into_the_free_slot, |env| {
    let first = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let (account, url) = stand_in(&first).await;
    env.ok(&["org", "create", "acme"]);
    let probe = format!("probe_url={url}/api/v2/databases?showLimit=1");
    let api = format!("api_url={url}");
    env.json(&[
        "connection",
        "create",
        "--org",
        "acme",
        "--kind",
        "snowflake",
        "--auth",
        "rsa_key_pair",
        "--name",
        "wh",
        "--setting",
        "account=xy12345",
        "--setting",
        "username=SVC",
        "--setting",
        "role=LOADER",
        "--setting",
        "warehouse=WH",
        "--endpoint",
        &probe,
        "--endpoint",
        &api,
    ]);
    let pem = first.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let set = set_credential(&env, "wh", &["private_key"], &[&pem]);
    assert_eq!(set["last_test"]["outcome"], "ok", "{set}");

    let v = env.json(&[
        "rotate",
        "--org",
        "acme",
        "--connection",
        "wh",
        "--cutover-window",
        "0s",
        "--wait",
    ]);
    assert_eq!(v["status"], "completed", "{v}");
    let a = account.lock().unwrap();
    // the free slot was written, the verified key stayed, then the old slot was unset
    assert_eq!(a.statements[0], "DESC USER SVC");
    assert!(
        a.statements
            .iter()
            .any(|s| s.starts_with("ALTER USER SVC SET RSA_PUBLIC_KEY_2 = 'MII")),
        "{:?}",
        a.statements
    );
    assert!(
        !a.statements
            .iter()
            .any(|s| s.starts_with("ALTER USER SVC SET RSA_PUBLIC_KEY =")),
        "the slot in use is never written"
    );
    assert_eq!(
        a.statements.last().unwrap(),
        "ALTER USER SVC UNSET RSA_PUBLIC_KEY"
    );
    assert!(a.slots[0].is_none() && a.slots[1].is_some());
    drop(a);
    // the stored key is the one in slot 2: the probe signs with it and passes
    let t = env.json(&["connection", "test", "--org", "acme", "--name", "wh"]);
    assert_eq!(t["last_test"]["outcome"], "ok", "{t}");
    assert!(!v.to_string().contains("PRIVATE KEY"));

    // rotating again uses the slot the first rotation freed
    let v = env.json(&[
        "rotate",
        "--org",
        "acme",
        "--connection",
        "wh",
        "--cutover-window",
        "0s",
        "--wait",
    ]);
    assert_eq!(v["status"], "completed", "{v}");
    let a = account.lock().unwrap();
    assert!(a
        .statements
        .iter()
        .any(|s| s.starts_with("ALTER USER SVC SET RSA_PUBLIC_KEY = 'MII")));
    assert_eq!(
        a.statements.last().unwrap(),
        "ALTER USER SVC UNSET RSA_PUBLIC_KEY_2"
    );
});

dual!(snowflake_user_with_both_slots_set_is_refused, |env| {
    let first = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let (account, url) = stand_in(&first).await;
    let other = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    account.lock().unwrap().slots[1] = Some(
        B64.encode(
            other
                .to_public_key()
                .to_public_key_der()
                .unwrap()
                .as_bytes(),
        ),
    );
    env.ok(&["org", "create", "acme"]);
    env.json(&[
        "connection",
        "create",
        "--org",
        "acme",
        "--kind",
        "snowflake",
        "--auth",
        "rsa_key_pair",
        "--name",
        "wh",
        "--setting",
        "account=xy12345",
        "--setting",
        "username=SVC",
        "--setting",
        "role=LOADER",
        "--setting",
        "warehouse=WH",
        "--endpoint",
        &format!("probe_url={url}/api/v2/databases"),
        "--endpoint",
        &format!("api_url={url}"),
    ]);
    let pem = first.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    set_credential(&env, "wh", &["private_key"], &[&pem]);
    let out = env.run(&[
        "rotate",
        "--org",
        "acme",
        "--connection",
        "wh",
        "--wait",
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "failed", "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("both key slots") && reason.contains("UNSET RSA_PUBLIC_KEY_2"),
        "{reason}"
    );
    let a = account.lock().unwrap();
    assert!(
        a.statements.iter().all(|s| s.starts_with("DESC USER")),
        "nothing changed: {:?}",
        a.statements
    );
});
