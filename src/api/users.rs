//! Admin API for an org's users: `/api/v1/orgs/{org}/users…`, the twin of
//! the console's Users page and of `rekey user …` (the same JSON fields as
//! `user list --json`).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::apps::{body, org_for};
use super::extract::AdminSession;
use super::{ApiError, AppState};
use crate::crypto::password;
use crate::identity::users::{self, NewUser};
use crate::identity::Permission;

/// Users per page, unless `limit` says otherwise (at most [`MAX_PAGE`]).
pub const PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 500;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    email: String,
    permission: String,
    #[serde(default)]
    admin: bool,
    /// None: a generated password, answered once.
    password: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    permission: String,
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The email contains this.
    q: Option<String>,
    /// The email to continue after (`next_after` of the page before).
    after: Option<String>,
    /// Users per page, 1–500 (default 50).
    limit: Option<String>,
}

/// A page of users (`{items, total, next_after}`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UserPage {
    /// Users with the fields of `rekey user list --json`.
    items: Vec<Object>,
    /// Users matching, in all.
    total: i64,
    /// The `after` of the next page; null on the last.
    next_after: Option<String>,
}

/// A user (`rekey user list --json`'s fields; `password` only on a
/// create that generated one, shown once).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Object {}

/// `limit` as a page size: absent is `default`; otherwise 1..=`max`.
pub fn limit(raw: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    match raw.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "limit must be a whole number from 1 to {max}"
            ))),
        },
    }
}

/// `GET /api/v1/orgs/{org}/users?q=&after=&limit=`:
/// `{items, total, next_after}`, by email.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/users", tag = "users", params(crate::api::openapi::OrgParam, ListQuery),
    responses((status = 200, description = "A page of the org's users, by email.", body = UserPage), crate::api::error::AdminReadErrors),
    security(("session" = [])),
)]
pub async fn list(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(org): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let o = org_for(&st, &admin, &org).await?;
    let n = limit(q.limit.as_deref(), PAGE, MAX_PAGE)?;
    let pg = users::page(
        &st.core.db,
        &o.id,
        q.q.as_deref(),
        q.after.as_deref().filter(|a| !a.is_empty()),
        n,
    )
    .await?;
    Ok(Json(pg.map(|u| u.json(&o.slug)).answer()))
}

/// `POST /api/v1/orgs/{org}/users`: the user, with `password` when one
/// was generated (shown this once; stored only as a hash).
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/users", tag = "users", params(crate::api::openapi::OrgParam), request_body = CreateUser,
    responses((status = 201, description = "Created; a generated password is in this answer only.", body = Object), crate::api::error::AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn create(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(org): Path<String>,
    b: Result<Json<CreateUser>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(b)?;
    let o = org_for(&st, &admin, &org).await?;
    let permission: Permission = b.permission.parse()?;
    if b.password.as_deref().is_some_and(str::is_empty) {
        return Err(ApiError::bad_request(
            "password must not be empty; leave it out to have one generated",
        ));
    }
    let (pw, generated) = match b.password {
        Some(p) => (p, false),
        None => (password::generate(), true),
    };
    let u = users::create(
        &st.core,
        &admin.actor(),
        NewUser {
            org_id: &o.id,
            email: &b.email,
            permission,
            is_admin: b.admin,
            password: &pw,
        },
    )
    .await?;
    let mut v = u.json(&o.slug);
    if generated {
        v["password"] = json!(pw);
    }
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `PATCH /api/v1/orgs/{org}/users/{user}` `{permission}`.
#[utoipa::path(
    patch, path = "/api/v1/orgs/{org}/users/{user}", tag = "users", params(crate::api::openapi::OrgParam, ("user" = String, Path, description = "The user's email or id.")), request_body = Patch,
    responses((status = 200, description = "The user.", body = Object), crate::api::error::AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn update(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, user)): Path<(String, String)>,
    b: Result<Json<Patch>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let b = body(b)?;
    let o = org_for(&st, &admin, &org).await?;
    let permission: Permission = b.permission.parse()?;
    let u = users::find(&st.core.db, &o.id, &user).await?;
    let u = users::set_permission(&st.core, &admin.actor(), &o.id, &u.email, permission).await?;
    Ok(Json(u.json(&o.slug)))
}

async fn set_active(
    st: AppState,
    admin: AdminSession,
    org: String,
    user: String,
    active: bool,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let u = users::find(&st.core.db, &o.id, &user).await?;
    let u = users::set_active(&st.core, &admin.actor(), &o.id, &u.email, active).await?;
    Ok(Json(u.json(&o.slug)))
}

/// `POST /api/v1/orgs/{org}/users/{email_or_id}/deactivate`: their
/// authorizations read `Invalid` at once, and stay dead if they are
/// activated again.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/users/{user}/deactivate", tag = "users", params(crate::api::openapi::OrgParam, ("user" = String, Path, description = "The user's email or id.")),
    responses((status = 200, description = "The user; their authorizations read Invalid.", body = Object), crate::api::error::AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn deactivate(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, user)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_active(st, admin, org, user, false).await
}

#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/users/{user}/activate", tag = "users", params(crate::api::openapi::OrgParam, ("user" = String, Path, description = "The user's email or id.")),
    responses((status = 200, description = "The user.", body = Object), crate::api::error::AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn activate(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, user)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_active(st, admin, org, user, true).await
}
