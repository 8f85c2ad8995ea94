//! The drivers catalog entries name that used to have none behind them:
//! Amazon Redshift (PostgreSQL's protocol and `ALTER USER`), and the
//! platform's own access keys and machine clients held by a connection
//! (`platform_access_key`, `bulk_api`, `platform_m2m`), rotated through
//! rekey's own keys and clients.

use serde_json::Value;

use crate::dual;
use crate::harness::*;
use crate::strict_pg::strict_pg;

/// `rotate --connection NAME --wait --cutover-window 0s` in org `org`: the
/// rotation's final view (its stderr with it when it did not complete).
fn rotate_now(env: &Env, org: &str, name: &str) -> (Value, String) {
    let out = env.run(&[
        "rotate",
        "--org",
        org,
        "--connection",
        name,
        "--wait",
        "--cutover-window",
        "0s",
        "--json",
    ]);
    (
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

// No Redshift cluster here: a PostgreSQL cluster of our own that checks
// passwords stands in for it. Redshift speaks PostgreSQL's protocol and
// takes `ALTER USER u PASSWORD 'md5…'`; the stand-in database checks
// logins by `md5` (pg_hba), the method under which an MD5 verifier logs
// in — so the rotation is shown to set a verifier that opens the account
// with the new password and refuses the old one. What only a real
// Redshift could show (its `pg_user`, its password rules) is not tested.
dual!(redshift_rotation_sets_an_md5_verifier_that_logs_in, |env| {
    let Some(pg) = strict_pg().await else {
        return;
    };
    let db = pg.md5_database().await;
    env.ok(&["org", "create", "acme"]);
    let old = "the-old-password-2304";
    let role = pg.role(old).await;
    assert!(pg.refuses_to(db, &role, "not-the-password").await);
    pg.login_to(db, &role, old)
        .await
        .expect("the old password logs in");
    connection(
        &env,
        "redshift",
        "warehouse",
        &[
            "host=127.0.0.1",
            &format!("port={}", pg.port),
            &format!("database={db}"),
            &format!("username={role}"),
        ],
    );
    set_credential(&env, "warehouse", &["password"], &[old]);
    let key = service_key(&env);

    let plan = env.json(&[
        "rotate",
        "--org",
        "acme",
        "--connection",
        "warehouse",
        "--dry-run",
    ]);
    let text = plan.to_string();
    assert!(
        text.contains(&format!("ALTER USER \\\"{role}\\\" PASSWORD 'md5")),
        "{plan}"
    );
    assert!(!text.contains(old), "{plan}");

    let (v, stderr) = rotate_now(&env, "acme", "warehouse");
    assert!(!stderr.contains("not built yet"), "{stderr}");
    assert_eq!(v["status"], "completed", "{v}\n{stderr}");
    let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "0")]);
    let new = stored_credential(&env, &srv, &key, "warehouse").await["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new, old);
    pg.login_to(db, &role, &new)
        .await
        .expect("the new stored password logs in");
    assert!(
        pg.refuses_to(db, &role, old).await,
        "the old password still logs in"
    );
    // What the server holds is the MD5 verifier rekey computed (the
    // plaintext never reached it).
    let mut admin = pg.admin().await;
    let stored: String = sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(&role)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(
        stored,
        rekey::connectors::drivers::redshift::md5_verifier(&role, &new)
    );
});

