//! Connections end to end: the catalog, a `rekey`-kind connection authorized
//! against a second rekey server (a real OAuth provider), refresh, revoke,
//! re-authenticate, failures, concurrency; database and Redis credentials
//! against the local servers.

use std::time::Duration;

use serde_json::Value;

use crate::dual;
use crate::harness::*;
use crate::oauth_support::{browse, param, USER};

dual!(catalog_lists_every_kind, |env| {
    let list = env.json(&["connector", "list"]);
    let kinds: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap())
        .collect();
    for k in [
        "jira",
        "salesforce",
        "snowflake",
        "postgres",
        "mysql",
        "redshift",
        "redis",
        "rekey",
        "s3",
        "bigquery",
    ] {
        assert!(kinds.contains(&k), "{k}");
    }
    let sf = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "snowflake")
        .unwrap();
    let methods = sf["auth_methods"].as_array().unwrap();
    assert!(methods
        .iter()
        .all(|m| m["method"].is_string() && m["rotation"].is_string() && m["fields"].is_array()));
    assert!(methods
        .iter()
        .any(|m| m["method"] == "basic" && m["deprecated"] == true));
    assert!(sf["settings"].is_array());
    let pg = env.json(&["connector", "show", "postgres"]);
    assert_eq!(pg["auth_methods"][0]["fields"][0]["key"], "password");
    assert_eq!(
        env.run(&["connector", "show", "nope"]).status.code(),
        Some(1)
    );
});

/// A provider (another rekey, on SQLite) and a consumer server for `env`.
pub struct Pair {
    pub provider: Env,
    pub psrv: Server,
    pub csrv: Server,
}

pub async fn pair(env: &Env, access_ttl: &str, consumer_env: &[(&str, &str)]) -> Pair {
    let provider = Env::new(Engine::Sqlite).await.unwrap();
    provider.ok(&["org", "create", "prov"]);
    provider.json_stdin(
        &[
            "user",
            "create",
            "--org",
            "prov",
            "--email",
            USER,
            "--permission",
            "read_write",
            "--password-stdin",
        ],
        PASSWORD,
    );
    let psrv = provider.serve();
    let mut cenv = vec![("REKEY_KEEPER_INTERVAL", "0")];
    cenv.extend_from_slice(consumer_env);
    let csrv = env.serve_with(&cenv);
    let app = provider.json(&[
        "app",
        "create",
        "--org",
        "prov",
        "--name",
        "consumer",
        "--scope",
        "read_write",
        "--callback",
        &format!("{}/oauth/callback", csrv.url),
        "--access-token-ttl",
        access_ttl,
    ]);
    // an admin (`admin@acme.test`) to open the authorize links
    env.org_with_admin("acme");
    env.json(&[
        "connection",
        "create",
        "--org",
        "acme",
        "--kind",
        "rekey",
        "--name",
        "upstream",
        "--setting",
        &format!("base_url={}", psrv.url),
        "--setting",
        "scope=read_write",
    ]);
    env.json_stdin(
        &[
            "connection",
            "set-client",
            "--org",
            "acme",
            "--name",
            "upstream",
            "--client-id",
            app["client_id"].as_str().unwrap(),
            "--client-secret-stdin",
        ],
        app["client_secret"].as_str().unwrap(),
    );
    Pair {
        provider,
        psrv,
        csrv,
    }
}

/// The provider revokes the consumer's live authorization (the grant
/// dies there; the consumer learns it on its next use).
pub fn revoke_at_provider(p: &Pair) {
    let auths = p.provider.json(&[
        "app",
        "authorizations",
        "--org",
        "prov",
        "--name",
        "consumer",
    ]);
    let live = auths
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["status"] == "Active")
        .unwrap();
    p.provider.json(&[
        "app",
        "revoke-authorization",
        "--org",
        "prov",
        "--name",
        "consumer",
        "--id",
        live["id"].as_str().unwrap(),
    ]);
}

