//! The console's stylesheet and script, compiled into the binary: nothing
//! is loaded from anywhere but this origin.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("static/rekey.css");
const JS: &str = include_str!("static/rekey.js");

pub async fn file(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "rekey.css" => (CSS, "text/css; charset=utf-8"),
        "rekey.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return super::page::error(StatusCode::NOT_FOUND, "No such file."),
    };
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}
