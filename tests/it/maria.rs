//! MariaDB as a rotation target in tests: a fresh user, and MariaDB's own
//! answer to a login (never a proxy's).

/// A fresh MariaDB user whose password is `old`.
pub async fn maria_user(old: &str) -> String {
    let user = format!("rk_{}", &ulid::Ulid::new().to_string().to_lowercase()[..12]);
    let root = sqlx::MySqlPool::connect("mysql://root@127.0.0.1:3306/mysql")
        .await
        .unwrap();
    sqlx::query(&format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{old}'"))
        .execute(&root)
        .await
        .unwrap();
    root.close().await;
    user
}

/// MariaDB's own answer (no proxy) to `user` / `password`.
pub async fn maria_login(user: &str, password: &str) -> Result<(), String> {
    use sqlx::Connection;
    let opts = sqlx::mysql::MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(3306)
        .username(user)
        .password(password)
        .database("information_schema");
    let c = sqlx::MySqlConnection::connect_with(&opts)
        .await
        .map_err(|e| e.to_string())?;
    let _ = c.close().await;
    Ok(())
}

/// Does MariaDB accept `user` / `password`?
pub async fn maria_logs_in(user: &str, password: &str) -> bool {
    maria_login(user, password).await.is_ok()
}