/// Runs `connection authorize|reauthenticate` and the browser side; returns the connection.
pub async fn authorize(env: &Env, p: &Pair, verb: &str) -> Value {
    let mut c = env.cmd();
    c.env("REKEY_PUBLIC_URL", &p.csrv.url).args([
        "connection",
        verb,
        "--org",
        "acme",
        "--name",
        "upstream",
        "--json",
    ]);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let link = v["authorize_url"].as_str().unwrap();
    assert!(
        link.starts_with(&format!("{}/connect/", p.csrv.url)),
        "{link}"
    );
    complete(&p.csrv, link, &p.psrv.url).await;
    env.json(&["connection", "show", "--org", "acme", "--name", "upstream"])
}

/// What a person does with an authorize link rekey printed: opens it in a
/// browser signed in as acme's admin (which gets the flow cookie and goes to
/// the provider at `provider`), consents there as `USER`, and comes back to
/// rekey's callback in the same browser. Returns the provider URL.
pub async fn complete(csrv: &Server, link: &str, provider: &str) -> String {
    let (browser, _) = admin_login(csrv, "admin@acme.test").await;
    let r = browser.get(link).send().await.unwrap();
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
    let url = r.headers()["location"].to_str().unwrap().to_string();
    assert!(url.starts_with(provider), "{url}");
    let back = browse(&url, USER, PASSWORD, "allow").await.unwrap();
    assert!(
        back.as_str()
            .starts_with(&format!("{}/oauth/callback", csrv.url)),
        "{back}"
    );
    assert!(param(&back, "code").is_some());
    let r = browser.get(back.as_str()).send().await.unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("authorized"), "{page}");
    url
}

