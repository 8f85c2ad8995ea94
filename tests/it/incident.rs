//! Incident campaigns end to end against the real local Redis and MariaDB:
//! plan, dry run, rotate what rekey can, wait on people for what it cannot,
//! revoke and regenerate rekey's own credentials, report; and the requests
//! a campaign refuses with nothing written.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use crate::dual;
use crate::harness::*;

/// A stand-in REST API that accepts one X-API-Key at a time (the one a
/// person set at the provider).
async fn api_accepting(key: &str) -> (Arc<Mutex<String>>, String) {
    let valid = Arc::new(Mutex::new(key.to_string()));
    let v = valid.clone();
    let app = Router::new().route(
        "/me",
        get(move |h: HeaderMap| {
            let v = v.clone();
            async move {
                let ok = h.get("x-api-key").and_then(|k| k.to_str().ok())
                    == Some(v.lock().unwrap().as_str());
                if ok {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (valid, url)
}

async fn redis_user(password: &str) -> String {
    let user = format!("rk_{}", ulid::Ulid::new().to_string().to_lowercase());
    let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg("resetpass")
        .arg(format!(">{password}"))
        .arg("+ping")
        .arg("+acl|setuser")
        .arg("+acl|dryrun")
        .query_async(&mut con)
        .await
        .unwrap();
    user
}

async fn cc_status(srv: &Server, id: &str, secret: &str) -> u16 {
    client()
        .post(srv.at("/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn key_status(srv: &Server, key: &str) -> u16 {
    client()
        .get(srv.at("/v1/people?limit=1"))
        .header("Accesskey", key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn item<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["target"]["name"] == name)
        .unwrap_or_else(|| panic!("no item {name}: {v}"))
}

dual!(
    a_campaign_rotates_what_it_can_and_tracks_the_rest_to_verified,
    |env| {
        if !require(redis_up(), "Redis") || !require(mariadb_up(), "MariaDB") {
            return;
        }
        let email = env.org_with_admin("acme");
        // Redis and MariaDB connections rekey rotates itself
        let redis_pw = "incident-redis-pw-01";
        let ru = redis_user(redis_pw).await;
        connection(
            &env,
            "redis",
            "cache",
            &["host=127.0.0.1", &format!("username={ru}")],
        );
        set_credential(&env, "cache", &["password"], &[redis_pw]);
        let mu = format!("rk_{}", &ulid::Ulid::new().to_string().to_lowercase()[..12]);
        let maria_pw = "incident-maria-pw-01";
        let root = sqlx::MySqlPool::connect("mysql://root@127.0.0.1:3306/mysql")
            .await
            .unwrap();
        sqlx::query(&format!(
            "CREATE USER '{mu}'@'%' IDENTIFIED BY '{maria_pw}'"
        ))
        .execute(&root)
        .await
        .unwrap();
        connection(
            &env,
            "mysql",
            "maria",
            &[
                "host=127.0.0.1",
                "database=information_schema",
                &format!("username={mu}"),
            ],
        );
        set_credential(&env, "maria", &["password"], &[maria_pw]);
        // a REST API a person rotates by hand
        let (valid, api) = api_accepting("old-api-key-0001").await;
        env.json(&[
            "connection",
            "create",
            "--org",
            "acme",
            "--kind",
            "custom_rest",
            "--auth",
            "api_key",
            "--name",
            "crm",
            "--setting",
            &format!("base_url={api}"),
            "--setting",
            "probe_path=/me",
        ]);
        set_credential(&env, "crm", &["api_key"], &["old-api-key-0001"]);
        // rekey's own credentials
        let old_key = env.json(&[
            "key", "create", "--org", "acme", "--name", "ci", "--scope", "read",
        ])["key"]
            .as_str()
            .unwrap()
            .to_string();
        let m2m = env.json(&[
            "m2m", "create", "--org", "acme", "--name", "sync", "--scope", "read",
        ]);
        let (m2m_id, old_m2m) = (
            m2m["client_id"].as_str().unwrap().to_string(),
            m2m["client_secret"].as_str().unwrap().to_string(),
        );
        env.json(&[
            "app",
            "create",
            "--org",
            "acme",
            "--name",
            "portal",
            "--scope",
            "read",
            "--callback",
            "https://portal.example/cb",
        ]);

        // the plan: every item with its action, nothing changed
        let plan = env.json(&[
            "incident",
            "start",
            "--reason",
            "provider breach",
            "--scope",
            "org:acme",
            "--include-own",
            "--dry-run",
        ]);
        assert_eq!(plan["dry_run"], true);
        let actions: Vec<(String, String)> = plan["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["target"]["name"].as_str().unwrap().to_string(),
                    i["action"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for (name, action) in [
            ("cache", "rotate"),
            ("maria", "rotate"),
            ("crm", "runbook"),
            ("portal", "revoke"),
            ("portal", "regenerate"),
            ("sync", "regenerate"),
            ("ci", "regenerate"),
        ] {
            assert!(
                actions.contains(&(name.to_string(), action.to_string())),
                "{name} {action}: {plan}"
            );
        }
        assert_eq!(env.json(&["incident", "list"]), serde_json::json!([]));
        assert_eq!(
            env.json(&["rotation", "list", "--org", "acme"]),
            serde_json::json!([])
        );

        // the campaign, run from the CLI until only people's work is left
        let v = env.json(&[
            "incident",
            "start",
            "--reason",
            "provider breach",
            "--scope",
            "org:acme",
            "--include-own",
            "--wait",
        ]);
        let id = v["id"].as_str().unwrap().to_string();
        assert_eq!(item(&v, "cache")["status"], "verified", "{v}");
        assert_eq!(item(&v, "maria")["status"], "verified", "{v}");
        let crm = item(&v, "crm");
        assert_eq!(crm["status"], "waiting_person", "{v}");
        assert_eq!(crm["waiting_on"], "org_admins");
        assert_eq!(v["waiting"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v["status"], "running");
        // new secrets, shown once
        let secrets = v["secrets"].as_array().unwrap();
        assert_eq!(secrets.len(), 3, "{v}");
        let new_key = secrets.iter().find(|s| s["type"] == "key").unwrap()["key"]
            .as_str()
            .unwrap()
            .to_string();
        let new_m2m = secrets.iter().find(|s| s["type"] == "m2m").unwrap()["secret"]
            .as_str()
            .unwrap()
            .to_string();

        // the databases really changed: the old passwords are refused
        let url = format!("mysql://{mu}:{maria_pw}@127.0.0.1:3306/information_schema");
        {
            use sqlx::Connection;
            assert!(
                sqlx::MySqlConnection::connect(&url).await.is_err(),
                "old MariaDB password refused"
            );
        }
        let old_redis =
            redis::Client::open(format!("redis://{ru}:{redis_pw}@127.0.0.1:6379/").as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await;
        assert!(old_redis.is_err(), "old Redis password refused");

        // rekey's own: old key and old machine secret refused, new ones work;
        // the application's authorizations are revoked with the campaign as reason
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        assert_eq!(key_status(&srv, &old_key).await, 401);
        assert_eq!(key_status(&srv, &new_key).await, 200);
        assert_eq!(cc_status(&srv, &m2m_id, &old_m2m).await, 401);
        assert_eq!(cc_status(&srv, &m2m_id, &new_m2m).await, 200);

        // a person rotates the API key at the provider and stores it
        *valid.lock().unwrap() = "new-api-key-0002".into();
        set_credential(&env, "crm", &["api_key"], &["new-api-key-0002"]);
        let done = poll(&env, &["incident", "status", &id], |v| {
            v["status"] == "completed"
        })
        .await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["counts"]["verified"], done["total"], "{done}");
        assert_eq!(done["progress"], 100);

        // the report lists every item, in every format
        let out = env.run(&["incident", "report", &id, "--format", "csv"]);
        let csv = String::from_utf8(out.stdout).unwrap();
        assert!(
            csv.starts_with(
                "n,org,type,name,kind,action,status,done_by,done_at,verified_at,detail"
            ),
            "{csv}"
        );
        assert_eq!(
            csv.lines().count(),
            1 + done["total"].as_u64().unwrap() as usize,
            "{csv}"
        );
        let md = String::from_utf8(
            env.run(&["incident", "report", &id, "--format", "md"])
                .stdout,
        )
        .unwrap();
        assert!(
            md.contains("| crm |") && md.contains("Nothing: every item is verified."),
            "{md}"
        );
        let json: Value = serde_json::from_slice(
            &env.run(&["incident", "report", &id, "--format", "json"])
                .stdout,
        )
        .unwrap();
        assert_eq!(
            json["items"].as_array().unwrap().len() as u64,
            done["total"].as_u64().unwrap()
        );
        assert!(
            json["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["done_at"].is_string() && i["verified_at"].is_string()),
            "{json}"
        );
        // audited: started, items, finished; no secret in the log
        let audit = env.ok(&["audit", "list", "--limit", "1000", "--json"]);
        for ev in ["incident.start", "incident.item_waiting", "incident.finish"] {
            assert!(audit.contains(ev), "{ev}");
        }
        assert!(!audit.contains(&new_key) && !audit.contains(&new_m2m));
        // the admin API shows it to the org's admin, with its progress figure
        let (c, _) = admin_login(&srv, &email).await;
        let r = c
            .get(srv.at(&format!("/api/v1/incidents/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["progress"], 100);
        let auths = env.json(&["app", "authorizations", "--org", "acme", "--name", "portal"]);
        assert!(
            auths
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["status"] == "Revoked"),
            "{auths}"
        );
        sqlx::query(&format!("DROP USER '{mu}'@'%'"))
            .execute(&root)
            .await
            .unwrap();
    }
);

dual!(campaigns_refuse_bad_scopes_with_nothing_written, |env| {
    let email = env.org_with_admin("acme");
    env.org_with_admin("beta");
    let bad = |args: &[&str], expect: &str| {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.contains(expect), "{args:?}: {err}");
    };
    bad(
        &["incident", "start", "--reason", "x", "--scope", "org:nope"],
        "names no org",
    );
    bad(
        &[
            "incident",
            "start",
            "--reason",
            "x",
            "--scope",
            "everything",
        ],
        "org:SLUG or all",
    );
    bad(
        &["incident", "start", "--reason", "x", "--scope", "org:acme"],
        "nothing to do",
    );
    bad(
        &[
            "incident", "start", "--reason", "x", "--scope", "org:acme", "--kind", "nosuch",
        ],
        "not a connector kind",
    );
    bad(
        &["incident", "report", "01NOPE", "--format", "md"],
        "not found",
    );
    bad(&["incident", "status", "01NOPE"], "not found");
    assert_eq!(env.json(&["incident", "list"]), serde_json::json!([]));

    // one running campaign per scope: a second overlapping one gets it back
    env.json(&[
        "key", "create", "--org", "acme", "--name", "ci", "--scope", "read",
    ]);
    connection(&env, "redis", "cache", &["host=127.0.0.1", "port=1"]);
    store_unprobed(&env, "cache", "password", "pw-0301");
    let first = env.json(&[
        "incident", "start", "--reason", "leak", "--scope", "org:acme",
    ]);
    // a second over the same org is refused with the running one…
    let out = env.run(&[
        "incident", "start", "--reason", "again", "--scope", "org:acme", "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let running: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(running["id"], first["id"]);
    assert_eq!(env.json(&["incident", "list"]).as_array().unwrap().len(), 1);
    // …but the operator's campaign over every org is never blocked by an
    // org's: it takes it over (the org campaign ends, saying by whom)
    let all = env.json(&[
        "incident", "start", "--reason", "platform", "--scope", "all",
    ]);
    let taken = env.json(&["incident", "status", first["id"].as_str().unwrap()]);
    assert_eq!(taken["status"], "cancelled", "{taken}");
    assert!(
        taken.to_string().contains(&format!(
            "taken over by the operator's campaign {}",
            all["id"].as_str().unwrap()
        )),
        "{taken}"
    );
    assert_eq!(env.json(&["incident", "list"]).as_array().unwrap().len(), 2);
    let first = all;

    // the admin API: an org admin may not ask for all, nor another org
    // (this server runs no jobs: the campaign stays running)
    let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "0")]);
    let (c, csrf) = admin_login(&srv, &email).await;
    let post = |body: Value| {
        c.post(srv.at("/api/v1/incidents"))
            .header("X-CSRF-Token", &csrf)
            .json(&body)
            .send()
    };
    assert_eq!(
        post(serde_json::json!({"reason": "x", "scope": "all"}))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post(serde_json::json!({"reason": "x", "scope": "org:beta"}))
            .await
            .unwrap()
            .status(),
        403
    );
    // an org that does not exist answers the same: no tenant learns which
    // other orgs there are
    assert_eq!(
        post(serde_json::json!({"reason": "x", "scope": "org:no-such-org"}))
            .await
            .unwrap()
            .status(),
        403
    );
    let r = post(serde_json::json!({"reason": "x", "scope": "org:acme"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.json::<Value>().await.unwrap()["campaign"]["id"],
        first["id"]
    );
    // cancel stops what has not started
    let v = env.json(&["incident", "cancel", first["id"].as_str().unwrap()]);
    assert_eq!(v["status"], "cancelled");
});

dual!(
    a_campaign_killed_halfway_finishes_with_no_item_done_twice,
    |env| {
        if !require(redis_up(), "Redis") || !require(mariadb_up(), "MariaDB") {
            return;
        }
        env.ok(&["org", "create", "acme"]);
        const N: usize = 12;
        let mut users = Vec::new();
        for i in 0..N {
            let pw = format!("kill-test-pw-{i:02}");
            let u = redis_user(&pw).await;
            connection(
                &env,
                "redis",
                &format!("r{i}"),
                &["host=127.0.0.1", &format!("username={u}")],
            );
            set_credential(&env, &format!("r{i}"), &["password"], &[&pw]);
            users.push((u, pw));
        }
        let mu = format!("rk_{}", &ulid::Ulid::new().to_string().to_lowercase()[..12]);
        let root = sqlx::MySqlPool::connect("mysql://root@127.0.0.1:3306/mysql")
            .await
            .unwrap();
        sqlx::query(&format!(
            "CREATE USER '{mu}'@'%' IDENTIFIED BY 'kill-maria-pw'"
        ))
        .execute(&root)
        .await
        .unwrap();
        connection(
            &env,
            "mysql",
            "maria",
            &[
                "host=127.0.0.1",
                "database=information_schema",
                &format!("username={mu}"),
            ],
        );
        set_credential(&env, "maria", &["password"], &["kill-maria-pw"]);
        // The first server pauses after the first step of every rotation it
        // runs (REKEY_TEST_PAUSE_AFTER_STEP) and is SIGKILLed there: every
        // item is under way, none finished.
        let mut first = env.serve_with(&[
            ("REKEY_JOBS_INTERVAL", "1s"),
            ("REKEY_TEST_PAUSE_AFTER_STEP", "1"),
        ]);
        let v = env.json(&[
            "incident",
            "start",
            "--reason",
            "kill test",
            "--scope",
            "org:acme",
        ]);
        let id = v["id"].as_str().unwrap().to_string();
        let mut under_way = 0;
        for _ in 0..200 {
            let rs = env.json(&["rotation", "list", "--org", "acme"]);
            under_way = rs
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| !r["steps"].as_array().unwrap().is_empty())
                .count();
            if under_way == N + 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(under_way > 0, "rotations under way before the kill");
        first.kill();
        let halfway = env.json(&["incident", "status", &id]);
        assert_eq!(halfway["status"], "running");
        assert_eq!(halfway["counts"]["verified"], 0, "{halfway}");

        // leases run out (test clock); a new server finishes the campaign
        env.advance(Duration::from_secs(600));
        let _second = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        let done = poll(&env, &["incident", "status", &id], |v| {
            v["status"] == "completed"
        })
        .await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["counts"]["verified"], N + 1, "{done}");
        // each target rotated once: one rotation each, credential version 2
        let rs = env.json(&["rotation", "list", "--org", "acme"]);
        assert_eq!(rs.as_array().unwrap().len(), N + 1, "{rs}");
        for (i, (u, pw)) in users.iter().enumerate() {
            let show = env.json(&[
                "connection",
                "show",
                "--org",
                "acme",
                "--name",
                &format!("r{i}"),
            ]);
            assert_eq!(show["slots"]["current"]["version"], 2, "{show}");
            let old = redis::Client::open(format!("redis://{u}:{pw}@127.0.0.1:6379/").as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await;
            assert!(old.is_err(), "the old password of {u} is refused");
        }
        // MariaDB: the original password is refused, the stored one logs in
        {
            use sqlx::Connection;
            let url = format!("mysql://{mu}:kill-maria-pw@127.0.0.1:3306/information_schema");
            assert!(sqlx::MySqlConnection::connect(&url).await.is_err());
        }
        let show = env.json(&["connection", "show", "--org", "acme", "--name", "maria"]);
        assert_eq!(show["slots"]["current"]["version"], 2, "{show}");
        let t = env.json(&["connection", "test", "--org", "acme", "--name", "maria"]);
        assert_eq!(t["last_test"]["outcome"], "ok");
        sqlx::query(&format!("DROP USER '{mu}'@'%'"))
            .execute(&root)
            .await
            .unwrap();
    }
);

dual!(
    a_campaign_reauthorizes_an_oauth_connection_and_rotates_aws_keys,
    |env| {
        let Some(moto) = crate::moto::Moto::start().await else {
            return;
        };
        // a `rekey` OAuth connection to a second rekey server (the provider)
        // (the consumer server runs no jobs: the CLI below runs the campaign
        // with the public URL the provider calls back, and no other
        // instance may start its rotations first)
        let p = crate::connections::pair(&env, "1h", &[("REKEY_JOBS_INTERVAL", "0")]).await;
        let c = crate::connections::authorize(&env, &p, "authorize").await;
        assert_eq!(c["status"], "connected");
        // an AWS-keys connection on moto_server
        let keys = moto.user_with_key("svc").await;
        moto.create_bucket(&keys, "rekey-bucket").await;
        moto.s3_connection(&env, &keys);

        // run from the CLI (which knows the public URL the provider calls back)
        // until only people's work is left
        let mut cmd = env.cmd();
        cmd.env("REKEY_PUBLIC_URL", &p.csrv.url).args([
            "incident",
            "start",
            "--reason",
            "provider breach",
            "--scope",
            "org:acme",
            "--wait",
            "--json",
        ]);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s: Value = serde_json::from_slice(&out.stdout).unwrap();
        let id = s["id"].as_str().unwrap().to_string();
        assert_eq!(item(&s, "upstream")["action"], "reauthorize");
        assert_eq!(item(&s, "bucket")["action"], "rotate");
        assert_eq!(item(&s, "bucket")["status"], "verified", "{s}");
        let up = item(&s, "upstream");
        assert_eq!(up["status"], "waiting_person", "{s}");
        assert_eq!(up["waiting_on"], "org_admins");
        let what = up["detail"].as_str().unwrap();
        let url = what
            .strip_prefix("re-authorize at ")
            .unwrap_or_else(|| panic!("{what}"));
        assert!(
            url.starts_with(&format!("{}/connect/", p.csrv.url)),
            "{url}"
        );
        let grants = p.provider.json(&[
            "app",
            "authorizations",
            "--org",
            "prov",
            "--name",
            "consumer",
        ]);
        assert!(
            grants
                .as_array()
                .unwrap()
                .iter()
                .all(|g| g["status"] == "Revoked"),
            "{grants}"
        );
        let show = env.json(&["connection", "show", "--org", "acme", "--name", "upstream"]);
        assert_eq!(show["status"], "needs_reauth");
        assert!(!moto.accepts(&keys).await, "the old AWS key is deleted");

        // an org admin re-authorizes: signed in, through the provider's pages
        crate::connections::complete(&p.csrv, url, &p.psrv.url).await;
        // an instance that runs jobs finishes the campaign
        let _runner = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        let done = poll(&env, &["incident", "status", &id], |v| {
            v["status"] == "completed"
        })
        .await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(item(&done, "upstream")["status"], "verified", "{done}");
        let show = env.json(&["connection", "show", "--org", "acme", "--name", "upstream"]);
        assert_eq!(show["status"], "connected");
    }
);

/// An org admin re-authorizes at `link` (which rekey gave) through the
/// provider's pages at `provider`; rekey's callback stores the grant.
/// Returns the provider URL the link led to.
async fn consent(csrv: &Server, provider: &str, link: &str) -> String {
    crate::connections::complete(csrv, link, &format!("{provider}/oauth2/authorize")).await
}

/// Item number `n` of a campaign answer.
fn item_n(v: &Value, n: u64) -> &Value {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["n"] == n)
        .unwrap_or_else(|| panic!("no item {n}: {v}"))
}

dual!(
    the_operators_client_is_rotated_and_probed_before_its_connections_reauthorize,
    |env| {
        use crate::oauth_support::USER;
        // A second rekey stands in for Pipedrive: the catalog fixes its
        // hosts, and only there does the operator's kind-wide client go.
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
                "read",
                "--password-stdin",
            ],
            PASSWORD,
        );
        let psrv = provider.serve();
        let urls = format!(
            "https://oauth.pipedrive.com/oauth/authorize={p}/oauth2/authorize \
             https://oauth.pipedrive.com/oauth/token={p}/oauth2/token \
             https://oauth.pipedrive.com/oauth/revoke={p}/oauth2/revoke \
             https://api.pipedrive.com/v1/users/me={p}/v1/me",
            p = psrv.url
        );
        env.org_with_admin("acme");
        let csrv = env.serve_with(&[
            ("REKEY_JOBS_INTERVAL", "1s"),
            ("REKEY_KEEPER_INTERVAL", "0"),
            ("REKEY_TEST_CATALOG_URLS", &urls),
        ]);
        let app = provider.json(&[
            "app",
            "create",
            "--org",
            "prov",
            "--name",
            "platform-pipedrive",
            "--scope",
            "read",
            "--callback",
            &format!("{}/oauth/callback", csrv.url),
        ]);
        let client_id = app["client_id"].as_str().unwrap().to_string();
        let configure = |secret: &str| {
            env.json_stdin(
                &[
                    "connector",
                    "configure",
                    "pipedrive",
                    "--client-id",
                    &client_id,
                    "--client-secret-stdin",
                ],
                secret,
            )
        };
        // before the breach: the operator's client, one connection on it
        configure(app["client_secret"].as_str().unwrap());
        connection(&env, "pipedrive", "deals", &[]);
        let mut cmd = env.cmd();
        cmd.env("REKEY_PUBLIC_URL", &csrv.url)
            .env("REKEY_TEST_CATALOG_URLS", &urls)
            .args([
                "connection",
                "authorize",
                "--org",
                "acme",
                "--name",
                "deals",
                "--json",
            ]);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        consent(&csrv, &psrv.url, v["authorize_url"].as_str().unwrap()).await;
        let show = env.json(&["connection", "show", "--org", "acme", "--name", "deals"]);
        assert_eq!(show["status"], "connected", "{show}");

        // the plan: the operator's client first, the connection after it
        let plan = env.json(&[
            "incident",
            "start",
            "--reason",
            "Pipedrive breach",
            "--scope",
            "all",
            "--dry-run",
        ]);
        let first = item_n(&plan, 1);
        assert_eq!(first["target"]["type"], "provider_client", "{plan}");
        assert_eq!(first["action"], "operator");
        assert!(
            first["detail"].as_str().unwrap().contains(&format!(
                "rekey connector configure pipedrive --client-id {client_id}"
            )),
            "{plan}"
        );
        let deals = item(&plan, "deals");
        assert_eq!(deals["action"], "reauthorize", "{plan}");
        assert_eq!(deals["after"], 1, "{plan}");

        let v = env.json(&[
            "incident",
            "start",
            "--reason",
            "Pipedrive breach",
            "--scope",
            "all",
        ]);
        let id = v["id"].as_str().unwrap().to_string();
        let status = ["incident", "status", id.as_str()];
        let s = poll(&env, &status, |v| {
            item_n(v, 1)["status"] == "waiting_person"
                && item(v, "deals")["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("waits for item 1"))
        })
        .await;
        assert_eq!(item_n(&s, 1)["waiting_on"], "operator", "{s}");
        let deals = item(&s, "deals");
        assert_eq!(deals["status"], "pending", "{s}");
        assert!(deals["rotation_id"].is_null(), "{s}");
        assert!(
            s["waiting"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["n"] == 1 && w["who"] == "operator"),
            "{s}"
        );
        // the connection is untouched while the operator's client is old
        let show = env.json(&["connection", "show", "--org", "acme", "--name", "deals"]);
        assert_eq!(show["status"], "connected", "{show}");

        // a secret the provider refuses keeps the item on the operator
        configure("not-the-secret-the-provider-issued");
        let s = poll(&env, &status, |v| {
            item_n(v, 1)["detail"]
                .as_str()
                .is_some_and(|d| d.contains("stored a new client secret"))
        })
        .await;
        let first = item_n(&s, 1);
        assert_eq!(first["status"], "waiting_person", "{s}");
        assert_eq!(first["waiting_on"], "operator", "{s}");
        assert!(first["detail"].as_str().unwrap().contains(", but "), "{s}");
        assert_eq!(item(&s, "deals")["status"], "pending", "{s}");

        // the secret rotated in the provider's console passes the probe;
        // then the grant is revoked there and an admin asked to re-authorize
        let rotated = provider.json(&[
            "app",
            "regenerate-secret",
            "--org",
            "prov",
            "--name",
            "platform-pipedrive",
        ]);
        configure(rotated["client_secret"].as_str().unwrap());
        let s = poll(&env, &status, |v| {
            item(v, "deals")["status"] == "waiting_person"
        })
        .await;
        let first = item_n(&s, 1);
        assert_eq!(first["status"], "verified", "{s}");
        assert!(first["verified_at"].is_string(), "{s}");
        let deals = item(&s, "deals");
        assert_eq!(deals["waiting_on"], "org_admins", "{s}");
        let grants = provider.json(&[
            "app",
            "authorizations",
            "--org",
            "prov",
            "--name",
            "platform-pipedrive",
        ]);
        assert!(
            grants
                .as_array()
                .unwrap()
                .iter()
                .all(|g| g["status"] == "Revoked"),
            "{grants}"
        );
        let show = env.json(&["connection", "show", "--org", "acme", "--name", "deals"]);
        assert_eq!(show["status"], "needs_reauth", "{show}");
        let what = deals["detail"].as_str().unwrap();
        let url = what
            .strip_prefix("re-authorize at ")
            .unwrap_or_else(|| panic!("{what}"));
        let at_provider = consent(&csrv, &psrv.url, url).await;
        assert!(at_provider.contains(&client_id), "{at_provider}");

        // the new grant (on the rotated client) is verified: campaign over
        let done = poll(&env, &status, |v| v["status"] == "completed").await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(item(&done, "deals")["status"], "verified", "{done}");
        let show = env.json(&["connection", "show", "--org", "acme", "--name", "deals"]);
        assert_eq!(show["status"], "connected", "{show}");
        let report: Value = serde_json::from_slice(
            &env.run(&["incident", "report", &id, "--format", "json"])
                .stdout,
        )
        .unwrap();
        assert_eq!(item_n(&report, 1)["status"], "verified", "{report}");
    }
);

// An item whose rotation waits for its cut-over is `done`, and its detail
// does not say verified; it turns `verified` (README: the probe passes with
// the new credential) once the cut-over retired the old one.
dual!(an_item_is_verified_only_when_its_detail_says_so, |env| {
    if !require(redis_up(), "Redis") {
        return;
    }
    env.ok(&["org", "create", "acme"]);
    let pw = "item-detail-pw-01";
    let u = redis_user(pw).await;
    connection(
        &env,
        "redis",
        "cache",
        &["host=127.0.0.1", &format!("username={u}")],
    );
    set_credential(&env, "cache", &["password"], &[pw]);
    let _srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
    let id = acme_campaign(&env, "1h");
    let it = wait_item(&env, &id, "cache", "done").await;
    let detail = it["detail"].as_str().unwrap_or_default();
    assert!(!detail.contains("verified"), "{it}");
    assert!(
        detail.contains("the previous one works until the cut-over"),
        "{it}"
    );
    assert!(it["verified_at"].is_null(), "{it}");

    // The cut-over ends: verified, and the detail says why.
    let rid = it["rotation_id"].as_str().unwrap().to_string();
    env.json(&["rotation", "finish", &rid, "--now"]);
    let it = wait_item(&env, &id, "cache", "verified").await;
    let detail = it["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("completed; probe"), "{it}");
});

// #24: an item is cancelled on its own. A pending item cancelled through
// the API never starts (no rotation of its connection); the campaign
// completes without it; `incident retry --item N` starts it again; an item
// whose rotation made its change is refused, naming what ends it.
dual!(an_item_is_cancelled_and_retried_on_its_own, |env| {
    let old = "the-old-password-2411";
    let Some(user) = crate::rotation::redis_world(&env, old, true).await else {
        return;
    };
    let admin = env.admin_of("acme");
    // no server yet: the item waits, pending, and is cancelled
    let v = env.json(&[
        "incident",
        "start",
        "--reason",
        "item cancel",
        "--scope",
        "org:acme",
    ]);
    let id = v["id"].as_str().unwrap().to_string();
    let n = item(&v, "cache")["n"].as_i64().unwrap();
    let ns = n.to_string();
    assert_eq!(item(&v, "cache")["status"], "pending", "{v}");
    let v = env.json(&["incident", "cancel", &id, "--item", &ns]);
    assert_eq!(item(&v, "cache")["status"], "cancelled", "{v}");
    assert_eq!(v["status"], "running", "only the item: {v}");
    let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
    let (c, csrf) = admin_login(&srv, &admin).await;
    let cancel = |body: Value| {
        c.post(srv.at(&format!("/api/v1/incidents/{id}/cancel")))
            .header("X-CSRF-Token", &csrf)
            .json(&body)
            .send()
    };
    // the campaign completes with it cancelled, and nothing touched it
    let v = poll(&env, &["incident", "status", &id], |v| {
        v["status"] == "completed"
    })
    .await;
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(item(&v, "cache")["status"], "cancelled", "{v}");
    assert_eq!(
        env.json(&["rotation", "list", "--org", "acme"]),
        serde_json::json!([])
    );
    assert!(crate::rotation::logs_in(&user, old).await);
    let audit = env.json(&["audit", "list", "--action", "incident.item_cancel"]);
    assert_eq!(audit.as_array().map(Vec::len), Some(1), "{audit}");
    // the API twin refuses what is settled, saying why
    let r = cancel(serde_json::json!({"item": n})).await.unwrap();
    assert_eq!(r.status(), 400);
    // started again on its own, from the Retry on the console's campaign
    // page (the CLI's `incident retry --item N` and the API twin run the
    // same function)
    let (ui, ui_csrf) = crate::console::sign_in(&srv, &admin).await;
    let (_, page) = crate::console::get(&ui, &srv, &format!("/ui/incidents/{id}")).await;
    assert!(
        page.contains(&format!("action=\"/ui/incidents/{id}/retry\"")),
        "a cancelled item has its Retry: {page}"
    );
    let r = crate::console::post(
        &ui,
        &srv,
        &format!("/ui/incidents/{id}/retry"),
        &[("csrf", ui_csrf.as_str()), ("item", ns.as_str())],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(&format!("/ui/incidents/{id}?notice=retried")),
        "{:?}",
        r.headers()["location"]
    );
    let v = poll(&env, &["incident", "status", &id], |v| {
        item(v, "cache")["status"] == "verified"
    })
    .await;
    assert_eq!(item(&v, "cache")["status"], "verified", "{v}");
    // a verified item is not retried: the API twin says why, nothing moves
    let r = c
        .post(srv.at(&format!("/api/v1/incidents/{id}/retry")))
        .header("X-CSRF-Token", &csrf)
        .json(&serde_json::json!({"item": n}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("only failed or cancelled items are retried"));
    assert!(!crate::rotation::logs_in(&user, old).await);
    // nothing left to cancel: refused, and it says why
    let out = env.run(&["incident", "cancel", &id, "--item", &ns, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing to cancel"), "{err}");
    let r = cancel(serde_json::json!({"item": 999})).await.unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
});

/// Starts a campaign over org acme with cut-over window `overlap`; its id.
pub(crate) fn acme_campaign(env: &Env, overlap: &str) -> String {
    let v = env.json(&[
        "incident",
        "start",
        "--reason",
        "leak",
        "--scope",
        "org:acme",
        "--overlap",
        overlap,
    ]);
    v["id"].as_str().unwrap().to_string()
}

/// Waits up to 60 s for item `name` of campaign `id` to be `status`; it.
async fn wait_item(env: &Env, id: &str, name: &str, status: &str) -> Value {
    let mut it = Value::Null;
    let ok = wait_until(
        || {
            it = item(&env.json(&["incident", "status", id]), name).clone();
            it["status"] == status
        },
        Duration::from_secs(60),
    )
    .await;
    assert!(ok, "{it}");
    it
}

/// Waits up to `limit` for campaign `id` to be `completed`; its status
/// (`incident status` exits 1 once an item failed, so it is read either way).
pub(crate) async fn wait_completed(env: &Env, id: &str, limit: Duration) -> Value {
    let mut last = Value::Null;
    let done = wait_until(
        || {
            let out = env.run(&["incident", "status", id, "--json"]);
            last = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            last["status"] == "completed"
        },
        limit,
    )
    .await;
    assert!(done, "{last}");
    last
}

// A campaign's job whose failures in a row spent its attempts (`dead`)
// used to leave the campaign `running` with nothing following its items,
// and nothing saying so: `incident status` now names it, and `incident
// retry` (no item failed) starts it again, to the end.
dual!(
    a_stopped_campaign_says_so_and_retry_starts_it_again,
    |env| {
        let old = "the-old-password-2412";
        let Some(_user) = crate::rotation::redis_world(&env, old, true).await else {
            return;
        };
        // no server yet: the campaign's job waits, and is killed as ten failed
        // passes in a row would leave it
        let id = acme_campaign(&env, "0s");
        exec_sql(
            &env,
            &format!(
                "UPDATE jobs SET state = 'dead', attempts = 10, last_error = 'pool timed out'
             WHERE id = (SELECT job_id FROM incidents WHERE id = '{id}')"
            ),
        )
        .await;
        let s = env.json(&["incident", "status", &id]);
        assert_eq!(s["status"], "running", "{s}");
        assert_eq!(s["stopped"], "pool timed out", "{s}");
        let text = env.run(&["incident", "status", &id]);
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("STOPPED"), "{text}");
        assert!(
            text.contains(&format!("rekey incident retry {id}")),
            "{text}"
        );

        // retried with no failed item: the job runs again, the campaign ends
        env.json(&["incident", "retry", &id]);
        let s = env.json(&["incident", "status", &id]);
        assert!(s.get("stopped").is_none(), "{s}");
        let _srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        wait_completed(&env, &id, Duration::from_secs(90)).await;
    }
);

// A connection deleted while its campaign item followed its rotation
// (promoted, the cut-over waiting): the rotation is cancelled with it, the
// item fails saying so, and the campaign completes. The rotation used to
// stay open, its job failing against a connection that was gone, and the
// campaign waiting on it. (An item whose connection is deleted
// before it starts already failed: "the rotation could not start".)
dual!(
    an_item_whose_connection_is_deleted_fails_and_the_campaign_ends,
    |env| {
        let old = "the-old-password-2413";
        let Some(_user) = crate::rotation::redis_world(&env, old, true).await else {
            return;
        };
        let _srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        let id = acme_campaign(&env, "1h");
        wait_item(&env, &id, "cache", "done").await;
        env.json(&["connection", "delete", "--org", "acme", "--name", "cache"]);
        let last = wait_completed(&env, &id, Duration::from_secs(60)).await;
        let it = item(&last, "cache");
        assert_eq!(it["status"], "failed", "{it}");
        assert!(
            it["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("its connection was deleted"),
            "{it}"
        );
        // its rotation ended with it, its job gone
        let rid = it["rotation_id"].as_str().unwrap_or_default().to_string();
        let jobs = query_i64(
            &env,
            &format!(
            "SELECT COUNT(*) FROM jobs WHERE id = (SELECT job_id FROM rotations WHERE id = '{rid}')"
        ),
        )
        .await;
        assert_eq!(jobs, Some(0));
    }
);
