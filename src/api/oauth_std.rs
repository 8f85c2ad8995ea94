//! Standard OAuth endpoints: `/oauth2/token` (RFC 6749, form-encoded),
//! `/oauth2/revoke` (RFC 7009), `/oauth2/introspect` (RFC 7662).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::OAuthErrors;
use super::extract::{ClientIp, UserAgent};
use super::oauth::oauth_error;
use super::{ApiError, AppState, Format};
use crate::audit::Actor;
use crate::oauth::client_auth::{self, Method};
use crate::oauth::clients::Client;
use crate::oauth::grants::{self, Params};
use crate::oauth::usage::UsedBy;
use crate::oauth::{introspect, revoke, OAuthError};

/// Parses an `application/x-www-form-urlencoded` body; a parameter given
/// twice is an error (RFC 6749 §3.2).
fn form(headers: &HeaderMap, body: &Bytes) -> Result<HashMap<String, String>, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.split(';').next().is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    }) {
        return Err(oauth_error(
            OAuthError::InvalidRequest(
                "expected Content-Type: application/x-www-form-urlencoded".into(),
            ),
            Format::OAuth,
        ));
    }
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(oauth_error(
                OAuthError::InvalidRequest(format!("parameter {k} is given more than once")),
                Format::OAuth,
            ));
        }
    }
    Ok(out)
}

/// Authenticates the calling client (Basic or post); the use is noted with
/// where it came from.
async fn client(
    st: &AppState,
    headers: &HeaderMap,
    f: &HashMap<String, String>,
    by: &UsedBy<'_>,
) -> Result<(Client, Method), ApiError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let p = client_auth::presented(
        auth,
        f.get("client_id").map(String::as_str),
        f.get("client_secret").map(String::as_str),
    )
    .map_err(|e| oauth_error(e, Format::OAuth))?;
    let c = client_auth::authenticate(&st.core, &p, Some(by))
        .await
        .map_err(|e| oauth_error(e, Format::OAuth))?;
    Ok((c, p.method))
}

/// `POST /oauth2/token`'s form (RFC 6749 §4.1.3, §4.4.2, §6).
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"grant_type": "authorization_code", "code": "rk_ac_…", "redirect_uri": "https://billing.example.com/callback", "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"}))]
#[allow(dead_code)]
pub struct TokenForm {
    /// `authorization_code`, `refresh_token` or `client_credentials`.
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    /// PKCE (RFC 7636).
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    /// `read` or `read_write`: at most what was granted.
    scope: Option<String>,
    /// `client_secret_post`; or HTTP Basic.
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// A token answer (RFC 6749 §5.1).
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"access_token": "rk_at_…", "token_type": "Bearer", "expires_in": 3600, "scope": "read_write", "refresh_token": "rk_rt_…"}))]
#[allow(dead_code)]
pub struct TokenAnswer {
    access_token: String,
    token_type: String,
    expires_in: i64,
    scope: String,
    /// Not for `client_credentials`. Each use rotates it: keep the new one.
    refresh_token: Option<String>,
}

