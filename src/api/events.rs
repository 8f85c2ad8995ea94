//! Admin API for a connection's activity log and the org's signed
//! webhooks: `/api/v1/orgs/{org}/connections/{conn}/activity`,
//! `/api/v1/orgs/{org}/webhooks…` and `…/webhook-deliveries/{id}/replay`.

use std::collections::HashMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::apps::{body, org_for};
use super::error::{AdminReadErrors, AdminWriteErrors};
use super::extract::AdminSession;
use super::openapi::{ConnParam, IdParam, OrgParam};
use super::{ApiError, AppState};
use crate::connectors::connections;
use crate::events::activity::{self, ActivityError, Page};
use crate::events::webhooks::{self, Created, Delivery, DeliveryView, WebhookError, WebhookView};

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid(m) => ApiError::bad_request(m),
            WebhookError::NotFound(m) => ApiError::not_found(m),
            WebhookError::Store(s) => s.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<ActivityError> for ApiError {
    fn from(e: ActivityError) -> Self {
        match e {
            ActivityError::Invalid(m) => ApiError::bad_request(m),
            ActivityError::Store(s) => s.into(),
        }
    }
}

/// Query of the activity log.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ActivityQuery {
    /// RFC 3339 time, or a duration meaning "that long ago" (`2h`).
    since: Option<String>,
    /// Only these types, comma-separated or repeated (`probe,error`).
    #[param(rename = "type")]
    kind: Option<String>,
    /// Entries per page (default 50, at most 1000).
    limit: Option<i64>,
    /// The page after this cursor (`next` of the page before).
    after: Option<String>,
}

/// A connection's activity log, newest first, a page at a time.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/connections/{conn}/activity", tag = "connections",
    params(OrgParam, ConnParam, ActivityQuery),
    responses((status = 200, description = "A page of entries and the cursor of the next.", body = Page), AdminReadErrors),
    security(("session" = [])),
)]
pub async fn activity(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let c = connections::find_in(&st.core.db, &o.id, &conn).await?;
    // `type` may repeat: read the pairs, not a map.
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let one = |k: &str| {
        pairs
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let types: Vec<&str> = pairs
        .iter()
        .filter(|(n, _)| n == "type")
        .map(|(_, v)| v.as_str())
        .collect();
    let types = activity::parse_types(&types)?;
    let since = one("since")
        .filter(|s| !s.is_empty())
        .map(|s| activity::parse_since(&s, st.core.now()))
        .transpose()?;
    let limit = match one("limit") {
        Some(l) => l.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::bad_request(format!("limit {l:?} is not a positive number"))
        })?,
        None => 50,
    };
    let after = one("after").filter(|s| !s.is_empty());
    let page = activity::page(
        &st.core.db,
        &o.id,
        &c.id,
        since,
        &types,
        after.as_deref(),
        limit,
    )
    .await?;
    Ok(Json(json!(page)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://hooks.example.com/rekey", "events": ["connection.needs_reauth", "connection.recovered"]}))]
pub struct CreateWebhook {
    /// Where events are POSTed (http or https).
    url: String,
    /// The events to send (at least one).
    events: Vec<String>,
}

/// Adds a receiver of signed events; its signing secret is in this answer only.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/webhooks", tag = "webhooks", params(OrgParam), request_body = CreateWebhook,
    responses((status = 201, description = "Created; `signing_secret` is shown this once.", body = Created), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn create(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(org): Path<String>,
    b: Result<Json<CreateWebhook>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(b)?;
    let o = org_for(&st, &admin, &org).await?;
    let w = webhooks::create(&st.core, &admin.actor(), &o.id, &b.url, &b.events).await?;
    Ok((StatusCode::CREATED, Json(json!(w))).into_response())
}

/// The org's webhooks (never a secret).
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/webhooks", tag = "webhooks", params(OrgParam),
    responses((status = 200, description = "The webhooks.", body = Vec<WebhookView>), AdminReadErrors),
    security(("session" = [])),
)]
pub async fn list(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let hooks = webhooks::list(&st.core.db, &o.id).await?;
    Ok(Json(json!(hooks
        .iter()
        .map(|w| w.view())
        .collect::<Vec<_>>())))
}

/// Deletes a webhook, its secret and its deliveries.
#[utoipa::path(
    delete, path = "/api/v1/orgs/{org}/webhooks/{id}", tag = "webhooks", params(OrgParam, IdParam),
    responses((status = 204, description = "Deleted."), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn delete(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    webhooks::delete(&st.core, &admin.actor(), &o.id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of the delivery list.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DeliveriesQuery {
    /// Only this webhook's deliveries.
    webhook: Option<String>,
    /// Only this state: `queued`, `retrying`, `delivered`, `dead`.
    state: Option<String>,
    /// At most this many (default 100).
    limit: Option<i64>,
}

/// Deliveries listed by the CLI and the API alike.
#[derive(serde::Serialize, ToSchema)]
pub struct Deliveries {
    items: Vec<DeliveryView>,
}

async fn deliveries_of(
    st: &AppState,
    admin: &AdminSession,
    org: &str,
    webhook: Option<&str>,
    q: &HashMap<String, String>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(st, admin, org).await?;
    let limit = match q.get("limit") {
        Some(l) => l.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::bad_request(format!("limit {l:?} is not a positive number"))
        })?,
        None => 100,
    };
    let webhook = webhook.or(q.get("webhook").map(String::as_str));
    let items = webhooks::deliveries(
        &st.core.db,
        &o.id,
        webhook,
        q.get("state").map(String::as_str),
        limit,
    )
    .await?;
    Ok(Json(json!(Deliveries {
        items: items.iter().map(Delivery::view).collect()
    })))
}

/// The org's webhook deliveries, newest first.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/webhooks/deliveries", tag = "webhooks", params(OrgParam, DeliveriesQuery),
    responses((status = 200, description = "The deliveries.", body = Deliveries), AdminReadErrors),
    security(("session" = [])),
)]
pub async fn deliveries(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(org): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    deliveries_of(&st, &admin, &org, None, &q).await
}

/// One webhook's deliveries, newest first.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/webhooks/{id}/deliveries", tag = "webhooks", params(OrgParam, IdParam, DeliveriesQuery),
    responses((status = 200, description = "The deliveries.", body = Deliveries), AdminReadErrors),
    security(("session" = [])),
)]
pub async fn webhook_deliveries(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    deliveries_of(&st, &admin, &org, Some(&id), &q).await
}

/// Sends a delivery again (dead, delivered or waiting) as a new attempt.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/webhook-deliveries/{id}/replay", tag = "webhooks", params(OrgParam, IdParam),
    responses((status = 200, description = "The delivery, queued again.", body = DeliveryView), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn replay(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let d = webhooks::replay(&st.core, &admin.actor(), &o.id, &id).await?;
    Ok(Json(json!(d.view())))
}

/// Sends a `ping` to a webhook now; answers the delivery as it ended.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/webhooks/{id}/test", tag = "webhooks", params(OrgParam, IdParam),
    responses((status = 200, description = "The ping's delivery (`state` says whether it was accepted).", body = DeliveryView), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn test(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let d = webhooks::test(&st.core, &admin.actor(), &o.id, &id).await?;
    Ok(Json(json!(d.view())))
}
