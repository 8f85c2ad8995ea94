//! What the two OAuth surfaces (standard and seed-compatible) share: error
//! mapping and the RFC 8414 metadata document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::{ApiError, AppState, Format};
use crate::oauth::OAuthError;

/// Maps an OAuth error to an answer in `format`.
pub fn oauth_error(e: OAuthError, format: Format) -> ApiError {
    let status = match &e {
        OAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
        OAuthError::NotFound(_) => StatusCode::NOT_FOUND,
        OAuthError::Conflict(_) => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    };
    match e {
        OAuthError::Identity(i) => ApiError::from(i).in_format(format),
        OAuthError::Store(s) => ApiError::from(s).in_format(format),
        OAuthError::Sealed(_) => ApiError::internal(e).in_format(format),
        e => {
            let mut err = ApiError::new(status, e.code(), e.to_string()).in_format(format);
            if status == StatusCode::UNAUTHORIZED && format != Format::Admin {
                err = err.with_header(header::WWW_AUTHENTICATE, "Basic realm=\"rekey\"");
            }
            err
        }
    }
}

impl From<OAuthError> for ApiError {
    fn from(e: OAuthError) -> Self {
        oauth_error(e, Format::Admin)
    }
}

/// RFC 8414 metadata.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(example = json!({"issuer": "https://rekey.example.com", "authorization_endpoint": "https://rekey.example.com/oauth2/authorize", "token_endpoint": "https://rekey.example.com/oauth2/token", "revocation_endpoint": "https://rekey.example.com/oauth2/revoke", "introspection_endpoint": "https://rekey.example.com/oauth2/introspect", "response_types_supported": ["code"], "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"], "code_challenge_methods_supported": ["S256"], "scopes_supported": ["read", "read_write"]}))]
pub struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    revocation_endpoint: String,
    introspection_endpoint: String,
    response_types_supported: Vec<String>,
    response_modes_supported: Vec<String>,
    grant_types_supported: Vec<String>,
    token_endpoint_auth_methods_supported: Vec<String>,
    revocation_endpoint_auth_methods_supported: Vec<String>,
    introspection_endpoint_auth_methods_supported: Vec<String>,
    code_challenge_methods_supported: Vec<String>,
    scopes_supported: Vec<String>,
    service_documentation: String,
}

/// RFC 8414 metadata; `public_url` is the issuer.
#[utoipa::path(
    get, path = "/.well-known/oauth-authorization-server", tag = "oauth2",
    responses((status = 200, description = "The authorization server's metadata.", body = Metadata)),
    security(()),
)]
pub async fn metadata(State(st): State<AppState>) -> impl IntoResponse {
    let iss = st.public_url.to_string();
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(json!({
            "issuer": iss,
            "authorization_endpoint": format!("{iss}/oauth2/authorize"),
            "token_endpoint": format!("{iss}/oauth2/token"),
            "revocation_endpoint": format!("{iss}/oauth2/revoke"),
            "introspection_endpoint": format!("{iss}/oauth2/introspect"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["read", "read_write"],
            // The API's reference page: `/` is no page of rekey's (404).
            "service_documentation": format!("{iss}/api/docs"),
        })),
    )
}
