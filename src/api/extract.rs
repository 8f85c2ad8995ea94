//! Request extractors shared by the routes: the client IP and the admin session.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method};

use super::{ApiError, AppState};
use crate::audit::Actor;
use crate::identity::sessions::{self, Session};

pub const SESSION_COOKIE: &str = "rekey_session";

/// The client's IP: the socket peer, or the first `X-Forwarded-For` hop when
/// `trust_forwarded_for` is set (only behind a proxy you run).
#[derive(Clone, Debug)]
pub struct ClientIp(pub Option<String>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        if st.core.config.trust_forwarded_for {
            if let Some(ip) = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
            {
                return Ok(ClientIp(Some(ip)));
            }
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ci| ci.0.ip().to_string());
        Ok(ClientIp(peer))
    }
}

/// Reads one cookie from the request headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// An authenticated admin (org admin or operator). Unsafe methods must also
/// carry the session's CSRF token in `X-CSRF-Token`.
#[derive(Clone, Debug)]
pub struct AdminSession {
    pub session: Session,
    pub ip: Option<String>,
}

impl AdminSession {
    pub fn actor(&self) -> Actor {
        Actor::new(self.session.principal.actor_name(), self.ip.clone())
    }
}

impl FromRequestParts<AppState> for AdminSession {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let ip = ClientIp::from_request_parts(parts, st).await?.0;
        let token = cookie(&parts.headers, SESSION_COOKIE)
            .ok_or_else(|| ApiError::unauthorized("log in first (POST /api/v1/session)"))?;
        let session = sessions::authenticate(&st.core, token)
            .await?
            .ok_or_else(|| ApiError::unauthorized("session expired or invalid; log in again"))?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if session.csrf.is_empty()
                || !crate::crypto::token::ct_eq(sent.as_bytes(), session.csrf.as_bytes())
            {
                return Err(ApiError::forbidden("missing or wrong X-CSRF-Token header"));
            }
        }
        Ok(AdminSession { session, ip })
    }
}

/// An optional JSON body: none at all is `None`; a body that is present
/// must be declared JSON (415 otherwise) and parse (400 otherwise). A flag
/// such as `revoke_tokens` is never silently dropped.
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T, S> axum::extract::FromRequest<S> for OptionalJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            });
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| {
                if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "request body is too large",
                    )
                } else {
                    ApiError::bad_request(r.body_text())
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        if json_type != Some(true) {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request",
                "a request body must be sent with Content-Type: application/json",
            ));
        }
        axum::Json::<T>::from_bytes(&bytes)
            .map(|axum::Json(v)| OptionalJson(Some(v)))
            .map_err(|r| super::error::json_rejection(r, super::Format::Admin))
    }
}
