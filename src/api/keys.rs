//! Admin API for access keys (`/api/v1/orgs/{org}/keys…`) and machine
//! clients (`/api/v1/orgs/{org}/m2m…`).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::apps::{body, org_for, NewSecret};
use super::error::{AdminReadErrors, AdminWriteErrors};
use super::extract::{AdminSession, OptionalJson};
use super::openapi::{NameParam, NewKey, OrgParam, ResetKey};
use super::{ApiError, AppState};
use crate::config::Dur;
use crate::identity::users;
use crate::oauth::access_keys;
use crate::oauth::access_keys::KeyView;
use crate::oauth::clients::ClientView;
use crate::oauth::clients::{self, ClientKind, Lifetimes, NewClient};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "etl", "scope": "read", "expires": "90d"}))]
pub struct CreateKey {
    name: String,
    scope: String,
    expires: Option<Dur>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"overlap": "1h"}))]
pub struct Overlap {
    overlap: Option<Dur>,
    #[serde(default)]
    revoke_tokens: bool,
}

/// The org's access keys.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/keys", tag = "keys", params(OrgParam),
    responses((status = 200, description = "The keys.", body = Vec<KeyView>), AdminReadErrors),
    security(("session" = [])),
)]
pub async fn list_keys(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let now = st.core.now();
    let v: Vec<_> = access_keys::list(&st.core.db, &o.id)
        .await?
        .iter()
        .map(|k| k.view(now))
        .collect();
    Ok(Json(json!(v)))
}

/// Creates an access key; the key is shown once.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/keys", tag = "keys", params(OrgParam), request_body = CreateKey,
    responses((status = 201, description = "Created; the key is in this answer only.", body = NewKey), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn create_key(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(org): Path<String>,
    b: Result<Json<CreateKey>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(b)?;
    let o = org_for(&st, &admin, &org).await?;
    let (k, key) = access_keys::create(
        &st.core,
        &admin.actor(),
        &o.id,
        &b.name,
        &b.scope,
        b.expires.map(Dur::ms),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": k.id, "key": key, "name": k.name, "scope": k.scope})),
    )
        .into_response())
}

/// A new value for the key, shown once; the previous one works for `overlap`.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/keys/{name}/reset", tag = "keys", params(OrgParam, NameParam),
    request_body(content = Option<Overlap>, description = "Optional (`revoke_tokens` does not apply to keys)."),
    responses((status = 200, description = "The new key.", body = ResetKey), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn reset_key(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, name)): Path<(String, String)>,
    OptionalJson(b): OptionalJson<Overlap>,
) -> Result<Json<Value>, ApiError> {
    let overlap = b.and_then(|o| o.overlap).map(Dur::ms).unwrap_or(0);
    let o = org_for(&st, &admin, &org).await?;
    let (k, key) =
        access_keys::reset(&st.core, &admin.actor(), &o.id, &name, overlap, false).await?;
    Ok(Json(json!({"id": k.id, "key": key, "name": k.name})))
}

/// Revokes an access key.
#[utoipa::path(
    delete, path = "/api/v1/orgs/{org}/keys/{name}", tag = "keys", params(OrgParam, NameParam),
    responses((status = 200, description = "The key, `revoked`.", body = KeyView), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn revoke_key(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let k = access_keys::revoke(&st.core, &admin.actor(), &o.id, &name).await?;
    Ok(Json(json!(k.view(st.core.now()))))
}

/// Ends a reset's overlap now: the previous value stops working at once
/// and only the newest works (the console's "End overlap").
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/keys/{name}/end-overlap", tag = "keys", params(OrgParam, NameParam),
    responses((status = 200, description = "The key; its previous value no longer works.", body = KeyView), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn end_key_overlap(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let k = access_keys::end_overlap(&st.core, &admin.actor(), &o.id, &name).await?;
    Ok(Json(json!(k.view(st.core.now()))))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "reporting", "scope": "read", "access_token_ttl": "15m"}))]
pub struct CreateM2m {
    name: String,
    scope: String,
    user: Option<String>,
    access_token_ttl: Option<Dur>,
    #[serde(default)]
    introspect: bool,
}

