//! HTTP routes. Each file holds one group of endpoints; this one assembles
//! them with the request id, metrics and body-limit layers.

pub mod apps;
pub mod audit;
pub mod authorize;
pub mod blast;
mod connect;
pub mod connections;
pub mod cookies;
pub mod deliveries;
mod docs;
pub mod error;
pub mod events;
pub mod extract;
pub(crate) mod incidents;
pub mod input;
pub mod keys;
pub mod metrics;
pub mod oauth;
pub mod oauth_seed;
pub mod oauth_std;
pub mod openapi;
pub mod ops;
pub mod orgs;
pub mod pages;
pub mod people;
pub mod platform;
pub mod rotations;
pub mod service_keys;
pub mod session;
pub mod users;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

pub use error::{ApiError, Format};

use crate::state::Core;

/// Shared by every handler.
#[derive(Clone, Debug)]
pub struct AppState {
    pub core: Core,
    pub metrics: Arc<metrics::Metrics>,
    /// Where clients reach us; the OAuth issuer.
    pub public_url: Arc<str>,
    /// `trusted_proxies`, parsed once.
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
}

impl AppState {
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every response carries `X-Request-Id`: the client's, when it sent a sane
/// one, otherwise a fresh one. Handlers see it through `error::REQUEST_ID`.
async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        })
        .map(str::to_string)
        .unwrap_or_else(crate::store::new_id);
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let mut resp = error::REQUEST_ID
        .scope(id.clone(), next.run(req).instrument(span))
        .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    resp
}

