//! `rekey rotate --rotate-with CONN`: the change is made through an admin
//! connection of the same kind, against the real local PostgreSQL, MariaDB
//! and Redis; and the requests it refuses before anything changes.

use serde_json::Value;

use crate::dual;
use crate::harness::*;

fn steps_text(v: &Value) -> String {
    v["steps"].to_string()
}

dual!(postgres_role_rotates_through_an_admin_connection, |env| {
    if !require(
        std::net::TcpStream::connect("127.0.0.1:5432").is_ok(),
        "PostgreSQL",
    ) {
        return;
    }
    env.ok(&["org", "create", "acme"]);
    let role = format!("rk_{}", ulid::Ulid::new().to_string().to_lowercase());
    let old = "the-old-password-0101";
    let admin = sqlx::PgPool::connect(&pg_admin_url()).await.unwrap();
    sqlx::query(&format!("CREATE ROLE {role} LOGIN PASSWORD '{old}'"))
        .execute(&admin)
        .await
        .unwrap();
    let db = ["host=127.0.0.1", "database=postgres"];
    connection(
        &env,
        "postgres",
        "app-db",
        &[db[0], db[1], &format!("username={role}")],
    );
    set_credential(&env, "app-db", &["password"], &[old]);
    connection(
        &env,
        "postgres",
        "pg-admin",
        &[db[0], db[1], "username=postgres"],
    );
    set_credential(&env, "pg-admin", &["password"], &["trusted-on-loopback"]);

    let plan = env.json(&[
        "rotate",
        "--org",
        "acme",
        "--connection",
        "app-db",
        "--rotate-with",
        "pg-admin",
        "--dry-run",
    ]);
    assert_eq!(plan["rotate_with"], "pg-admin", "{plan}");
    let v = env.json(&[
        "rotate",
        "--org",
        "acme",
        "--connection",
        "app-db",
        "--rotate-with",
        "pg-admin",
        "--wait",
    ]);
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["rotate_with"], "pg-admin");
    assert!(steps_text(&v).contains("through pg-admin"), "{v}");
    // the verifier PostgreSQL stored is the new password's
    let stored: String = sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(&role)
        .fetch_one(&admin)
        .await
        .unwrap();
    let parts: Vec<&str> = stored.split(['$', ':']).collect();
    use base64::Engine;
    let salt = base64::engine::general_purpose::STANDARD
        .decode(parts[2])
        .unwrap();
    let key = service_key(&env);
    let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "0")]);
    let new = stored_credential(&env, &srv, &key, "app-db").await["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new, old);
    let scram = rekey::connectors::drivers::postgres::scram_verifier;
    assert_eq!(scram(&new, &salt, parts[1].parse().unwrap()), stored);
    // the admin's own credential is untouched
    let admin_show = env.json(&["connection", "show", "--org", "acme", "--name", "pg-admin"]);
    assert_eq!(admin_show["slots"]["current"]["version"], 1, "{admin_show}");
    sqlx::query(&format!("DROP ROLE {role}"))
        .execute(&admin)
        .await
        .unwrap();
});

dual!(
    postgres_admin_without_createrole_is_refused_at_the_check,
    |env| {
        if !require(
            std::net::TcpStream::connect("127.0.0.1:5432").is_ok(),
            "PostgreSQL",
        ) {
            return;
        }
        env.ok(&["org", "create", "acme"]);
        let suffix = ulid::Ulid::new().to_string().to_lowercase();
        let (role, weak) = (format!("rk_{suffix}"), format!("rkw_{suffix}"));
        let admin = sqlx::PgPool::connect(&pg_admin_url()).await.unwrap();
        for r in [&role, &weak] {
            sqlx::query(&format!("CREATE ROLE {r} LOGIN PASSWORD 'pw-0102'"))
                .execute(&admin)
                .await
                .unwrap();
        }
        connection(
            &env,
            "postgres",
            "app-db",
            &[
                "host=127.0.0.1",
                "database=postgres",
                &format!("username={role}"),
            ],
        );
        set_credential(&env, "app-db", &["password"], &["pw-0102"]);
        connection(
            &env,
            "postgres",
            "weak",
            &[
                "host=127.0.0.1",
                "database=postgres",
                &format!("username={weak}"),
            ],
        );
        set_credential(&env, "weak", &["password"], &["pw-0102"]);
        let out = env.run(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "app-db",
            "--rotate-with",
            "weak",
            "--wait",
            "--json",
        ]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["status"], "failed", "{v}");
        let reason = v["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("check:") && reason.contains("CREATEROLE"),
            "{reason}"
        );
        let show = env.json(&["connection", "show", "--org", "acme", "--name", "app-db"]);
        assert_eq!(show["slots"]["current"]["version"], 1);
        for r in [&role, &weak] {
            sqlx::query(&format!("DROP ROLE {r}"))
                .execute(&admin)
                .await
                .unwrap();
        }
    }
);

