//! Admin API for OAuth applications: `/api/v1/orgs/{org}/apps…`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::json_rejection;
use super::extract::{AdminSession, OptionalJson};
use super::{ApiError, AppState, Format};
use crate::config::Dur;
use crate::identity::orgs::{self, Org};
use crate::oauth::authorizations;
use crate::oauth::clients::{self, ClientKind, Lifetimes, NewClient, Update};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    name: String,
    scope: String,
    callbacks: Vec<String>,
    access_token_ttl: Option<Dur>,
    refresh_token_ttl: Option<Dur>,
    refresh_grace: Option<Dur>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateApp {
    name: Option<String>,
    scope: Option<String>,
    callbacks: Option<Vec<String>>,
    access_token_ttl: Option<Dur>,
    refresh_token_ttl: Option<Dur>,
    refresh_grace: Option<Dur>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Regenerate {
    overlap: Option<Dur>,
}

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
    let view = c.view(None, st.core.now());
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": c.id, "client_id": c.client_id, "client_secret": secret, "app": view})),
    )
        .into_response())
}

pub async fn show(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, app)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let c = clients::find_in(&st.core.db, &o.id, ClientKind::App, &app).await?;
    Ok(Json(json!(c.view(None, st.core.now()))))
}

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

pub async fn delete(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, app)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    clients::delete(&st.core, &admin.actor(), &o.id, ClientKind::App, &app).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn deactivate(
    st: State<AppState>,
    admin: AdminSession,
    path: Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_active(st, admin, path, ClientKind::App, false).await
}

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
    Ok(Json(
        json!({"id": c.id, "client_id": c.client_id, "client_secret": secret}),
    ))
}
