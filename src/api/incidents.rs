//! Admin API for incident campaigns: `POST /api/v1/incidents` plans and
//! starts one (the same fields as `rekey incident start`; scope `all` only
//! for a platform operator, an org admin for their own org), `GET` lists
//! and shows them (with counts and a progress figure; a campaign's items
//! one page at a time when asked), `GET …/{id}/progress` (per org and
//! kind, worst first, a page at a time), `POST …/{id}/cancel` and
//! `…/{id}/retry`, `GET …/{id}/report?format=json|csv|md`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::apps::body;
use super::error::{AdminErrorBody, AdminReadErrors, AdminWriteErrors};
use super::extract::{AdminSession, OptionalJson, Query};
use super::openapi::{IdParam, PageQuery};
use super::{ApiError, AppState};
use crate::config::Dur;
use crate::identity::sessions::Principal;
use crate::incident::items::Group;
use crate::incident::{self, Asker, IncidentError, IncidentView, StartRequest, Started};
use crate::store::keyset;

impl From<IncidentError> for ApiError {
    fn from(e: IncidentError) -> Self {
        match e {
            IncidentError::Invalid(m) => ApiError::bad_request(m),
            IncidentError::Forbidden(m) => ApiError::forbidden(m),
            IncidentError::NotFound(m) => ApiError::not_found(format!("{m} not found")),
            IncidentError::Running(o) => {
                ApiError::new(StatusCode::CONFLICT, "campaign_running", o.message())
                    .with_header(header::LOCATION, &format!("/api/v1/incidents/{}", o.id()))
            }
            IncidentError::Rotation(r) => r.into(),
            IncidentError::Connector(c) => c.into(),
            IncidentError::Store(s) => s.into(),
        }
    }
}

pub(crate) fn asker(admin: &AdminSession) -> Asker<'_> {
    match &admin.session.principal {
        Principal::Operator(_) => Asker::Operator,
        Principal::OrgAdmin { org, .. } => Asker::OrgAdmin { org_id: &org.id },
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "leaked CI log", "scope": "org:acme", "dry_run": true}))]
pub struct Start {
    /// Why: shown with the campaign and on the status page.
    reason: String,
    /// `org:SLUG`, `kind:KIND`, … or `all` (a platform operator).
    scope: String,
    /// Only these connector kinds.
    #[serde(default)]
    kinds: Vec<String>,
    /// Also rekey's own credentials (access keys, client secrets).
    #[serde(default)]
    include_own: bool,
    #[serde(default)]
    overlap: Option<Dur>,
    #[serde(default)]
    force_cutover: bool,
    /// After each rotation's retire, end the sessions the target keeps
    /// open with the retired credential (Redis `CLIENT KILL USER`).
    #[serde(default)]
    end_sessions: bool,
    #[serde(default)]
    dry_run: bool,
}

/// A campaign's plan: the items it would act on. Nothing changed.
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"dry_run": true, "scope": "org:acme", "items": [{"n": 1, "org": "acme", "target": {"type": "connection", "name": "cache", "kind": "redis"}, "action": "rotate", "detail": "rotate the password"}]}))]
#[allow(dead_code)]
pub struct CampaignPlan {
    dry_run: Option<bool>,
    scope: Option<String>,
    items: Option<Vec<Value>>,
}

/// A started campaign, with the new secrets of rekey's own credentials
/// (shown here once).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct StartedCampaign {
    #[serde(flatten)]
    campaign: IncidentView,
    secrets: Vec<Value>,
}

/// An overlapping campaign is running.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CampaignRunning {
    error: String,
    message: String,
    /// The running campaign, as far as the asker may see it.
    campaign: Value,
}

