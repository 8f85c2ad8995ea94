//! What every request's input must be before a handler sees it: free of
//! NUL characters.
//!
//! No text rekey keeps may hold a NUL (`\u0000` in JSON, `%00` in a URL or
//! a form). PostgreSQL refuses one when it is written (SQLSTATE 22021 or
//! 22P05), but SQLite stores it, so the same request used to be a 400 on
//! one store and a name like `acme\0admin` on the other — and on either,
//! a handler could act on it (call a target, sign a request) before the
//! write that fails. Refused here, at the edge, the request changes
//! nothing on both stores and is answered in the body format its endpoint
//! speaks.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, Format, UNSTORABLE_TEXT};
use super::extract::{is_json, media_type};

/// Whether a URL-encoded text (a path, a query, a form body) decodes to
/// a NUL: `%00`, or a raw NUL byte. `%` only ever starts an escape there.
fn url_encoded_nul(s: &[u8]) -> bool {
    s.contains(&0) || s.windows(3).any(|w| w == b"%00")
}

/// Whether a JSON text holds a NUL in a string: the escape `\u0000` (a raw
/// NUL byte is not JSON, and is refused too). A backslash only appears in
/// strings, so reading escape by escape never mistakes `\\u0000` (a
/// backslash, then `u0000`) for one.
fn json_nul(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            0 => return true,
            b'\\' => {
                if s.get(i + 1) == Some(&b'u') && s.get(i + 2..i + 6).is_some_and(|h| h == b"0000")
                {
                    return true;
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    false
}

/// The body format the endpoint at `path` answers errors in.
enum Speaks {
    /// The console and the pages a browser is sent to (sign-in, consent,
    /// a connection's authorization link).
    Html,
    Api(Format),
}

fn speaks(path: &str) -> Speaks {
    if path == "/ui"
        || path.starts_with("/ui/")
        || path.starts_with("/connect/")
        || path == "/v1/authorize"
        || path == "/oauth2/authorize"
        || path == "/oauth/callback"
    {
        Speaks::Html
    } else if path.starts_with("/v1/users/oauth/") {
        Speaks::Api(Format::Seed)
    } else if path.starts_with("/oauth2/") || path.starts_with("/v1/") {
        Speaks::Api(Format::OAuth)
    } else {
        Speaks::Api(Format::Admin)
    }
}

fn refuse(path: &str, status: StatusCode, code: &'static str, message: &str) -> Response {
    match speaks(path) {
        Speaks::Html => crate::web::page::error(status, message),
        Speaks::Api(f) => ApiError::new(status, code, message)
            .in_format(f)
            .into_response(),
    }
}

/// Refuses a request whose path, query or body holds a NUL. A body is
/// read only when it is JSON or a form (the only bodies rekey takes), at
/// most the configured body limit, and handed on unchanged.
pub async fn refuse_nul(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let in_uri = url_encoded_nul(path.as_bytes())
        || req
            .uri()
            .query()
            .is_some_and(|q| url_encoded_nul(q.as_bytes()));
    if in_uri {
        return refuse(
            &path,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            UNSTORABLE_TEXT,
        );
    }
    let kind = media_type(req.headers());
    let json = kind.as_deref().is_some_and(is_json);
    let form = kind.as_deref() == Some("application/x-www-form-urlencoded");
    if !json && !form {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return refuse(
                &path,
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body is too large",
            )
        }
    };
    let nul = if json {
        json_nul(&bytes)
    } else {
        url_encoded_nul(&bytes)
    };
    if nul {
        return refuse(
            &path,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            UNSTORABLE_TEXT,
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_are_read_one_by_one() {
        assert!(json_nul(br#"{"name":"a\u0000b"}"#));
        assert!(json_nul(b"{\"name\":\"a\0b\"}"));
        // a backslash, then the letters u0000: no NUL
        assert!(!json_nul(br#"{"name":"a\\u0000b"}"#));
        // an escaped backslash before a real escape: a NUL
        assert!(json_nul(br#"{"name":"a\\\u0000"}"#));
        assert!(json_nul(br#"{"name":"\u00001"}"#));
        assert!(!json_nul(br#"{"name":"\u0001","n":"\""}"#));
        assert!(!json_nul(br#"{"a":"\"}"#));
    }

    #[test]
    fn url_encoded_nul_is_percent_zero_zero() {
        assert!(url_encoded_nul(b"name=a%00b"));
        assert!(url_encoded_nul(b"/api/v1/orgs/a%00b"));
        assert!(!url_encoded_nul(b"name=a%2500b"));
        assert!(!url_encoded_nul(b"name=100%25"));
    }

    #[test]
    fn each_path_speaks_its_format() {
        assert!(matches!(speaks("/ui/orgs"), Speaks::Html));
        assert!(matches!(
            speaks("/oauth2/token"),
            Speaks::Api(Format::OAuth)
        ));
        assert!(matches!(speaks("/v1/people"), Speaks::Api(Format::OAuth)));
        assert!(matches!(
            speaks("/v1/users/oauth/token"),
            Speaks::Api(Format::Seed)
        ));
        assert!(matches!(speaks("/api/v1/orgs"), Speaks::Api(Format::Admin)));
    }
}
