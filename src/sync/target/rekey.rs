//! The `rekey` target: another rekey's People API, reached with the
//! connection's OAuth token (the platform pushes to a system it holds a
//! grant for). Each batch is one `POST /v1/people/changes` carrying every
//! record's sequence: the receiver applies a record only above the sequence
//! it last applied for that email from this source, so a retried batch
//! writes once and a replay never overwrites a newer state.

use serde_json::{json, Map, Value};

use super::{
    receiver_message, refusal, request_error, Batch, BoxFut, Forbidden, Op, Open, SendError, Target,
};
use crate::connectors::connections::Connection;
use crate::egress::Egress;

/// The scope the People API needs to write.
const WRITE: &str = "read_write";

/// Delivery writes, so the grant must carry `read_write`: the scope the
/// provider granted when it says (the token answer's `scope`), else the one
/// the connection asked for.
pub fn check(conn: &Connection, credentials: &Map<String, Value>) -> Result<(), String> {
    let settings = conn.settings();
    let scope = credentials
        .get("scope")
        .and_then(Value::as_str)
        .or_else(|| settings.get("scope").and_then(Value::as_str))
        .unwrap_or("");
    if !scope.split_whitespace().any(|s| s == WRITE) {
        return Err(format!(
            "connection {} is authorized for {:?}; delivery writes People records and needs the \
             read_write scope: set the connection's scope to read_write and re-authenticate it",
            conn.name,
            if scope.is_empty() { "no scope" } else { scope }
        ));
    }
    if !credentials.contains_key("access_token") {
        return Err(format!(
            "connection {} is not authorized yet: authorize it first",
            conn.name
        ));
    }
    Ok(())
}

struct People {
    egress: Egress,
    url: String,
    token: String,
    source: String,
}

pub async fn open(o: Open<'_>) -> Result<Box<dyn Target>, SendError> {
    let base = o
        .settings
        .get("base_url")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim_end_matches('/');
    let token = o
        .credentials
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| SendError::Auth("the connection holds no access token".into()))?;
    Ok(Box::new(People {
        egress: o.core.egress.clone(),
        url: format!("{base}/v1/people/changes"),
        token: token.to_string(),
        // The org id is unique and stable across this rekey's instances
        // and restarts (a URL would change with a port).
        source: format!("rekey:{}", o.conn.org_id),
    }))
}

impl Target for People {
    fn send<'a>(&'a mut self, batch: &'a Batch<'a>) -> BoxFut<'a, Result<(), SendError>> {
        Box::pin(async move {
            let changes: Vec<Value> = batch
                .records
                .iter()
                .map(|r| match (r.op, &r.fields) {
                    (Op::Upsert, Some(f)) => json!({"seq": r.seq, "op": "upsert", "record": f}),
                    _ => json!({"seq": r.seq, "op": "delete", "email": r.email}),
                })
                .collect();
            let body = json!({"source": self.source, "changes": changes});
            let req = self
                .egress
                .post(&self.url)
                .await
                .map_err(|e| SendError::Refused(e.to_string()))?
                .bearer_auth(&self.token)
                .header("Idempotency-Key", batch.key())
                .json(&body);
            let resp = req.send().await.map_err(|e| request_error(&e))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            let said = receiver_message(resp, std::iter::once(self.token.as_str())).await;
            // A 403 is a grant without read_write: re-authorizing fixes it.
            Err(refusal(status.as_u16(), &said, Forbidden::Auth))
        })
    }

    fn close(self: Box<Self>) -> BoxFut<'static, ()> {
        Box::pin(async {})
    }
}
