//! The authorization endpoint, seed (`/v1/authorize`) and standard
//! (`/oauth2/authorize`): validate, sign the user in to the application's
//! org, ask for consent, redirect with a code.
//!
//! The forms post back to the same URL (the parameters stay in the query).
//! CSRF: a random nonce in an HttpOnly cookie, and its HMAC under the server
//! pepper in the form; a forged post has neither.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::extract::{cookie, ClientIp};
use super::pages::{consent_page, error_page, login_page, ConsentPage, LoginPage};
use super::AppState;
use crate::audit::Actor;
use crate::crypto::token::{self, ct_eq, TokenKind};
use crate::identity::{orgs, sessions, IdentityError};
use crate::oauth::authorize::{self, redirect_with, Refusal, Request, Valid};

pub(super) const CSRF_COOKIE: &str = "rekey_authz_csrf";
const AUTHN_COOKIE: &str = "rekey_authn";

/// Parameters as the seed endpoint names them.
fn seed_request(q: &HashMap<String, String>) -> Request {
    Request {
        response_type: Some("code".into()),
        client_id: q.get("clientId").or(q.get("client_id")).cloned(),
        redirect_uri: q.get("redirectUri").or(q.get("redirect_uri")).cloned(),
        scope: q.get("scopes").or(q.get("scope")).cloned(),
        state: q.get("state").cloned(),
        code_challenge: q.get("code_challenge").or(q.get("codeChallenge")).cloned(),
        code_challenge_method: q
            .get("code_challenge_method")
            .or(q.get("codeChallengeMethod"))
            .cloned(),
    }
}

fn std_request(q: &HashMap<String, String>) -> Request {
    Request {
        response_type: q.get("response_type").cloned(),
        client_id: q.get("client_id").cloned(),
        redirect_uri: q.get("redirect_uri").cloned(),
        scope: q.get("scope").cloned(),
        state: q.get("state").cloned(),
        code_challenge: q.get("code_challenge").cloned(),
        code_challenge_method: q.get("code_challenge_method").cloned(),
    }
}

/// The CSRF nonce (existing or new) and the cookie to set when new.
pub(super) fn csrf_nonce(st: &AppState, headers: &HeaderMap) -> (String, Option<String>) {
    match cookie(headers, CSRF_COOKIE).filter(|n| n.len() >= 32) {
        Some(n) => (n.to_string(), None),
        None => {
            let n = token::mint(TokenKind::Csrf);
            let c = super::cookies::authorize(st, CSRF_COOKIE, n.clone()).to_string();
            (n, Some(c))
        }
    }
}

pub(super) fn csrf_for(st: &AppState, nonce: &str) -> String {
    st.core.pepper.digest(&format!("authorize-csrf\0{nonce}"))
}

fn refusal(r: Refusal) -> Response {
    match r {
        Refusal::Page(msg) => error_page(StatusCode::BAD_REQUEST, &msg),
        Refusal::Redirect {
            redirect_uri,
            error,
            description,
            state,
        } => {
            let mut params = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(s) = &state {
                params.push(("state", s));
            }
            found(&redirect_with(&redirect_uri, &params), &[])
        }
    }
}

fn found(location: &str, cookies: &[String]) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// The sign-in form (`email`, `password`) or the consent form (`decision`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AuthorizeForm {
    /// The form's CSRF field.
    csrf: String,
    email: Option<String>,
    password: Option<String>,
    /// `allow` or `deny`.
    decision: Option<String>,
}

struct Ctx {
    valid: Valid,
    org_name: String,
    action: String,
    csrf: String,
    cookies: Vec<String>,
}

async fn prepare(
    st: &AppState,
    req: Request,
    uri: &OriginalUri,
    headers: &HeaderMap,
) -> Result<Ctx, Response> {
    let valid = authorize::validate(&st.core, &req).await.map_err(refusal)?;
    let org = orgs::find_in(&st.core.db, &valid.client.org_id)
        .await
        .map_err(|_| {
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is unavailable; try again.",
            )
        })?;
    let (nonce, set) = csrf_nonce(st, headers);
    let action = uri
        .0
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| uri.0.path().to_string());
    Ok(Ctx {
        csrf: csrf_for(st, &nonce),
        valid,
        org_name: org.name,
        action,
        cookies: set.into_iter().collect(),
    })
}

fn show_login(ctx: Ctx, error: Option<&str>, status: StatusCode) -> Response {
    login_page(LoginPage {
        org: &ctx.org_name,
        app: &ctx.valid.client.name,
        action: &ctx.action,
        csrf: &ctx.csrf,
        error,
        status,
        cookies: ctx.cookies,
    })
}

