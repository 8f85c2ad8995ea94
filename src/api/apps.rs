//! Admin API for OAuth applications: `/api/v1/orgs/{org}/apps…`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::error::{json_rejection, AdminReadErrors, AdminWriteErrors};
use super::extract::{AdminSession, OptionalJson};
use super::openapi::{AppParam, IdParam, OrgParam};
use super::{ApiError, AppState, Format};
use crate::config::Dur;
use crate::identity::orgs::{self, Org};
use crate::oauth::authorizations::{self, Authorization};
use crate::oauth::clients::{self, ClientKind, ClientView, Lifetimes, NewClient, Update};

/// The org named in the path, if this admin may act on it. Another org's
/// objects are "not found", never "forbidden": their existence is not told.
pub async fn org_for(st: &AppState, admin: &AdminSession, org: &str) -> Result<Org, ApiError> {
    let o = orgs::find_in(&st.core.db, org)
        .await
        .map_err(|_| ApiError::not_found(format!("org {org:?} not found")))?;
    if !admin.session.principal.can_act_on(&o.id) {
        return Err(ApiError::not_found(format!("org {org:?} not found")));
    }
    Ok(o)
}

pub fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|r| json_rejection(r, Format::Admin))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "billing", "scope": "read_write", "callbacks": ["https://billing.example.com/callback"], "access_token_ttl": "1h", "refresh_token_ttl": "90d"}))]
pub struct CreateApp {
    name: String,
    /// `read` or `read_write`.
    scope: String,
    /// The redirect URIs the application may name.
    callbacks: Vec<String>,
    access_token_ttl: Option<Dur>,
    refresh_token_ttl: Option<Dur>,
    refresh_grace: Option<Dur>,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"scope": "read", "refresh_grace": "30s"}))]
pub struct UpdateApp {
    name: Option<String>,
    scope: Option<String>,
    callbacks: Option<Vec<String>>,
    access_token_ttl: Option<Dur>,
    refresh_token_ttl: Option<Dur>,
    refresh_grace: Option<Dur>,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"overlap": "1h"}))]
pub struct Regenerate {
    /// How long the previous secret keeps working (default 0: at once).
    overlap: Option<Dur>,
}

/// A new client: its secret is shown here once and never again.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "01J9Z3Q4W5E6R7T8Y9U0I1O2P3", "client_id": "rk_ci_4hV…", "client_secret": "rk_cs_8Jq…", "app": {"id": "01J9Z3Q4W5E6R7T8Y9U0I1O2P3", "name": "billing", "client_id": "rk_ci_4hV…", "scope": "read_write", "callbacks": ["https://billing.example.com/callback"], "status": "active", "access_token_ttl": 3600, "refresh_token_ttl": 7776000, "refresh_grace": 0, "previous_secret_valid_until": null, "created_at": 1767225600000_i64, "updated_at": 1767225600000_i64}}))]
pub struct CreatedApp {
    pub id: String,
    pub client_id: String,
    pub client_secret: String,
    pub app: ClientView,
}

/// A client's new secret, shown once.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "01J9Z3Q4W5E6R7T8Y9U0I1O2P3", "client_id": "rk_ci_4hV…", "client_secret": "rk_cs_8Jq…"}))]
pub struct NewSecret {
    pub id: String,
    pub client_id: String,
    pub client_secret: String,
}

/// The org's OAuth applications.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/apps", tag = "apps", params(OrgParam),
    responses((status = 200, description = "The applications.", body = Vec<ClientView>), AdminReadErrors),
    security(("session" = [])),
)]
pub async fn list(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let now = st.core.now();
    let list = clients::list(&st.core.db, &o.id, ClientKind::App).await?;
    Ok(Json(json!(list
        .iter()
        .map(|c| c.view(None, now))
        .collect::<Vec<_>>())))
}

/// Registers an OAuth application; its client secret is shown once.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/apps", tag = "apps", params(OrgParam), request_body = CreateApp,
    responses((status = 201, description = "Created; the secret is in this answer only.", body = CreatedApp), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn create(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(org): Path<String>,
    b: Result<Json<CreateApp>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(b)?;
    let o = org_for(&st, &admin, &org).await?;
    let (c, secret) = clients::create(
        &st.core,
        &admin.actor(),
        NewClient {
            org_id: &o.id,
            kind: ClientKind::App,
            name: &b.name,
            scope: &b.scope,
            callbacks: &b.callbacks,
            user_id: None,
            lifetimes: Lifetimes {
                access_ms: b.access_token_ttl.map(Dur::ms),
                refresh_ms: b.refresh_token_ttl.map(Dur::ms),
                grace_ms: b.refresh_grace.map(Dur::ms),
            },
            may_introspect: false,
        },
    )
    .await?;
    let app = c.view(None, st.core.now());
    Ok((
        StatusCode::CREATED,
        Json(CreatedApp {
            id: c.id,
            client_id: c.client_id,
            client_secret: secret,
            app,
        }),
    )
        .into_response())
}

/// One application.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/apps/{app}", tag = "apps", params(OrgParam, AppParam),
    responses((status = 200, description = "The application.", body = ClientView), AdminReadErrors),
    security(("session" = [])),
)]
pub async fn show(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, app)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let c = clients::find_in(&st.core.db, &o.id, ClientKind::App, &app).await?;
    Ok(Json(json!(c.view(None, st.core.now()))))
}

