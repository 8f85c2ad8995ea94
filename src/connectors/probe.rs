//! "Test connection": the cheapest authenticated request that proves a
//! credential — an HTTP request from the catalog, or a real connection and
//! a trivial command for databases and Redis.

use std::time::Duration;

use serde_json::{Map, Value};

use super::catalog::{Apply, AuthMethod, ProbeKind};
use super::template::{render, Vars};

#[derive(Debug, Clone)]
pub struct Outcome {
    pub ok: bool,
    pub message: String,
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn s(m: &Map<String, Value>, k: &str) -> String {
    match m.get(k) {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// Runs the probe of `method` with these settings and credentials;
/// `probe_url` overrides the catalog's URL (self-hosted systems, tests);
/// `now` dates any token minted for the probe.
pub async fn run(
    method: &AuthMethod,
    settings: &Map<String, Value>,
    creds: &Map<String, Value>,
    probe_url: Option<&str>,
    now: i64,
) -> Outcome {
    let r = match method.probe.kind {
        ProbeKind::Http => {
            // Methods whose credential is not a bearer token first get one.
            match super::mint::access_token(method, settings, creds, now).await {
                Ok(Some(t)) => {
                    let mut c = creds.clone();
                    c.insert("access_token".into(), Value::String(t));
                    http(method, settings, &c, probe_url).await
                }
                Ok(None) => http(method, settings, creds, probe_url).await,
                Err(e) => Err(format!("could not obtain an access token: {e}")),
            }
        }
        ProbeKind::Postgres => postgres(settings, creds).await,
        ProbeKind::Mysql => mysql(settings, creds).await,
        ProbeKind::Redis => redis_probe(settings, creds).await,
        ProbeKind::None => Ok(format!(
            "not verifiable by a request: {}",
            method.probe.note.clone().unwrap_or_default()
        )),
    };
    match r {
        Ok(message) => Outcome { ok: true, message },
        Err(message) => Outcome { ok: false, message },
    }
}

async fn http(
    method: &AuthMethod,
    settings: &Map<String, Value>,
    creds: &Map<String, Value>,
    probe_url: Option<&str>,
) -> Result<String, String> {
    let p = &method.probe;
    let vars = Vars {
        settings,
        credentials: creds,
    };
    let r = |t: &str| render(t, &vars).map_err(|e| e.to_string());
    let url = match probe_url {
        Some(u) => u.to_string(),
        None => r(p.url.as_deref().unwrap_or_default())?,
    };
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let verb = reqwest::Method::from_bytes(p.method.as_deref().unwrap_or("GET").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut req = client.request(verb, &url);
    for (h, v) in &p.headers {
        req = req.header(h, r(v)?);
    }
    req = match p.apply.unwrap_or(Apply::None) {
        Apply::Bearer => req.bearer_auth(r(p.token.as_deref().unwrap_or("${access_token}"))?),
        Apply::Basic => req.basic_auth(
            r(p.username.as_deref().unwrap_or_default())?,
            Some(r(p.password.as_deref().unwrap_or_default())?),
        ),
        Apply::Header => req.header(
            p.header.as_deref().unwrap_or_default(),
            r(p.value.as_deref().unwrap_or_default())?,
        ),
        Apply::Query => req.query(&[(
            p.param.as_deref().unwrap_or_default(),
            r(p.value.as_deref().unwrap_or_default())?,
        )]),
        Apply::None => req,
    };
    let resp = req
        .send()
        .await
        .map_err(|e| format!("request failed: {}", without_url(&e)))?;
    let status = resp.status();
    let ok = match p.expect {
        Some(code) => status.as_u16() == code,
        None => status.is_success(),
    };
    if ok {
        Ok(format!("HTTP {}", status.as_u16()))
    } else {
        Err(format!("HTTP {} from the provider", status.as_u16()))
    }
}

/// reqwest errors can carry the URL, whose query may hold a credential.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "(url)");
    }
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        s
    }
}

async fn postgres(
    settings: &Map<String, Value>,
    creds: &Map<String, Value>,
) -> Result<String, String> {
    let port: u16 = s(settings, "port").parse().unwrap_or(5432);
    let mut opts = sqlx::postgres::PgConnectOptions::new()
        .host(&s(settings, "host"))
        .port(port)
        .username(&s(settings, "username"))
        .password(&s(creds, "password"));
    let db = s(settings, "database");
    if !db.is_empty() {
        opts = opts.database(&db);
    }
    sql_ping(opts).await
}

async fn mysql(
    settings: &Map<String, Value>,
    creds: &Map<String, Value>,
) -> Result<String, String> {
    let port: u16 = s(settings, "port").parse().unwrap_or(3306);
    let mut opts = sqlx::mysql::MySqlConnectOptions::new()
        .host(&s(settings, "host"))
        .port(port)
        .username(&s(settings, "username"))
        .password(&s(creds, "password"));
    let db = s(settings, "database");
    if !db.is_empty() {
        opts = opts.database(&db);
    }
    sql_ping(opts).await
}

/// Connects (which authenticates) and pings: the trivial command every
/// SQL server answers.
async fn sql_ping<O>(opts: O) -> Result<String, String>
where
    O: sqlx::ConnectOptions,
    O::Connection: Sized,
{
    use sqlx::Connection;
    let fut = async {
        let mut c = opts.connect().await.map_err(|e| db_error(&e))?;
        c.ping().await.map_err(|e| db_error(&e))?;
        let _ = c.close().await;
        Ok::<_, String>("connected and pinged".to_string())
    };
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// Database errors without anything the server echoed of our input.
fn db_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => format!("refused: {}", d.message()),
        sqlx::Error::Io(_) => "could not connect".into(),
        sqlx::Error::PoolTimedOut => "timed out".into(),
        other => other.to_string(),
    }
}

async fn redis_probe(
    settings: &Map<String, Value>,
    creds: &Map<String, Value>,
) -> Result<String, String> {
    let host = s(settings, "host");
    let port: u16 = s(settings, "port").parse().unwrap_or(6379);
    let mut u = url::Url::parse(&format!("redis://{host}:{port}/"))
        .map_err(|_| "bad host or port".to_string())?;
    let user = s(settings, "username");
    if !user.is_empty() {
        let _ = u.set_username(&user);
    }
    let pw = s(creds, "password");
    if !pw.is_empty() {
        let _ = u.set_password(Some(&pw));
    }
    let fut = async {
        let client = redis::Client::open(u.as_str()).map_err(|e| e.to_string())?;
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| redis_error(&e))?;
        let pong: String = redis::cmd("PING")
            .query_async(&mut con)
            .await
            .map_err(|e| redis_error(&e))?;
        Ok::<_, String>(format!("connected; PING answered {pong}"))
    };
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .map_err(|_| "timed out".to_string())?
}

fn redis_error(e: &redis::RedisError) -> String {
    if e.is_connection_refusal() {
        "could not connect".into()
    } else {
        format!("refused: {}", e.detail().unwrap_or(e.category()))
    }
}