fn audit_count(env: &Env, action: &str) -> usize {
    env.json(&["audit", "list", "--action", action, "--limit", "10000"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .count()
}

dual!(
    rekey_connection_authorize_refresh_revoke_reauthenticate,
    |env| {
        let p = pair(&env, "1h", &[]).await;
        let before = env.json(&["connection", "show", "--org", "acme", "--name", "upstream"]);
        assert_eq!(before["status"], "disconnected");
        let c = authorize(&env, &p, "authorize").await;
        assert_eq!(c["status"], "connected", "{c}");
        assert_eq!(c["last_test"]["ok"], true);
        assert!(
            !c.to_string().contains("rk_at_") && !c.to_string().contains("rk_rt_"),
            "no secret in the view"
        );
        let settings = c["settings"].clone();
        // several rotations at the provider
        for _ in 0..3 {
            let r = env.json(&[
                "connection",
                "refresh",
                "--org",
                "acme",
                "--name",
                "upstream",
            ]);
            assert_eq!(r["status"], "connected");
        }
        assert_eq!(audit_count(&env, "connection.refresh"), 3);
        assert_eq!(
            env.json(&["connection", "test", "--org", "acme", "--name", "upstream"])["last_test"]
                ["ok"],
            true
        );
        // the provider sees one live authorization
        let auths = p.provider.json(&[
            "app",
            "authorizations",
            "--org",
            "prov",
            "--name",
            "consumer",
        ]);
        assert_eq!(auths.as_array().unwrap().len(), 1);
        assert_eq!(auths[0]["status"], "Active");
        // revoke: at the provider too
        let r = env.json(&[
            "connection",
            "revoke-authorization",
            "--org",
            "acme",
            "--name",
            "upstream",
        ]);
        assert_eq!(r["status"], "disconnected");
        assert_eq!(r["provider"], "revoked at the provider");
        assert_eq!(
            p.provider.json(&[
                "app",
                "authorizations",
                "--org",
                "prov",
                "--name",
                "consumer"
            ])[0]["status"],
            "Revoked"
        );
        // re-authenticate: settings untouched
        let c = authorize(&env, &p, "reauthenticate").await;
        assert_eq!(c["status"], "connected");
        assert_eq!(c["settings"], settings);
        // a dead grant (revoked at the provider) makes the connection needs_reauth, loudly
        revoke_at_provider(&p);
        let r = env.json(&[
            "connection",
            "refresh",
            "--org",
            "acme",
            "--name",
            "upstream",
        ]);
        assert_eq!(r["status"], "needs_reauth", "{r}");
        let list = env.json(&[
            "connection",
            "list",
            "--org",
            "acme",
            "--status",
            "needs_reauth",
        ]);
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert_eq!(audit_count(&env, "connection.needs_reauth"), 1);
        // a second failing attempt does not raise a second event
        env.run(&[
            "connection",
            "refresh",
            "--org",
            "acme",
            "--name",
            "upstream",
        ]);
        assert_eq!(audit_count(&env, "connection.needs_reauth"), 1);
        drop(p);
    }
);

dual!(
    platform_code_reads_credentials_refreshing_once_under_concurrency,
    |env| {
        // A 6 s token is due 3 s before it expires (half its life): the
        // refreshed one stays fresh for 3 s, long enough for all 50 readers
        // on a loaded machine (with a 2 s token, readers that came more
        // than 1 s after the refresh rightly refreshed again).
        let p = pair(&env, "6s", &[]).await;
        authorize(&env, &p, "authorize").await;
        let key = env.json(&["service-key", "create", "--name", "platform"])["key"]
            .as_str()
            .unwrap()
            .to_string();
        let conn = env.json(&["connection", "show", "--org", "acme", "--name", "upstream"]);
        let url = p.csrv.at(&format!(
            "/api/v1/orgs/acme/connections/{}/credentials",
            conn["id"].as_str().unwrap()
        ));
        // without a service key: refused
        assert_eq!(client().get(&url).send().await.unwrap().status(), 401);
        let r = client().get(&url).bearer_auth(&key).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert!(v["credentials"]["access_token"]
            .as_str()
            .unwrap()
            .starts_with("rk_at_"));
        assert_eq!(v["settings"]["base_url"], p.psrv.url.as_str());
        // let the token come within its margin, then 50 concurrent readers
        tokio::time::sleep(Duration::from_millis(3200)).await;
        let before = audit_count(&env, "connection.refresh");
        // with PostgreSQL, a second instance shares the work
        let second = (env.engine == Engine::Postgres)
            .then(|| env.serve_with(&[("REKEY_KEEPER_INTERVAL", "0")]));
        let mut tasks = Vec::new();
        for i in 0..50 {
            let u = match &second {
                Some(s) if i % 2 == 1 => s.at(&format!(
                    "/api/v1/orgs/acme/connections/{}/credentials",
                    conn["id"].as_str().unwrap()
                )),
                _ => url.clone(),
            };
            let k = key.clone();
            tasks.push(tokio::spawn(async move {
                let r = reqwest::Client::new()
                    .get(u)
                    .bearer_auth(k)
                    .send()
                    .await
                    .unwrap();
                let s = r.status().as_u16();
                let v: Value = r.json().await.unwrap();
                (
                    s,
                    v["credentials"]["access_token"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            }));
        }
        let mut tokens = std::collections::HashSet::new();
        for t in tasks {
            let (s, at) = t.await.unwrap();
            assert_eq!(s, 200);
            tokens.insert(at);
        }
        assert_eq!(
            audit_count(&env, "connection.refresh") - before,
            1,
            "exactly one refresh at the provider"
        );
        assert_eq!(tokens.len(), 1, "every reader got the refreshed token");
        // each read is audited
        assert!(audit_count(&env, "connection.credentials_read") >= 51);
        drop(second);
        drop(p);
    }
);

dual!(keeper_refreshes_in_the_background, |env| {
    let p = pair(&env, "2s", &[("REKEY_KEEPER_INTERVAL", "1")]).await;
    authorize(&env, &p, "authorize").await;
    // a 2 s token is due every second: the keeper rotates it several times
    let mut ok = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if audit_count(&env, "connection.refresh") >= 3 {
            ok = true;
            break;
        }
    }
    assert!(ok, "the keeper refreshed at least three times");
    let c = env.json(&["connection", "show", "--org", "acme", "--name", "upstream"]);
    assert_eq!(c["status"], "connected");
    assert_eq!(
        p.provider.json(&[
            "app",
            "authorizations",
            "--org",
            "prov",
            "--name",
            "consumer"
        ])[0]["status"],
        "Active"
    );
});

dual!(passing_failures_are_retried_and_never_need_reauth, |env| {
    let p = pair(&env, "1h", &[]).await;
    // The token endpoint is a relay in front of the provider from the start
    // (endpoints of a connection holding tokens cannot be changed).
    let relay = crate::attacker::Relay::start(&p.psrv.url).await;
    env.json(&[
        "connection",
        "update",
        "--org",
        "acme",
        "--name",
        "upstream",
        "--endpoint",
        &format!("token_url={}/oauth2/token", relay.url),
    ]);
    authorize(&env, &p, "authorize").await;
    let refresh = || {
        env.json(&[
            "connection",
            "refresh",
            "--org",
            "acme",
            "--name",
            "upstream",
        ])
    };
    for status in [503u16, 429] {
        relay.fail_with(status);
        let r = refresh();
        assert_eq!(
            r["status"], "connected",
            "{status}: a passing failure with a live token stays connected: {r}"
        );
        assert!(
            r["status_reason"]
                .as_str()
                .unwrap()
                .contains(&status.to_string()),
            "{r}"
        );
    }
    assert_eq!(audit_count(&env, "connection.needs_reauth"), 0);
    // the provider down altogether: same
    relay.go_down();
    assert_ne!(refresh()["status"], "needs_reauth");
    // and back: the stored refresh token still works
    relay.relay();
    let r = refresh();
    assert_eq!(r["status"], "connected", "{r}");
});

dual!(database_and_redis_credentials_are_probed, |env| {
    env.ok(&["org", "create", "acme"]);
    // PostgreSQL (the local server trusts loopback, so a wrong *user* is the refusal we can show)
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
        "host=127.0.0.1",
        "--setting",
        "database=postgres",
        "--setting",
        "username=postgres",
    ]);
    let v = env.json_stdin(
        &[
            "connection",
            "set-credential",
            "--org",
            "acme",
            "--name",
            "pg",
            "--field",
            "password",
            "--value-stdin",
        ],
        "any-password",
    );
    assert_eq!(v["status"], "connected", "{v}");
    assert_eq!(v["last_test"]["ok"], true);
    env.json(&[
        "connection",
        "create",
        "--org",
        "acme",
        "--kind",
        "postgres",
        "--name",
        "pg-bad",
        "--setting",
        "host=127.0.0.1",
        "--setting",
        "database=postgres",
        "--setting",
        "username=no_such_role_rekey",
    ]);
    let out = env.run_stdin(
        &[
            "connection",
            "set-credential",
            "--org",
            "acme",
            "--name",
            "pg-bad",
            "--field",
            "password",
            "--value-stdin",
        ],
        Some("x"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was stored"));
    assert_eq!(
        env.json(&["connection", "show", "--org", "acme", "--name", "pg-bad"])["has_credentials"],
        false
    );

    if require(mariadb_up(), "MariaDB") {
        let pool = sqlx::MySqlPool::connect("mysql://root@127.0.0.1:3306/mysql")
            .await
            .unwrap();
        sqlx::query("CREATE USER IF NOT EXISTS 'rekey_probe'@'%' IDENTIFIED BY 'right-password'")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("ALTER USER 'rekey_probe'@'%' IDENTIFIED BY 'right-password'")
            .execute(&pool)
            .await
            .unwrap();
        env.json(&[
            "connection",
            "create",
            "--org",
            "acme",
            "--kind",
            "mysql",
            "--name",
            "maria",
            "--setting",
            "host=127.0.0.1",
            "--setting",
            "database=information_schema",
            "--setting",
            "username=rekey_probe",
        ]);
        let out = env.run_stdin(
            &[
                "connection",
                "set-credential",
                "--org",
                "acme",
                "--name",
                "maria",
                "--field",
                "password",
                "--value-stdin",
            ],
            Some("wrong-password"),
        );
        assert_eq!(out.status.code(), Some(1), "a wrong password is refused");
        let v = env.json_stdin(
            &[
                "connection",
                "set-credential",
                "--org",
                "acme",
                "--name",
                "maria",
                "--field",
                "password",
                "--value-stdin",
            ],
            "right-password",
        );
        assert_eq!(v["status"], "connected");
        pool.close().await;
    }
    if require(redis_up(), "Redis") {
        let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("rekey_probe")
            .arg("on")
            .arg("resetpass")
            .arg(">right-password")
            .arg("+ping")
            .query_async(&mut con)
            .await
            .unwrap();
        env.json(&[
            "connection",
            "create",
            "--org",
            "acme",
            "--kind",
            "redis",
            "--name",
            "cache",
            "--setting",
            "host=127.0.0.1",
            "--setting",
            "username=rekey_probe",
        ]);
        let out = env.run_stdin(
            &[
                "connection",
                "set-credential",
                "--org",
                "acme",
                "--name",
                "cache",
                "--field",
                "password",
                "--value-stdin",
            ],
            Some("wrong-password"),
        );
        assert_eq!(out.status.code(), Some(1));
        let v = env.json_stdin(
            &[
                "connection",
                "set-credential",
                "--org",
                "acme",
                "--name",
                "cache",
                "--field",
                "password",
                "--value-stdin",
            ],
            "right-password",
        );
        assert_eq!(v["status"], "connected");
        assert!(
            env.json(&["connection", "test", "--org", "acme", "--name", "cache"])["last_test"]
                ["message"]
                .as_str()
                .unwrap()
                .contains("PONG")
        );
    }
    // shapes: a PEM that does not parse is refused before any probe
    env.json(&[
        "connection",
        "create",
        "--org",
        "acme",
        "--kind",
        "snowflake",
        "--name",
        "sf",
        "--auth",
        "rsa_key_pair",
        "--setting",
        "account=xy12345",
        "--setting",
        "username=svc",
        "--setting",
        "role=SVC",
        "--setting",
        "warehouse=WH",
    ]);
    let out = env.run_stdin(
        &[
            "connection",
            "set-credential",
            "--org",
            "acme",
            "--name",
            "sf",
            "--field",
            "private_key",
            "--value-stdin",
        ],
        Some("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PEM"));
    // no secret in the listing or the audit log
    let all = env.ok(&["connection", "list", "--org", "acme", "--json"])
        + &env.ok(&["audit", "list", "--json", "--limit", "1000"]);
    assert!(!all.contains("right-password") && !all.contains("any-password"));
});

dual!(admin_api_for_connections, |env| {
    let admin = env.org_with_admin("acme");
    let beta = env.org_with_admin("beta");
    let srv = env.serve_with(&[("REKEY_KEEPER_INTERVAL", "0")]);
    let (c, csrf) = admin_login(&srv, &admin).await;
    let list: Value = get_json(&c, srv.at("/api/v1/connectors")).await;
    assert!(list.as_array().unwrap().len() >= 31);
    let r = c
        .post(srv.at("/api/v1/orgs/acme/connections"))
        .header("X-CSRF-Token", &csrf)
        .json(&serde_json::json!({"kind": "postgres", "name": "pg", "settings": {"host": "127.0.0.1", "database": "postgres", "username": "postgres"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["status"].as_str(), v["settings"]["port"].as_str()),
        (Some("disconnected"), Some("5432"))
    );
    // bad input: unknown kind, unknown setting, missing setting, bad port
    for body in [
        serde_json::json!({"kind": "nope", "name": "x"}),
        serde_json::json!({"kind": "postgres", "name": "x", "settings": {"host": "h", "database": "d", "username": "u", "colour": "red"}}),
        serde_json::json!({"kind": "postgres", "name": "x", "settings": {"host": "h"}}),
        serde_json::json!({"kind": "postgres", "name": "x", "settings": {"host": "h", "database": "d", "username": "u", "port": "99999"}}),
    ] {
        let r = c
            .post(srv.at("/api/v1/orgs/acme/connections"))
            .header("X-CSRF-Token", &csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
    }
    let r = c
        .post(srv.at("/api/v1/orgs/acme/connections/pg/credential"))
        .header("X-CSRF-Token", &csrf)
        .json(&serde_json::json!({"fields": {"password": "whatever"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "connected");
    let r = c
        .post(srv.at("/api/v1/orgs/acme/connections/pg/test"))
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["last_test"]["ok"], true);
    let r = c
        .patch(srv.at("/api/v1/orgs/acme/connections/pg"))
        .header("X-CSRF-Token", &csrf)
        .json(&serde_json::json!({"settings": {"port": "5432"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["has_credentials"],
        true,
        "settings change keeps credentials"
    );
    let l: Value = get_json(&c, srv.at("/api/v1/orgs/acme/connections?status=connected")).await;
    assert_eq!(l.as_array().unwrap().len(), 1);
    // another org's admin: not found
    let (b, bcsrf) = admin_login(&srv, &beta).await;
    assert_eq!(
        b.get(srv.at("/api/v1/orgs/acme/connections/pg"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        b.delete(srv.at("/api/v1/orgs/acme/connections/pg"))
            .header("X-CSRF-Token", &bcsrf)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // only an operator configures a kind's OAuth client
    let r = c
        .post(srv.at("/api/v1/connectors/jira/client"))
        .header("X-CSRF-Token", &csrf)
        .json(&serde_json::json!({"client_id": "x", "client_secret": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        c.delete(srv.at("/api/v1/orgs/acme/connections/pg"))
            .header("X-CSRF-Token", &csrf)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
});

dual!(
    client_credentials_and_access_key_connections_probe_for_real,
    |env| {
        // rekey's own platform kinds, against this very server
        env.ok(&["org", "create", "acme"]);
        let m = env.json(&[
            "m2m", "create", "--org", "acme", "--name", "sync", "--scope", "read",
        ]);
        let key = env.json(&[
            "key", "create", "--org", "acme", "--name", "etl", "--scope", "read",
        ]);
        let srv = env.serve_with(&[("REKEY_KEEPER_INTERVAL", "0")]);
        env.json(&[
            "connection",
            "create",
            "--org",
            "acme",
            "--kind",
            "platform_m2m",
            "--name",
            "self-m2m",
            "--setting",
            &format!("base_url={}", srv.url),
        ]);
        let lines = format!(
            "{}\n{}\n",
            m["client_id"].as_str().unwrap(),
            m["client_secret"].as_str().unwrap()
        );
        let v = env.json_stdin(
            &[
                "connection",
                "set-credential",
                "--org",
                "acme",
                "--name",
                "self-m2m",
                "--field",
                "client_id",
                "--field",
                "client_secret",
                "--value-stdin",
            ],
            &lines,
        );
        assert_eq!(v["status"], "connected", "{v}");
        assert_eq!(v["last_test"]["message"], "HTTP 200");
        // a wrong secret: the token request is refused, nothing is stored
        env.json(&[
            "connection",
            "create",
            "--org",
            "acme",
            "--kind",
            "platform_m2m",
            "--name",
            "bad-m2m",
            "--setting",
            &format!("base_url={}", srv.url),
        ]);
        let lines = format!("{}\nrk_cs_wrong\n", m["client_id"].as_str().unwrap());
        let out = env.run_stdin(
            &[
                "connection",
                "set-credential",
                "--org",
                "acme",
                "--name",
                "bad-m2m",
                "--field",
                "client_id",
                "--field",
                "client_secret",
                "--value-stdin",
            ],
            Some(&lines),
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("401"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // an access-key connection
        env.json(&[
            "connection",
            "create",
            "--org",
            "acme",
            "--kind",
            "platform_access_key",
            "--name",
            "self-key",
            "--setting",
            &format!("base_url={}", srv.url),
        ]);
        let k = env.json(&["connector", "show", "platform_access_key"]);
        let field = k["auth_methods"][0]["fields"][0]["key"]
            .as_str()
            .unwrap()
            .to_string();
        let v = env.json_stdin(
            &[
                "connection",
                "set-credential",
                "--org",
                "acme",
                "--name",
                "self-key",
                "--field",
                &field,
                "--value-stdin",
            ],
            key["key"].as_str().unwrap(),
        );
        assert_eq!(v["status"], "connected", "{v}");
    }
);

// `connection authorize` from a CLI with no public_url of its own hands out
// the link of the server as it listens (here a port that is not 8080), and
// the flow completes through it.
dual!(authorize_link_names_the_server_as_it_listens, |env| {
    let p = pair(&env, "1h", &[]).await;
    assert!(!p.csrv.url.ends_with(":8080"), "{}", p.csrv.url);
    let v = env.json(&[
        "connection",
        "authorize",
        "--org",
        "acme",
        "--name",
        "upstream",
    ]);
    let link = v["authorize_url"].as_str().unwrap();
    assert!(
        link.starts_with(&format!("{}/connect/", p.csrv.url)),
        "{link} is not on {}",
        p.csrv.url
    );
    complete(&p.csrv, link, &p.psrv.url).await;
    let c = env.json(&["connection", "show", "--org", "acme", "--name", "upstream"]);
    assert_eq!(c["status"], "connected", "{c}");
    // the text for people names the same link
    let text = env.ok(&[
        "connection",
        "authorize",
        "--org",
        "acme",
        "--name",
        "upstream",
    ]);
    assert!(text.contains(&format!("{}/connect/", p.csrv.url)), "{text}");
});

// A refresh that fails before it reaches the provider (here the stored
// tokens do not open: another sealed value put in their place) counts a
// failure, backs off and says why. The keeper used to take the connection
// again at every pass, forever, with nothing shown.
dual!(
    a_refresh_that_cannot_open_its_tokens_backs_off_and_says_why,
    |env| {
        let p = pair(&env, "2s", &[("REKEY_KEEPER_INTERVAL", "1")]).await;
        authorize(&env, &p, "authorize").await;
        exec_sql(
            &env,
            "UPDATE sealed SET ciphertext = (SELECT s.ciphertext FROM sealed s
             WHERE s.owner_table = 'connections' AND s.owner_column = 'client_secret'
               AND s.owner_id = sealed.owner_id)
         WHERE owner_table = 'connections' AND owner_column = 'credentials'",
        )
        .await;
        let failures = || async {
            query_i64(
                &env,
                "SELECT failures FROM connections WHERE name = 'upstream'",
            )
            .await
            .unwrap_or(0)
        };
        let mut c = Value::Null;
        let said = wait_until(
            || {
                c = env.json(&["connection", "show", "--org", "acme", "--name", "upstream"]);
                c["status_reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("refresh failed, retrying"))
            },
            Duration::from_secs(20),
        )
        .await;
        assert!(said, "{c}");
        let first = failures().await;
        assert!(first >= 1, "{first}");
        // backed off (5 s and growing), not taken again at every 1 s pass
        tokio::time::sleep(Duration::from_secs(3)).await;
        let later = failures().await;
        assert!(later <= first + 1, "{first} then {later}");
        // once its 2 s access token has run out, a failed retry puts it in
        // error, as a provider's failure would
        let erred = wait_until(
            || {
                c = env.json(&["connection", "show", "--org", "acme", "--name", "upstream"]);
                c["status"] == "error"
            },
            Duration::from_secs(30),
        )
        .await;
        assert!(erred, "{c}");
    }
);
