//! Operations endpoints: liveness, readiness, metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::{ApiError, AppState};

/// `{"status": "ok"}`, `{"status": "ready", "database": …}` or
/// `{"status": "not_ready", "reason": …}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Health {
    status: String,
    /// `sqlite` or `postgres`.
    database: Option<String>,
    reason: Option<String>,
}

/// The process is up.
#[utoipa::path(
    get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "Up.", body = Health, example = json!({"status": "ok"}))),
    security(()),
)]
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// The database answers and its migrations are current.
#[utoipa::path(
    get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Ready.", body = Health, example = json!({"status": "ready", "database": "sqlite"})),
        (status = 503, description = "Not ready.", body = Health, example = json!({"status": "not_ready", "reason": "database unreachable"})),
    ),
    security(()),
)]
pub async fn readyz(State(st): State<AppState>) -> impl IntoResponse {
    match st.core.db.is_current().await {
        Ok(true) => (
            StatusCode::OK,
            Json(json!({"status": "ready", "database": st.core.db.backend()})),
        ),
        Ok(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": "migrations are not current"})),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "not_ready", "reason": "database unreachable"})),
            )
        }
    }
}

/// Prometheus / OpenMetrics text.
#[utoipa::path(
    get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "The metrics.", body = String, content_type = "application/openmetrics-text")),
    security(()),
)]
pub async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.render(),
    )
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}
