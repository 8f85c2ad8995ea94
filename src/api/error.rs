//! One error type for every HTTP answer. Its single `IntoResponse` chooses
//! the status and the body format the endpoint speaks: the admin API's
//! `{error, message}`, RFC 6749's `{error, error_description}`, or the seed
//! envelope `{result, errorCode, errorDesc, requestId, data, message}`.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::openapi::{RefOr, Response as DocResponse, ResponseBuilder};
use utoipa::ToSchema;

use crate::identity::IdentityError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Admin,
    OAuth,
    Seed,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub format: Format,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

tokio::task_local! {
    /// The request id of the request being handled (set by the request-id middleware).
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(|id| id.clone()).unwrap_or_default()
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            format: Format::Admin,
            headers: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// An internal failure: logged in full, answered with nothing internal.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error; see the server log for the request id",
        )
    }

    pub fn in_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }
}

/// The admin API's error body.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": "not_found", "message": "org \"acme\" not found"}))]
pub struct AdminErrorBody {
    /// A stable, machine-readable code: `invalid_request`, `unauthorized`,
    /// `forbidden`, `not_found`, `conflict`, `too_many_requests`,
    /// `payload_too_large`, `probe_failed`, `provider_refused`,
    /// `rotation_in_progress`, `campaign_running`, `server_error`, …
    pub error: String,
    /// For a person to read.
    pub message: String,
}

/// RFC 6749 §5.2's error body: the standard OAuth endpoints and the
/// platform API.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": "invalid_grant", "error_description": "the refresh token is invalid, expired or revoked"}))]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `invalid_grant`,
    /// `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`,
    /// `invalid_token`, `insufficient_scope`, `not_found`, `server_error`, …
    pub error: String,
    pub error_description: String,
}

/// The seed-compatible endpoints' envelope, as an error.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"result": false, "errorCode": "invalid_client", "errorDesc": "client authentication failed", "requestId": "01J9Z3Q4W5E6R7T8Y9U0I1O2P3", "data": null, "message": "client authentication failed"}))]
pub struct SeedErrorBody {
    /// Always `false` on an error.
    pub result: bool,
    pub error_code: String,
    pub error_desc: String,
    /// The `X-Request-Id` of the request.
    pub request_id: String,
    /// Always `null` on an error.
    #[schema(value_type = Option<Object>)]
    pub data: Option<()>,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = match self.format {
            Format::Admin => (
                self.status,
                Json(AdminErrorBody {
                    error: self.code.into(),
                    message: self.message,
                }),
            )
                .into_response(),
            Format::OAuth => (
                self.status,
                Json(OAuthErrorBody {
                    error: self.code.into(),
                    error_description: self.message,
                }),
            )
                .into_response(),
            Format::Seed => (
                self.status,
                Json(SeedErrorBody {
                    result: false,
                    error_code: self.code.into(),
                    error_desc: self.message.clone(),
                    request_id: current_request_id(),
                    data: None,
                    message: self.message,
                }),
            )
                .into_response(),
        };
        let h = resp.headers_mut();
        if self.format != Format::Admin {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        }
        for (k, v) in self.headers {
            h.insert(k, v);
        }
        resp
    }
}

/// What each error status means, for the document.
fn status_text(status: u16) -> &'static str {
    match status {
        400 => "The request is malformed or a value is invalid; nothing changed.",
        401 => "Not authenticated (no credential, or one that is invalid, expired or revoked).",
        403 => "Authenticated but not allowed (or, on the admin API, a missing or wrong `X-CSRF-Token` on a write).",
        404 => "Not found, or not visible to the caller (another org's objects are never told apart from missing ones).",
        409 => "Conflicts with the current state (a name in use, a rotation or campaign already running, a provider that refused).",
        413 => "The request body is larger than `body_limit`.",
        415 => "The body is not of the media type the endpoint takes.",
        422 => "The credential was stored but its test failed.",
        429 => "Too many failed attempts; `Retry-After` says when to try again.",
        503 => "The store or an outside system is briefly unavailable; retry after `Retry-After`.",
        _ => "An error.",
    }
}

