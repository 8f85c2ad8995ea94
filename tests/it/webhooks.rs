//! Signed webhooks end to end: a real receiver on 127.0.0.1 checks every
//! signature as a customer's would; the events come from real changes
//! (a grant the provider revokes, a re-authorization), retries are driven
//! by the world's clock, and bad input changes nothing.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use crate::connections::{authorize, pair, revoke_at_provider};
use crate::dual;
use crate::harness::*;

/// One request the receiver got, its signature checked.
#[derive(Clone, Debug)]
pub struct Got {
    pub body: Value,
    pub event: String,
    pub delivery: String,
    /// What `signature::verify` said, with the receiver's clock.
    pub verified: Result<(), String>,
}

#[derive(Clone, Default)]
pub struct Receiver {
    pub got: Arc<Mutex<Vec<Got>>>,
    /// Statuses to answer, in order; 200 once they run out.
    pub answers: Arc<Mutex<VecDeque<u16>>>,
    /// The signing secret, known once the webhook is created.
    pub secret: Arc<Mutex<String>>,
    /// The world's clock offset file: the receiver checks the signed time
    /// against the same clock rekey signs with.
    pub clock: Arc<Mutex<Option<PathBuf>>>,
}

impl Receiver {
    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let offset: i64 = r
        .clock
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    // The receiver's own clock, moved as the world's is.
    let now_ms = rekey::clock::wall_ms() + offset;
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let secret = r.secret.lock().unwrap().clone();
    let verified =
        rekey::crypto::signature::verify(&secret, &h("x-rekey-signature"), &body, now_ms / 1000)
            .map_err(|e| e.to_string());
    assert_eq!(h("content-type"), "application/json");
    r.got.lock().unwrap().push(Got {
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        event: h("x-rekey-event"),
        delivery: h("x-rekey-delivery"),
        verified,
    });
    match r.answers.lock().unwrap().pop_front() {
        Some(s) if s != 200 => (
            StatusCode::from_u16(s).unwrap(),
            format!("receiver says no ({s})"),
        ),
        _ => (StatusCode::OK, "ok".into()),
    }
}

