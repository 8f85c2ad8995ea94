//! Evidence that the rotation engine holds, against targets that check
//! passwords: a PostgreSQL cluster of our own with scram-sha-256 (the
//! machine's one trusts loopback), and MariaDB, which keeps one password.
//! The new stored password logs in, the old one is refused, a failed verify
//! puts the target back, and a process SIGKILLed after every step leaves a
//! stored credential that opens the account.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;

use crate::dual;
use crate::harness::*;
use crate::maria::{maria_login, maria_user};
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

/// One SIGKILL of [`kill_after_every_step`]: the steps recorded by then,
/// the rotation's status, and the target's answer to the stored current
/// password.
struct Kill {
    steps: Vec<String>,
    status: String,
    login: Result<(), String>,
}

impl Kill {
    /// The last step recorded done before the kill.
    fn after(&self) -> &str {
        self.steps.last().map_or("", String::as_str)
    }
}

impl std::fmt::Debug for Kill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\n  after {} ({}; steps {}): {:?}",
            self.after(),
            self.status,
            self.steps.join(","),
            self.login
        )
    }
}

/// Runs rotation `id` of connection `name` on servers that each commit one
/// step and pause (REKEY_TEST_PAUSE_AFTER_STEP, holding the lease); each is
/// SIGKILLed there and the lease waited out with the test clock. After every
/// kill the stored current password, read as platform code reads it, is
/// tried at the target by `login`.
async fn kill_after_every_step<F, Fut>(env: &Env, id: &str, name: &str, login: F) -> Vec<Kill>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let key = service_key(env);
    let mut kills = Vec::new();
    let mut seen = 0;
    for _round in 0..14 {
        let mut srv = env.serve_with(&[
            ("REKEY_JOBS_INTERVAL", "1s"),
            ("REKEY_TEST_PAUSE_AFTER_STEP", "1"),
        ]);
        let mut moved = false;
        for _ in 0..600 {
            let v = env.json(&["rotation", "show", id]);
            let n = v["steps"].as_array().map_or(0, Vec::len);
            if n > seen || is_terminal(&v) {
                seen = n;
                moved = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        srv.kill(); // SIGKILL, between two steps
        let v = env.json(&["rotation", "show", id]);
        assert!(moved, "rotation {id} did not move: {v}");
        let current = current_password(env, &key, name).await;
        kills.push(Kill {
            steps: v["steps"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter(|s| s["status"] == "done")
                        .map(|s| s["name"].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default(),
            status: v["status"].as_str().unwrap_or("").to_string(),
            login: login(current).await,
        });
        if is_terminal(&v) {
            break;
        }
        env.advance(Duration::from_secs(61));
    }
    kills
}

fn is_terminal(v: &Value) -> bool {
    ["completed", "failed", "cancelled", "stalled"].contains(&v["status"].as_str().unwrap_or(""))
}

dual!(
    mariadb_rotation_killed_after_every_step_resumes_and_finishes,
    |env| {
        if !require(mariadb_up(), "MariaDB") {
            return;
        }
        env.ok(&["org", "create", "acme"]);
        let old = "the-old-password-4103";
        let user = maria_user(old).await;
        connection(
            &env,
            "mysql",
            "maria",
            &[
                "host=127.0.0.1",
                "port=3306",
                "database=information_schema",
                &format!("username={user}"),
            ],
        );
        set_credential(&env, "maria", &["password"], &[old]);
        let id = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "maria",
            "--cutover-window",
            "0s",
        ])["id"]
            .as_str()
            .unwrap()
            .to_string();
        let u = user.clone();
        let kills = kill_after_every_step(&env, &id, "maria", move |pw| {
            let u = u.clone();
            async move { maria_login(&u, &pw).await }
        })
        .await;
        // Commit points: check+write_ahead, apply, verify+promote, retire.
        assert!(
            kills.len() >= 4,
            "killed only {} times: {kills:?}",
            kills.len()
        );
        let points: Vec<&str> = kills.iter().map(Kill::after).collect();
        for p in ["write_ahead", "apply", "promote", "retire"] {
            assert!(points.contains(&p), "never killed after {p}: {kills:?}");
        }
        // MariaDB keeps one password: from the apply until the promote it
        // holds only the new one, and the credentials endpoint hands that
        // one out (`slots::served`), so a kill at any point, the apply
        // included, leaves readers a password the target accepts.
        let refused: Vec<&Kill> = kills.iter().filter(|k| k.login.is_err()).collect();
        assert!(
        refused.is_empty(),
        "the stored current password was refused by MariaDB after a kill: {refused:?}\nall: {kills:?}"
    );
        let v = env.json(&["rotation", "show", &id]);
        assert_eq!(v["status"], "completed", "{v}");
        let err = maria_login(&user, old).await.unwrap_err();
        assert!(err.contains("Access denied"), "{err}");
    }
);

dual!(
    strict_postgres_rotation_killed_after_every_step_resumes_and_finishes,
    |env| {
        let Some(pg) = strict_pg().await else {
            return;
        };
        env.ok(&["org", "create", "acme"]);
        let old = "the-old-password-4104";
        let role = pg.role(old).await;
        strict_connection(&env, pg, "warehouse", "postgres", &role, old, true);
        let id = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "warehouse",
            "--cutover-window",
            "0s",
        ])["id"]
            .as_str()
            .unwrap()
            .to_string();
        let r = role.clone();
        let kills = kill_after_every_step(&env, &id, "warehouse", move |pw| {
            let r = r.clone();
            async move { pg.login(&r, &pw).await }
        })
        .await;
        let points: Vec<&str> = kills.iter().map(Kill::after).collect();
        for p in ["write_ahead", "apply", "promote", "retire"] {
            assert!(points.contains(&p), "never killed after {p}: {kills:?}");
        }
        // One password, as on MariaDB: after every kill, the apply
        // included, the password handed out logs in.
        let refused: Vec<&Kill> = kills.iter().filter(|k| k.login.is_err()).collect();
        assert!(
            refused.is_empty(),
            "the stored current password was refused by PostgreSQL after a kill: {refused:?}\nall: {kills:?}"
        );
        let v = env.json(&["rotation", "show", &id]);
        assert_eq!(v["status"], "completed", "{v}");
        assert!(
            pg.refuses(&role, old).await,
            "the old password still logs in"
        );
    }
);