pub fn router(state: AppState) -> Router {
    let limit = state.core.config.body_limit;
    let metrics = state.metrics.clone();
    let request_timeout = state.core.config.request_timeout.0;
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/api/v1/openapi.json", get(openapi::openapi_json))
        .route("/api/docs", get(docs::page))
        .route("/api/docs/docs.js", get(docs::script))
        .route("/api/docs/docs.css", get(docs::style))
        .route(
            "/api/v1/session",
            post(session::login)
                .get(session::whoami)
                .delete(session::logout),
        )
        // OAuth, seed-compatible
        .route(
            "/v1/authorize",
            get(authorize::seed_get).post(authorize::seed_post),
        )
        .route("/v1/users/oauth/token", post(oauth_seed::token))
        .route("/v1/users/oauth/revoke", post(oauth_seed::revoke))
        // OAuth, standard
        .route(
            "/oauth2/authorize",
            get(authorize::std_get).post(authorize::std_post),
        )
        .route("/oauth2/token", post(oauth_std::token))
        .route("/oauth2/revoke", post(oauth_std::revoke))
        .route("/oauth2/introspect", post(oauth_std::introspect))
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::metadata),
        )
        // platform API
        .route("/v1/me", get(platform::me))
        .route(
            "/v1/people",
            get(people::get).put(people::put).delete(people::delete),
        )
        .route("/v1/people/changes", post(people::changes))
        // admin API
        .route("/api/v1/orgs", get(orgs::list).post(orgs::create))
        .route(
            "/api/v1/service-keys",
            get(service_keys::list).post(service_keys::create),
        )
        .route(
            "/api/v1/service-keys/{name}",
            axum::routing::delete(service_keys::revoke),
        )
        .route(
            "/api/v1/orgs/{org}/apps",
            get(apps::list).post(apps::create),
        )
        .route(
            "/api/v1/orgs/{org}/apps/{app}",
            get(apps::show).patch(apps::update).delete(apps::delete),
        )
        .route(
            "/api/v1/orgs/{org}/apps/{app}/deactivate",
            post(apps::deactivate),
        )
        .route(
            "/api/v1/orgs/{org}/apps/{app}/activate",
            post(apps::activate),
        )
        .route(
            "/api/v1/orgs/{org}/apps/{app}/regenerate-secret",
            post(apps::regenerate_secret),
        )
        .route(
            "/api/v1/orgs/{org}/apps/{app}/end-overlap",
            post(apps::end_overlap),
        )
        .route(
            "/api/v1/orgs/{org}/apps/{app}/authorizations",
            get(apps::authorizations),
        )
        .route(
            "/api/v1/orgs/{org}/apps/{app}/authorizations/{id}",
            axum::routing::delete(apps::revoke_authorization),
        )
        .route(
            "/api/v1/orgs/{org}/keys",
            get(keys::list_keys).post(keys::create_key),
        )
        .route(
            "/api/v1/orgs/{org}/keys/{name}",
            axum::routing::delete(keys::revoke_key),
        )
        .route(
            "/api/v1/orgs/{org}/keys/{name}/reset",
            post(keys::reset_key),
        )
        .route(
            "/api/v1/orgs/{org}/keys/{name}/end-overlap",
            post(keys::end_key_overlap),
        )
        .route(
            "/api/v1/orgs/{org}/m2m",
            get(keys::list_m2m).post(keys::create_m2m),
        )
        .route(
            "/api/v1/orgs/{org}/m2m/{name}",
            axum::routing::delete(keys::delete_m2m),
        )
        .route(
            "/api/v1/orgs/{org}/m2m/{name}/regenerate-secret",
            post(keys::regenerate_m2m),
        )
        .route(
            "/api/v1/orgs/{org}/m2m/{name}/end-overlap",
            post(keys::end_m2m_overlap),
        )
        .route(
            "/api/v1/orgs/{org}/m2m/{name}/deactivate",
            post(keys::deactivate_m2m),
        )
        .route(
            "/api/v1/orgs/{org}/m2m/{name}/activate",
            post(keys::activate_m2m),
        )
        .route("/oauth/callback", get(connections::callback))
        .route("/connect/{state}", get(connect::get).post(connect::post))
        .route("/api/v1/connectors", get(connections::catalog_list))
        .route("/api/v1/connectors/{kind}", get(connections::catalog_show))
        .route(
            "/api/v1/connectors/{kind}/client",
            post(connections::configure),
        )
        .route(
            "/api/v1/orgs/{org}/connections",
            get(connections::list).post(connections::create),
        )
        .route(
            "/api/v1/orgs/{org}/connections/{conn}",
            get(connections::show)
                .patch(connections::update)
                .delete(connections::delete),
        )
        .route(
            "/api/v1/orgs/{org}/connections/{conn}/test",
            post(connections::test),
        )
        .route(
            "/api/v1/orgs/{org}/connections/{conn}/authorize",
            post(connections::authorize),
        )
        .route(
            "/api/v1/orgs/{org}/connections/{conn}/reauthenticate",
            post(connections::reauthenticate),
        )
        .route(
            "/api/v1/orgs/{org}/connections/{conn}/revoke-authorization",
            post(connections::revoke),
        )
        .route(
            "/api/v1/orgs/{org}/connections/{conn}/credential",
            post(connections::set_credential),
        )
        .route(
            "/api/v1/orgs/{org}/connections/{conn}/client",
            post(connections::set_client),
        )
        .route(
            "/api/v1/orgs/{org}/connections/{conn}/credentials",
            get(connections::read_credentials),
        )
        .route(
            "/api/v1/orgs/{org}/connections/{conn}/delivery",
            get(deliveries::status)
                .post(deliveries::enable)
                .delete(deliveries::disable),
        )
        .route(
            "/api/v1/orgs/{org}/connections/{conn}/delivery/pause",
            post(deliveries::pause),
        )
        .route(
            "/api/v1/orgs/{org}/connections/{conn}/delivery/resume",
            post(deliveries::resume),
        )
        .route(
            "/api/v1/orgs/{org}/connections/{conn}/delivery/backfill",
            post(deliveries::start_backfill).delete(deliveries::cancel_backfill),
        )
        .route("/api/v1/orgs/{org}/deliveries", get(deliveries::list))
        .route(
            "/api/v1/orgs/{org}/connections/{conn}/activity",
            get(events::activity),
        )
        .route(
            "/api/v1/orgs/{org}/webhooks",
            get(events::list).post(events::create),
        )
        .route(
            "/api/v1/orgs/{org}/webhooks/deliveries",
            get(events::deliveries),
        )
        .route(
            "/api/v1/orgs/{org}/webhooks/{id}",
            axum::routing::delete(events::delete),
        )
        .route(
            "/api/v1/orgs/{org}/webhooks/{id}/deliveries",
            get(events::webhook_deliveries),
        )
        .route("/api/v1/orgs/{org}/webhooks/{id}/test", post(events::test))
        .route(
            "/api/v1/orgs/{org}/webhook-deliveries/{id}/replay",
            post(events::replay),
        )
        .route(
            "/api/v1/orgs/{org}/rotations",
            post(rotations::start).get(rotations::list),
        )
        .route("/api/v1/orgs/{org}/rotations/{id}", get(rotations::show))
        .route("/api/v1/credentials/age", get(rotations::age))
        .route(
            "/api/v1/incidents",
            post(incidents::start).get(incidents::list),
        )
        .route("/api/v1/incidents/{id}", get(incidents::show))
        .route("/api/v1/incidents/{id}/progress", get(incidents::progress))
        .route("/api/v1/blast-radius", post(blast::post))
        .route("/api/v1/incidents/{id}/cancel", post(incidents::cancel))
        .route("/api/v1/incidents/{id}/retry", post(incidents::retry))
        .route("/api/v1/incidents/{id}/report", get(incidents::report))
        .route(
            "/api/v1/orgs/{org}/credentials/age",
            get(rotations::org_age),
        )
        .route(
            "/api/v1/orgs/{org}/rotations/{id}/cancel",
            post(rotations::cancel),
        )
        .route(
            "/api/v1/orgs/{org}/rotations/{id}/finish",
            post(rotations::finish),
        )
        .route(
            "/api/v1/orgs/{org}/rotations/{id}/retry",
            post(rotations::retry),
        )
        .route(
            "/api/v1/orgs/{org}/rotations/{id}/steps",
            post(rotations::step),
        )
        .route(
            "/api/v1/orgs/{org}/users",
            get(users::list).post(users::create),
        )
        .route(
            "/api/v1/orgs/{org}/users/{user}",
            axum::routing::patch(users::update),
        )
        .route(
            "/api/v1/orgs/{org}/users/{user}/deactivate",
            post(users::deactivate),
        )
        .route(
            "/api/v1/orgs/{org}/users/{user}/activate",
            post(users::activate),
        )
        .route("/api/v1/orgs/{org}/audit", get(audit::org_list))
        .route("/api/v1/audit", get(audit::list))
        .merge(crate::web::routes())
        .fallback(ops::not_found)
        .with_state(state)
        .layer(middleware::from_fn_with_state(limit, input::refuse_nul))
        .layer(DefaultBodyLimit::max(limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(middleware::from_fn_with_state(metrics, metrics::track))
        .layer(middleware::from_fn(request_id))
}