fn error_responses(
    format: Format,
    statuses: &[u16],
) -> std::collections::BTreeMap<String, RefOr<DocResponse>> {
    let schema = match format {
        Format::Admin => "AdminErrorBody",
        Format::OAuth => "OAuthErrorBody",
        Format::Seed => "SeedErrorBody",
    };
    statuses
        .iter()
        .map(|s| {
            let content = utoipa::openapi::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name(schema)))
                .build();
            (
                s.to_string(),
                RefOr::T(
                    ResponseBuilder::new()
                        .description(status_text(*s))
                        .content("application/json", content)
                        .build(),
                ),
            )
        })
        .collect()
}

/// Declares a set of error answers for `#[utoipa::path(responses(...))]`.
macro_rules! error_set {
    ($(#[$doc:meta])* $name:ident, $format:expr, [$($status:literal),*]) => {
        $(#[$doc])*
        pub struct $name;
        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<String, RefOr<DocResponse>> {
                error_responses($format, &[$($status),*])
            }
        }
    };
}

error_set!(
    /// An admin API read: no session, a bad query, something not found.
    AdminReadErrors,
    Format::Admin,
    [400, 401, 404]
);
error_set!(
    /// An admin API write: also the CSRF check, conflicts and bodies.
    AdminWriteErrors,
    Format::Admin,
    [400, 401, 403, 404, 409, 413, 415]
);
error_set!(
    /// The platform API (`/v1/people`, `/v1/me`): RFC 6750 bearer errors.
    PlatformErrors,
    Format::OAuth,
    [400, 401, 403, 404, 413, 415]
);
error_set!(
    /// The standard OAuth endpoints (RFC 6749 §5.2).
    OAuthErrors,
    Format::OAuth,
    [400, 401, 404, 409, 413, 415]
);
error_set!(
    /// The seed-compatible OAuth endpoints, in the envelope.
    SeedErrors,
    Format::Seed,
    [400, 401, 404, 409, 413, 415]
);

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::NotFound(m) => ApiError::not_found(format!("{m} not found")),
            IdentityError::Conflict(m) => ApiError::conflict(format!("{m} already exists")),
            IdentityError::Invalid(m) => ApiError::bad_request(m),
            IdentityError::BadCredentials => ApiError::unauthorized("invalid email or password"),
            IdentityError::Throttled { retry_after_secs } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "too many failed attempts; try again later",
            )
            .with_header(header::RETRY_AFTER, &retry_after_secs.to_string()),
            IdentityError::Busy(e) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                e.to_string(),
            )
            .with_header(header::RETRY_AFTER, "1"),
            IdentityError::Store(s) => s.into(),
            other => ApiError::internal(other),
        }
    }
}

/// Whether PostgreSQL refused a text of the request it cannot hold: a NUL
/// character in a text (SQLSTATE 22021) or in a JSON value (22P05). That
/// is the request's fault, not the server's, and nothing was written: the
/// statement failed, so its transaction is rolled back.
fn unstorable_text(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "22021" || c == "22P05")
}

pub(crate) const UNSTORABLE_TEXT: &str =
    "a value holds a NUL character (\\u0000), which no text may hold";

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match &e {
            crate::store::StoreError::Database(s) if unstorable_text(s) => {
                ApiError::bad_request(UNSTORABLE_TEXT)
            }
            _ => ApiError::internal(e),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if unstorable_text(&e) {
            return ApiError::bad_request(UNSTORABLE_TEXT);
        }
        ApiError::internal(e)
    }
}

/// Maps axum's JSON rejections onto our error bodies: 415 for a wrong content
/// type, 400 for malformed JSON or a body of the wrong shape.
pub fn json_rejection(r: axum::extract::rejection::JsonRejection, format: Format) -> ApiError {
    use axum::extract::rejection::JsonRejection as J;
    let e = match r {
        J::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "expected Content-Type: application/json",
        ),
        J::JsonSyntaxError(e) => {
            ApiError::bad_request(format!("malformed JSON: {}", e.body_text()))
        }
        J::JsonDataError(e) => {
            ApiError::bad_request(format!("invalid request body: {}", e.body_text()))
        }
        J::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body is too large",
        ),
        other => ApiError::bad_request(other.body_text()),
    };
    e.in_format(format)
}
