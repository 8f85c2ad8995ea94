//! Admin login: `POST /api/v1/session` with email and password (and, when
//! the email is an admin in several orgs, the org); `GET` shows the session,
//! `DELETE` logs out.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use axum_extra::extract::cookie::CookieJar;

use super::cookies;
use super::error::json_rejection;
use super::extract::{AdminSession, ClientIp};
use super::{ApiError, AppState, Format};
use crate::identity::sessions;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    email: String,
    password: String,
    #[serde(default)]
    org: Option<String>,
}

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
        Json(json!({"csrf_token": session.csrf, "session": session.view()})),
    )
        .into_response())
}

pub async fn whoami(admin: AdminSession) -> impl IntoResponse {
    Json(json!({"session": admin.session.view(), "csrf_token": admin.session.csrf}))
}

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
