//! Foundation: CLI, operations endpoints, admin login, audit, concurrency.

use crate::dual;
use crate::harness::*;
use serde_json::{json, Value};

dual!(cli_orgs_and_users, |env| {
    let org = env.json(&["org", "create", "acme", "--name", "Acme Inc"]);
    assert_eq!(org["slug"], "acme");
    // duplicate slug: refused, exit 1, one line
    let dup = env.run(&["org", "create", "acme"]);
    assert_eq!(dup.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let u = env.json(&[
        "user",
        "create",
        "--org",
        "acme",
        "--email",
        "  Ann@Acme.IO ",
        "--permission",
        "read",
    ]);
    assert_eq!(u["email"], "ann@acme.io");
    assert_eq!(u["permission"], "read");
    assert!(
        u["password"].as_str().unwrap().len() >= 24,
        "generated password printed once"
    );
    // same email in another case: conflict
    let dup = env.run(&[
        "user",
        "create",
        "--org",
        "acme",
        "--email",
        "ANN@acme.io",
        "--permission",
        "read",
    ]);
    assert_eq!(dup.status.code(), Some(1));
    // bad input
    assert_eq!(
        env.run(&[
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            "nope",
            "--permission",
            "read"
        ])
        .status
        .code(),
        Some(1)
    );
    assert_eq!(
        env.run(&[
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            "x@y.io",
            "--permission",
            "admin"
        ])
        .status
        .code(),
        Some(2)
    );
    assert_eq!(
        env.run(&[
            "user",
            "create",
            "--org",
            "nope",
            "--email",
            "x@y.io",
            "--permission",
            "read"
        ])
        .status
        .code(),
        Some(1)
    );
    let u = env.json(&[
        "user",
        "set-permission",
        "--org",
        "acme",
        "--email",
        "ann@acme.io",
        "--permission",
        "read_write",
    ]);
    assert_eq!(u["permission"], "read_write");
    let u = env.json(&[
        "user",
        "deactivate",
        "--org",
        "acme",
        "--email",
        "ann@acme.io",
    ]);
    assert_eq!(u["active"], false);
    let list = env.json(&["user", "list", "--org", "acme"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("password").is_none() && list[0].get("password_hash").is_none());
    let orgs = env.json(&["org", "list"]);
    assert_eq!(orgs[0]["slug"], "acme");
    let events = env.json(&["audit", "list", "--org", "acme"]);
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "user.deactivate",
            "user.set_permission",
            "user.create",
            "org.create"
        ]
    );
    let v = env.json(&["audit", "verify"]);
    assert_eq!(v["broken_at"], Value::Null);
    assert_eq!(env.json(&["migrate"])["migrated"], true);
});

