//! One error type for every HTTP answer. Its single `IntoResponse` chooses
//! the status and the body format the endpoint speaks: the admin API's
//! `{error, message}`, RFC 6749's `{error, error_description}`, or the seed
//! envelope `{result, errorCode, errorDesc, requestId, data, message}`.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.format {
            Format::Admin => json!({"error": self.code, "message": self.message}),
            Format::OAuth => json!({"error": self.code, "error_description": self.message}),
            Format::Seed => json!({
                "result": false,
                "errorCode": self.code,
                "errorDesc": self.message,
                "requestId": current_request_id(),
                "data": null,
                "message": self.message,
            }),
        };
        let mut resp = (self.status, Json(body)).into_response();
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
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::internal(e)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
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