async fn cc_token(srv: &Server, id: &str, secret: &str) -> u16 {
    client()
        .post(srv.at("/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token")
        .status()
        .as_u16()
}

async fn me_with_key(srv: &Server, key: &str) -> u16 {
    client()
        .get(srv.at("/v1/me"))
        .header("Accesskey", key)
        .send()
        .await
        .expect("me")
        .status()
        .as_u16()
}

dual!(
    platform_key_and_m2m_connections_rotate_through_rekeys_own,
    |env| {
        env.ok(&["org", "create", "acme"]);
        let m = env.json(&[
            "m2m", "create", "--org", "acme", "--name", "sync", "--scope", "read",
        ]);
        let (client_id, old_secret) = (
            m["client_id"].as_str().unwrap().to_string(),
            m["client_secret"].as_str().unwrap().to_string(),
        );
        let k = env.json(&[
            "key", "create", "--org", "acme", "--name", "etl", "--scope", "read",
        ]);
        let old_key = k["key"].as_str().unwrap().to_string();
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "0"), ("REKEY_KEEPER_INTERVAL", "0")]);
        let base = format!("base_url={}", srv.url);
        connection(&env, "platform_access_key", "self-key", &[&base]);
        set_credential(&env, "self-key", &["access_key"], &[&old_key]);
        connection(&env, "bulk_api", "bulk", &[&base]);
        connection(&env, "platform_m2m", "self-m2m", &[&base]);
        set_credential(
            &env,
            "self-m2m",
            &["client_id", "client_secret"],
            &[&client_id, &old_secret],
        );
        let skey = service_key(&env);

        // the access key
        let plan = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "self-key",
            "--dry-run",
        ]);
        assert_eq!(plan["dual_credentials"], true, "{plan}");
        let (v, stderr) = rotate_now(&env, "acme", "self-key");
        assert_eq!(v["status"], "completed", "{v}\n{stderr}");
        let new_key = stored_credential(&env, &srv, &skey, "self-key").await["access_key"]
            .as_str()
            .unwrap()
            .to_string();
        assert_ne!(new_key, old_key);
        assert!(new_key.starts_with("rk_ak_"), "an access key's form");
        assert_eq!(me_with_key(&srv, &new_key).await, 200, "the new key works");
        let mut refused = false;
        for _ in 0..50 {
            // (a server's cache trusts an entry until it sees the change: 20 ms)
            if me_with_key(&srv, &old_key).await == 401 {
                refused = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(refused, "the old key still works after the rotation");
        let keys = env.json(&["key", "list", "--org", "acme"]);
        assert_eq!(
            keys.as_array().unwrap().len(),
            1,
            "the same key, a new value: {keys}"
        );
        assert!(keys[0]["previous_key_valid_until"].is_null(), "{keys}");
        let audit = env.json(&["audit", "list", "--org", "acme", "--action", "key."]);
        assert!(
            audit
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["action"] == "key.reset"
                    && e["actor"] == "rotation of connection self-key"),
            "{audit}"
        );

        // the bulk API's access key is the same kind of thing: its rotation
        // starts and checks (the value it holds is the one just rotated)
        set_credential(&env, "bulk", &["access_key"], &[&new_key]);
        let plan = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "bulk",
            "--dry-run",
        ]);
        assert_eq!(plan["dual_credentials"], true, "{plan}");

        // the machine client's secret
        let (v, stderr) = rotate_now(&env, "acme", "self-m2m");
        assert_eq!(v["status"], "completed", "{v}\n{stderr}");
        let creds = stored_credential(&env, &srv, &skey, "self-m2m").await;
        let new_secret = creds["client_secret"].as_str().unwrap().to_string();
        assert_eq!(creds["client_id"], client_id.as_str());
        assert_ne!(new_secret, old_secret);
        assert_eq!(cc_token(&srv, &client_id, &new_secret).await, 200);
        let mut refused = false;
        for _ in 0..50 {
            if cc_token(&srv, &client_id, &old_secret).await == 401 {
                refused = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(refused, "the old client secret still works");

        // Another org's connection holding acme's key cannot rotate it: the
        // check finds no key of its own org, and nothing changes.
        env.ok(&["org", "create", "beta"]);
        env.json(&[
            "connection",
            "create",
            "--org",
            "beta",
            "--kind",
            "platform_access_key",
            "--name",
            "stolen",
            "--setting",
            &base,
        ]);
        env.json_stdin(
            &[
                "connection",
                "set-credential",
                "--org",
                "beta",
                "--name",
                "stolen",
                "--field",
                "access_key",
                "--value-stdin",
            ],
            &new_key,
        );
        let (v, _) = rotate_now(&env, "beta", "stolen");
        assert_eq!(v["status"], "failed", "{v}");
        assert!(
            v.to_string().contains("not a live access key of this org"),
            "{v}"
        );
        assert_eq!(
            me_with_key(&srv, &new_key).await,
            200,
            "acme's key unchanged"
        );

        // A campaign over acme with its own secrets rotates the key and the
        // client through the connections that hold them (which then hold
        // the new values), and regenerates apart only those none holds.
        env.json(&[
            "key", "create", "--org", "acme", "--name", "spare", "--scope", "read",
        ]);
        let plan = env.json(&[
            "incident",
            "start",
            "--reason",
            "platform key leak",
            "--scope",
            "org:acme",
            "--include-own",
            "--dry-run",
        ]);
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
        let has =
            |name: &str, action: &str| actions.contains(&(name.to_string(), action.to_string()));
        for (name, action) in [
            ("self-key", "rotate"),
            ("bulk", "rotate"),
            ("self-m2m", "rotate"),
            ("spare", "regenerate"),
        ] {
            assert!(has(name, action), "{name} {action}: {plan}");
        }
        assert!(!has("etl", "regenerate"), "{plan}");
        assert!(!has("sync", "regenerate"), "{plan}");

        // Reset by hand meanwhile, the key's value is no longer the one the
        // connection holds: its rotation says so and changes nothing.
        env.json(&[
            "key",
            "reset",
            "--org",
            "acme",
            "--name",
            "etl",
            "--overlap",
            "1h",
        ]);
        let (v, _) = rotate_now(&env, "acme", "self-key");
        assert_eq!(v["status"], "failed", "{v}");
        assert!(
            v.to_string()
                .contains("access key etl has a newer value than the one this connection holds"),
            "{v}"
        );
        assert_eq!(
            me_with_key(&srv, &new_key).await,
            200,
            "still in its overlap"
        );
    }
);

