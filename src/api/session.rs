//! Admin login: `POST /api/v1/session` with email and password (and, when
//! the email is an admin in several orgs, the org); `GET` shows the session,
//! `DELETE` logs out.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::json_rejection;
use super::extract::{AdminSession, ClientIp, SESSION_COOKIE};
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

fn session_cookie(st: &AppState, token: &str, max_age_secs: i64) -> String {
    let secure = if st.secure_cookies() { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}")
}

pub async fn login(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
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
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&session_cookie(&st, &token, max_age)) {
        headers.insert(header::SET_COOKIE, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((
        StatusCode::OK,
        headers,
        Json(json!({"csrf_token": session.csrf, "session": session.view()})),
    )
        .into_response())
}

pub async fn whoami(admin: AdminSession) -> impl IntoResponse {
    Json(json!({"session": admin.session.view(), "csrf_token": admin.session.csrf}))
}

pub async fn logout(State(st): State<AppState>, admin: AdminSession) -> Result<Response, ApiError> {
    sessions::logout(&st.core, &admin.session, admin.ip.as_deref()).await?;
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&session_cookie(&st, "", 0)) {
        headers.insert(header::SET_COOKIE, v);
    }
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}
