//! What a record becomes at each connector kind that can receive records:
//! one trait, one implementation per kind of receiver.
//!
//! - `rekey`: the other rekey's People API, with the connection's OAuth
//!   token (`read_write`), each record carrying its source and sequence.
//! - `postgres` / `mysql`: an upsert into the table named by the setting
//!   `table`, keyed by Email, created if missing.
//! - `custom_rest`: a signed `POST` of each batch as JSON.
//!
//! Every target applies a record only above the sequence it last applied
//! for that email (the idempotency key is (org, sequence)): a retried batch
//! never writes a row twice, a replayed older record never overwrites a
//! newer one. A target is opened once for a run of batches (a database
//! session, say) and sends them in order.

pub mod rekey;
pub mod rest;
pub mod sql;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::connectors::connections::Connection;
use crate::connectors::drivers::BoxFut;
use crate::state::Core;

/// One outbox record as it is sent.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub seq: i64,
    pub email: String,
    pub op: Op,
    /// The record's whole state after the change (`None` for a delete).
    pub fields: Option<Map<String, Value>>,
    /// When it was written to the outbox (unix ms).
    pub at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Upsert,
    Delete,
}

impl Record {
    /// The idempotency key every target is sent: the source org and the
    /// record's sequence, unique across rekey's whole outbox.
    pub fn idempotency_key(&self, org_id: &str) -> String {
        format!("{org_id}:{}", self.seq)
    }
}

/// A batch of records of one org, in sequence order.
pub struct Batch<'a> {
    pub org_id: &'a str,
    pub records: &'a [Record],
}

impl Batch<'_> {
    /// The batch's idempotency key: its org and first and last sequence.
    pub fn key(&self) -> String {
        let first = self.records.first().map(|r| r.seq).unwrap_or(0);
        let last = self.records.last().map(|r| r.seq).unwrap_or(0);
        format!("{}:{first}-{last}", self.org_id)
    }
}

/// Why a batch was not delivered; decides what the delivery does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The target refused the credential (401, `invalid_grant`, a login
    /// refused): refresh once, then pause until re-authorized.
    #[error("the target refused the credential: {0}")]
    Auth(String),
    /// Passes by itself (unreachable, 5xx, 429, a timeout): retried with
    /// backoff, the batch stays next.
    #[error("{0}")]
    Passing(String),
    /// The receiver refused this batch (a 4xx other than 401/429, a row
    /// the table cannot hold): parked with the receiver's own message until
    /// a person retries it. Never dropped.
    #[error("the receiver refused the batch: {0}")]
    Refused(String),
}

/// An opened receiver.
pub trait Target: Send {
    /// Delivers the batch, all of it or (on error) possibly part of it:
    /// sending it again is safe.
    fn send<'a>(&'a mut self, batch: &'a Batch<'a>) -> BoxFut<'a, Result<(), SendError>>;
    /// Ends the session, if it holds one.
    fn close(self: Box<Self>) -> BoxFut<'static, ()>;
}

/// What a target is opened with.
pub struct Open<'a> {
    pub core: &'a Core,
    pub conn: &'a Connection,
    pub settings: &'a Map<String, Value>,
    pub credentials: &'a Map<String, Value>,
    /// The delivery's signing secret (`custom_rest` signs with it).
    pub signing_secret: &'a str,
}

/// The kinds that can receive records.
pub const KINDS: &[&str] = &["rekey", "postgres", "mysql", "custom_rest"];

pub fn can_receive(kind: &str) -> bool {
    KINDS.contains(&kind)
}

/// Checks, before a delivery is enabled, that this connection can receive
/// (the rekey target needs a `read_write` grant, a SQL target a `table`).
pub fn check(conn: &Connection, credentials: &Map<String, Value>) -> Result<(), String> {
    match conn.kind.as_str() {
        "rekey" => rekey::check(conn, credentials),
        "postgres" | "mysql" => sql::check(conn, credentials),
        "custom_rest" => rest::check(conn, credentials),
        other => Err(format!(
            "connections of kind {other} cannot receive records; kinds that can: {}",
            KINDS.join(", ")
        )),
    }
}

/// Opens the receiver of `o.conn`.
pub async fn open(o: Open<'_>) -> Result<Box<dyn Target>, SendError> {
    match o.conn.kind.as_str() {
        "rekey" => rekey::open(o).await,
        "postgres" | "mysql" => sql::open(o).await,
        "custom_rest" => rest::open(o).await,
        other => Err(SendError::Refused(format!(
            "connections of kind {other} cannot receive records"
        ))),
    }
}

/// The host a target's sends are capped on (`kind:host`), shared with the
/// other jobs against it.
pub fn host(conn: &Connection) -> String {
    crate::incident::plan::host_of(conn)
}

/// What a 403 from a receiver means: for rekey's own People API, a grant
/// without `read_write` (re-authorizing with it is the fix); for any other
/// receiver, a decision about this batch (parked, as the rule for
/// every 4xx but 401 and 429 says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    Auth,
    Refused,
}

/// What a receiver's non-2xx answer means for the batch: 401 the
/// credential; 408, 429 and 5xx pass by themselves; anything else refuses
/// the batch, with the receiver's own message (`said`).
pub fn refusal(code: u16, said: &str, forbidden: Forbidden) -> SendError {
    let m = if said.is_empty() {
        format!("HTTP {code}")
    } else {
        format!("HTTP {code}: {said}")
    };
    match code {
        401 => SendError::Auth(m),
        403 if forbidden == Forbidden::Auth => SendError::Auth(m),
        408 | 429 | 500..=599 => SendError::Passing(m),
        300..=399 => SendError::Refused(format!("{m} (redirects are not followed)")),
        _ => SendError::Refused(m),
    }
}

/// A failed request: the egress policy's refusal stands until a person
/// changes it or the address (parked); anything else is the network.
pub fn request_error(e: &reqwest::Error) -> SendError {
    let m = format!("request failed: {}", crate::egress::describe(e));
    if crate::egress::refusal(e).is_some() {
        SendError::Refused(m)
    } else {
        SendError::Passing(m)
    }
}

/// How much of a receiver's refusal is kept as its message.
const MESSAGE_CHARS: usize = 500;

/// How much of a receiver's answer is read at all: a hostile one could
/// send gigabytes.
const BODY_BYTES: usize = 4096;

/// The start of a receiver's answer as text, without any of `secrets` it
/// may have echoed (masked before the cut, so no part of one survives).
pub async fn receiver_message<'s>(
    mut resp: reqwest::Response,
    secrets: impl Iterator<Item = &'s str>,
) -> String {
    let mut raw = Vec::new();
    while raw.len() < BODY_BYTES {
        match resp.chunk().await {
            Ok(Some(c)) => raw.extend_from_slice(&c),
            _ => break,
        }
    }
    raw.truncate(BODY_BYTES);
    let mut text = String::from_utf8_lossy(&raw).into_owned();
    for secret in secrets.filter(|s| s.len() >= 4) {
        text = text.replace(secret, "********");
    }
    // An OAuth-style error (rekey's own API) says it best in one field.
    if let Ok(v) = serde_json::from_str::<Value>(&text) {
        if let Some(d) = ["error_description", "message"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
        {
            text = d.to_string();
        }
    }
    text.trim().chars().take(MESSAGE_CHARS).collect()
}
