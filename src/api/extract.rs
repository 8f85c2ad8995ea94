//! Request extractors shared by the routes: the client IP and the admin session.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method};

use super::{ApiError, AppState};
use crate::audit::Actor;
use crate::identity::sessions::{self, Session};

pub const SESSION_COOKIE: &str = "rekey_session";

/// The client's IP: the socket peer; or, when `trust_forwarded_for` is set
/// and the peer is one of `trusted_proxies`, the right-most address in
/// `X-Forwarded-For` that is not a trusted proxy. Each proxy appends the
/// address it received from, so everything left of that is whatever the
/// client chose to send and is never believed.
#[derive(Clone, Debug)]
pub struct ClientIp(pub Option<String>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ci| ci.0.ip());
        let Some(peer) = peer else {
            return Ok(ClientIp(None));
        };
        if !st.core.config.trust_forwarded_for {
            return Ok(ClientIp(Some(peer.to_string())));
        }
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        Ok(ClientIp(Some(
            client_ip(peer, &forwarded, &st.trusted_proxies).to_string(),
        )))
    }
}

/// The `User-Agent` a request was sent with (noted with each use of an
/// issued secret, so a cut-over can name who still uses the old one).
#[derive(Clone, Debug)]
pub struct UserAgent(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for UserAgent {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(UserAgent(
            parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        ))
    }
}

/// Walks from the peer leftwards through `forwarded` while each hop is a
/// trusted proxy; the first untrusted hop is the client. A hop that is not
/// an IP address stops the walk at the last trusted one (it cannot be
/// checked, so it is not believed).
pub fn client_ip(peer: IpAddr, forwarded: &[&str], trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        if !is_trusted(&client) {
            break;
        }
        match hop.parse::<IpAddr>() {
            Ok(ip) => client = ip,
            Err(_) => break,
        }
    }
    client
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

    /// 403 with `why` unless the platform operator is signed in.
    pub fn operator_only(&self, why: &str) -> Result<(), ApiError> {
        if self.session.principal.is_operator() {
            Ok(())
        } else {
            Err(ApiError::forbidden(why.to_string()))
        }
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

/// The media type a request's `Content-Type` names, lower-cased, without
/// its parameters.
pub fn media_type(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
}

/// Whether a media type is JSON (`application/json`, `application/*+json`).
pub fn is_json(media_type: &str) -> bool {
    media_type == "application/json"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"))
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
        let json_type = media_type(req.headers()).map(|v| is_json(&v));
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
        // JSON `null` is no body too (not "a body of the wrong shape").
        if json_type == Some(true) && bytes.trim_ascii() == b"null" {
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

/// Query parameters, refused in the admin API's error body when they do
/// not parse (axum's own rejection is plain text).
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|r| ApiError::bad_request(format!("invalid query: {}", r.body_text())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_is_the_rightmost_untrusted_hop() {
        let trusted: Vec<ipnet::IpNet> = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // the client's own value is on the left; the proxy appended the real one
        assert_eq!(
            client_ip(lo, &["6.6.6.6", "203.0.113.9"], &trusted),
            ip("203.0.113.9")
        );
        // through two trusted proxies
        assert_eq!(
            client_ip(lo, &["6.6.6.6", "203.0.113.9", "10.1.2.3"], &trusted),
            ip("203.0.113.9")
        );
        // a peer that is not a proxy: its header is ignored
        assert_eq!(
            client_ip(ip("198.51.100.7"), &["6.6.6.6"], &trusted),
            ip("198.51.100.7")
        );
        // garbage stops the walk at the last trusted hop
        assert_eq!(client_ip(lo, &["6.6.6.6", "junk"], &trusted), lo);
        assert_eq!(client_ip(lo, &[], &trusted), lo);
    }
}
