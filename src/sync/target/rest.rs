//! The `custom_rest` target: each batch `POST`ed as JSON to
//! `${settings.base_url}${settings.delivery_path}`, through egress, with
//! the connection's credential presented exactly as its test presents it,
//! an `Idempotency-Key` for the batch and one per record, and
//! `X-Rekey-Signature` so the receiver can tell the body is ours and fresh.
//!
//! ```json
//! {"org": "<org id>", "records": [{"idempotency_key": "<org>:<seq>", "seq": 7,
//!   "email": "a@example.com", "op": "upsert", "fields": {…}, "at": "2026-…Z"}]}
//! ```
//!
//! What the receiver's status means: 2xx delivered; 401 the credential is
//! refused (refresh once, then pause); 408, 429 and 5xx pass by themselves
//! (retried); any other answer, 403 included, is the receiver refusing this
//! batch — parked with its message until a person retries it. A 403 is not
//! taken as a dead credential: the receiver knew who we are and decided
//! about this request, and the issue's rule is that only 401 and 429 are
//! not parked.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Batch, Forbidden, Op, Open, SendError, Target};
use crate::connectors::catalog::{AuthMethod, Kind};
use crate::connectors::connections::Connection;
use crate::connectors::drivers::BoxFut;
use crate::connectors::hosts;
use crate::connectors::probe;
use crate::connectors::template::Vars;
use crate::crypto::signature;

/// Where batches go under `base_url` unless the setting says otherwise.
pub const DEFAULT_PATH: &str = "/";

/// The URL batches are posted to, checked to stay on `base_url`'s host (a
/// `delivery_path` of `@elsewhere` cannot move it).
fn url(
    kind: &Kind,
    settings: &Map<String, Value>,
    creds: &Map<String, Value>,
) -> Result<String, String> {
    let mut s = settings.clone();
    let path = s
        .get("delivery_path")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .unwrap_or(DEFAULT_PATH)
        .to_string();
    if !path.starts_with('/') {
        return Err(format!(
            "the delivery_path setting {path:?} must start with / (a path under base_url)"
        ));
    }
    s.insert("delivery_path".into(), Value::String(path));
    let vars = Vars {
        settings: &s,
        credentials: creds,
    };
    hosts::render_url(kind, "${settings.base_url}${settings.delivery_path}", &vars)
        .map(|r| r.url)
        .map_err(|e| e.to_string())
}

/// The delivery URL must be buildable from the settings.
pub fn check(conn: &Connection, credentials: &Map<String, Value>) -> Result<(), String> {
    let kind = conn.kind().map_err(|e| e.to_string())?;
    url(kind, &conn.settings(), credentials).map(|_| ())
}

struct RestTarget {
    url: String,
    method: &'static AuthMethod,
    settings: Map<String, Value>,
    /// The credential as requests present it (with its access token
    /// minted, for client credentials).
    presented: Map<String, Value>,
    signing_secret: String,
    /// Egress, and the clock the signature's timestamp comes from.
    core: crate::state::Core,
}

pub async fn open(o: Open<'_>) -> Result<Box<dyn Target>, SendError> {
    let kind = o
        .conn
        .kind()
        .map_err(|e| SendError::Refused(e.to_string()))?;
    let method = o
        .conn
        .method()
        .map_err(|e| SendError::Refused(e.to_string()))?;
    let url = url(kind, o.settings, o.credentials).map_err(SendError::Refused)?;
    let presented = probe::presented(
        &o.core.egress,
        kind,
        method,
        o.settings,
        o.credentials,
        o.core.now(),
    )
    .await
    .map_err(|e| {
        let m = format!("could not obtain an access token: {e}");
        if e.passing {
            SendError::Passing(m)
        } else {
            SendError::Auth(m)
        }
    })?;
    Ok(Box::new(RestTarget {
        url,
        method,
        settings: o.settings.clone(),
        presented,
        signing_secret: o.signing_secret.to_string(),
        core: o.core.clone(),
    }))
}

#[derive(Serialize)]
struct Body<'a> {
    org: &'a str,
    records: Vec<Item<'a>>,
}

#[derive(Serialize)]
struct Item<'a> {
    idempotency_key: String,
    seq: i64,
    email: &'a str,
    op: Op,
    fields: Option<&'a Map<String, Value>>,
    at: String,
}

/// The batch as the receiver reads it.
pub fn body(batch: &Batch<'_>) -> Result<Vec<u8>, SendError> {
    let body = Body {
        org: batch.org_id,
        records: batch
            .records
            .iter()
            .map(|r| Item {
                idempotency_key: r.idempotency_key(batch.org_id),
                seq: r.seq,
                email: &r.email,
                op: r.op,
                fields: match r.op {
                    Op::Upsert => r.fields.as_ref(),
                    Op::Delete => None,
                },
                at: crate::clock::rfc3339(r.at),
            })
            .collect(),
    };
    serde_json::to_vec(&body).map_err(|e| SendError::Refused(format!("cannot encode: {e}")))
}

impl RestTarget {
    async fn post(&self, batch: &Batch<'_>) -> Result<(), SendError> {
        if batch.records.is_empty() {
            return Ok(());
        }
        let body = body(batch)?;
        let t = self.core.now().div_euclid(1000);
        let vars = Vars {
            settings: &self.settings,
            credentials: &self.presented,
        };
        let req = self
            .core
            .egress
            .post(&self.url)
            .await
            .map_err(|e| SendError::Refused(e.to_string()))?;
        let req = probe::authorize(req, &self.method.probe, &vars)
            .map_err(SendError::Refused)?
            .header("Idempotency-Key", batch.key())
            .header(
                signature::HEADER,
                signature::sign(&self.signing_secret, t, &body),
            )
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let resp = req.send().await.map_err(|e| super::request_error(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let said = super::receiver_message(resp, self.secrets()).await;
        Err(super::refusal(status.as_u16(), &said, Forbidden::Refused))
    }

    /// The credential's secret values (and the minted token).
    fn secrets(&self) -> impl Iterator<Item = &str> {
        let secret_keys: Vec<&str> = self
            .method
            .fields
            .iter()
            .filter(|f| f.secret)
            .map(|f| f.key.as_str())
            .chain(["access_token"])
            .collect();
        self.presented
            .iter()
            .filter(move |(k, _)| secret_keys.contains(&k.as_str()))
            .filter_map(|(_, v)| v.as_str())
    }
}

impl Target for RestTarget {
    fn send<'a>(&'a mut self, batch: &'a Batch<'a>) -> BoxFut<'a, Result<(), SendError>> {
        Box::pin(self.post(batch))
    }

    fn close(self: Box<Self>) -> BoxFut<'static, ()> {
        Box::pin(async {})
    }
}
