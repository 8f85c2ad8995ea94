//! `/api/v1/service-keys`: the platform's service keys (what platform code
//! presents to read a connection's credentials), for the operator alone —
//! the API twin of `rekey service-key …` and the console's Service keys
//! page, through the same domain functions (`connectors::service_keys`).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::apps::body;
use super::error::{AdminErrorBody, AdminReadErrors, AdminWriteErrors};
use super::extract::AdminSession;
use super::openapi::NameParam;
use super::{ApiError, AppState};
use crate::connectors::service_keys::{self, View};

/// What a signed-in org admin is told.
const OPERATOR_ONLY: &str =
    "service keys are the platform's: only the platform operator manages them";

/// Every service key, by name, active and revoked.
#[utoipa::path(
    get, path = "/api/v1/service-keys", tag = "service-keys",
    responses((status = 200, description = "The service keys (never their values).", body = Vec<View>), AdminReadErrors,
        (status = 403, description = "Only the platform operator.", body = AdminErrorBody)),
    security(("session" = [])),
)]
pub async fn list(
    State(st): State<AppState>,
    admin: AdminSession,
) -> Result<Json<Value>, ApiError> {
    admin.operator_only(OPERATOR_ONLY)?;
    let v: Vec<View> = service_keys::list(&st.core)
        .await?
        .iter()
        .map(|k| k.view())
        .collect();
    Ok(Json(json!(v)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "billing-worker"}))]
pub struct CreateServiceKey {
    /// Named for the platform code that presents it.
    name: String,
}

/// A new service key; its value is in this answer only (never cached).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct NewServiceKey {
    id: String,
    name: String,
    /// `rk_sk_…`: presented as `Authorization: Bearer`; shown once.
    key: String,
}

/// Creates a service key; the key is shown once.
#[utoipa::path(
    post, path = "/api/v1/service-keys", tag = "service-keys", request_body = CreateServiceKey,
    responses((status = 201, description = "Created; the key is in this answer only.", body = NewServiceKey), AdminWriteErrors,
        (status = 403, description = "Only the platform operator.", body = AdminErrorBody)),
    security(("session" = [], "csrf" = [])),
)]
pub async fn create(
    State(st): State<AppState>,
    admin: AdminSession,
    b: Result<Json<CreateServiceKey>, JsonRejection>,
) -> Result<Response, ApiError> {
    admin.operator_only(OPERATOR_ONLY)?;
    let b = body(b)?;
    let (k, key) = service_keys::create(&st.core, &admin.actor(), &b.name).await?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"id": k.id, "name": k.name, "key": key})),
    )
        .into_response())
}

/// Revokes a service key: platform code presenting it is refused at once.
#[utoipa::path(
    delete, path = "/api/v1/service-keys/{name}", tag = "service-keys", params(NameParam),
    responses((status = 204, description = "Revoked."), AdminWriteErrors,
        (status = 403, description = "Only the platform operator.", body = AdminErrorBody)),
    security(("session" = [], "csrf" = [])),
)]
pub async fn revoke(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin.operator_only(OPERATOR_ONLY)?;
    service_keys::revoke(&st.core, &admin.actor(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