dual!(mariadb_user_rotates_through_root, |env| {
    if !require(mariadb_up(), "MariaDB") {
        return;
    }
    env.ok(&["org", "create", "acme"]);
    let user = format!("rk_{}", &ulid::Ulid::new().to_string().to_lowercase()[..12]);
    let old = "the-old-password-0103";
    let root = sqlx::MySqlPool::connect("mysql://root@127.0.0.1:3306/mysql")
        .await
        .unwrap();
    // an admin account that may change others' passwords (CREATE USER)
    // and look accounts up (SELECT on the mysql schema)
    let admin = format!("{user}_a");
    for sql in [
        format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{old}'"),
        format!("CREATE USER '{admin}'@'%' IDENTIFIED BY 'admin-pw-0103'"),
        format!("GRANT CREATE USER ON *.* TO '{admin}'@'%'"),
        format!("GRANT SELECT ON mysql.* TO '{admin}'@'%'"),
    ] {
        sqlx::query(&sql).execute(&root).await.unwrap();
    }
    let db = ["host=127.0.0.1", "database=information_schema"];
    connection(
        &env,
        "mysql",
        "maria",
        &[db[0], db[1], &format!("username={user}")],
    );
    set_credential(&env, "maria", &["password"], &[old]);
    connection(
        &env,
        "mysql",
        "maria-root",
        &[db[0], db[1], &format!("username={admin}")],
    );
    set_credential(&env, "maria-root", &["password"], &["admin-pw-0103"]);
    let v = env.json(&[
        "rotate",
        "--org",
        "acme",
        "--connection",
        "maria",
        "--rotate-with",
        "maria-root",
        "--wait",
    ]);
    assert_eq!(v["status"], "completed", "{v}");
    assert!(steps_text(&v).contains("through maria-root"), "{v}");
    let logs_in = |pw: &str| {
        let url = format!("mysql://{user}:{pw}@127.0.0.1:3306/information_schema");
        async move {
            use sqlx::Connection;
            sqlx::MySqlConnection::connect(&url).await.is_ok()
        }
    };
    assert!(!logs_in(old).await, "the old password is refused");
    let t = env.json(&["connection", "test", "--org", "acme", "--name", "maria"]);
    assert_eq!(t["last_test"]["outcome"], "ok", "{t}");
    for u in [&user, &admin] {
        sqlx::query(&format!("DROP USER '{u}'@'%'"))
            .execute(&root)
            .await
            .unwrap();
    }
});

dual!(
    redis_user_without_acl_rights_rotates_through_an_admin,
    |env| {
        if !require(redis_up(), "Redis") {
            return;
        }
        env.ok(&["org", "create", "acme"]);
        let user = format!("rk_{}", ulid::Ulid::new().to_string().to_lowercase());
        let admin_user = format!("rka_{}", ulid::Ulid::new().to_string().to_lowercase());
        let old = "the-old-password-0104";
        let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        // the rotated user may only PING; the admin may manage ACL users
        for (u, rights) in [(&user, vec!["+ping"]), (&admin_user, vec!["+ping", "+acl"])] {
            let mut cmd = redis::cmd("ACL");
            cmd.arg("SETUSER")
                .arg(u)
                .arg("on")
                .arg("resetpass")
                .arg(format!(">{old}"));
            for r in rights {
                cmd.arg(r);
            }
            let _: () = cmd.query_async(&mut con).await.unwrap();
        }
        connection(
            &env,
            "redis",
            "cache",
            &["host=127.0.0.1", &format!("username={user}")],
        );
        set_credential(&env, "cache", &["password"], &[old]);
        // on its own the user may not change its password: refused at the check
        let out = env.run(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "cache",
            "--wait",
            "--json",
        ]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["status"], "failed", "{v}");
        assert!(
            v["reason"].as_str().unwrap().contains("--rotate-with"),
            "{v}"
        );

        connection(
            &env,
            "redis",
            "redis-admin",
            &["host=127.0.0.1", &format!("username={admin_user}")],
        );
        set_credential(&env, "redis-admin", &["password"], &[old]);
        let v = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "cache",
            "--rotate-with",
            "redis-admin",
            "--cutover-window",
            "0s",
            "--wait",
        ]);
        assert_eq!(v["status"], "completed", "{v}");
        assert!(steps_text(&v).contains("through redis-admin"), "{v}");
        let t = env.json(&["connection", "test", "--org", "acme", "--name", "cache"]);
        assert_eq!(t["last_test"]["outcome"], "ok", "{t}");
        let refused = redis::Client::open(format!("redis://{user}:{old}@127.0.0.1:6379/").as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .is_err();
        assert!(refused, "the old password is removed");
        for u in [&user, &admin_user] {
            let _: () = redis::cmd("ACL")
                .arg("DELUSER")
                .arg(u)
                .query_async(&mut con)
                .await
                .unwrap();
        }
    }
);

dual!(rotate_with_refuses_what_it_cannot_use, |env| {
    if !require(redis_up(), "Redis") {
        return;
    }
    env.ok(&["org", "create", "acme"]);
    connection(
        &env,
        "redis",
        "cache",
        &["host=127.0.0.1", "username=default"],
    );
    set_credential(&env, "cache", &["password"], &["whatever"]);
    connection(
        &env,
        "postgres",
        "pg",
        &["host=127.0.0.1", "database=postgres", "username=postgres"],
    );
    set_credential(&env, "pg", &["password"], &["x"]);
    connection(
        &env,
        "redis",
        "empty",
        &["host=127.0.0.1", "username=default"],
    );
    for (with, expect) in [
        ("pg", "same kind"),
        ("cache", "itself"),
        ("empty", "no credential"),
        ("nope", "not found"),
    ] {
        let out = env.run(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "cache",
            "--rotate-with",
            with,
        ]);
        assert_eq!(out.status.code(), Some(1), "{with}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{with}: {err}");
    }
    let out = env.run(&[
        "rotate",
        "--org",
        "acme",
        "--key",
        "k",
        "--rotate-with",
        "pg",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        env.json(&["rotation", "list", "--org", "acme"]),
        serde_json::json!([])
    );
});
