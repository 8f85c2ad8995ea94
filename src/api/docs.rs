//! `GET /api/docs`: the OpenAPI document for people to read. A page of our
//! own, served from the binary with its script and stylesheet
//! (`/api/docs/docs.js`, `/api/docs/docs.css`): documentation-UI crates
//! fetch their assets at build time or link a CDN, and nothing here may
//! load from outside the origin. Without script the page links the JSON.

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("docs/index.html");
const SCRIPT: &str = include_str!("docs/docs.js");
const STYLE: &str = include_str!("docs/docs.css");

/// What every docs response carries: only this origin, no framing.
fn headers(content_type: &'static str) -> [(HeaderName, HeaderValue); 5] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        ),
    ]
}

pub async fn page() -> Response {
    (headers("text/html; charset=utf-8"), PAGE).into_response()
}

pub async fn script() -> Response {
    (headers("text/javascript; charset=utf-8"), SCRIPT).into_response()
}

pub async fn style() -> Response {
    (headers("text/css; charset=utf-8"), STYLE).into_response()
}
