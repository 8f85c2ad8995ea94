//! Admin login: `POST /api/v1/session` with email and password (and, when
//! the email is an admin in several orgs, the org); `GET` shows the session,
//! `DELETE` logs out.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use axum_extra::extract::cookie::CookieJar;

use super::cookies;
use super::error::{json_rejection, AdminReadErrors, AdminWriteErrors};
use super::extract::{AdminSession, ClientIp};
use super::{ApiError, AppState, Format};
use crate::identity::sessions::{self, SessionView};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "admin@acme.test", "password": "correct-horse-battery-staple"}))]
pub struct LoginBody {
    email: String,
    password: String,
    /// The org's slug, when the email is an admin in several orgs.
    #[serde(default)]
    org: Option<String>,
}

/// The session and the CSRF token every write must carry in `X-CSRF-Token`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"csrf_token": "rk_csrf_3q2+7w…", "session": {"kind": "org_admin", "email": "admin@acme.test", "org": "acme", "expires_at": 1767225600000_i64}}))]
pub struct SessionAnswer {
    csrf_token: String,
    session: SessionView,
}

/// Signs an org admin or the platform operator in.
///
/// Sets the `rekey_session` cookie (HttpOnly, SameSite=Strict) and answers
/// the CSRF token. Failed attempts are throttled per account and address.
#[utoipa::path(
    post,
    path = "/api/v1/session",
    tag = "session",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Signed in; the session cookie is set.", body = SessionAnswer,
         headers(("set-cookie" = String, description = "`rekey_session=…`"))),
        (status = 429, description = "Too many failed attempts; see `Retry-After`.", body = super::error::AdminErrorBody),
        AdminWriteErrors,
    ),
    security(()),
)]
pub async fn login(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(|r| json_rejection(r, Format::Admin))?;
    let (token, session) = sessions::login(
        &st.core,
        &b.email,
        &b.password,
        b.org.as_deref(),
        ip.as_deref(),
    )
    .await?;
    let max_age = (session.expires_at - st.core.now()) / 1000;
    Ok((
        StatusCode::OK,
        jar.add(cookies::session(&st, token, max_age)),
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(SessionAnswer {
            csrf_token: session.csrf.clone(),
            session: session.view(),
        }),
    )
        .into_response())
}

/// The signed-in session and its CSRF token.
#[utoipa::path(
    get,
    path = "/api/v1/session",
    tag = "session",
    responses((status = 200, description = "The session.", body = SessionAnswer), AdminReadErrors),
    security(("session" = [])),
)]
pub async fn whoami(admin: AdminSession) -> impl IntoResponse {
    Json(SessionAnswer {
        csrf_token: admin.session.csrf.clone(),
        session: admin.session.view(),
    })
}

/// Signs out: the session ends and its cookie is cleared.
#[utoipa::path(
    delete,
    path = "/api/v1/session",
    tag = "session",
    responses((status = 204, description = "Signed out."), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]

pub async fn logout(
    State(st): State<AppState>,
    admin: AdminSession,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    sessions::logout(&st.core, &admin.session, admin.ip.as_deref()).await?;
    Ok((
        StatusCode::NO_CONTENT,
        jar.add(cookies::session(&st, String::new(), 0)),
    )
        .into_response())
}