/// Plans and starts a campaign (or answers its plan with `dry_run`).
#[utoipa::path(
    post, path = "/api/v1/incidents", tag = "incidents", request_body = Start,
    responses(
        (status = 201, description = "Started; new secrets of rekey's own credentials are in this answer only.", body = StartedCampaign),
        (status = 200, description = "The plan; nothing changed.", body = CampaignPlan),
        (status = 409, description = "An overlapping campaign is running (`Location` names it).", body = CampaignRunning),
        (status = 400, description = "Invalid.", body = AdminErrorBody),
        (status = 401, description = "Not signed in.", body = AdminErrorBody),
        (status = 403, description = "Not allowed, or no CSRF token.", body = AdminErrorBody),
        (status = 404, description = "The scope names nothing this admin may see.", body = AdminErrorBody),
        (status = 413, description = "Too large.", body = AdminErrorBody),
        (status = 415, description = "Not JSON.", body = AdminErrorBody),
    ),
    security(("session" = [], "csrf" = [])),
)]
pub async fn start(
    State(st): State<AppState>,
    admin: AdminSession,
    b: Result<Json<Start>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(b)?;
    let req = StartRequest {
        reason: b.reason,
        scope: b.scope,
        kinds: b.kinds,
        include_own: b.include_own,
        overlap_ms: b.overlap.map(Dur::ms).unwrap_or(0),
        force_cutover: b.force_cutover,
        end_sessions: b.end_sessions,
        dry_run: b.dry_run,
    };
    match incident::start(&st.core, &admin.actor(), &asker(&admin), &req).await {
        Ok(Started::Plan(p)) => Ok((StatusCode::OK, Json(p)).into_response()),
        Ok(Started::Campaign(v, secrets)) => {
            let mut j = json!(*v);
            j["secrets"] = json!(secrets);
            // New secrets, shown once: never cached.
            Ok((
                StatusCode::CREATED,
                [
                    (header::CACHE_CONTROL, "no-store".to_string()),
                    (header::LOCATION, format!("/api/v1/incidents/{}", v.id)),
                ],
                Json(j),
            )
                .into_response())
        }
        // The answer is the running campaign, as far as the asker may see
        // it: an org admin is told the operator's campaign by its id only.
        Err(IncidentError::Running(o)) => Ok((
            StatusCode::CONFLICT,
            [(header::LOCATION, format!("/api/v1/incidents/{}", o.id()))],
            Json(json!({
                "error": "campaign_running",
                "message": o.message(),
                "campaign": o.campaign(),
            })),
        )
            .into_response()),
        Err(e) => Err(e.into()),
    }
}

/// A page of the campaigns, newest first, each with its items counted
/// (`items` empty; `counts`, `total` and `progress` over every item).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct CampaignsPage {
    items: Vec<IncidentView>,
    /// Campaigns in all.
    total: i64,
    /// The `after` of the next page; null on the last.
    next_after: Option<String>,
}

/// The list's two answers: the newest 200 with every item (the answer
/// since campaigns began), or a page of them with `limit` or `after`.
#[derive(utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum CampaignsAnswer {
    All(Vec<IncidentView>),
    Page(CampaignsPage),
}

/// The campaigns the admin may see, newest first.
#[utoipa::path(
    get, path = "/api/v1/incidents", tag = "incidents", params(PageQuery),
    responses((status = 200, description = "The newest 200 campaigns with every item; with `limit` or `after`, one page of them by keyset, their items counted, not listed, with `total` and `next_after`.", body = CampaignsAnswer), AdminReadErrors),
    security(("session" = [])),
)]
pub async fn list(
    State(st): State<AppState>,
    admin: AdminSession,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let a = asker(&admin);
    if !q.asks() {
        return Ok(Json(json!(incident::list(&st.core, &a).await?)).into_response());
    }
    let (n, after) = q.page()?;
    let p = incident::page(&st.core, &a, after, n).await?;
    Ok(Json(p.answer()).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShowQuery {
    /// Asks for one page of the items (`items`, `items_total`,
    /// `next_after`) of this many, 1–1000, instead of every item.
    #[serde(default)]
    limit: Option<String>,
    /// The page after this cursor (`next_after` of the page before); asks
    /// for a page, as `limit` does (of 50 without it).
    #[serde(default)]
    after: Option<String>,
    /// Only the items in this status (`pending`, `acting`, `done`,
    /// `verified`, `failed`, `waiting_person`, `cancelled`); asks for a
    /// page, as `limit` does.
    #[serde(default)]
    #[param(example = "failed")]
    status: Option<String>,
}

/// The campaign: with every item (the answer since campaigns began), or
/// with one page of its items when `limit`, `after` or `status` asks
/// (one schema, not a choice of two: a page is a whole answer's fields
/// and two more).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct CampaignAnswer {
    /// `items`: every item the admin sees, or this page's; `waiting`:
    /// every item waiting on a person, or on a page the first 20 (the rest
    /// are `status=waiting_person`).
    #[serde(flatten)]
    campaign: IncidentView,
    /// The items the pages walk in all (those in `status` when asked,
    /// otherwise `total`); only on a page.
    items_total: Option<i64>,
    /// The `after` of the next page, null on the last; only on a page.
    next_after: Option<String>,
}

/// One campaign with its items, counts and progress; with `limit`,
/// `after` or `status`, its items one page at a time by number.
#[utoipa::path(
    get, path = "/api/v1/incidents/{id}", tag = "incidents", params(IdParam, ShowQuery),
    responses((status = 200, description = "The campaign with every item it holds (and every item waiting on a person in `waiting`); with `limit`, `after` or `status`, with one page of its items by number (`items`, `items_total`, `next_after`) and at most 20 in `waiting`.", body = CampaignAnswer), AdminReadErrors),
    security(("session" = [])),
)]
pub async fn show(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Result<Response, ApiError> {
    let a = asker(&admin);
    if q.limit.is_none() && q.after.is_none() && q.status.is_none() {
        return Ok(Json(json!(incident::get(&st.core, &a, &id).await?)).into_response());
    }
    let n = super::users::limit(q.limit.as_deref(), keyset::PAGE, keyset::MAX)?;
    let p = incident::items::shown(
        &st.core,
        &a,
        &id,
        q.status.as_deref(),
        q.after.as_deref(),
        n,
    )
    .await?;
    Ok(Json(json!(p)).into_response())
}

/// A page of a campaign's progress per org and kind
/// (`{items, total, next_after}`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ProgressPage {
    items: Vec<Group>,
    /// Groups (org and kind) in all.
    total: i64,
    /// The `after` of the next page; null on the last.
    next_after: Option<String>,
}