fn show_consent(ctx: Ctx, user_email: &str) -> Response {
    let host = url::Url::parse(&ctx.valid.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    consent_page(ConsentPage {
        org: &ctx.org_name,
        app: &ctx.valid.client.name,
        user: user_email,
        scope: ctx.valid.scope.as_str(),
        redirect_host: &host,
        action: &ctx.action,
        csrf: &ctx.csrf,
        cookies: ctx.cookies,
    })
}

async fn get(st: AppState, req: Request, uri: OriginalUri, headers: HeaderMap) -> Response {
    let ctx = match prepare(&st, req, &uri, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Some(t) = cookie(&headers, AUTHN_COOKIE) {
        if let Ok(Some(user)) =
            sessions::authenticate_enduser(&st.core, t, &ctx.valid.client.org_id).await
        {
            return show_consent(ctx, &user.email);
        }
    }
    show_login(ctx, None, StatusCode::OK)
}

async fn post(
    st: AppState,
    req: Request,
    uri: OriginalUri,
    headers: HeaderMap,
    ip: Option<String>,
    body: Bytes,
) -> Response {
    let mut ctx = match prepare(&st, req, &uri, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let sent = form.get("csrf").map(String::as_str).unwrap_or("");
    let nonce_ok = cookie(&headers, CSRF_COOKIE).is_some() && ctx.cookies.is_empty();
    if !nonce_ok || !ct_eq(sent.as_bytes(), ctx.csrf.as_bytes()) {
        return show_login(
            ctx,
            Some("Your sign-in form expired. Please try again."),
            StatusCode::FORBIDDEN,
        );
    }
    let org_id = ctx.valid.client.org_id.clone();
    if let Some(decision) = form.get("decision") {
        let user = match cookie(&headers, AUTHN_COOKIE) {
            Some(t) => sessions::authenticate_enduser(&st.core, t, &org_id)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let Some(user) = user else {
            return show_login(ctx, Some("Please sign in first."), StatusCode::UNAUTHORIZED);
        };
        let v = &ctx.valid;
        let mut params: Vec<(&str, String)> = Vec::new();
        if decision == "allow" {
            let actor = Actor::new(format!("user:{}", user.email), ip);
            match authorize::issue_code(&st.core, v, &user, &actor).await {
                Ok(code) => params.push(("code", code)),
                Err(e) => {
                    tracing::error!(error = %e, "issuing an authorization code failed");
                    params.push(("error", "server_error".into()));
                }
            }
        } else {
            params.push(("error", "access_denied".into()));
            params.push(("error_description", "the user denied the request".into()));
        }
        if let Some(s) = &v.state {
            params.push(("state", s.clone()));
        }
        let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        return found(&redirect_with(&v.redirect_uri, &p), &ctx.cookies);
    }
    let email = form.get("email").map(String::as_str).unwrap_or("");
    let password = form.get("password").map(String::as_str).unwrap_or("");
    match sessions::login_enduser(&st.core, &org_id, email, password, ip.as_deref()).await {
        Ok((t, user)) => {
            ctx.cookies
                .push(super::cookies::authorize(&st, AUTHN_COOKIE, t).to_string());
            show_consent(ctx, &user.email)
        }
        Err(IdentityError::Throttled { .. }) => show_login(
            ctx,
            Some("Too many failed attempts. Wait a few minutes and try again."),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Err(IdentityError::BadCredentials) => show_login(
            ctx,
            Some("Invalid email or password."),
            StatusCode::UNAUTHORIZED,
        ),
        Err(IdentityError::Invalid(_)) => show_login(
            ctx,
            Some("Enter a valid email address."),
            StatusCode::BAD_REQUEST,
        ),
        Err(IdentityError::Busy(_)) => show_login(
            ctx,
            Some("Sign-in is busy right now. Try again in a moment."),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        Err(e) => {
            tracing::error!(error = %e, "sign-in failed");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in failed; try again.",
            )
        }
    }
}

/// The authorization endpoint (RFC 6749 §4.1): the sign-in page, or the consent page for a signed-in user.
#[utoipa::path(
    get, path = "/oauth2/authorize", tag = "oauth2",
    params(
        ("response_type" = Option<String>, Query, description = "`code`.", example = "code"),
        ("client_id" = Option<String>, Query, description = "The application's client id."),
        ("redirect_uri" = Option<String>, Query, description = "One of the application's callbacks."),
        ("scope" = Option<String>, Query, description = "`read` or `read_write`."),
        ("state" = Option<String>, Query, description = "Returned with the code."),
        ("code_challenge" = Option<String>, Query, description = "PKCE (RFC 7636)."),
        ("code_challenge_method" = Option<String>, Query, description = "`S256`."),
    ),
    responses(
        (status = 200, description = "An HTML page: sign in, or consent.", content_type = "text/html"),
        (status = 302, description = "Back to the client with an error (`Location`)."),
        (status = 400, description = "An HTML page: the request cannot continue (an unknown client or callback).", content_type = "text/html"),
        (status = 503, description = "An HTML page: try again.", content_type = "text/html"),
    ),
    security(()),
)]
pub async fn std_get(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    uri: OriginalUri,
    headers: HeaderMap,
) -> Response {
    get(st, std_request(&q), uri, headers).await
}

/// The authorization endpoint (RFC 6749 §4.1): the sign-in and consent forms post here (CSRF-checked).
#[utoipa::path(
    post, path = "/oauth2/authorize", tag = "oauth2",
    params(
        ("response_type" = Option<String>, Query, description = "`code`.", example = "code"),
        ("client_id" = Option<String>, Query, description = "The application's client id."),
        ("redirect_uri" = Option<String>, Query, description = "One of the application's callbacks."),
        ("scope" = Option<String>, Query, description = "`read` or `read_write`."),
        ("state" = Option<String>, Query, description = "Returned with the code."),
        ("code_challenge" = Option<String>, Query, description = "PKCE (RFC 7636)."),
        ("code_challenge_method" = Option<String>, Query, description = "`S256`."),
    ),
    request_body(content = AuthorizeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "An HTML page: consent, after signing in.", content_type = "text/html"),
        (status = 302, description = "Back to the client with a code or an error (`Location`)."),
        (status = 400, description = "An HTML page: the request cannot continue.", content_type = "text/html"),
        (status = 401, description = "An HTML page: wrong email or password.", content_type = "text/html"),
        (status = 403, description = "An HTML page: the form expired (CSRF).", content_type = "text/html"),
        (status = 429, description = "An HTML page: too many failed attempts.", content_type = "text/html"),
        (status = 503, description = "An HTML page: try again.", content_type = "text/html"),
    ),
    security(()),
)]
pub async fn std_post(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    Query(q): Query<HashMap<String, String>>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    post(st, std_request(&q), uri, headers, ip, body).await
}

