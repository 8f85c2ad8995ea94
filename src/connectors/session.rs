//! Sessions rekey opens at a target system with a secret — SQL databases
//! and Redis, for probes, rotation drivers and `--rotate-with` admin
//! connections alike. Every one is built here, so none can miss what each
//! must have:
//!
//! - the address the egress policy checked, never the name resolved again;
//! - statement logging off: the MySQL driver's statements carry the
//!   password itself (`ALTER USER … IDENTIFIED BY '…'`) and the PostgreSQL
//!   driver's a SCRAM verifier, and sqlx logs every statement at DEBUG and
//!   any slower than a second at WARN, the CLI's default level;
//! - the budget ([`Budget`], from `target_connect_timeout` and
//!   `target_statement_timeout`) on the login and on every statement or
//!   command: a target that accepts and never answers would otherwise hold
//!   a rotation step, a campaign item or a probe for ever, and any org
//!   admin can point a connection at one. Its error names what timed out
//!   and where.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::ConnectOptions;

use super::drivers::text;
use crate::egress::{Budget, Egress};

/// Which system a session is with and where, for errors: `MySQL at
/// 10.0.0.5:3306`. Never the user or the password.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    system: &'static str,
    addr: SocketAddr,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.system, self.addr)
    }
}

fn within(d: Duration) -> String {
    format!("no answer within {}", humantime::format_duration(d))
}

fn connect_timed_out(place: Place, d: Duration) -> String {
    format!("timed out connecting to {place} ({})", within(d))
}

fn answer_timed_out(place: Place, what: &str, d: Duration) -> String {
    format!(
        "timed out waiting for {place} to answer a {what} ({})",
        within(d)
    )
}

/// What kind of failure a session met, for callers that act on the
/// difference (a delivery pauses on a refused login, retries a lost
/// connection, parks a statement the server refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The server refused the login: wrong password, unknown user, no
    /// access to the database.
    Login,
    /// The server could not be reached or did not answer in time, or
    /// answered with a condition that passes (too many connections, a
    /// deadlock, shutting down).
    Unreachable,
    /// The server refused what was asked of it.
    Refused,
}

/// A session's error: its message (never anything the server echoed of
/// our input) and what kind of failure it was. Most callers only want the
/// message: `?` turns it into a `String`.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct SessionError {
    pub failure: Failure,
    pub message: String,
}

impl SessionError {
    fn unreachable(message: String) -> SessionError {
        SessionError {
            failure: Failure::Unreachable,
            message,
        }
    }
}

impl From<SessionError> for String {
    fn from(e: SessionError) -> String {
        e.message
    }
}

/// A logged-in SQL session at a target. Statements run through
/// [`Sql::run`], each within the statement budget.
pub struct Sql<C> {
    conn: C,
    place: Place,
    budget: Budget,
}

impl<C: sqlx::Connection> Sql<C> {
    /// Runs what `f` makes of the connection (a query on it) within the
    /// statement budget.
    pub async fn run<'c, T, F>(
        &'c mut self,
        f: impl FnOnce(&'c mut C) -> F,
    ) -> Result<T, SessionError>
    where
        F: Future<Output = Result<T, sqlx::Error>> + 'c,
    {
        let (place, limit) = (self.place, self.budget.statement);
        match tokio::time::timeout(limit, f(&mut self.conn)).await {
            Ok(r) => r.map_err(|e| db_error(&e)),
            Err(_) => Err(SessionError::unreachable(answer_timed_out(
                place,
                "statement",
                limit,
            ))),
        }
    }

    /// The trivial command every SQL server answers.
    pub async fn ping(&mut self) -> Result<(), SessionError> {
        self.run(|c| c.ping()).await
    }

    /// Says goodbye, best effort: a target gone quiet does not hold us.
    pub async fn close(self) {
        let _ = tokio::time::timeout(self.budget.connect, self.conn.close()).await;
    }
}

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
    budget: Budget,
) -> sqlx::postgres::PgConnectOptions {
    // The server gives up on a statement when we do (a lock wait, say),
    // rather than carrying out later a change we reported as failed.
    let statement_timeout = format!("{}ms", budget.statement.as_millis());
    let mut opts = sqlx::postgres::PgConnectOptions::new()
        .host(&addr.ip().to_string())
        .port(addr.port())
        .username(&text(settings, "username"))
        .password(&text(creds, "password"))
        .options([("statement_timeout", statement_timeout)])
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
) -> Result<Sql<sqlx::PgConnection>, SessionError> {
    let budget = egress.budget();
    // sqlx panics on a user name SASLprep refuses (a control character,
    // say); refused here with a message instead, before any connection.
    let user = text(settings, "username");
    if stringprep::saslprep(&user).is_err() {
        return Err(SessionError {
            failure: Failure::Login,
            message: format!(
                "the user name {user:?} is not one PostgreSQL's SCRAM login can carry (SASLprep refuses it)"
            ),
        });
    }
    let place = Place {
        system: "PostgreSQL",
        addr: checked(egress, settings, 5432).await.map_err(refused)?,
    };
    let options = creds
        .iter()
        .map(|c| pg_options(place.addr, settings, c, budget));
    login_first(place, budget, options).await
}