// rekey sees every use of its own keys: a connection's rotation of one
// waits while someone still presents the old value, names them, and
// retires it once it has gone unused for the cut-over window.
dual!(
    a_held_keys_cutover_waits_for_callers_of_the_old_value,
    |env| {
        env.ok(&["org", "create", "acme"]);
        let k = env.json(&[
            "key", "create", "--org", "acme", "--name", "etl", "--scope", "read",
        ]);
        let old_key = k["key"].as_str().unwrap().to_string();
        let srv = env.serve_with(&[
            ("REKEY_JOBS_INTERVAL", "1s"),
            ("REKEY_KEEPER_INTERVAL", "0"),
        ]);
        connection(
            &env,
            "platform_access_key",
            "self-key",
            &[&format!("base_url={}", srv.url)],
        );
        set_credential(&env, "self-key", &["access_key"], &[&old_key]);
        let v = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "self-key",
            "--cutover-window",
            "2s",
        ]);
        let id = v["id"].as_str().unwrap().to_string();
        // a job that has not moved keeps presenting the old key
        let caller = client();
        let mut named = Value::Null;
        for _ in 0..200 {
            let r = caller
                .get(srv.at("/v1/me"))
                .header("Accesskey", &old_key)
                .header("User-Agent", "etl-job/1.0")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "the old key works during the cut-over");
            let show = env.json(&["rotation", "show", &id]);
            if show["status"] == "waiting_cutover" && show.to_string().contains("etl-job/1.0") {
                named = show;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(
            named.to_string().contains("of access key etl"),
            "the cut-over never named the caller of the old key: {}",
            env.json(&["rotation", "show", &id])
        );
        // it stops; past the window (and the time a use takes to be reported)
        // the next look retires the old value
        env.advance(std::time::Duration::from_secs(60));
        wait_for_status(&env, &id, "completed").await;
        assert_eq!(me_with_key(&srv, &old_key).await, 401);
    }
);
