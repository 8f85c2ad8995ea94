//! The platform API's authentication (`Authorization: Bearer …` or
//! `Accesskey: …`) and `GET /v1/me`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::PlatformErrors;
use super::extract::ClientIp;
use super::{ApiError, AppState, Format};
use crate::identity::Permission;
use crate::oauth::guard::{self, AuthMethod, Caller, GuardError};
use crate::oauth::usage::UsedBy;

/// An authenticated platform API caller.
#[derive(Debug, Clone)]
pub struct ApiCaller(pub Caller);

fn unauthorized(description: &str, with_error: bool) -> ApiError {
    let challenge = if with_error {
        format!(
            "Bearer realm=\"rekey\", error=\"invalid_token\", error_description=\"{description}\""
        )
    } else {
        "Bearer realm=\"rekey\"".to_string()
    };
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", description)
        .in_format(Format::OAuth)
        .with_header(header::WWW_AUTHENTICATE, &challenge)
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| rest.trim().to_string())
            });
        let access_key = parts
            .headers
            .get("accesskey")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_string());
        let result = match (bearer, access_key) {
            (Some(t), _) => guard::bearer(&st.core, &t).await,
            (None, Some(k)) => {
                // Where the key was used from, noted with the use.
                let ClientIp(ip) = ClientIp::from_request_parts(parts, st).await?;
                let agent = parts
                    .headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok());
                let by = UsedBy {
                    ip: ip.as_deref(),
                    agent,
                };
                guard::access_key(&st.core, &k, &by).await
            }
            (None, None) => Err(GuardError::Missing),
        };
        match result {
            Ok(c) => Ok(ApiCaller(c)),
            Err(GuardError::Missing) => Err(unauthorized("authentication required", false)),
            Err(GuardError::Invalid) => Err(unauthorized(
                "the credential is invalid, expired or revoked",
                true,
            )),
            Err(GuardError::Store(e)) => Err(ApiError::from(e).in_format(Format::OAuth)),
        }
    }
}

impl ApiCaller {
    /// 403 `insufficient_scope` unless the caller has `needed`.
    pub fn require(&self, needed: Permission) -> Result<(), ApiError> {
        if self.0.scope >= needed {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!(
                "this call needs scope {needed}; the credential has {}",
                self.0.scope
            ),
        )
        .in_format(Format::OAuth)
        .with_header(
            header::WWW_AUTHENTICATE,
            &format!("Bearer realm=\"rekey\", error=\"insufficient_scope\", scope=\"{needed}\""),
        ))
    }
}

/// Who the platform API sees.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"org": "acme", "org_id": "01J9Z3Q4W5E6R7T8Y9U0I1O2P3", "user": "ada@acme.test", "user_id": "01J9Z3Q4W5E6R7T8Y9U0I1O2P4", "client_id": "rk_ci_4hV…", "scope": "read_write", "auth": "oauth_access_token"}))]
pub struct Me {
    org: String,
    org_id: String,
    /// The user the token acts for (none for an access key or a machine client without one).
    user: Option<String>,
    user_id: Option<String>,
    client_id: Option<String>,
    /// `read` or `read_write`: what the credential may do.
    scope: &'static str,
    auth: AuthMethod,
}

/// The caller: its org, user, client and effective scope.
#[utoipa::path(
    get, path = "/v1/me", tag = "platform",
    responses((status = 200, description = "The caller.", body = Me), PlatformErrors),
    security(("bearer" = []), ("accesskey" = [])),
)]
pub async fn me(ApiCaller(c): ApiCaller) -> Json<Me> {
    Json(Me {
        org: c.org,
        org_id: c.org_id,
        user: c.user,
        user_id: c.user_id,
        client_id: c.client_id,
        scope: c.scope.as_str(),
        auth: c.method,
    })
}
