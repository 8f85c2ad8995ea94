//! "Test connection": the cheapest authenticated request that proves a
//! credential — an HTTP request from the catalog, or a real connection and
//! a trivial command for databases and Redis.

use std::time::Duration;

use serde_json::{Map, Value};

use super::catalog::{Apply, AuthMethod, Kind, Probe, ProbeKind};
use super::connections::Connection;
use super::hosts;
use super::mint::MintError;
use super::session;
use super::template::{render, Vars};
use crate::egress::{self, Egress};
use crate::state::Core;

/// What a test proved. `Ok` only when a request or login with the
/// credential succeeded: a kind with no request that can prove its
/// credential (the catalog's `probe = none`) is `Unverified`, never `Ok`,
/// and a rotation never counts it as verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Unverified,
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Unverified => "unverified",
            Verdict::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "ok" => Some(Verdict::Ok),
            "unverified" => Some(Verdict::Unverified),
            "failed" => Some(Verdict::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    pub message: String,
}

impl Outcome {
    pub fn failed(message: impl Into<String>) -> Outcome {
        Outcome {
            verdict: Verdict::Failed,
            message: message.into(),
        }
    }

    /// Nothing could prove or disprove it, with the reason.
    pub fn unverified(message: impl Into<String>) -> Outcome {
        Outcome {
            verdict: Verdict::Unverified,
            message: message.into(),
        }
    }