/// The same for MySQL and MariaDB.
pub async fn mysql(
    egress: &Egress,
    settings: &Map<String, Value>,
    creds: &[&Map<String, Value>],
) -> Result<Sql<sqlx::MySqlConnection>, SessionError> {
    let budget = egress.budget();
    let place = Place {
        system: "MySQL",
        addr: checked(egress, settings, 3306).await.map_err(refused)?,
    };
    let options = creds.iter().map(|c| mysql_options(place.addr, settings, c));
    login_first(place, budget, options).await
}

async fn login_first<O>(
    place: Place,
    budget: Budget,
    options: impl Iterator<Item = O>,
) -> Result<Sql<O::Connection>, SessionError>
where
    O: ConnectOptions,
    O::Connection: Sized,
{
    let mut last = SessionError {
        failure: Failure::Login,
        message: "no credential to connect with".into(),
    };
    for o in options {
        match tokio::time::timeout(budget.connect, o.connect()).await {
            Ok(Ok(conn)) => {
                return Ok(Sql {
                    conn,
                    place,
                    budget,
                })
            }
            Ok(Err(e)) => last = db_error(&e),
            // Another password will not make a silent server answer.
            Err(_) => {
                return Err(SessionError::unreachable(connect_timed_out(
                    place,
                    budget.connect,
                )))
            }
        }
    }
    Err(last)
}

/// An address the egress policy refused, or settings that name none: no
/// retry will change it.
fn refused(message: String) -> SessionError {
    SessionError {
        failure: Failure::Refused,
        message,
    }
}

/// Database errors without anything the server echoed of our input.
fn db_error(e: &sqlx::Error) -> SessionError {
    match e {
        sqlx::Error::Database(d) => SessionError {
            failure: failure_of(
                d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                    .map(|m| m.number().to_string())
                    .or_else(|| d.code().map(|c| c.into_owned()))
                    .as_deref()
                    .unwrap_or_default(),
            ),
            message: format!("refused: {}", d.message()),
        },
        sqlx::Error::Io(_) => SessionError::unreachable("could not connect".into()),
        sqlx::Error::PoolTimedOut => SessionError::unreachable("timed out".into()),
        sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
            SessionError::unreachable(e.to_string())
        }
        other => refused(other.to_string()),
    }
}

/// What a server's error code says: PostgreSQL's SQLSTATE (class 28 a
/// refused login; 08 the connection, 53 resources, 57 an operator or a
/// timeout, 40 a deadlock or serialization failure: all pass) or MySQL's
/// error number (1044/1045/1698 a refused login; 1040 too many
/// connections, 1205 a lock wait, 1213 a deadlock: they pass).
fn failure_of(code: &str) -> Failure {
    match code {
        "1044" | "1045" | "1698" => Failure::Login,
        "1040" | "1205" | "1213" => Failure::Unreachable,
        c if c.starts_with("28") => Failure::Login,
        c if ["08", "53", "57", "40"].iter().any(|p| c.starts_with(p)) => Failure::Unreachable,
        _ => Failure::Refused,
    }
}

/// A Redis session at a target. Commands run on `con`, each within the
/// statement budget (the client's response timeout); errors through
/// [`Redis::error`].
pub struct Redis {
    pub con: redis::aio::MultiplexedConnection,
    place: Place,
    budget: Budget,
}

impl Redis {
    /// A command's error, naming the target when it timed out.
    pub fn error(&self, e: &redis::RedisError) -> String {
        if e.is_timeout() {
            answer_timed_out(self.place, "command", self.budget.statement)
        } else {
            redis_error(e)
        }
    }
}

/// A Redis session as the connection's ACL user with `creds`.
pub async fn redis(
    egress: &Egress,
    settings: &Map<String, Value>,
    creds: &Map<String, Value>,
) -> Result<Redis, String> {
    let budget = egress.budget();
    let place = Place {
        system: "Redis",
        addr: checked(egress, settings, 6379).await?,
    };
    let mut u = url::Url::parse(&format!("redis://{}/", place.addr))
        .map_err(|_| "bad host or port".to_string())?;
    let user = text(settings, "username");
    if !user.is_empty() {
        let _ = u.set_username(&user);
    }
    let pw = text(creds, "password");
    if !pw.is_empty() {
        let _ = u.set_password(Some(&pw));
    }
    let client = redis::Client::open(u.as_str()).map_err(|e| e.to_string())?;
    // The client's own defaults (1 s, 0.5 s) are too short for a distant
    // target, and not ours to choose.
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(budget.connect))
        .set_response_timeout(Some(budget.statement));
    // The login (AUTH, HELLO) is bounded as a whole too.
    let con = tokio::time::timeout(
        budget.connect,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .map_err(|_| connect_timed_out(place, budget.connect))?
    .map_err(|e| {
        if e.is_timeout() {
            connect_timed_out(place, budget.connect)
        } else {
            redis_error(&e)
        }
    })?;
    Ok(Redis { con, place, budget })
}

fn redis_error(e: &redis::RedisError) -> String {
    if e.is_connection_refusal() {
        "could not connect".into()
    } else {
        format!("refused: {}", e.detail().unwrap_or(e.category()))
    }
}
