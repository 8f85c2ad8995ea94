//! Admin API for rotations: `POST /api/v1/orgs/{org}/rotations` starts one
//! (the same fields as `rekey rotate`), `GET` lists and shows them,
//! `POST …/{id}/cancel` and `…/{id}/retry`. The server's jobs loop runs
//! the steps (`jobs_interval`).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::apps::{body, org_for};
use super::error::{AdminErrorBody, AdminReadErrors, AdminWriteErrors};
use super::extract::{AdminSession, OptionalJson, Query};
use super::openapi::{IdParam, OrgParam};
use super::{ApiError, AppState};
use crate::config::Dur;
use crate::rotation::age::AgeRow;
use crate::rotation::limits;
use crate::rotation::RotationView;
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

/// Name exactly one target: `connection`, `key`, `m2m` or `app`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"connection": "cache", "dry_run": true}))]
pub struct Start {
    #[serde(default)]
    connection: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    m2m: Option<String>,
    #[serde(default)]
    app: Option<String>,
    /// Answer the plan; change nothing.
    #[serde(default)]
    dry_run: bool,
    /// Answer who reads the credential and which version; change nothing.
    #[serde(default)]
    preflight: bool,
    /// How long nothing may use the previous credential before it is retired.
    #[serde(default)]
    cutover_window: Option<Dur>,
    /// When the cut-over gives up (`stalled`), breaking no one.
    #[serde(default)]
    deadline: Option<Dur>,
    /// An admin connection to make the change through.
    #[serde(default)]
    rotate_with: Option<String>,
}

/// The answer of a `dry_run` or a `preflight`: what would happen, or who
/// reads the credential. Nothing changed.
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"dry_run": true, "target": {"type": "connection", "name": "cache"}, "driver": "redis (password)", "steps": ["check", "write_ahead", "apply", "verify", "promote", "cutover", "retire"], "statements": ["ACL SETUSER app >…"], "rotate_with": null, "dual_credentials": true, "cutover_window_s": 3600}))]
#[allow(dead_code)]
pub struct RotationPlan {
    dry_run: Option<bool>,
    preflight: Option<bool>,
    /// `{type, name}`.
    target: Value,
    driver: Option<String>,
    steps: Option<Vec<String>>,
    /// What would be run at the target.
    statements: Option<Value>,
    rotate_with: Option<String>,
    dual_credentials: Option<bool>,
    cutover_window_s: Option<i64>,
    current_version: Option<i64>,
    /// Who read the credential, which version and when.
    readers: Option<Vec<Value>>,
    /// Readers still on an older version.
    not_moved: Option<Vec<Value>>,
    must_reread: Option<Vec<String>>,
}

/// A rotation with who reads the credential (connections).
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RotationDetail {
    #[serde(flatten)]
    rotation: RotationView,
    /// Who read the credential, which version and when.
    consumers: Option<Vec<Value>>,
    /// Readers still on an older version.
    not_moved: Option<Vec<Value>>,
}

/// The answer of `finish`.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FinishAnswer {
    #[serde(flatten)]
    rotation: RotationView,
    now: bool,
    /// Who breaks (with `now`).
    breaks: Vec<String>,
    /// Who was still on the previous credential.
    still_on_previous: Vec<String>,
}

/// Starts a rotation, or answers its plan (`dry_run`, `preflight`).
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/rotations", tag = "rotations", params(OrgParam), request_body = Start,
    responses(
        (status = 201, description = "Started; a new secret of rekey's own credential is in this answer only.", body = RotationView),
        (status = 200, description = "The plan; nothing changed.", body = RotationPlan),
        AdminWriteErrors,
        (status = 503, description = "The outside system is unreachable.", body = AdminErrorBody),
    ),
    security(("session" = [], "csrf" = [])),
)]
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
        end_sessions: false,
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
    Ok(crate::connectors::service_keys::for_tenant(&mut st.core.db.read().await?, v).await?)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only rotations in this status.
    status: Option<String>,
}

/// The org's rotations, newest first.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/rotations", tag = "rotations", params(OrgParam, ListQuery),
    responses((status = 200, description = "The rotations.", body = Vec<RotationView>), AdminReadErrors),
    security(("session" = [])),
)]
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

/// One rotation with its steps and who reads which version.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/rotations/{id}", tag = "rotations", params(OrgParam, IdParam),
    responses((status = 200, description = "The rotation.", body = RotationDetail), AdminReadErrors),
    security(("session" = [])),
)]
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

/// Cancels a rotation before its promotion (its change undone at the target).
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/rotations/{id}/cancel", tag = "rotations", params(OrgParam, IdParam),
    responses((status = 200, description = "The rotation, `cancelled`.", body = RotationView), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn cancel(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let row = rotation::cancel(&st.core, &admin.actor(), &o.id, &id).await?;
    Ok(Json(seen_by(&st, &admin, json!(row.view())).await?))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"now": true}))]
