//! Admin API for deliveries: a connection's delivery of the org's People
//! changes, its pauses and backfills. The same domain functions as `rekey
//! delivery …`, so both record the same audit.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::apps::{body, org_for};
use super::error::{AdminReadErrors, AdminWriteErrors};
use super::extract::AdminSession;
use super::openapi::{ConnParam, OrgParam, PageQuery};
use super::{ApiError, AppState};
use crate::clock::parse_instant;
use crate::sync::backfill::{self, Started, Window};
use crate::sync::delivery::{self, BackfillProgress, Status};
use crate::sync::{Event, SyncError};

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Invalid(m) => ApiError::bad_request(m),
            SyncError::NotFound(m) => ApiError::not_found(format!("{m} not found")),
            SyncError::Refused(m) => ApiError::conflict(m),
            SyncError::Connector(c) => c.into(),
            SyncError::Store(s) => s.into(),
        }
    }
}

/// Enabling (or changing) a delivery.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"filter_domains": ["example.com"], "batch": 500}))]
pub struct EnableBody {
    /// Only records whose email is at one of these domains.
    #[serde(default)]
    filter_domains: Vec<String>,
    /// Records per batch, 1 to 1000 (default 500).
    batch: Option<i64>,
}

/// Enables delivery on the connection, starting at the outbox's head; on a
/// delivery that exists, changes its filter and batch and keeps its cursor.
/// On creation for `custom_rest`, the answer carries `signing_secret` once.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/connections/{conn}/delivery", tag = "deliveries", params(OrgParam, ConnParam),
    request_body(content = EnableBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Enabled.", body = Status),
        (status = 200, description = "Changed; the cursor is kept.", body = Status),
        AdminWriteErrors,
    ),
    security(("session" = [], "csrf" = [])),
)]
pub async fn enable(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
    b: Result<Json<EnableBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let b = body(b)?;
    let e = delivery::enable(
        &st.core,
        &o.id,
        &conn,
        &b.filter_domains,
        b.batch,
        &admin.actor(),
    )
    .await?;
    let code = if e.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(e)).into_response())
}

/// The delivery's state, cursor, lag, last error and backfill progress.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/connections/{conn}/delivery", tag = "deliveries", params(OrgParam, ConnParam),
    responses((status = 200, description = "The delivery.", body = Status), AdminReadErrors),
    security(("session" = [])),
)]
pub async fn status(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
) -> Result<Json<Status>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    Ok(Json(delivery::status(&st.core, &o.id, &conn).await?))
}

/// Turns delivery off: its cursor and backfills are forgotten.
#[utoipa::path(
    delete, path = "/api/v1/orgs/{org}/connections/{conn}/delivery", tag = "deliveries", params(OrgParam, ConnParam),
    responses((status = 204, description = "Disabled."), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn disable(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    delivery::disable(&st.core, &o.id, &conn, &admin.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Holds delivery until resumed; records keep accumulating.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/connections/{conn}/delivery/pause", tag = "deliveries", params(OrgParam, ConnParam),
    responses((status = 200, description = "Paused.", body = Status), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn pause(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
) -> Result<Json<Status>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    Ok(Json(
        delivery::person(&st.core, &o.id, &conn, Event::Pause, &admin.actor()).await?,
    ))
}

/// Resumes a paused delivery, or retries a parked batch or a failure now.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/connections/{conn}/delivery/resume", tag = "deliveries", params(OrgParam, ConnParam),
    responses((status = 200, description = "Resumed.", body = Status), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn resume(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
) -> Result<Json<Status>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    Ok(Json(
        delivery::person(&st.core, &o.id, &conn, Event::Resume, &admin.actor()).await?,
    ))
}

/// A backfill's window: `since` (RFC 3339 or a duration ago) or
/// `from_seq`; neither replays everything kept.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"since": "7d", "dry_run": true}))]
pub struct BackfillBody {
    since: Option<String>,
    from_seq: Option<i64>,
    #[serde(default)]
    dry_run: bool,
}

/// A backfill's window from `since` (RFC 3339, or a duration meaning that
/// long ago) or `from_seq`; neither is everything kept. Shared with the
/// console's form.
pub fn window(since: Option<&str>, from_seq: Option<i64>, now: i64) -> Result<Window, ApiError> {
    match (since, from_seq) {
        (Some(_), Some(_)) => Err(ApiError::bad_request("give since or from_seq, not both")),
        (Some(s), None) => parse_instant(s, now).map(Window::Since).ok_or_else(|| {
            ApiError::bad_request(format!(
                "since {s:?} is neither an RFC 3339 time nor a duration"
            ))
        }),
        (None, Some(n)) => Ok(Window::Seq(n)),
        (None, None) => Ok(Window::All),
    }
}

/// Replays a window of the outbox to the connection in the background;
/// `delivery` shows its progress. `dry_run` counts what would be sent.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/connections/{conn}/delivery/backfill", tag = "deliveries", params(OrgParam, ConnParam),
    request_body(content = BackfillBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Started.", body = Started),
        (status = 200, description = "A dry run: what would be sent.", body = Started),
        AdminWriteErrors,
    ),
    security(("session" = [], "csrf" = [])),
)]
pub async fn start_backfill(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
    b: Result<Json<BackfillBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let b = body(b)?;
    let from = window(b.since.as_deref(), b.from_seq, st.core.now())?;
    let s = backfill::start(&st.core, &o.id, &conn, from, b.dry_run, &admin.actor()).await?;
    let code = if s.dry_run {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, Json(s)).into_response())
}

/// Stops the running backfill.
#[utoipa::path(
    delete, path = "/api/v1/orgs/{org}/connections/{conn}/delivery/backfill", tag = "deliveries", params(OrgParam, ConnParam),
    responses((status = 200, description = "Cancelled.", body = BackfillProgress), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn cancel_backfill(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
) -> Result<Json<BackfillProgress>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    Ok(Json(
        backfill::cancel(&st.core, &o.id, &conn, &admin.actor()).await?,
    ))
}

/// The org's deliveries: every one (`{items}`, the answer since the list
/// began), or one page with `limit` or `after`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeliveryList {
    items: Vec<Status>,
    /// Deliveries in all; only on a page.
    total: Option<i64>,
    /// The `after` of the next page, null on the last; only on a page.
    next_after: Option<String>,
}

/// Every delivery of the org, by connection name; one page of them by
/// keyset with `limit` or `after`.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/deliveries", tag = "deliveries", params(OrgParam, PageQuery),
    responses((status = 200, description = "`items`: each delivery; with `limit` or `after`, one page of them, with `total` and `next_after`.", body = DeliveryList), AdminReadErrors),
    security(("session" = [])),
)]
pub async fn list(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(org): Path<String>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let o = org_for(&st, &admin, &org).await?;
    if !q.asks() {
        let items = delivery::list(&st.core, &o.id).await?;
        return Ok(Json(json!({ "items": items })).into_response());
    }
    let (n, after) = q.page()?;
    let p = delivery::page(&st.core, &o.id, after, n).await?;
    Ok(Json(p.answer()).into_response())
}
