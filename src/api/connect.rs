//! `GET|POST /connect/{state}`: the link a person opens to authorize an
//! OAuth connection (printed by the CLI, shown in a rotation or a campaign
//! item). It binds the flow to this browser — a flow cookie — for a
//! signed-in admin who may act on the connection's org, then redirects to
//! the provider (see `connectors::flow`).
//!
//! With a session (`rekey_session` is `SameSite=Strict`, so a link another
//! site makes the browser follow arrives without it) the GET binds and
//! redirects at once; without one it shows a sign-in form that posts back
//! here. The form's CSRF protection is the authorization endpoint's: a
//! nonce in a cookie and its keyed digest in the form.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;

use super::authorize::{csrf_nonce, CSRF_COOKIE};
use super::extract::{cookie, AdminSession, ClientIp};
use super::pages::{connect_login_page, error_page, ConnectLoginPage};
use super::{cookies, ApiError, AppState};
use crate::connectors::{flow, ConnectorError};
use crate::crypto::token::ct_eq;
use crate::identity::sessions::{self, Session};
use crate::identity::IdentityError;

fn csrf_for(st: &AppState, nonce: &str) -> String {
    st.core.pepper.digest(&format!("connect-csrf\0{nonce}"))
}

fn refused(e: ConnectorError) -> Response {
    match e {
        ConnectorError::Forbidden(m) => error_page(StatusCode::FORBIDDEN, &m),
        ConnectorError::Invalid(m) | ConnectorError::NotFound(m) => {
            error_page(StatusCode::BAD_REQUEST, &m)
        }
        other => {
            tracing::error!(error = %other, "connection flow start failed");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong; open the link again.",
            )
        }
    }
}

/// Binds the flow to this browser and sends it to the provider.
async fn bind_and_go(
    st: &AppState,
    jar: CookieJar,
    state: &str,
    session: &Session,
    ip: Option<String>,
) -> Response {
    match flow::bind(&st.core, state, session, ip).await {
        Ok(bound) => {
            let jar = jar.add(cookies::flow(st, &bound, st.core.now()));
            let mut resp = (StatusCode::FOUND, jar).into_response();
            if let Ok(v) = HeaderValue::from_str(&bound.provider_url) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => refused(e),
    }
}

async fn sign_in_page(
    st: &AppState,
    state: &str,
    headers: &HeaderMap,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (conn, org) = match flow::describe(&st.core, state).await {
        Ok(x) => x,
        Err(e) => return refused(e),
    };
    let (nonce, set) = csrf_nonce(st, headers);
    let action = format!("/connect/{state}");
    connect_login_page(ConnectLoginPage {
        org: &org,
        connection: &conn.name,
        kind: &conn.kind,
        action: &action,
        csrf: &csrf_for(st, &nonce),
        error,
        status,
        cookies: set.into_iter().collect(),
    })
}

/// The link a person opens to authorize an OAuth connection: signed in, it
/// binds the flow to this browser and redirects to the provider; otherwise
/// it shows a sign-in form.
#[utoipa::path(
    get, path = "/connect/{state}", tag = "connections",
    params(("state" = String, Path, description = "The flow's state.")),
    responses(
        (status = 200, description = "An HTML page: sign in.", content_type = "text/html"),
        (status = 302, description = "To the provider (`Location`); the flow cookie is set."),
        (status = 400, description = "An HTML page: the link is not (or no longer) valid.", content_type = "text/html"),
        (status = 403, description = "An HTML page: not an admin of the connection's org.", content_type = "text/html"),
    ),
    security((), ("session" = [])),
)]
pub async fn get(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    admin: Result<AdminSession, ApiError>,
    jar: CookieJar,
    headers: HeaderMap,
    Path(state): Path<String>,
) -> Response {
    match admin {
        Ok(a) => bind_and_go(&st, jar, &state, &a.session, ip).await,
        Err(_) => sign_in_page(&st, &state, &headers, None, StatusCode::OK).await,
    }
}

/// The sign-in form of `GET /connect/{state}` posts here.
#[utoipa::path(
    post, path = "/connect/{state}", tag = "connections",
    params(("state" = String, Path, description = "The flow's state.")),
    request_body(content = super::authorize::AuthorizeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 302, description = "To the provider (`Location`); the session and flow cookies are set."),
        (status = 400, description = "An HTML page: the link is not (or no longer) valid.", content_type = "text/html"),
        (status = 401, description = "An HTML page: wrong email or password.", content_type = "text/html"),
        (status = 403, description = "An HTML page: the form expired (CSRF), or not an admin of the org.", content_type = "text/html"),
        (status = 429, description = "An HTML page: too many failed attempts.", content_type = "text/html"),
    ),
    security(()),
)]
pub async fn post(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    headers: HeaderMap,
    Path(state): Path<String>,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let sent = form.get("csrf").map(String::as_str).unwrap_or("");
    let csrf_ok = cookie(&headers, CSRF_COOKIE)
        .is_some_and(|n| ct_eq(sent.as_bytes(), csrf_for(&st, n).as_bytes()));
    if !csrf_ok {
        return sign_in_page(
            &st,
            &state,
            &headers,
            Some("Your sign-in form expired. Please try again."),
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    // Signed in to the connection's org: an admin of several orgs is the
    // admin of this one here. (An operator signs in through the API first.)
    let org = match flow::describe(&st.core, &state).await {
        Ok((_, org)) => org,
        Err(e) => return refused(e),
    };
    let email = form.get("email").map(String::as_str).unwrap_or("");
    let password = form.get("password").map(String::as_str).unwrap_or("");
    match sessions::login(&st.core, email, password, Some(&org), ip.as_deref()).await {
        Ok((token, session)) => {
            let max_age = (session.expires_at - st.core.now()) / 1000;
            let jar = jar.add(cookies::session(&st, token, max_age));
            bind_and_go(&st, jar, &state, &session, ip).await
        }
        Err(IdentityError::BadCredentials) => {
            sign_in_page(
                &st,
                &state,
                &headers,
                Some("Wrong email or password, or not an admin of this org."),
                StatusCode::UNAUTHORIZED,
            )
            .await
        }
        Err(e) => {
            let e = ApiError::from(e);
            error_page(e.status, &e.message)
        }
    }
}