    /// The credential was proven to work.
    pub fn ok(&self) -> bool {
        self.verdict == Verdict::Ok
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn s(m: &Map<String, Value>, k: &str) -> String {
    match m.get(k) {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// Probes `conn` with `creds` (the stored ones, or new ones before they are
/// stored). The connection's `probe_url` override, when set, replaces the
/// catalog's URL (self-hosted systems, tests).
pub async fn run(core: &Core, conn: &Connection, creds: &Map<String, Value>) -> Outcome {
    let (kind, method) = match (conn.kind(), conn.method()) {
        (Ok(k), Ok(m)) => (k, m),
        (Err(e), _) | (_, Err(e)) => return Outcome::failed(e.to_string()),
    };
    let probe_url = conn
        .endpoints()
        .get("probe_url")
        .and_then(Value::as_str)
        .map(str::to_string);
    let settings = conn.settings();
    let endpoints = conn.endpoints();
    let target = Target {
        egress: &core.egress,
        kind,
        method,
        settings: &settings,
        endpoints: &endpoints,
        probe_url: probe_url.as_deref(),
        now: core.now(),
    };
    target.run(creds).await
}

/// What a probe needs besides the credential.
pub struct Target<'a> {
    pub egress: &'a Egress,
    pub kind: &'a Kind,
    pub method: &'a AuthMethod,
    pub settings: &'a Map<String, Value>,
    /// Per-connection endpoint overrides (`s3_url`, `iam_url`, `sts_url`, …).
    pub endpoints: &'a Map<String, Value>,
    pub probe_url: Option<&'a str>,
    /// Dates any token minted for the probe.
    pub now: i64,
}

impl Target<'_> {
    pub async fn run(&self, creds: &Map<String, Value>) -> Outcome {
        let (egress, settings) = (self.egress, self.settings);
        let r = match self.method.probe.kind {
            ProbeKind::Http => {
                match presented(egress, self.kind, self.method, settings, creds, self.now).await {
                    Ok(c) => self.http(&c).await,
                    Err(e) => Err(format!("could not obtain an access token: {e}")),
                }
            }
            ProbeKind::Postgres => {
                sql_ping(session::postgres(egress, settings, &[creds]).await).await
            }
            ProbeKind::Mysql => sql_ping(session::mysql(egress, settings, &[creds]).await).await,
            ProbeKind::Redis => redis_probe(egress, settings, creds).await,
            ProbeKind::Aws => aws_probe(egress, settings, self.endpoints, creds).await,
            ProbeKind::None => {
                return Outcome::unverified(format!(
                    "not verifiable by a request: {}",
                    self.method.probe.note.clone().unwrap_or_default()
                ))
            }
        };
        match r {
            Ok(message) => Outcome {
                verdict: Verdict::Ok,
                message,
            },
            Err(message) => Outcome::failed(message),
        }
    }

    async fn http(&self, creds: &Map<String, Value>) -> Result<String, String> {
        let p = &self.method.probe;
        let vars = Vars {
            settings: self.settings,
            credentials: creds,
        };
        let url = match self.probe_url {
            Some(u) => u.to_string(),
            None => {
                hosts::render_url(self.kind, p.url.as_deref().unwrap_or_default(), &vars)
                    .map_err(|e| e.to_string())?
                    .url
            }
        };
        let verb = reqwest::Method::from_bytes(p.method.as_deref().unwrap_or("GET").as_bytes())
            .map_err(|e| e.to_string())?;
        let req = self
            .egress
            .request(verb, &url)
            .await
            .map_err(|e| e.to_string())?
            .timeout(TIMEOUT);
        let req = authorize(req, p, &vars)?;
        // Redirects are not followed (egress): a 3xx is the answer, and the
        // credential never travels to where it points.
        let resp = req
            .send()
            .await
            .map_err(|e| format!("request failed: {}", egress::describe(&e)))?;
        let status = resp.status();
        let ok = match p.expect {
            Some(code) => status.as_u16() == code,
            None => status.is_success(),
        };
        if ok {
            Ok(format!("HTTP {}", status.as_u16()))
        } else if status.is_redirection() {
            Err(format!(
                "HTTP {} from the provider (redirects are not followed)",
                status.as_u16()
            ))
        } else {
            Err(format!("HTTP {} from the provider", status.as_u16()))
        }
    }
}

/// The credentials a request of `method` presents: `creds`, with the
/// access token minted first for methods whose credential is not a bearer
/// token (client credentials, key pairs). The probe and deliveries alike.
pub async fn presented(
    egress: &Egress,
    kind: &Kind,
    method: &AuthMethod,
    settings: &Map<String, Value>,
    creds: &Map<String, Value>,
    now: i64,
) -> Result<Map<String, Value>, MintError> {
    let mut c = creds.clone();
    if let Some(t) = super::mint::access_token(egress, kind, method, settings, creds, now).await? {
        c.insert("access_token".into(), Value::String(t));
    }
    Ok(c)
}

/// Puts the credential in `vars` on `req` the way the probe `p` presents
/// it (its headers, then its `apply` rule): a delivery to the same API
/// authenticates exactly as its test does.
pub fn authorize(
    req: reqwest::RequestBuilder,
    p: &Probe,
    vars: &Vars<'_>,
) -> Result<reqwest::RequestBuilder, String> {
    let r = |t: &str| render(t, vars).map_err(|e| e.to_string());
    let mut req = req;
    for (h, v) in &p.headers {
        req = req.header(h, r(v)?);
    }
    Ok(match p.apply.unwrap_or(Apply::None) {
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
    })
}

/// AWS keys: a signed STS `GetCallerIdentity` (the keys are live and
/// whose they are), then `AssumeRole` when the connection names a role,
/// then `HeadBucket` on the bucket.
async fn aws_probe(
    egress: &Egress,
    settings: &Map<String, Value>,
    endpoints: &Map<String, Value>,
    creds: &Map<String, Value>,
) -> Result<String, String> {
    use super::aws::{Client, Endpoints, Keys};
    let ep = Endpoints::of(settings, endpoints);
    let keys = Keys::from_credential(creds)?;
    let arn = Client {
        egress,
        endpoints: &ep,
        keys: &keys,
    }
    .caller_arn()
    .await
    .map_err(|e| format!("STS GetCallerIdentity: {e}"))?;
    let role = s(settings, "role_arn");
    let bucket_keys = if role.is_empty() {
        keys
    } else {
        Client {
            egress,
            endpoints: &ep,
            keys: &keys,
        }
        .assume_role(&role)
        .await
        .map_err(|e| format!("STS AssumeRole {role}: {e}"))?
    };
    let bucket = s(settings, "bucket");
    Client {
        egress,
        endpoints: &ep,
        keys: &bucket_keys,
    }
    .head_bucket(&bucket)
    .await
    .map_err(|e| format!("S3 HeadBucket {bucket} as {arn}: {e}"))?;
    Ok(format!("HeadBucket {bucket} as {arn}: 200"))
}

/// A database probe: the login authenticates, a ping proves the session.
async fn sql_ping<C: sqlx::Connection>(
    session: Result<session::Sql<C>, session::SessionError>,
) -> Result<String, String> {
    let mut c = session?;
    c.ping().await?;
    c.close().await;
    Ok("connected and pinged".to_string())
}

async fn redis_probe(
    egress: &Egress,
    settings: &Map<String, Value>,
    creds: &Map<String, Value>,
) -> Result<String, String> {
    let mut s = session::redis(egress, settings, creds).await?;
    let pong: String = redis::cmd("PING")
        .query_async(&mut s.con)
        .await
        .map_err(|e| s.error(&e))?;
    Ok(format!("connected; PING answered {pong}"))
}
