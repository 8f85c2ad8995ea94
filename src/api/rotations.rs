//! Admin API for rotations: `POST /api/v1/orgs/{org}/rotations` starts one
//! (the same fields as `rekey rotate`), `GET` lists and shows them,
//! `POST …/{id}/cancel` and `…/{id}/retry`. The server's jobs loop runs
//! the steps (`jobs_interval`).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::apps::{body, org_for};
use super::extract::{AdminSession, OptionalJson};
use super::{ApiError, AppState};
use crate::config::Dur;
use crate::rotation::limits;
use crate::rotation::{self, RotationError, StartRequest, Started, TargetRef};

impl From<RotationError> for ApiError {
    fn from(e: RotationError) -> Self {
        match e {
            RotationError::Invalid(m) => ApiError::bad_request(m),
            RotationError::NotFound(m) => ApiError::not_found(format!("{m} not found")),
            RotationError::InProgress(v) => ApiError::new(
                StatusCode::CONFLICT,
                "rotation_in_progress",
                format!(
                    "a rotation of {} is already in progress: {}",
                    v.target.name, v.id
                ),
            )
            .with_header(header::LOCATION, &v.id),
            RotationError::LeaseLost => ApiError::new(
                StatusCode::CONFLICT,
                "lease_lost",
                "another instance took the rotation over; look again",
            ),
            RotationError::Connector(c) => c.into(),
            RotationError::Store(s) => s.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    #[serde(default)]
    connection: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    m2m: Option<String>,
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    preflight: bool,
    #[serde(default)]
    cutover_window: Option<Dur>,
    #[serde(default)]
    deadline: Option<Dur>,
    #[serde(default)]
    rotate_with: Option<String>,
}

pub async fn start(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(org): Path<String>,
    b: Result<Json<Start>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(b)?;
    let o = org_for(&st, &admin, &org).await?;
    let named = [&b.connection, &b.key, &b.m2m, &b.app]
        .iter()
        .filter(|t| t.is_some())
        .count();
    if named != 1 {
        return Err(ApiError::bad_request(
            "name exactly one target: connection, key, m2m or app",
        ));
    }
    let target = match (b.connection, b.key, b.m2m, b.app) {
        (Some(c), ..) => TargetRef::Connection(c),
        (None, Some(k), ..) => TargetRef::Key(k),
        (None, None, Some(m), _) => TargetRef::M2m(m),
        (None, None, None, Some(a)) => TargetRef::App(a),
        (None, None, None, None) => {
            return Err(ApiError::bad_request("name a target"));
        }
    };
    let req = StartRequest {
        target,
        dry_run: b.dry_run,
        preflight: b.preflight,
        cutover_window_ms: b
            .cutover_window
            .map(|d| d.ms())
            .unwrap_or(limits::CUTOVER_WINDOW_MS),
        deadline_ms: b.deadline.map(|d| d.ms()).unwrap_or(limits::DEADLINE_MS),
        rotate_with: b.rotate_with,
        force_at_deadline: false,
    };
    let s = rotation::start(&st.core, &admin.actor(), &o.id, &req).await?;
    started(&st, &admin, s).await
}

/// The answer of a start or a retry: 201 with the rotation, or 200 with a
/// plan. Either may carry a new secret (rekey's own, shown once): never
/// cached.
async fn started(st: &AppState, admin: &AdminSession, s: Started) -> Result<Response, ApiError> {
    let no_store = [(header::CACHE_CONTROL, "no-store")];
    Ok(match s {
        Started::Plan(p) => {
            (StatusCode::OK, no_store, Json(seen_by(st, admin, p).await?)).into_response()
        }
        Started::Rotation(v) => {
            let v = seen_by(st, admin, json!(*v)).await?;
            (StatusCode::CREATED, no_store, Json(v)).into_response()
        }
    })
}

/// What an org admin is shown of the platform's own consumers. Service
/// keys are the platform's, not the tenant's: their names and the addresses
/// they read from are the operator's business, so to an org admin each is
/// "a platform service key" (in the reader lists and in step details
/// alike). The operator sees everything.
pub(crate) async fn seen_by(
    st: &AppState,
    admin: &AdminSession,
    v: Value,
) -> Result<Value, ApiError> {
    if admin.session.principal.is_operator() {
        return Ok(v);
    }
    let names: Vec<(String,)> = crate::fetch_all!(
        &mut st.core.db.read().await?,
        (String,),
        "SELECT name FROM service_keys"
    )?;
    // Longest first: `service:etl` must not eat the start of `service:etl-2`.
    let mut names = names;
    names.sort_by_key(|(n,)| std::cmp::Reverse(n.len()));
    let mut text = v.to_string();
    for (name,) in &names {
        text = hide_reader(&text, &format!("service:{name}"));
    }
    let mut out: Value = serde_json::from_str(&text).unwrap_or(v);
    hide_addresses(&mut out);
    Ok(out)
}

/// `tag` (and the ` from ADDRESS` after it, as step details name a reader)
/// replaced by "a platform service key".
fn hide_reader(text: &str, tag: &str) -> String {
    const SHOWN: &str = "a platform service key";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(tag) {
        out.push_str(&rest[..i]);
        out.push_str(SHOWN);
        rest = &rest[i + tag.len()..];
        if let Some(after) = rest.strip_prefix(" from ") {
            let end = after.find([' ', ',', ')', '"', ';']).unwrap_or(after.len());
            rest = &after[end..];
        }
    }
    out.push_str(rest);
    out
}

/// Readers' `ip` fields emptied (the reader lists of `rotation show` and
/// `--preflight`).
fn hide_addresses(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("reader") && m.contains_key("ip") {
                m.insert("ip".into(), Value::Null);
            }
            for x in m.values_mut() {
                hide_addresses(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(hide_addresses),
        _ => {}
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
}

pub async fn list(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(org): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let rows = rotation::list(&st.core, &o.id, q.status.as_deref()).await?;
    let v = json!(rows.iter().map(|r| r.view()).collect::<Vec<_>>());
    Ok(Json(seen_by(&st, &admin, v).await?))
}

pub async fn show(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let row = rotation::get(&mut st.core.db.read().await?, &o.id, &id).await?;
    let v = rotation::detailed_view(&st.core, &row).await?;
    Ok(Json(seen_by(&st, &admin, v).await?))
}

pub async fn cancel(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let row = rotation::cancel(&st.core, &admin.actor(), &o.id, &id).await?;
    Ok(Json(seen_by(&st, &admin, json!(row.view())).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FinishBody {
    #[serde(default)]
    now: bool,
}

/// `POST …/rotations/{id}/finish` `{"now": true}`: ends the cut-over; with
/// `now` the previous credential is retired at once, and `breaks` names
/// the readers still on it.
pub async fn finish(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, id)): Path<(String, String)>,
    OptionalJson(b): OptionalJson<FinishBody>,
) -> Result<Json<Value>, ApiError> {
    let b = b.unwrap_or_default();
    let o = org_for(&st, &admin, &org).await?;
    let f = rotation::finish_cutover(&st.core, &admin.actor(), &o.id, &id, b.now).await?;
    Ok(Json(seen_by(&st, &admin, f.json()).await?))
}

pub async fn retry(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let s = rotation::retry(&st.core, &admin.actor(), &o.id, &id).await?;
    started(&st, &admin, s).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepBody {
    done: u64,
}

/// `POST …/rotations/{id}/steps` `{"done": N}`: a manual rotation's runbook step N is done.
pub async fn step(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, id)): Path<(String, String)>,
    b: Result<Json<StepBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let b = body(b)?;
    let o = org_for(&st, &admin, &org).await?;
    let v = rotation::runbook_step(&st.core, &admin.actor(), &o.id, &id, b.done).await?;
    Ok(Json(seen_by(&st, &admin, json!(v)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgeQuery {
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    older_than: Option<Dur>,
}

/// `GET /api/v1/credentials/age`: every org's credentials and the
/// platform's own (a platform operator), or one org's (`?org=`, which an
/// org admin may ask for their own org).
pub async fn age(
    State(st): State<AppState>,
    admin: AdminSession,
    Query(q): Query<AgeQuery>,
) -> Result<Json<Value>, ApiError> {
    let org_id =
        match &q.org {
            Some(slug) => Some(org_for(&st, &admin, slug).await?.id),
            None if admin.session.principal.is_operator() => None,
            None => return Err(ApiError::forbidden(
                "only a platform operator sees every org's credentials; name your org (?org=SLUG)",
            )),
        };
    let rows =
        crate::rotation::age::list(&st.core, org_id.as_deref(), q.older_than.map(Dur::ms)).await?;
    Ok(Json(json!(rows)))
}

/// `GET /api/v1/orgs/{org}/credentials/age`.
pub async fn org_age(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(org): Path<String>,
    Query(q): Query<AgeQuery>,
) -> Result<Json<Value>, ApiError> {
    if q.org.is_some() {
        return Err(ApiError::bad_request("the org is in the path"));
    }
    let o = org_for(&st, &admin, &org).await?;
    let rows = crate::rotation::age::list(&st.core, Some(&o.id), q.older_than.map(Dur::ms)).await?;
    Ok(Json(json!(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_readers_are_not_named_to_tenants() {
        let t = "waiting for readers: service:etl from 10.1.2.3 (last read version 1), service:etl-2 from ::1; service:etl";
        let out = hide_reader(&hide_reader(t, "service:etl-2"), "service:etl");
        assert_eq!(
            out,
            "waiting for readers: a platform service key (last read version 1), a platform service key; a platform service key"
        );
        let mut v = json!({"consumers": [{"reader": "x", "ip": "10.0.0.1"}], "ip": "kept"});
        hide_addresses(&mut v);
        assert_eq!(v["consumers"][0]["ip"], Value::Null);
        assert_eq!(v["ip"], "kept");
    }
}
