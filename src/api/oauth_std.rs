//! Standard OAuth endpoints: `/oauth2/token` (RFC 6749, form-encoded),
//! `/oauth2/revoke` (RFC 7009), `/oauth2/introspect` (RFC 7662).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

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

fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

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