pub struct FinishBody {
    /// Retire the previous credential at once, whoever still uses it.
    #[serde(default)]
    now: bool,
}

/// `POST …/rotations/{id}/finish` `{"now": true}`: ends the cut-over; with
/// `now` the previous credential is retired at once, and `breaks` names
/// the readers still on it.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/rotations/{id}/finish", tag = "rotations", params(OrgParam, IdParam),
    request_body(content = Option<FinishBody>, description = "Optional."),
    responses((status = 200, description = "The rotation and who breaks.", body = FinishAnswer), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
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

/// Retries a failed or stalled rotation: a fresh rotation.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/rotations/{id}/retry", tag = "rotations", params(OrgParam, IdParam),
    responses(
        (status = 201, description = "The new rotation.", body = RotationView),
        (status = 200, description = "A plan.", body = RotationPlan),
        AdminWriteErrors,
    ),
    security(("session" = [], "csrf" = [])),
)]
pub async fn retry(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let s = rotation::retry(&st.core, &admin.actor(), &o.id, &id).await?;
    started(&st, &admin, s).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"done": 1}))]
pub struct StepBody {
    /// The runbook step's number (from 1).
    done: u64,
}

/// `POST …/rotations/{id}/steps` `{"done": N}`: a manual rotation's runbook step N is done.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/rotations/{id}/steps", tag = "rotations", params(OrgParam, IdParam), request_body = StepBody,
    responses((status = 200, description = "The rotation.", body = RotationView), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
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

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AgeQuery {
    /// One org's credentials (its slug).
    #[serde(default)]
    org: Option<String>,
    /// Only credentials older than this (`90d`, or seconds).
    #[serde(default)]
    #[param(value_type = Option<String>, example = "90d")]
    older_than: Option<Dur>,
    /// Asks for one page (`{items, total, due, next_after}`) of this many,
    /// 1–1000, instead of the whole list.
    #[serde(default)]
    limit: Option<String>,
    /// The page after this cursor (`next_after` of the page before);
    /// asks for a page, as `limit` does (of 50 without it).
    #[serde(default)]
    after: Option<String>,
}

/// A page of the age view, worst first (`?limit=` or `?after=`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AgePageBody {
    items: Vec<AgeRow>,
    /// Credentials in all.
    total: i64,
    /// Of them, past due.
    due: i64,
    /// The `after` of the next page; null on the last.
    next_after: Option<String>,
}

/// The whole list, or one page of it when `limit` or `after` asks.
#[derive(utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum AgeAnswer {
    All(Vec<AgeRow>),
    Page(AgePageBody),
}

/// The age view of `org_id` (every org's and the platform's own with
/// `None`): the whole list (the answer since the view began), or one page
/// by keyset when the query asks for one.
async fn age_answer(
    st: &AppState,
    org_id: Option<&str>,
    q: &AgeQuery,
) -> Result<Json<Value>, ApiError> {
    let older = q.older_than.map(Dur::ms);
    if q.limit.is_none() && q.after.is_none() {
        let rows = crate::rotation::age::list(&st.core, org_id, older).await?;
        return Ok(Json(json!(rows)));
    }
    let n = super::users::limit(
        q.limit.as_deref(),
        crate::store::keyset::PAGE,
        crate::store::keyset::MAX,
    )?;
    let after = q.after.as_deref().filter(|a| !a.is_empty());
    let p = crate::rotation::age::paged::page(&st.core, org_id, older, after, n).await?;
    let mut answer = p.page.answer();
    answer["due"] = json!(p.due);
    Ok(Json(answer))
}

/// `GET /api/v1/credentials/age`: every org's credentials and the
/// platform's own (a platform operator), or one org's (`?org=`, which an
/// org admin may ask for their own org).
#[utoipa::path(
    get, path = "/api/v1/credentials/age", tag = "rotations", params(AgeQuery),
    responses((status = 200, description = "Every credential, worst first: past due (most overdue first), then the oldest; one page of them with `limit` or `after`.", body = AgeAnswer), AdminReadErrors,
        (status = 403, description = "An org admin must name their org.", body = AdminErrorBody)),
    security(("session" = [])),
)]
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
    age_answer(&st, org_id.as_deref(), &q).await
}

/// `GET /api/v1/orgs/{org}/credentials/age`.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/credentials/age", tag = "rotations",
    params(OrgParam,
        ("older_than" = Option<String>, Query, description = "Only credentials older than this (`90d`, or seconds).", example = "90d"),
        ("limit" = Option<String>, Query, description = "Asks for one page (`{items, total, due, next_after}`) of this many, 1–1000, instead of the whole list."),
        ("after" = Option<String>, Query, description = "The page after this cursor (`next_after` of the page before); asks for a page, as `limit` does (of 50 without it).")),
    responses((status = 200, description = "The org's credentials, worst first; one page of them with `limit` or `after`.", body = AgeAnswer), AdminReadErrors),
    security(("session" = [])),
)]
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
    age_answer(&st, Some(&o.id), &q).await
}
