//! Seed-compatible OAuth endpoints that existing integrations call:
//! `POST /v1/users/oauth/token` and `POST /v1/users/oauth/revoke`, camelCase
//! JSON in, the `{result, errorCode, errorDesc, requestId, data, message}`
//! envelope out.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{current_request_id, json_rejection};
use super::extract::{ClientIp, UserAgent};
use super::oauth::oauth_error;
use super::{ApiError, AppState, Format};
use crate::audit::Actor;
use crate::oauth::client_auth::{self, Method, Presented};
use crate::oauth::clients::Client;
use crate::oauth::grants::{self, Params};
use crate::oauth::usage::UsedBy;
use crate::oauth::{revoke, OAuthError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenBody {
    client_id: Option<String>,
    client_secret: Option<String>,
    grant_type: Option<String>,
    redirect_uri: Option<String>,
    code: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    #[serde(alias = "scopes")]
    scope: Option<String>,
    #[allow(dead_code)]
    state: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RevokeBody {
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    #[serde(alias = "accessToken")]
    token: Option<String>,
}

/// The success envelope.
pub fn envelope(data: Value) -> Response {
    let mut resp = Json(json!({
        "result": true,
        "errorCode": null,
        "errorDesc": null,
        "requestId": current_request_id(),
        "data": data,
        "message": null,
    }))
    .into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

async fn client(
    st: &AppState,
    id: Option<String>,
    secret: Option<String>,
    by: &UsedBy<'_>,
) -> Result<Client, ApiError> {
    let p = Presented {
        client_id: id.filter(|s| !s.is_empty()).ok_or_else(|| {
            oauth_error(
                OAuthError::InvalidRequest("clientId is required".into()),
                Format::Seed,
            )
        })?,
        secret: secret.filter(|s| !s.is_empty()).ok_or_else(|| {
            oauth_error(
                OAuthError::InvalidRequest("clientSecret is required".into()),
                Format::Seed,
            )
        })?,
        method: Method::Post,
    };
    client_auth::authenticate(&st.core, &p, Some(by))
        .await
        .map_err(|e| oauth_error(e, Format::Seed))
}

pub async fn token(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    UserAgent(agent): UserAgent,
    body: Result<Json<TokenBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(|r| json_rejection(r, Format::Seed))?;
    let grant_type = b
        .grant_type
        .as_deref()
        .map(|g| g.trim().to_ascii_lowercase())
        .filter(|g| !g.is_empty())
        .ok_or_else(|| {
            oauth_error(
                OAuthError::InvalidRequest("grantType is required".into()),
                Format::Seed,
            )
        })?;
    let by = UsedBy {
        ip: ip.as_deref(),
        agent: agent.as_deref(),
    };
    let client = client(&st, b.client_id, b.client_secret, &by).await?;
    let actor = Actor::new(format!("client:{}", client.client_id), ip);
    let issued = grants::dispatch(
        &st.core,
        &client,
        &grant_type,
        Params {
            code: b.code,
            redirect_uri: b.redirect_uri,
            code_verifier: b.code_verifier,
            refresh_token: b.refresh_token,
            scope: b.scope,
        },
        &actor,
    )
    .await
    .map_err(|e| oauth_error(e, Format::Seed))?;
    let mut data = json!({
        "accessToken": issued.access_token,
        "TokenType": "Bearer",
        "expiresIn": issued.expires_in,
    });
    if let Some(rt) = issued.refresh_token {
        data["refreshToken"] = json!(rt);
    }
    Ok(envelope(data))
}

pub async fn revoke(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    UserAgent(agent): UserAgent,
    body: Result<Json<RevokeBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(|r| json_rejection(r, Format::Seed))?;
    let token = b
        .refresh_token
        .or(b.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            oauth_error(
                OAuthError::InvalidRequest("refreshToken is required".into()),
                Format::Seed,
            )
        })?;
    let by = UsedBy {
        ip: ip.as_deref(),
        agent: agent.as_deref(),
    };
    let client = client(&st, b.client_id, b.client_secret, &by).await?;
    let actor = Actor::new(format!("client:{}", client.client_id), ip);
    revoke::revoke_token(&st.core, &client, &token, Some("refresh_token"), &actor)
        .await
        .map_err(|e| oauth_error(e, Format::Seed))?;
    Ok(envelope(Value::Null))
}