/// The campaign's progress per org and kind over every item the admin
/// may see, worst first: the most failed items, then the least settled
/// share, then by org slug (the platform's own, `org` null, first among
/// equals) and kind.
#[utoipa::path(
    get, path = "/api/v1/incidents/{id}/progress", tag = "incidents", params(IdParam, PageQuery),
    responses((status = 200, description = "One page of the groups, worst first.", body = ProgressPage), AdminReadErrors),
    security(("session" = [])),
)]
pub async fn progress(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let (n, after) = q.page()?;
    let p = incident::items::groups(&st.core, &asker(&admin), &id, after, n).await?;
    Ok(Json(p.answer()).into_response())
}

/// Cancels the campaign's items that have not started; with `{"item": N}`
/// that one item only (its rotation too, while it has not changed the
/// target).
#[utoipa::path(
    post, path = "/api/v1/incidents/{id}/cancel", tag = "incidents", params(IdParam),
    request_body(content = Option<Retry>, description = "Optional: one item's number."),
    responses((status = 200, description = "The campaign.", body = IncidentView), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn cancel(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(id): Path<String>,
    OptionalJson(b): OptionalJson<Retry>,
) -> Result<Response, ApiError> {
    let (actor, a) = (admin.actor(), asker(&admin));
    let v = match b.and_then(|b| b.item) {
        Some(n) => incident::cancel_item(&st.core, &actor, &a, &id, n).await?,
        None => incident::cancel(&st.core, &actor, &a, &id).await?,
    };
    Ok(Json(json!(v)).into_response())
}

/// One item (`{"item": N}`), or, without a body, every one the action
/// applies to.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"item": 3}))]
pub struct Retry {
    /// One item's number; without it every failed item.
    #[serde(default)]
    item: Option<i64>,
}

/// Retries failed items (each with a fresh rotation).
#[utoipa::path(
    post, path = "/api/v1/incidents/{id}/retry", tag = "incidents", params(IdParam),
    request_body(content = Option<Retry>, description = "Optional."),
    responses((status = 200, description = "The campaign.", body = IncidentView), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn retry(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(id): Path<String>,
    OptionalJson(b): OptionalJson<Retry>,
) -> Result<Response, ApiError> {
    let item = b.and_then(|b| b.item);
    let v = incident::retry(&st.core, &admin.actor(), &asker(&admin), &id, item).await?;
    Ok(Json(json!(v)).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// `json` (default), `csv` or `md`.
    #[serde(default)]
    #[param(example = "md")]
    format: Option<String>,
}

/// The campaign's report.
#[utoipa::path(
    get, path = "/api/v1/incidents/{id}/report", tag = "incidents", params(IdParam, ReportQuery),
    responses(
        (status = 200, description = "The report, in the format asked for.",
         content((Object = "application/json"), (String = "text/csv"), (String = "text/markdown"))),
        AdminReadErrors,
    ),
    security(("session" = [])),
)]
pub async fn report(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(id): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let f: incident::Format = q.format.as_deref().unwrap_or("json").parse()?;
    let text = incident::report(&st.core, &asker(&admin), &id, f).await?;
    let ctype = match f {
        incident::Format::Json => "application/json",
        incident::Format::Csv => "text/csv; charset=utf-8",
        incident::Format::Md => "text/markdown; charset=utf-8",
    };
    Ok(([(header::CONTENT_TYPE, ctype)], text).into_response())
}
