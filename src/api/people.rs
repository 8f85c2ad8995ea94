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

use super::error::{OAuthErrorBody, PlatformErrors};
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
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = PeopleItem)]
struct Item {
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    index: usize,
    /// `inserted`, `updated` or `error`.
    status: &'static str,
}

/// A person: `Email` and any flat fields (strings, numbers, booleans, null).
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"Email": "ada@example.com", "FirstName": "Ada", "Plan": "pro", "Seats": 12}))]
#[allow(dead_code, non_snake_case)]
struct Person {
    #[schema(format = Email)]
    Email: String,
}

/// One record or a batch.
#[derive(utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum PutBody {
    Batch(PeopleBatch),
    One(Person),
}

/// One person or a page.
#[derive(utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum GetAnswer {
    One(Person),
    Page(PeoplePage),
}

/// A PUT body: one record, or up to 1000 of them.
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"records": [{"Email": "ada@example.com", "FirstName": "Ada"}, {"Email": "alan@example.com", "Plan": "free"}]}))]
#[allow(dead_code)]
struct PeopleBatch {
    records: Vec<Person>,
}

/// The PUT answer: each record's result in order.
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"failed": 0, "inserted": 1, "results": [{"email": "ada@example.com", "index": 0, "status": "inserted"}], "updated": 0}))]
#[allow(dead_code)]
struct PutAnswer {
    failed: usize,
    inserted: usize,
    results: Vec<Item>,
    updated: usize,
}

/// A refused PUT: nothing was written. When the body parsed but no record
/// was valid, `results` says why for each (and the counts are given).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct PutRefused {
    error: String,
    error_description: String,
    results: Option<Vec<Item>>,
    inserted: Option<usize>,
    updated: Option<usize>,
    failed: Option<usize>,
}

/// A page of people.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct PeoplePage {
    records: Vec<Person>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Deleted {
    deleted: bool,
    email: String,
}

/// Upserts people by `Email` (case-insensitive): up to 1000 records a call,
/// each answered in order; invalid records are reported, valid ones written.
#[utoipa::path(
    put, path = "/v1/people", tag = "platform",
    request_body(content = PutBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Written; each record's result.", body = PutAnswer),
        (status = 400, description = "No record was valid (`results` says why), or the body is malformed.", body = PutRefused),
        (status = 401, description = "No valid credential.", body = OAuthErrorBody),
        (status = 403, description = "The credential lacks `read_write`.", body = OAuthErrorBody),
        (status = 413, description = "Too large.", body = OAuthErrorBody),
        (status = 415, description = "Not JSON.", body = OAuthErrorBody),
    ),
    security(("bearer" = []), ("accesskey" = [])),
)]
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

/// One person (`?email=`), or a page of people in email order.
#[utoipa::path(
    get, path = "/v1/people", tag = "platform",
    params(
        ("email" = Option<String>, Query, description = "One person by email.", example = "ada@example.com"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 1000 (default 100).", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "The person (with `email`), or a page.", body = GetAnswer),
        PlatformErrors,
    ),
    security(("bearer" = []), ("accesskey" = [])),
)]
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

/// Deletes one person.
#[utoipa::path(
    delete, path = "/v1/people", tag = "platform",
    params(("email" = String, Query, description = "The person's email.", example = "ada@example.com")),
    responses((status = 200, description = "Deleted.", body = Deleted), PlatformErrors),
    security(("bearer" = []), ("accesskey" = [])),
)]
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

/// A change feed from another rekey: its records' states in sequence order.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangesBody {
    /// Who sends (the delivering rekey and org); sequences are per source.
    /// 1 to 512 characters, none of them a control character.
    source: String,
    changes: Vec<ChangeIn>,
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangeIn {
    /// The change's sequence at the source: its idempotency key.
    seq: i64,
    /// `upsert` or `delete`.
    op: String,
    /// For `upsert`: the record's whole state (with `Email`).
    #[schema(value_type = Option<Object>)]
    record: Option<Value>,
    /// For `delete`: whose record.
    email: Option<String>,
}

/// Applies changes delivered by another rekey (its `rekey` connection's
/// delivery), each only above the sequence already applied for its email
/// from that source: a retried batch writes once, an older state never
/// overwrites a newer one. Records are replaced whole. Nothing is written
/// when any change is invalid.
#[utoipa::path(
    post, path = "/v1/people/changes", tag = "platform",
    request_body(content = ChangesBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Applied; retried changes skipped.", body = crate::people::Applied),
        (status = 400, description = "A change is invalid; nothing was written.", body = OAuthErrorBody),
        (status = 401, description = "No valid credential.", body = OAuthErrorBody),
        (status = 403, description = "The credential lacks `read_write`.", body = OAuthErrorBody),
        (status = 413, description = "Too large.", body = OAuthErrorBody),
    ),
    security(("bearer" = []), ("accesskey" = [])),
)]
pub async fn changes(
    State(st): State<AppState>,
    caller: ApiCaller,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadWrite)?;
    let b: ChangesBody =
        serde_json::from_slice(&body).map_err(|e| bad(format!("malformed body: {e}")))?;
    let source = b.source.trim();
    if source.is_empty() || source.len() > 512 {
        return Err(bad("source must be 1 to 512 characters"));
    }
    // A name, shown and compared: no control characters (PostgreSQL
    // cannot store a NUL at all; SQLite would).
    if source.chars().any(char::is_control) {
        return Err(bad("source must hold no control characters"));
    }
    if b.changes.len() > MAX_RECORDS {
        return Err(bad(format!(
            "at most {MAX_RECORDS} changes a call; this call has {}",
            b.changes.len()
        )));
    }
    let mut out = Vec::with_capacity(b.changes.len());
    let mut prev = 0i64;
    for (i, c) in b.changes.into_iter().enumerate() {
        if c.seq <= prev {
            return Err(bad(format!(
                "changes[{i}]: seq must be positive and increasing"
            )));
        }
        prev = c.seq;
        let change = match (c.op.as_str(), c.record, c.email) {
            ("upsert", Some(r), None) => {
                let (email, fields) =
                    people::validate(r).map_err(|e| bad(format!("changes[{i}]: {e}")))?;
                people::Change {
                    seq: c.seq,
                    email,
                    fields: Some(fields),
                }
            }
            ("delete", None, Some(e)) => people::Change {
                seq: c.seq,
                email: normalize_email(&e).map_err(|e| bad(format!("changes[{i}]: {e}")))?,
                fields: None,
            },
            _ => {
                return Err(bad(format!(
                    "changes[{i}]: an upsert carries record, a delete carries email"
                )))
            }
        };
        out.push(change);
    }
    let applied = people::apply(&st.core.db, &caller.0.org_id, source, out, st.core.now()).await?;
    Ok(Json(applied).into_response())
}