/// Changes an application's name, scope, callbacks or token lifetimes.
#[utoipa::path(
    patch, path = "/api/v1/orgs/{org}/apps/{app}", tag = "apps", params(OrgParam, AppParam), request_body = UpdateApp,
    responses((status = 200, description = "The application as it is now.", body = ClientView), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn update(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, app)): Path<(String, String)>,
    b: Result<Json<UpdateApp>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let b = body(b)?;
    let o = org_for(&st, &admin, &org).await?;
    let c = clients::update(
        &st.core,
        &admin.actor(),
        &o.id,
        ClientKind::App,
        &app,
        Update {
            name: b.name,
            scope: b.scope,
            callbacks: b.callbacks,
            lifetimes: Lifetimes {
                access_ms: b.access_token_ttl.map(Dur::ms),
                refresh_ms: b.refresh_token_ttl.map(Dur::ms),
                grace_ms: b.refresh_grace.map(Dur::ms),
            },
        },
    )
    .await?;
    Ok(Json(json!(c.view(None, st.core.now()))))
}

/// Deletes an application with every code and token it has.
#[utoipa::path(
    delete, path = "/api/v1/orgs/{org}/apps/{app}", tag = "apps", params(OrgParam, AppParam),
    responses((status = 204, description = "Deleted."), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn delete(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, app)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    clients::delete(&st.core, &admin.actor(), &o.id, ClientKind::App, &app).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deactivates an application: its tokens are refused until it is activated again.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/apps/{app}/deactivate", tag = "apps", params(OrgParam, AppParam),
    responses((status = 200, description = "The application, `deactivated`.", body = ClientView), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn deactivate(
    st: State<AppState>,
    admin: AdminSession,
    path: Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_active(st, admin, path, ClientKind::App, false).await
}

/// Activates a deactivated application.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/apps/{app}/activate", tag = "apps", params(OrgParam, AppParam),
    responses((status = 200, description = "The application, `active`.", body = ClientView), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn activate(
    st: State<AppState>,
    admin: AdminSession,
    path: Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_active(st, admin, path, ClientKind::App, true).await
}

/// Deactivates or activates an application or machine client.
pub async fn set_active(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, name)): Path<(String, String)>,
    kind: ClientKind,
    active: bool,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let c = clients::set_active(&st.core, &admin.actor(), &o.id, kind, &name, active).await?;
    Ok(Json(json!(c.view(None, st.core.now()))))
}

/// Ends a regeneration's overlap now: the previous secret stops working at
/// once.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/apps/{app}/end-overlap", tag = "apps", params(OrgParam, AppParam),
    responses((status = 200, description = "The application; its previous secret no longer works.", body = ClientView), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn end_overlap(
    st: State<AppState>,
    admin: AdminSession,
    path: Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    end_overlap_of(st, admin, path, ClientKind::App).await
}

/// An application's or machine client's overlap ended, as the API answers it.
pub async fn end_overlap_of(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, name)): Path<(String, String)>,
    kind: ClientKind,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let c = clients::end_overlap(&st.core, &admin.actor(), &o.id, kind, &name).await?;
    Ok(Json(json!(c.view(None, st.core.now()))))
}

/// The application's authorizations: who granted it what, and each one's
/// status (`Active`, `Expired`, `Revoked`, `Invalid`) with the reason.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/apps/{app}/authorizations", tag = "apps", params(OrgParam, AppParam),
    responses((status = 200, description = "The authorizations.", body = Vec<Authorization>), AdminReadErrors),
    security(("session" = [])),
)]
pub async fn authorizations(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, app)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let c = clients::find_in(&st.core.db, &o.id, ClientKind::App, &app).await?;
    Ok(Json(json!(
        authorizations::list(&st.core.db, &c, st.core.now()).await?
    )))
}

/// Revokes one authorization (its refresh and access tokens).
#[utoipa::path(
    delete, path = "/api/v1/orgs/{org}/apps/{app}/authorizations/{id}", tag = "apps", params(OrgParam, AppParam, IdParam),
    responses((status = 200, description = "The authorization, `Revoked`.", body = Authorization), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn revoke_authorization(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, app, id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let c = clients::find_in(&st.core.db, &o.id, ClientKind::App, &app).await?;
    Ok(Json(json!(
        authorizations::revoke(&st.core, &admin.actor(), &c, &id).await?
    )))
}

/// A new client secret, shown once; the previous one works for `overlap`.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/apps/{app}/regenerate-secret", tag = "apps", params(OrgParam, AppParam),
    request_body(content = Option<Regenerate>, description = "Optional."),
    responses((status = 200, description = "The new secret.", body = NewSecret), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn regenerate_secret(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, app)): Path<(String, String)>,
    OptionalJson(b): OptionalJson<Regenerate>,
) -> Result<Json<Value>, ApiError> {
    let overlap = b.and_then(|r| r.overlap).map(Dur::ms).unwrap_or(0);
    let o = org_for(&st, &admin, &org).await?;
    let (c, secret) = clients::regenerate_secret(
        &st.core,
        &admin.actor(),
        &o.id,
        ClientKind::App,
        &app,
        overlap,
        false,
    )
    .await?;
    Ok(Json(json!(NewSecret {
        id: c.id,
        client_id: c.client_id,
        client_secret: secret,
    })))
}