/// `POST /oauth2/revoke`'s form (RFC 7009).
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"token": "rk_rt_…", "token_type_hint": "refresh_token"}))]
#[allow(dead_code)]
pub struct RevokeForm {
    token: String,
    /// `access_token` or `refresh_token`.
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST /oauth2/introspect`'s form (RFC 7662).
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"token": "rk_at_…"}))]
#[allow(dead_code)]
pub struct IntrospectForm {
    token: String,
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// An introspection answer (RFC 7662 §2.2): `{"active": false}` for a token
/// that is unknown, expired, revoked or not the caller's to see.
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"active": true, "scope": "read", "client_id": "rk_ci_4hV…", "username": "ada@acme.test", "sub": "01J9Z3Q4W5E6R7T8Y9U0I1O2P4", "token_type": "Bearer", "exp": 1767229200, "iat": 1767225600, "iss": "https://rekey.example.com", "org": "acme"}))]
#[allow(dead_code)]
pub struct Introspection {
    active: bool,
    scope: Option<String>,
    client_id: Option<String>,
    username: Option<String>,
    sub: Option<String>,
    /// `Bearer` or `refresh_token`.
    token_type: Option<String>,
    exp: Option<i64>,
    iat: Option<i64>,
    iss: Option<String>,
    org: Option<String>,
}

fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// The token endpoint: authorization code (with PKCE), refresh token
/// (rotated on each use; a replay revokes the authorization), client
/// credentials.
#[utoipa::path(
    post, path = "/oauth2/token", tag = "oauth2",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Tokens.", body = TokenAnswer), OAuthErrors),
    security((), ("client_basic" = [])),
)]
pub async fn token(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    UserAgent(agent): UserAgent,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = form(&headers, &body)?;
    let by = UsedBy {
        ip: ip.as_deref(),
        agent: agent.as_deref(),
    };
    let (client, _) = client(&st, &headers, &f, &by).await?;
    let actor = Actor::new(format!("client:{}", client.client_id), ip);
    let grant_type = f.get("grant_type").cloned().unwrap_or_default();
    let issued = grants::dispatch(
        &st.core,
        &client,
        &grant_type,
        Params {
            code: f.get("code").cloned(),
            redirect_uri: f.get("redirect_uri").cloned(),
            code_verifier: f.get("code_verifier").cloned(),
            refresh_token: f.get("refresh_token").cloned(),
            scope: f.get("scope").cloned(),
        },
        &actor,
    )
    .await
    .map_err(|e| oauth_error(e, Format::OAuth))?;
    let mut body = json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": issued.scope,
    });
    if let Some(rt) = issued.refresh_token {
        body["refresh_token"] = json!(rt);
    }
    Ok(no_store(Json(body).into_response()))
}

/// Revokes a token (RFC 7009): `200` whether or not it was known.
#[utoipa::path(
    post, path = "/oauth2/revoke", tag = "oauth2",
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Revoked (or never valid)."), OAuthErrors),
    security((), ("client_basic" = [])),
)]
pub async fn revoke(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    UserAgent(agent): UserAgent,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = form(&headers, &body)?;
    let by = UsedBy {
        ip: ip.as_deref(),
        agent: agent.as_deref(),
    };
    let (client, _) = client(&st, &headers, &f, &by).await?;
    let token = f.get("token").filter(|t| !t.is_empty()).ok_or_else(|| {
        oauth_error(
            OAuthError::InvalidRequest("token is required".into()),
            Format::OAuth,
        )
    })?;
    let actor = Actor::new(format!("client:{}", client.client_id), ip);
    revoke::revoke_token(
        &st.core,
        &client,
        token,
        f.get("token_type_hint").map(String::as_str),
        &actor,
    )
    .await
    .map_err(|e| oauth_error(e, Format::OAuth))?;
    Ok(no_store(().into_response()))
}

/// Introspects a token (RFC 7662).
#[utoipa::path(
    post, path = "/oauth2/introspect", tag = "oauth2",
    request_body(content = IntrospectForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "What the token is.", body = Introspection), OAuthErrors),
    security((), ("client_basic" = [])),
)]
pub async fn introspect(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    UserAgent(agent): UserAgent,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = form(&headers, &body)?;
    let token = f.get("token").filter(|t| !t.is_empty()).cloned();
    let by = UsedBy {
        ip: ip.as_deref(),
        agent: agent.as_deref(),
    };
    let (client, _) = client(&st, &headers, &f, &by).await?;
    let token = token.ok_or_else(|| {
        oauth_error(
            OAuthError::InvalidRequest("token is required".into()),
            Format::OAuth,
        )
    })?;
    let v = introspect::introspect(&st.core, &client, &token, &st.public_url)
        .await
        .map_err(|e| oauth_error(e, Format::OAuth))?;
    Ok(no_store(Json(v).into_response()))
}