/// The seed-compatible authorization endpoint: the sign-in page, or the consent page for a signed-in user.
#[utoipa::path(
    get, path = "/v1/authorize", tag = "seed",
    params(
        ("clientId" = Option<String>, Query, description = "The application's client id."),
        ("redirectUri" = Option<String>, Query, description = "One of the application's callbacks."),
        ("scopes" = Option<String>, Query, description = "`read` or `read_write`."),
        ("state" = Option<String>, Query, description = "Returned with the code."),
        ("code_challenge" = Option<String>, Query, description = "PKCE (RFC 7636)."),
        ("code_challenge_method" = Option<String>, Query, description = "`S256`."),
    ),
    responses(
        (status = 200, description = "An HTML page: sign in, or consent.", content_type = "text/html"),
        (status = 302, description = "Back to the client with an error (`Location`)."),
        (status = 400, description = "An HTML page: the request cannot continue (an unknown client or callback).", content_type = "text/html"),
        (status = 503, description = "An HTML page: try again.", content_type = "text/html"),
    ),
    security(()),
)]
pub async fn seed_get(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    uri: OriginalUri,
    headers: HeaderMap,
) -> Response {
    get(st, seed_request(&q), uri, headers).await
}

/// The seed-compatible authorization endpoint: the sign-in and consent forms post here (CSRF-checked).
#[utoipa::path(
    post, path = "/v1/authorize", tag = "seed",
    params(
        ("clientId" = Option<String>, Query, description = "The application's client id."),
        ("redirectUri" = Option<String>, Query, description = "One of the application's callbacks."),
        ("scopes" = Option<String>, Query, description = "`read` or `read_write`."),
        ("state" = Option<String>, Query, description = "Returned with the code."),
        ("code_challenge" = Option<String>, Query, description = "PKCE (RFC 7636)."),
        ("code_challenge_method" = Option<String>, Query, description = "`S256`."),
    ),
    request_body(content = AuthorizeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "An HTML page: consent, after signing in.", content_type = "text/html"),
        (status = 302, description = "Back to the client with a code or an error (`Location`)."),
        (status = 400, description = "An HTML page: the request cannot continue.", content_type = "text/html"),
        (status = 401, description = "An HTML page: wrong email or password.", content_type = "text/html"),
        (status = 403, description = "An HTML page: the form expired (CSRF).", content_type = "text/html"),
        (status = 429, description = "An HTML page: too many failed attempts.", content_type = "text/html"),
        (status = 503, description = "An HTML page: try again.", content_type = "text/html"),
    ),
    security(()),
)]
pub async fn seed_post(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    Query(q): Query<HashMap<String, String>>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    post(st, seed_request(&q), uri, headers, ip, body).await
}
