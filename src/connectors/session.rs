//! Sessions rekey opens at a target system with a secret — SQL databases
//! and Redis, for probes, rotation drivers and `--rotate-with` admin
//! connections alike. Every one is built here, so none can miss what each
//! must have:
//!
//! - the address the egress policy checked, never the name resolved again;
//! - statement logging off: the MySQL driver's statements carry the
//!   password itself (`ALTER USER … IDENTIFIED BY '…'`) and the PostgreSQL
//!   driver's a SCRAM verifier, and sqlx logs every statement at DEBUG and
//!   any slower than a second at WARN, the CLI's default level.

use std::net::SocketAddr;

use serde_json::{Map, Value};
use sqlx::ConnectOptions;

use super::drivers::text;
use crate::egress::Egress;

/// The address a session connects to: resolved and checked by egress.
async fn checked(
    egress: &Egress,
    settings: &Map<String, Value>,
    default_port: u16,
) -> Result<SocketAddr, String> {
    let port: u16 = match text(settings, "port") {
        p if p.is_empty() => default_port,
        p => p
            .parse()
            .map_err(|_| format!("port {p:?} is not a port number"))?,
    };
    egress
        .resolve(&text(settings, "host"), port)
        .await
        .map_err(|e| e.to_string())
}

fn pg_options(
    addr: SocketAddr,
    settings: &Map<String, Value>,
    creds: &Map<String, Value>,
) -> sqlx::postgres::PgConnectOptions {
    let mut opts = sqlx::postgres::PgConnectOptions::new()
        .host(&addr.ip().to_string())
        .port(addr.port())
        .username(&text(settings, "username"))
        .password(&text(creds, "password"))
        .disable_statement_logging();
    let db = text(settings, "database");
    if !db.is_empty() {
        opts = opts.database(&db);
    }
    opts
}

fn mysql_options(
    addr: SocketAddr,
    settings: &Map<String, Value>,
    creds: &Map<String, Value>,
) -> sqlx::mysql::MySqlConnectOptions {
    let mut opts = sqlx::mysql::MySqlConnectOptions::new()
        .host(&addr.ip().to_string())
        .port(addr.port())
        .username(&text(settings, "username"))
        .password(&text(creds, "password"))
        .disable_statement_logging();
    let db = text(settings, "database");
    if !db.is_empty() {
        opts = opts.database(&db);
    }
    opts
}

/// Logs in to the PostgreSQL `settings` name with the first of `creds`
/// that works (after a crash the new password may already be the one set).
pub async fn postgres(
    egress: &Egress,
    settings: &Map<String, Value>,
    creds: &[&Map<String, Value>],
) -> Result<sqlx::PgConnection, String> {
    let addr = checked(egress, settings, 5432).await?;
    login_first(creds.iter().map(|c| pg_options(addr, settings, c))).await
}

/// The same for MySQL and MariaDB.
pub async fn mysql(
    egress: &Egress,
    settings: &Map<String, Value>,
    creds: &[&Map<String, Value>],
) -> Result<sqlx::MySqlConnection, String> {
    let addr = checked(egress, settings, 3306).await?;
    login_first(creds.iter().map(|c| mysql_options(addr, settings, c))).await
}

async fn login_first<O>(options: impl Iterator<Item = O>) -> Result<O::Connection, String>
where
    O: ConnectOptions,
    O::Connection: Sized,
{
    let mut last = String::from("no credential to connect with");
    for o in options {
        match o.connect().await {
            Ok(conn) => return Ok(conn),
            Err(e) => last = db_error(&e),
        }
    }
    Err(last)
}

/// Database errors without anything the server echoed of our input.
pub fn db_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => format!("refused: {}", d.message()),
        sqlx::Error::Io(_) => "could not connect".into(),
        sqlx::Error::PoolTimedOut => "timed out".into(),
        other => other.to_string(),
    }
}

/// A Redis connection as the connection's ACL user with `creds`.
pub async fn redis(
    egress: &Egress,
    settings: &Map<String, Value>,
    creds: &Map<String, Value>,
) -> Result<redis::aio::MultiplexedConnection, String> {
    let addr = checked(egress, settings, 6379).await?;
    let mut u =
        url::Url::parse(&format!("redis://{addr}/")).map_err(|_| "bad host or port".to_string())?;
    let user = text(settings, "username");
    if !user.is_empty() {
        let _ = u.set_username(&user);
    }
    let pw = text(creds, "password");
    if !pw.is_empty() {
        let _ = u.set_password(Some(&pw));
    }
    let client = redis::Client::open(u.as_str()).map_err(|e| e.to_string())?;
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| "timed out".to_string())?
    .map_err(|e| redis_error(&e))
}

pub fn redis_error(e: &redis::RedisError) -> String {
    if e.is_connection_refusal() {
        "could not connect".into()
    } else {
        format!("refused: {}", e.detail().unwrap_or(e.category()))
    }
}
