//! Regression tests for the outbound side of the security review: where
//! rekey may send the operator's OAuth client secret, stored tokens and
//! credentials (issue items 1 and 4). Each reproduces the attack through the
//! real binary with a local listener standing in for the attacker's host.

use serde_json::Value;

use crate::attacker::Listener;
use crate::harness::*;

const OPERATOR_SECRET: &str = "operator-secret-0f1e2d3c4b5a";

async fn sqlite() -> Env {
    Env::new(Engine::Sqlite).await.unwrap()
}

fn fails(env: &Env, args: &[&str], stdin: Option<&str>) -> String {
    let out = env.run_stdin(args, stdin);
    assert_eq!(
        out.status.code(),
        Some(1),
        "rekey {args:?} should be refused: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn audit_actions(env: &Env, action: &str) -> Vec<Value> {
    env.json(&["audit", "list", "--action", action, "--limit", "1000"])
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_client_secret_never_goes_to_an_overridden_token_url() {
    let env = sqlite().await;
    let attacker = Listener::start(200, &[], r#"{"access_token":"x"}"#).await;
    env.ok(&["org", "create", "acme"]);
    env.json_stdin(
        &[
            "connector",
            "configure",
            "jira",
            "--client-id",
            "platform-jira",
            "--client-secret-stdin",
        ],
        OPERATOR_SECRET,
    );
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
        &format!("token_url={}/token", attacker.url),
    ]);
    let err = fails(
        &env,
        &[
            "connection",
            "authorize",
            "--org",
            "acme",
            "--name",
            "tickets",
        ],
        None,
    );
    assert!(err.contains("set-client"), "{err}");
    assert!(!attacker.saw(OPERATOR_SECRET));
    assert!(attacker.requests().is_empty());
    // with its own client, the same connection may use its own endpoint
    env.json_stdin(
        &[
            "connection",
            "set-client",
            "--org",
            "acme",
            "--name",
            "tickets",
            "--client-id",
            "acme-own",
            "--client-secret-stdin",
        ],
        "acme-own-secret",
    );
    let v = env.json(&[
        "connection",
        "authorize",
        "--org",
        "acme",
        "--name",
        "tickets",
    ]);
    // (the link opens rekey's start page; the client it will present is named)
    assert_eq!(v["client_id"], "acme-own", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_client_secret_never_goes_to_a_discovered_provider() {
    let env = sqlite().await;
    let thief = Listener::start(200, &[], r#"{"access_token":"x"}"#).await;
    let meta = |base: &str| {
        serde_json::json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/oauth2/authorize"),
            "token_endpoint": format!("{}/token", thief.url),
        })
        .to_string()
    };
    // The provider's metadata claims another issuer and names a foreign
    // token endpoint.
    let provider = Listener::start(200, &[], &meta("https://issuer.example")).await;
    env.ok(&["org", "create", "acme"]);
    env.json_stdin(
        &[
            "connector",
            "configure",
            "rekey",
            "--client-id",
            "platform-rekey",
            "--client-secret-stdin",
        ],
        OPERATOR_SECRET,
    );
    env.json(&[
        "connection",
        "create",
        "--org",
        "acme",
        "--kind",
        "rekey",
        "--name",
        "up",
        "--setting",
        &format!("base_url={}", provider.url),
    ]);
    // refused before the operator's client is even looked up
    let err = fails(
        &env,
        &["connection", "authorize", "--org", "acme", "--name", "up"],
        None,
    );
    assert!(
        err.contains("issuer") || err.contains("set-client"),
        "{err}"
    );
    env.json_stdin(
        &[
            "connection",
            "set-client",
            "--org",
            "acme",
            "--name",
            "up",
            "--client-id",
            "own",
            "--client-secret-stdin",
        ],
        "own-secret",
    );
    // the metadata's issuer is not base_url: refused (RFC 8414 section 3.3)
    let err = fails(
        &env,
        &["connection", "authorize", "--org", "acme", "--name", "up"],
        None,
    );
    assert!(err.contains("issuer"), "{err}");
    assert!(thief.requests().is_empty());
    assert!(!provider.saw("authorization:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_endpoints_must_share_the_issuers_origin() {
    let env = sqlite().await;
    let thief = Listener::start(200, &[], r#"{"access_token":"x"}"#).await;
    // Reserve a port, then serve metadata naming it as the issuer.
    let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", std_l.local_addr().unwrap());
    let body = serde_json::json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/oauth2/authorize"),
        "token_endpoint": format!("{}/token", thief.url),
    })
    .to_string();
    std_l.set_nonblocking(true).unwrap();
    let l = tokio::net::TcpListener::from_std(std_l).unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
    env.ok(&["org", "create", "acme"]);
    env.json_stdin(
        &[
            "connector",
            "configure",
            "rekey",
            "--client-id",
            "platform-rekey",
            "--client-secret-stdin",
        ],
        OPERATOR_SECRET,
    );
    env.json(&[
        "connection",
        "create",
        "--org",
        "acme",
        "--kind",
        "rekey",
        "--name",
        "up",
        "--setting",
        &format!("base_url={base}"),
    ]);
    let err = fails(
        &env,
        &["connection", "authorize", "--org", "acme", "--name", "up"],
        None,
    );
    assert!(
        err.contains("origin") || err.contains("set-client"),
        "{err}"
    );
    env.json_stdin(
        &[
            "connection",
            "set-client",
            "--org",
            "acme",
            "--name",
            "up",
            "--client-id",
            "own",
            "--client-secret-stdin",
        ],
        "own-secret",
    );
    let err = fails(
        &env,
        &["connection", "authorize", "--org", "acme", "--name", "up"],
        None,
    );
    assert!(err.contains("origin"), "{err}");
    assert!(thief.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templated_subdomain_cannot_move_the_probe_host() {
    let env = sqlite().await;
    let attacker = Listener::start(200, &[], "{}").await;
    env.ok(&["org", "create", "acme"]);
    for bad in [
        format!("localhost:{}/x#", attacker.port),
        "evil.example/x".to_string(),
        "a@evil.example".to_string(),
        "a?b".to_string(),
    ] {
        let err = fails(
            &env,
            &[
                "connection",
                "create",
                "--org",
                "acme",
                "--kind",
                "freshdesk",
                "--name",
                "desk",
                "--setting",
                &format!("subdomain={bad}"),
            ],
            None,
        );
        assert!(err.contains("subdomain"), "{err}");
    }
    assert!(attacker.requests().is_empty());
    let kinds = env.json(&["connector", "show", "freshdesk"]);
    assert_eq!(kinds["hosts"][0], "*.freshdesk.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_redirects_are_not_followed_and_carry_no_credential() {
    let env = sqlite().await;
    let target = Listener::start(200, &[], "{}").await;
    let location = format!("{}/steal", target.url);
    let redirector = Listener::start(302, &[("location", location.as_str())], "{}").await;
    env.ok(&["org", "create", "acme"]);
    env.json(&[
        "connection",
        "create",
        "--org",
        "acme",
        "--kind",
        "custom_rest",
        "--name",
        "api",
        "--setting",
        &format!("base_url={}", redirector.url),
        "--setting",
        "probe_path=/me",
    ]);
    let err = fails(
        &env,
        &[
            "connection",
            "set-credential",
            "--org",
            "acme",
            "--name",
            "api",
            "--field",
            "api_key",
            "--value-stdin",
        ],
        Some("key-that-must-not-travel"),
    );
    assert!(err.contains("302"), "{err}");
    assert!(redirector.saw("key-that-must-not-travel"));
    assert!(
        target.requests().is_empty(),
        "the redirect target received {:?}",
        target.requests()
    );
    let c = env.json(&["connection", "show", "--org", "acme", "--name", "api"]);
    assert_eq!(c["has_credentials"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_to_cloud_metadata_is_refused_before_connecting() {
    let env = sqlite().await;
    env.ok(&["org", "create", "acme"]);
    for (name, base) in [
        ("imds", "http://169.254.169.254"),
        ("alibaba", "http://100.100.100.200"),
        ("imds6", "http://[fd00:ec2::254]"),
    ] {
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
            &format!("base_url={base}"),
            "--setting",
            "probe_path=/latest/meta-data/",
        ]);
        let started = std::time::Instant::now();
        let err = fails(
            &env,
            &[
                "connection",
                "set-credential",
                "--org",
                "acme",
                "--name",
                name,
                "--field",
                "api_key",
                "--value-stdin",
            ],
            Some("k"),
        );
        assert!(
            err.contains("egress refused") && err.contains("rule"),
            "{err}"
        );
        // answered at once: no connection attempt to wait out
        assert!(started.elapsed() < std::time::Duration::from_secs(4));
        let c = env.json(&["connection", "show", "--org", "acme", "--name", name]);
        assert_eq!(c["has_credentials"], false);
    }
    let refused = audit_actions(&env, "egress.refused");
    assert!(refused.len() >= 3, "{refused:?}");
    assert!(refused[0]["detail"].to_string().contains("rule"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_deny_keeps_tenants_off_loopback_and_private_networks() {
    let env = sqlite().await;
    let internal = Listener::start(200, &[], "{}").await;
    env.ok(&["org", "create", "acme"]);
    env.json(&[
        "connection",
        "create",
        "--org",
        "acme",
        "--kind",
        "custom_rest",
        "--name",
        "internal",
        "--setting",
        &format!("base_url={}", internal.url),
    ]);
    env.json(&[
        "connection",
        "create",
        "--org",
        "acme",
        "--kind",
        "postgres",
        "--name",
        "pg",
        "--setting",
        "host=localhost",
        "--setting",
        "database=postgres",
        "--setting",
        "username=postgres",
    ]);
    let set = |conn: &str, field: &str, deny: &str, allow: &str| {
        let mut c = env.cmd();
        c.env("REKEY_EGRESS_DENY", deny)
            .env("REKEY_EGRESS_ALLOW", allow)
            .args([
                "connection",
                "set-credential",
                "--org",
                "acme",
                "--name",
                conn,
                "--field",
                field,
                "--value-stdin",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"secret-value")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = set("internal", "api_key", "private,loopback", "");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rule loopback"), "{err}");
    assert!(internal.requests().is_empty());
    // a database host name is resolved and checked too
    let out = set("pg", "password", "loopback", "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rule loopback"), "{err}");
    // an exception by CIDR lets the operator's own range through
    let out = set("internal", "api_key", "private,loopback", "127.0.0.0/8");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(internal.saw("secret-value"));
    // a bad rule is a clear configuration error
    let out = set("internal", "api_key", "public", "");
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("egress_deny"));
}