/// The org's machine clients.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/m2m", tag = "m2m", params(OrgParam),
    responses((status = 200, description = "The machine clients.", body = Vec<ClientView>), AdminReadErrors),
    security(("session" = [])),
)]
pub async fn list_m2m(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let now = st.core.now();
    let v: Vec<_> = clients::list(&st.core.db, &o.id, ClientKind::M2m)
        .await?
        .iter()
        .map(|c| c.view(None, now))
        .collect();
    Ok(Json(json!(v)))
}

/// Creates a machine client; its secret is shown once.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/m2m", tag = "m2m", params(OrgParam), request_body = CreateM2m,
    responses((status = 201, description = "Created; the secret is in this answer only.", body = NewSecret), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn create_m2m(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(org): Path<String>,
    b: Result<Json<CreateM2m>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(b)?;
    let o = org_for(&st, &admin, &org).await?;
    let user = match &b.user {
        Some(e) => {
            let mut c = st.core.db.read().await?;
            Some(
                users::find_by_email(&mut c, &o.id, e)
                    .await?
                    .ok_or_else(|| ApiError::bad_request(format!("user {e:?} not found")))?,
            )
        }
        None => None,
    };
    let (c, secret) = clients::create(
        &st.core,
        &admin.actor(),
        NewClient {
            org_id: &o.id,
            kind: ClientKind::M2m,
            name: &b.name,
            scope: &b.scope,
            callbacks: &[],
            user_id: user.as_ref().map(|u| u.id.as_str()),
            lifetimes: Lifetimes {
                access_ms: b.access_token_ttl.map(Dur::ms),
                ..Default::default()
            },
            may_introspect: b.introspect,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": c.id, "client_id": c.client_id, "client_secret": secret})),
    )
        .into_response())
}

/// A new secret, shown once; the previous one works for `overlap`, and
/// `revoke_tokens` revokes every token issued so far.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/m2m/{name}/regenerate-secret", tag = "m2m", params(OrgParam, NameParam),
    request_body(content = Option<Overlap>, description = "Optional."),
    responses((status = 200, description = "The new secret.", body = NewSecret), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn regenerate_m2m(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, name)): Path<(String, String)>,
    OptionalJson(b): OptionalJson<Overlap>,
) -> Result<Json<Value>, ApiError> {
    let b = b.unwrap_or_default();
    let o = org_for(&st, &admin, &org).await?;
    let now = st.core.now();
    let (c, secret) = clients::regenerate_secret(
        &st.core,
        &admin.actor(),
        &o.id,
        ClientKind::M2m,
        &name,
        b.overlap.map(Dur::ms).unwrap_or(0),
        false,
    )
    .await?;
    if b.revoke_tokens {
        clients::revoke_tokens_before(&st.core, &admin.actor(), &c, now, None).await?;
    }
    Ok(Json(
        json!({"id": c.id, "client_id": c.client_id, "client_secret": secret}),
    ))
}

/// Deletes a machine client and its tokens.
#[utoipa::path(
    delete, path = "/api/v1/orgs/{org}/m2m/{name}", tag = "m2m", params(OrgParam, NameParam),
    responses((status = 204, description = "Deleted."), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn delete_m2m(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    clients::delete(&st.core, &admin.actor(), &o.id, ClientKind::M2m, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deactivates a machine client: its tokens are refused until it is activated again.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/m2m/{name}/deactivate", tag = "m2m", params(OrgParam, NameParam),
    responses((status = 200, description = "The client, `deactivated`.", body = ClientView), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn deactivate_m2m(
    st: State<AppState>,
    admin: AdminSession,
    path: Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    super::apps::set_active(st, admin, path, ClientKind::M2m, false).await
}

/// Activates a deactivated machine client.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/m2m/{name}/activate", tag = "m2m", params(OrgParam, NameParam),
    responses((status = 200, description = "The client, `active`.", body = ClientView), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn activate_m2m(
    st: State<AppState>,
    admin: AdminSession,
    path: Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    super::apps::set_active(st, admin, path, ClientKind::M2m, true).await
}

/// Ends a regeneration's overlap now: the previous secret stops working at
/// once (the console's "End overlap").
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/m2m/{name}/end-overlap", tag = "m2m", params(OrgParam, NameParam),
    responses((status = 200, description = "The client; its previous secret no longer works.", body = ClientView), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn end_m2m_overlap(
    st: State<AppState>,
    admin: AdminSession,
    path: Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    super::apps::end_overlap_of(st, admin, path, ClientKind::M2m).await
}
