//! Admin API for incident campaigns: `POST /api/v1/incidents` plans and
//! starts one (the same fields as `rekey incident start`; scope `all` only
//! for a platform operator, an org admin for their own org), `GET` lists
//! and shows them (with counts and a progress figure), `POST …/{id}/cancel`
//! and `…/{id}/retry`, `GET …/{id}/report?format=json|csv|md`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::apps::body;
use super::extract::{AdminSession, OptionalJson};
use super::{ApiError, AppState};
use crate::config::Dur;
use crate::identity::sessions::Principal;
use crate::incident::{self, Asker, IncidentError, StartRequest, Started};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    reason: String,
    scope: String,
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default)]
    include_own: bool,
    #[serde(default)]
    overlap: Option<Dur>,
    #[serde(default)]
    force_cutover: bool,
    #[serde(default)]
    dry_run: bool,
}

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

pub async fn list(State(st): State<AppState>, admin: AdminSession) -> Result<Response, ApiError> {
    Ok(Json(json!(incident::list(&st.core, &asker(&admin)).await?)).into_response())
}

pub async fn show(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(json!(incident::get(&st.core, &asker(&admin), &id).await?)).into_response())
}

pub async fn cancel(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let v = incident::cancel(&st.core, &admin.actor(), &asker(&admin), &id).await?;
    Ok(Json(json!(v)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    #[serde(default)]
    item: Option<i64>,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    #[serde(default)]
    format: Option<String>,
}

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