dual!(operations_endpoints, |env| {
    let srv = env.serve();
    let c = client();
    let r = c.get(srv.at("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let rid = r
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(!rid.is_empty());
    let r = c
        .get(srv.at("/readyz"))
        .header("X-Request-Id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "trace-123");
    let r = c.get(srv.at("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let m = c
        .get(srv.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(r#"rekey_http_requests_total{method="GET",route="/healthz",status="200"} 1"#),
        "{m}"
    );
    assert!(m.contains("rekey_http_request_duration_seconds_bucket"));
    // oversized body: refused with 413 from its Content-Length, before any
    // of it is read (a raw socket, so the test does not race the server
    // closing the connection while a client is still sending)
    let addr = srv.url.trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!(
        "POST /api/v1/session HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{{",
        1024 * 1024 + 1
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = sock.read(&mut buf).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
});

dual!(admin_login_sessions, |env| {
    let admin = env.org_with_admin("acme");
    env.json_stdin(
        &[
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            "plain@acme.test",
            "--permission",
            "read",
            "--password-stdin",
        ],
        PASSWORD,
    );
    env.json_stdin(
        &[
            "operator",
            "create",
            "--email",
            "op@platform.test",
            "--password-stdin",
        ],
        PASSWORD,
    );
    let srv = env.serve();
    let c = client();
    let r = c
        .post(srv.at("/api/v1/session"))
        .json(&json!({"email": admin, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain http: no Secure flag");
    let v: Value = r.json().await.unwrap();
    let csrf = v["csrf_token"].as_str().unwrap().to_string();
    assert_eq!(v["session"]["org"], "acme");
    let me: Value = get_json(&c, srv.at("/api/v1/session")).await;
    assert_eq!(me["session"]["email"], admin);
    // unsafe method without CSRF: refused
    assert_eq!(
        c.delete(srv.at("/api/v1/session"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        c.delete(srv.at("/api/v1/session"))
            .header("X-CSRF-Token", &csrf)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.get(srv.at("/api/v1/session"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // operator
    let r = client()
        .post(srv.at("/api/v1/session"))
        .json(&json!({"email": "op@platform.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["session"]["kind"],
        "operator"
    );

    // a non-admin user, a wrong password and an unknown email all answer alike
    let mut bodies = Vec::new();
    for (email, pw) in [
        ("plain@acme.test", PASSWORD),
        (admin.as_str(), "wrong-password-123"),
        ("ghost@acme.test", PASSWORD),
    ] {
        let r = client()
            .post(srv.at("/api/v1/session"))
            .json(&json!({"email": email, "password": pw}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        bodies.push(r.json::<Value>().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    // malformed JSON, wrong content type, unknown field
    let r = client()
        .post(srv.at("/api/v1/session"))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client()
        .post(srv.at("/api/v1/session"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = client()
        .post(srv.at("/api/v1/session"))
        .json(&json!({"email": admin, "password": PASSWORD, "x": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
});

dual!(login_is_rate_limited_per_account, |env| {
    let admin = env.org_with_admin("acme");
    let srv = env.serve();
    for _ in 0..5 {
        let r = client()
            .post(srv.at("/api/v1/session"))
            .json(&json!({"email": admin, "password": "wrong-password-123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // now even the right password is refused until the window ends
    let r = client()
        .post(srv.at("/api/v1/session"))
        .json(&json!({"email": admin, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // and an unknown account is throttled the same way
    for _ in 0..5 {
        client()
            .post(srv.at("/api/v1/session"))
            .json(&json!({"email": "ghost@acme.test", "password": "x"}))
            .send()
            .await
            .unwrap();
    }
    let r = client()
        .post(srv.at("/api/v1/session"))
        .json(&json!({"email": "ghost@acme.test", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
});

dual!(audit_verify_catches_an_edited_row, |env| {
    env.org_with_admin("acme");
    env.ok(&[
        "user",
        "create",
        "--org",
        "acme",
        "--email",
        "b@acme.test",
        "--permission",
        "read",
    ]);
    assert!(env.run(&["audit", "verify"]).status.success());
    tamper(
        &env,
        "UPDATE audit_events SET target = 'someone-else' WHERE seq = 2",
    )
    .await;
    let out = env.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("sequence 2"), "{text}");
});

/// Runs raw SQL against the test database, as an attacker with file access would.
pub async fn tamper(env: &Env, sql: &str) {
    crate::harness::exec_sql(env, sql).await;
}

// Audited writes at once (on PostgreSQL each stages its events and the
// chainer puts them on the chain after the commit): every event is on the
// chain exactly once, in one unbroken chain, and the log shows each at
// once after its write answered.
dual!(concurrent_audited_writes_keep_one_unbroken_chain, |env| {
    let admin = env.org_with_admin("acme");
    let before = env.json(&["audit", "verify"]);
    assert!(before["broken_at"].is_null(), "{before}");
    let srv = env.serve();
    let (api, token) = admin_login(&srv, &admin).await;
    let writes = (0..64).map(|i| {
        let (api, token, srv) = (&api, &token, &srv);
        async move {
            let r = api
                .post(srv.at("/api/v1/orgs/acme/keys"))
                .header("x-csrf-token", token)
                .json(&json!({"name": format!("k{i:02}"), "scope": "read"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
    });
    futures::future::join_all(writes).await;
    // Read through the API right after: every key's event is there.
    let v: Value = get_json(
        &api,
        srv.at("/api/v1/orgs/acme/audit?action=key.create&limit=200"),
    )
    .await;
    let created = v["items"].as_array().map_or(0, Vec::len);
    assert_eq!((created, v["total"].as_i64()), (64, Some(64)), "{v}");
    let after = env.json(&["audit", "verify"]);
    assert!(after["broken_at"].is_null(), "{after}");
    let (b, a) = (
        before["checked"].as_i64().unwrap(),
        after["checked"].as_i64().unwrap(),
    );
    assert!(a >= b + 64, "{before} {after}");
    assert_eq!(after["head_seq"], after["checked"], "{after}");
});

dual!(json_logs_on_request, |env| {
    // REKEY_LOG_FORMAT=json: every log line is a JSON object
    let mut c = env.cmd();
    c.args(["serve", "--listen", "127.0.0.1:0"])
        .env("REKEY_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let line = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("listening on"))
    })
    .join()
    .unwrap()
    .expect("listening line");
    let _ = child.kill();
    let _ = child.wait();
    let v: Value = serde_json::from_str(&line).expect("json log line");
    assert_eq!(v["level"], "INFO");
});

/// The CLI writes to the SQLite file while the server is busy writing to it:
/// neither sees "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_and_server_share_sqlite() {
    let env = Env::new(Engine::Sqlite).await.unwrap();
    let admin = env.org_with_admin("acme");
    let srv = env.serve();
    let url = srv.at("/api/v1/session");
    let admin2 = admin.clone();
    // the server writes on every login (session row, sealed CSRF, audit event)
    let load = tokio::spawn(async move {
        let mut n = 0;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(4) {
            let r = client()
                .post(&url)
                .json(&json!({"email": admin2, "password": PASSWORD}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            n += 1;
        }
        n
    });
    let mut handles = Vec::new();
    for i in 0..20 {
        let mut c = env.cmd();
        c.args([
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            &format!("u{i}@acme.test"),
            "--permission",
            "read",
        ]);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        handles.push(c.spawn().unwrap());
    }
    for h in handles {
        let out = h.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let n = load.await.unwrap();
    assert!(n > 0);
    assert_eq!(
        env.json(&["user", "list", "--org", "acme"])
            .as_array()
            .unwrap()
            .len(),
        21
    );
    assert!(env.run(&["audit", "verify"]).status.success());
}
