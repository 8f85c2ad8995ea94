//! The People API: `PUT /v1/people` (upsert by Email), `GET /v1/people`
//! (one by email, or keyset pages), `DELETE /v1/people?email=`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde_json::{json, Value};

use super::platform::ApiCaller;
use super::{ApiError, AppState, Format};
use crate::identity::{normalize_email, Permission};
use crate::people::{self, Outcome, MAX_RECORDS};

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message).in_format(Format::OAuth)
}

/// The records of a PUT body: `{"records": [...]}` or one record object.
fn records_of(headers: &HeaderMap, body: &Bytes) -> Result<Vec<Value>, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "expected Content-Type: application/json",
        )
        .in_format(Format::OAuth));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("malformed JSON: {e}")))?;
    match v {
        Value::Object(mut m) if m.contains_key("records") => {
            if m.len() > 1 {
                let extra: Vec<&String> = m.keys().filter(|k| *k != "records").collect();
                return Err(bad(format!("unknown field(s) beside records: {extra:?}")));
            }
            match m.remove("records") {
                Some(Value::Array(a)) => Ok(a),
                _ => Err(bad("records must be an array of objects")),
            }
        }
        Value::Object(m) => Ok(vec![Value::Object(m)]),
        _ => Err(bad(
            "the body must be {\"records\": [...]} or one record object",
        )),
    }
}

/// One record's result in a PUT answer (fields in the order the JSON
/// object had before it was typed: alphabetical).
#[derive(serde::Serialize)]
struct Item {
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    index: usize,
    status: &'static str,
}

pub async fn put(
    State(st): State<AppState>,
    caller: ApiCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadWrite)?;
    let records = records_of(&headers, &body)?;
    if records.is_empty() {
        return Err(bad("records is empty"));
    }
    if records.len() > MAX_RECORDS {
        return Err(bad(format!(
            "at most {MAX_RECORDS} records a call; this call has {}",
            records.len()
        )));
    }
    let mut results: Vec<Item> = Vec::with_capacity(records.len());
    let mut valid = Vec::with_capacity(records.len());
    let mut slots = Vec::with_capacity(records.len());
    for (index, r) in records.into_iter().enumerate() {
        match people::validate(r) {
            Ok((email, fields)) => {
                slots.push(index);
                results.push(Item {
                    email: Some(email.clone()),
                    error: None,
                    index,
                    status: "pending",
                });
                valid.push((email, fields));
            }
            Err(e) => results.push(Item {
                email: None,
                error: Some(e.to_string()),
                index,
                status: "error",
            }),
        }
    }
    let failed = results.len() - valid.len();
    if valid.is_empty() {
        let body = json!({
            "error": "invalid_request",
            "error_description": "no record was valid; nothing was written",
            "results": results, "inserted": 0, "updated": 0, "failed": failed,
        });
        return Ok((StatusCode::BAD_REQUEST, Json(body)).into_response());
    }
    let outcomes = people::upsert(&st.core.db, &caller.0.org_id, valid, st.core.now()).await?;
    let (mut inserted, mut updated) = (0, 0);
    for (slot, o) in slots.into_iter().zip(outcomes) {
        match o {
            Outcome::Inserted => inserted += 1,
            Outcome::Updated => updated += 1,
        }
        results[slot].status = match o {
            Outcome::Inserted => "inserted",
            Outcome::Updated => "updated",
        };
    }
    // Typed, so the thousand results are serialised once, not built into
    // a `Value` tree first.
    #[derive(serde::Serialize)]
    struct Answer {
        failed: usize,
        inserted: usize,
        results: Vec<Item>,
        updated: usize,
    }
    Ok(Json(Answer {
        failed,
        inserted,
        results,
        updated,
    })
    .into_response())
}

pub async fn get(
    State(st): State<AppState>,
    caller: ApiCaller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Read)?;
    let org = &caller.0.org_id;
    if let Some(e) = q.get("email") {
        let email = normalize_email(e).map_err(|e| bad(e.to_string()))?;
        return match people::get(&st.core.db, org, &email).await? {
            // Stored as the JSON object it is served as: no parse and
            // re-serialisation on the read path.
            Some(r) => Ok((
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                r,
            )
                .into_response()),
            None => Err(ApiError::not_found(format!("no person with email {email}"))
                .in_format(Format::OAuth)),
        };
    }
    let limit = match q.get("limit") {
        None => 100,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| bad("limit must be 1 to 1000"))?,
    };
    let after = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => String::new(),
        Some(c) => B64URL
            .decode(c)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad("cursor is not one this API returned"))?,
    };
    let (records, last, more) = people::page(&st.core.db, org, &after, limit).await?;
    let next = if more {
        last.map(|l| B64URL.encode(l))
    } else {
        None
    };
    Ok(Json(json!({"records": records, "next_cursor": next})).into_response())
}

pub async fn delete(
    State(st): State<AppState>,
    caller: ApiCaller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadWrite)?;
    let e = q.get("email").ok_or_else(|| bad("email is required"))?;
    let email = normalize_email(e).map_err(|e| bad(e.to_string()))?;
    if people::delete(&st.core.db, &caller.0.org_id, &email, st.core.now()).await? {
        Ok(Json(json!({"deleted": true, "email": email})).into_response())
    } else {
        Err(ApiError::not_found(format!("no person with email {email}")).in_format(Format::OAuth))
    }
}