/// A receiver on 127.0.0.1:0; returns it and its URL.
pub async fn receiver(env: &Env) -> (Receiver, String) {
    let r = Receiver::default();
    *r.clock.lock().unwrap() = Some(env.clock_file());
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

/// Creates a webhook of org `acme` for `events`; the receiver learns its secret.
pub fn create(env: &Env, r: &Receiver, url: &str, events: &[&str]) -> Value {
    let mut args = vec!["webhook", "create", "--org", "acme", "--url", url];
    for e in events {
        args.extend(["--event", e]);
    }
    let w = env.json(&args);
    let secret = w["signing_secret"].as_str().unwrap();
    assert!(secret.starts_with("rk_whsec_"), "{w}");
    *r.secret.lock().unwrap() = secret.to_string();
    w
}

fn deliveries(env: &Env) -> Vec<Value> {
    env.json(&["webhook", "deliveries", "--org", "acme"])["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits up to 30 s for the receiver to hold `n` requests.
async fn wait_for(r: &Receiver, n: usize) -> Vec<Got> {
    let r2 = r.clone();
    wait_until(move || r2.got().len() >= n, Duration::from_secs(30)).await;
    r.got()
}

dual!(
    needs_reauth_and_recovered_arrive_once_each_and_signed,
    |env| {
        let (r, url) = receiver(&env).await;
        let p = pair(&env, "1h", &[("REKEY_JOBS_INTERVAL", "1s")]).await;
        let c = authorize(&env, &p, "authorize").await;
        assert_eq!(c["status"], "connected");
        create(
            &env,
            &r,
            &url,
            &["connection.needs_reauth", "connection.recovered"],
        );
        // the provider kills the grant; every refresh from then on fails
        revoke_at_provider(&p);
        let refresh = [
            "connection",
            "refresh",
            "--org",
            "acme",
            "--name",
            "upstream",
        ];
        assert_eq!(env.json(&refresh)["status"], "needs_reauth");
        // the same status again and again: no new event
        for _ in 0..3 {
            env.run(&refresh);
            env.run(&["connection", "test", "--org", "acme", "--name", "upstream"]);
        }
        let c = authorize(&env, &p, "reauthenticate").await;
        assert_eq!(c["status"], "connected");
        // and connected again is no change either
        env.json(&refresh);
        let got = wait_for(&r, 2).await;
        // time for any extra one to show up
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut got = if r.got().len() > got.len() {
            r.got()
        } else {
            got
        };
        // Sends run concurrently (up to 4 per receiver host), so arrival
        // order is not the order of the changes: a receiver orders by the
        // signed `created_at`, as this one does.
        got.sort_by(|a, b| {
            a.body["created_at"]
                .as_str()
                .cmp(&b.body["created_at"].as_str())
        });
        let events: Vec<&str> = got.iter().map(|g| g.event.as_str()).collect();
        assert_eq!(
            events,
            ["connection.needs_reauth", "connection.recovered"],
            "{got:?}"
        );
        for g in &got {
            assert_eq!(g.verified, Ok(()), "{g:?}");
            assert_eq!(g.body["type"], g.event.as_str());
            assert_eq!(g.body["id"], g.delivery.as_str());
            assert_eq!(g.body["org"], "acme");
            assert_eq!(g.body["data"]["connection"]["name"], "upstream");
        }
        assert_eq!(got[0].body["data"]["to"], "needs_reauth");
        assert_eq!(got[1].body["data"]["from"], "needs_reauth");
        let ds = deliveries(&env);
        assert_eq!(ds.len(), 2, "{ds:?}");
        assert!(ds
            .iter()
            .all(|d| d["state"] == "delivered" && d["attempts"] == 1 && d["last_status"] == 200));
        drop(p);
    }
);

dual!(
    a_failing_receiver_gets_the_event_on_retry_and_replay,
    |env| {
        let (r, url) = receiver(&env).await;
        env.org_with_admin("acme");
        let w = create(&env, &r, &url, &["rotation.failed"]);
        let id = w["id"].as_str().unwrap();
        r.answers.lock().unwrap().push_back(500);
        // the ping is sent at once and refused
        let out = env.run(&["webhook", "test", "--org", "acme", "--id", id, "--json"]);
        assert_eq!(out.status.code(), Some(1));
        let d: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(d["state"], "retrying", "{d}");
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["last_status"], 500);
        assert!(
            d["last_error"]
                .as_str()
                .unwrap()
                .contains("receiver says no"),
            "{d}"
        );
        assert!(d["next_attempt_at"].is_string());
        // the server's jobs retry it once its backoff (30 s ± 20%) has passed
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(r.got().len(), 1, "retried before its time");
        env.advance(Duration::from_secs(60));
        let got = wait_for(&r, 2).await;
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].delivery, got[1].delivery,
            "one delivery, two attempts"
        );
        assert_eq!(got[0].body, got[1].body, "the same body each time");
        assert!(got
            .iter()
            .all(|g| g.verified == Ok(()) && g.event == "ping"));
        let did = d["id"].as_str().unwrap();
        let d = poll(
            &env,
            &[
                "webhook",
                "deliveries",
                "--org",
                "acme",
                "--state",
                "delivered",
            ],
            |v| v["items"].as_array().unwrap().len() == 1,
        )
        .await;
        let d = &d["items"][0];
        assert_eq!(
            (d["id"].as_str(), d["attempts"].as_i64()),
            (Some(did), Some(2))
        );
        assert!(
            d["last_error"].is_null() && d["delivered_at"].is_string(),
            "{d}"
        );
        // replay: sent again as a new attempt
        let again = env.json(&["webhook", "replay", "--org", "acme", "--delivery", did]);
        assert_eq!(again["state"], "queued");
        let got = wait_for(&r, 3).await;
        assert_eq!(got.len(), 3);
        assert_eq!(got[2].delivery, did);
        // the admin API: its twin routes, another org's objects not found
        let (c, csrf) = admin_login(&srv, "admin@acme.test").await;
        let list = c
            .get(srv.at("/api/v1/orgs/acme/webhooks/deliveries"))
            .send()
            .await
            .unwrap();
        assert_eq!(list.status(), 200);
        let list: Value = list.json().await.unwrap();
        assert_eq!(list["items"][0]["id"], did);
        let made = c
            .post(srv.at("/api/v1/orgs/acme/webhooks"))
            .header("x-csrf-token", &csrf)
            .json(&json!({"url": url, "events": ["connection.recovered"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), 201);
        let made: Value = made.json().await.unwrap();
        assert!(made["signing_secret"]
            .as_str()
            .unwrap()
            .starts_with("rk_whsec_"));
        env.org_with_admin("other");
        let (oc, ocsrf) = admin_login(&srv, "admin@other.test").await;
        let r404 = oc
            .delete(srv.at(&format!(
                "/api/v1/orgs/other/webhooks/{}",
                made["id"].as_str().unwrap()
            )))
            .header("x-csrf-token", &ocsrf)
            .send()
            .await
            .unwrap();
        assert_eq!(r404.status(), 404);
        let r404 = oc
            .post(srv.at(&format!(
                "/api/v1/orgs/other/webhook-deliveries/{did}/replay"
            )))
            .header("x-csrf-token", &ocsrf)
            .send()
            .await
            .unwrap();
        assert_eq!(r404.status(), 404);
        let gone = c
            .delete(srv.at(&format!(
                "/api/v1/orgs/acme/webhooks/{}",
                made["id"].as_str().unwrap()
            )))
            .header("x-csrf-token", &csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(gone.status(), 204);
        let listed = env.json(&["webhook", "list", "--org", "acme"]);
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert!(
            !listed.to_string().contains("rk_whsec_"),
            "no secret in a list"
        );
    }
);

dual!(bad_webhook_input_changes_nothing, |env| {
    env.org_with_admin("acme");
    let audit_before = env.json(&["audit", "list", "--limit", "10000"]);
    for (args, says) in [
        (
            vec!["--url", "ftp://example.com/x", "--event", "rotation.failed"],
            "not an http(s) URL",
        ),
        (
            vec!["--url", "not a url", "--event", "rotation.failed"],
            "not an http(s) URL",
        ),
        (
            vec![
                "--url",
                "https://example.com/x",
                "--event",
                "rotation.exploded",
            ],
            "connection.needs_reauth, connection.recovered",
        ),
        (vec!["--url", "https://example.com/x"], "at least one event"),
    ] {
        let mut a = vec!["webhook", "create", "--org", "acme"];
        a.extend(args);
        let out = env.run(&a);
        assert_eq!(out.status.code(), Some(1), "{a:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{a:?}: {err}");
    }
    assert_eq!(
        env.json(&["webhook", "list", "--org", "acme"]),
        json!([]),
        "nothing written"
    );
    assert_eq!(
        env.json(&["audit", "list", "--limit", "10000"]),
        audit_before
    );
    let srv = env.serve();
    let (c, csrf) = admin_login(&srv, "admin@acme.test").await;
    let r = c
        .post(srv.at("/api/v1/orgs/acme/webhooks"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"url": "gopher://x", "events": ["rotation.failed"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("http(s)"),
        "{body}"
    );
    let r = c
        .post(srv.at("/api/v1/orgs/acme/webhooks"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"url": "https://example.com", "events": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(env.json(&["webhook", "list", "--org", "acme"]), json!([]));
});

dual!(credential_expiring_is_raised_once_per_expiry, |env| {
    let (r, url) = receiver(&env).await;
    env.org_with_admin("acme");
    connection(&env, "redis", "cache", &["host=127.0.0.1", "port=1"]);
    store_unprobed(&env, "cache", "password", "a-password-0715");
    env.json(&[
        "connection",
        "update",
        "--org",
        "acme",
        "--name",
        "cache",
        "--rotation-interval",
        "8d",
    ]);
    create(&env, &r, &url, &["credential.expiring"]);
    let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
    // due in 8 days: not yet
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(r.got().is_empty(), "{:?}", r.got());
    // due in 6 days: once, however many passes find it
    env.advance(Duration::from_secs(2 * 86_400));
    let got = wait_for(&r, 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.advance(Duration::from_secs(3_600));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(r.got().len(), 1, "{:?}", r.got());
    assert_eq!(got[0].event, "credential.expiring");
    assert_eq!(got[0].verified, Ok(()));
    assert_eq!(got[0].body["data"]["credential"]["name"], "cache");
    // its activity: the credential set, its failed probe, the status
    let log = env.json(&["connection", "activity", "--org", "acme", "--name", "cache"]);
    let kinds: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for want in ["credential", "probe", "error", "settings"] {
        assert!(kinds.contains(&want), "{want}: {log}");
    }
    // Its mark lives while the date lies ahead; once the date has passed
    // no scan can find it again, and the janitor (its first pass runs at
    // start) deletes it.
    let marks = "SELECT COUNT(*) FROM event_marks WHERE key LIKE 'credential.expiring:%'";
    assert_eq!(query_i64(&env, marks).await, Some(1));
    drop(srv);
    env.advance(Duration::from_secs(7 * 86_400));
    let _srv = env.serve();
    let mut left = query_i64(&env, marks).await;
    for _ in 0..100 {
        if left == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = query_i64(&env, marks).await;
    }
    assert_eq!(left, Some(0), "the passed date's mark is kept");
});

/// What the receiver holds once `n` arrived and a few more scheduler
/// passes (1 s each) had the chance to send another.
async fn settled(r: &Receiver, n: usize) -> Vec<Got> {
    wait_for(r, n).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    r.got()
}

/// Every request signed, its body naming its event, delivery and org.
fn all_signed(got: &[Got]) {
    for g in got {
        assert_eq!(g.verified, Ok(()), "{g:?}");
        assert_eq!(g.body["type"], g.event.as_str(), "{g:?}");
        assert_eq!(g.body["id"], g.delivery.as_str(), "{g:?}");
        assert_eq!(g.body["org"], "acme", "{g:?}");
    }
}

fn events(got: &[Got]) -> Vec<&str> {
    got.iter().map(|g| g.event.as_str()).collect()
}

/// A manual (runbook) connection `name` of org `acme` holding an API key.
async fn manual_connection(env: &Env, name: &str) -> crate::attacker::Listener {
    let api = crate::attacker::Listener::start(200, &[], "{}").await;
    env.json(&[
        "connection",
        "create",
        "--org",
        "acme",
        "--kind",
        "custom_rest",
        "--name",
        name,
        "--setting",
        &format!("base_url={}", api.url),
    ]);
    set_credential(env, name, &["api_key"], &["an-api-key-000000000801"]);
    api
}

dual!(
    rotation_failed_arrives_once_with_its_reason_and_replays,
    |env| {
        let old = "the-old-password-0801";
        // a Redis user that may not change its password: the check fails
        let Some(_user) = crate::rotation::redis_world(&env, old, false).await else {
            return;
        };
        let (r, url) = receiver(&env).await;
        create(&env, &r, &url, &["rotation.failed", "rotation.stalled"]);
        let _srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        let out = env.run(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "cache",
            "--wait",
            "--cutover-window",
            "0s",
            "--json",
        ]);
        assert_eq!(out.status.code(), Some(1));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["status"], "failed", "{v}");
        let got = settled(&r, 1).await;
        // later passes find the failed rotation again: no new event
        env.advance(Duration::from_secs(3_600));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(r.got().len(), 1, "{:?}", r.got());
        assert_eq!(events(&got), ["rotation.failed"], "{got:?}");
        all_signed(&got);
        let data = &got[0].body["data"];
        assert_eq!(data["rotation"]["id"], v["id"], "{data}");
        assert_eq!(data["rotation"]["status"], "failed", "{data}");
        assert_eq!(data["rotation"]["reason"], v["reason"], "{data}");
        assert!(
            data["rotation"]["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("check:") && r.contains("acl|setuser")),
            "{data}"
        );
        assert_eq!(data["target"]["type"], "connection", "{data}");
        assert_eq!(data["target"]["name"], "cache", "{data}");
        // listed, and replayed as the same signed body
        let ds = deliveries(&env);
        assert_eq!(ds.len(), 1, "{ds:?}");
        assert_eq!(ds[0]["event"], "rotation.failed");
        assert_eq!(ds[0]["state"], "delivered");
        assert_eq!(ds[0]["id"], got[0].delivery.as_str());
        let did = ds[0]["id"].as_str().unwrap();
        let again = env.json(&["webhook", "replay", "--org", "acme", "--delivery", did]);
        assert_eq!(again["state"], "queued", "{again}");
        let got = wait_for(&r, 2).await;
        assert_eq!(got[1].delivery, did);
        assert_eq!(got[1].body, got[0].body, "a replay sends the same body");
        all_signed(&got);
        let ds = poll(
            &env,
            &[
                "webhook",
                "deliveries",
                "--org",
                "acme",
                "--state",
                "delivered",
            ],
            |v| v["items"][0]["attempts"] == 2,
        )
        .await;
        assert_eq!(ds["items"].as_array().unwrap().len(), 1, "{ds}");
    }
);

dual!(
    rotation_stalled_arrives_once_however_many_passes_see_it,
    |env| {
        env.org_with_admin("acme");
        let _api = manual_connection(&env, "crm").await;
        let (r, url) = receiver(&env).await;
        create(&env, &r, &url, &["rotation.stalled", "rotation.failed"]);
        let _srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        let v = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "crm",
            "--deadline",
            "2h",
        ]);
        assert_eq!(v["status"], "waiting_person", "{v}");
        let id = v["id"].as_str().unwrap().to_string();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(r.got().is_empty(), "waiting is no stall: {:?}", r.got());
        // nobody did it by the deadline
        env.advance(Duration::from_secs(3 * 3_600));
        wait_for_status(&env, &id, "stalled").await;
        let got = settled(&r, 1).await;
        for _ in 0..3 {
            env.advance(Duration::from_secs(3_600));
            tokio::time::sleep(Duration::from_millis(1_500)).await;
        }
        assert_eq!(r.got().len(), 1, "one per stall: {:?}", r.got());
        assert_eq!(events(&got), ["rotation.stalled"], "{got:?}");
        all_signed(&got);
        let data = &got[0].body["data"];
        assert_eq!(data["rotation"]["id"], id.as_str(), "{data}");
        assert_eq!(data["rotation"]["status"], "stalled", "{data}");
        assert!(
            data["rotation"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("deadline passed")),
            "{data}"
        );
        assert_eq!(data["target"]["name"], "crm", "{data}");
        let ds = deliveries(&env);
        assert_eq!(
            (ds.len(), ds[0]["event"].as_str()),
            (1, Some("rotation.stalled"))
        );
    }
);

dual!(
    rotation_due_arrives_once_per_due_period_not_per_pass,
    |env| {
        env.org_with_admin("acme");
        let _api = manual_connection(&env, "crm").await;
        env.json(&[
            "connection",
            "update",
            "--org",
            "acme",
            "--name",
            "crm",
            "--rotation-interval",
            "90d",
        ]);
        let (r, url) = receiver(&env).await;
        create(&env, &r, &url, &["rotation.due"]);
        let _srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(r.got().is_empty(), "not due yet: {:?}", r.got());
        env.advance(Duration::from_secs(91 * 86_400));
        let got = settled(&r, 1).await;
        for _ in 0..3 {
            env.advance(Duration::from_secs(3_600));
            tokio::time::sleep(Duration::from_millis(1_500)).await;
        }
        assert_eq!(r.got().len(), 1, "one per due period: {:?}", r.got());
        assert_eq!(events(&got), ["rotation.due"], "{got:?}");
        all_signed(&got);
        let data = &got[0].body["data"];
        assert_eq!(data["connection"]["name"], "crm", "{data}");
        assert!(data["due_at"].is_string(), "{data}");
        assert!(
            data["waiting"]
                .as_str()
                .is_some_and(|w| w.contains("rekey rotate --org acme --connection crm")),
            "what a person must do: {data}"
        );
        // a person replaces it; the next period falls due: one more
        set_credential(&env, "crm", &["api_key"], &["an-api-key-000000000802"]);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(r.got().len(), 1, "{:?}", r.got());
        env.advance(Duration::from_secs(91 * 86_400));
        let got = settled(&r, 2).await;
        assert_eq!(events(&got), ["rotation.due", "rotation.due"], "{got:?}");
        all_signed(&got);
        assert_ne!(got[0].body["data"]["due_at"], got[1].body["data"]["due_at"]);
        assert_eq!(deliveries(&env).len(), 2);
    }
);

dual!(
    incident_item_waiting_arrives_once_naming_the_item_and_who,
    |env| {
        env.org_with_admin("acme");
        let _api = manual_connection(&env, "crm").await;
        let (r, url) = receiver(&env).await;
        create(&env, &r, &url, &["incident.item_waiting"]);
        let _srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        let v = env.json(&[
            "incident",
            "start",
            "--reason",
            "provider breach",
            "--scope",
            "org:acme",
            "--wait",
        ]);
        let id = v["id"].as_str().unwrap().to_string();
        let got = settled(&r, 1).await;
        // the campaign's passes look at the waiting item again and again
        for _ in 0..3 {
            env.advance(Duration::from_secs(600));
            tokio::time::sleep(Duration::from_millis(1_500)).await;
        }
        assert_eq!(r.got().len(), 1, "one per wait: {:?}", r.got());
        assert_eq!(events(&got), ["incident.item_waiting"], "{got:?}");
        all_signed(&got);
        let data = &got[0].body["data"];
        assert_eq!(data["incident"], id.as_str(), "{data}");
        assert_eq!(data["target"]["name"], "crm", "{data}");
        assert_eq!(data["who"], "org_admins", "{data}");
        assert!(data["n"].is_i64(), "{data}");
        assert!(
            data["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{data}"
        );
        let ds = deliveries(&env);
        assert_eq!(
            (ds.len(), ds[0]["event"].as_str()),
            (1, Some("incident.item_waiting"))
        );
    }
);

dual!(
    own_secrets_nearing_expiry_or_due_raise_their_events_once,
    |env| {
        env.org_with_admin("acme");
        let (r, url) = receiver(&env).await;
        // an access key that stops working in 10 days, a machine client
        // whose secret is due every 8 days, and one with no schedule
        env.json(&[
            "key",
            "create",
            "--org",
            "acme",
            "--name",
            "ci",
            "--scope",
            "read",
            "--expires",
            "10d",
        ]);
        for name in ["sync", "spare"] {
            env.json(&[
                "m2m", "create", "--org", "acme", "--name", name, "--scope", "read",
            ]);
        }
        env.json(&[
            "m2m",
            "update",
            "--org",
            "acme",
            "--name",
            "sync",
            "--rotation-interval",
            "8d",
        ]);
        create(&env, &r, &url, &["credential.expiring", "rotation.due"]);
        let _srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(r.got().is_empty(), "nothing near yet: {:?}", r.got());
        // day 2: the machine secret is due in 6 days
        env.advance(Duration::from_secs(2 * 86_400));
        let got = settled(&r, 1).await;
        assert_eq!(events(&got), ["credential.expiring"], "{got:?}");
        let c = &got[0].body["data"]["credential"];
        assert_eq!(
            (c["type"].as_str(), c["name"].as_str()),
            (Some("m2m_secret"), Some("sync")),
            "{c}"
        );
        assert!(got[0].body["data"]["due_at"].is_string(), "{:?}", got[0]);
        // day 4: the key stops working in 6 days; the machine secret is
        // still expiring, not again
        env.advance(Duration::from_secs(2 * 86_400));
        let got = settled(&r, 2).await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1].event, "credential.expiring");
        let c = &got[1].body["data"]["credential"];
        assert_eq!(
            (c["type"].as_str(), c["name"].as_str()),
            (Some("access_key"), Some("ci")),
            "{c}"
        );
        assert!(
            got[1].body["data"]["expires_at"].is_string(),
            "{:?}",
            got[1]
        );
        // day 9: the machine secret is due; a person rotates it
        env.advance(Duration::from_secs(5 * 86_400));
        let got = settled(&r, 3).await;
        for _ in 0..3 {
            env.advance(Duration::from_secs(3_600));
            tokio::time::sleep(Duration::from_millis(1_500)).await;
        }
        assert_eq!(r.got().len(), 3, "once each: {:?}", r.got());
        assert_eq!(got[2].event, "rotation.due", "{got:?}");
        let d = &got[2].body["data"];
        assert_eq!(d["credential"]["name"], "sync", "{d}");
        assert!(
            d["waiting"]
                .as_str()
                .is_some_and(|w| w.contains("rekey m2m regenerate-secret --org acme --name sync")),
            "{d}"
        );
        all_signed(&got);
        assert!(
            !r.got().iter().any(|g| g.body.to_string().contains("spare")),
            "no schedule, no event"
        );
        // regenerated: a new due period, and its own warning 6 days ahead
        env.json(&[
            "m2m",
            "regenerate-secret",
            "--org",
            "acme",
            "--name",
            "sync",
        ]);
        env.advance(Duration::from_secs(2 * 86_400));
        let got = settled(&r, 4).await;
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[3].event, "credential.expiring");
        assert_eq!(got[3].body["data"]["credential"]["name"], "sync");
        assert_eq!(deliveries(&env).len(), 4);
    }
);

// A webhook whose signing secret does not open (its key gone from the
// keyring) used to fail the send before any attempt was counted: the job
// stayed running, claimed again at every lease's end, forever, holding a
// place on the receiver's host, and the delivery still said `queued`. Now
// the attempt fails visibly, is retried with backoff, and nothing unsigned
// is sent.
dual!(
    a_secret_that_does_not_open_fails_the_attempt_visibly,
    |env| {
        let (r, url) = receiver(&env).await;
        env.org_with_admin("acme");
        let w = create(&env, &r, &url, &["rotation.failed"]);
        let id = w["id"].as_str().unwrap();
        // another webhook's sealed secret put in this one's place: sealed for
        // another row, it does not open here (as a secret whose key left the
        // keyring does not)
        let other = env.json(&[
            "webhook",
            "create",
            "--org",
            "acme",
            "--url",
            &url,
            "--event",
            "rotation.failed",
        ]);
        let other = other["id"].as_str().unwrap();
        exec_sql(
            &env,
            &format!(
                "UPDATE sealed SET ciphertext = (SELECT s.ciphertext FROM sealed s
                 WHERE s.owner_table = 'webhooks' AND s.owner_id = '{other}')
             WHERE owner_table = 'webhooks' AND owner_id = '{id}'"
            ),
        )
        .await;
        let out = env.run(&["webhook", "test", "--org", "acme", "--id", id, "--json"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let d: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(d["state"], "retrying", "{d}");
        assert_eq!(d["attempts"], 1, "{d}");
        assert!(
            d["last_error"]
                .as_str()
                .unwrap_or_default()
                .contains("signing secret cannot be opened"),
            "{d}"
        );
        assert!(d["next_attempt_at"].is_string(), "{d}");
        assert!(r.got().is_empty(), "nothing is sent unsigned");
        let running = query_i64(
            &env,
            "SELECT COUNT(*) FROM jobs WHERE kind = 'webhook' AND state = 'running'",
        )
        .await;
        assert_eq!(running, Some(0), "the job is given back, not left running");
    }
);
