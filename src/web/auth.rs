//! Signing in to the console and the two extractors every page uses:
//! `Ui` (a signed-in admin, else a redirect to the sign-in page that comes
//! back here) and `Posted<T>` (a form from a signed-in admin whose hidden
//! `csrf` field matches the session's token, compared in constant time —
//! as strict as the admin API's `X-CSRF-Token`).
//!
//! The sign-in form itself has no session yet: its CSRF token is the
//! authorization pages' pattern, a random nonce in a cookie and its keyed
//! digest in the form.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::page::{self, Chrome};
use crate::api::extract::{AdminSession, ClientIp, SESSION_COOKIE};
use crate::api::{cookies, AppState};
use crate::crypto::token::{self, ct_eq, TokenKind};
use crate::identity::{sessions, IdentityError};

const LOGIN_NONCE: &str = "rekey_ui_login";

/// A signed-in admin on a console page.
pub struct Ui(pub AdminSession);

/// Where a person goes after signing in: a console path only (never
/// another site, never `//host`).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => "/ui/".to_string(),
    }
}

/// The path and query of a request's `Referer`, whatever origin it
/// names ([`safe_next`] then keeps console paths only).
fn referer_path(headers: &axum::http::HeaderMap) -> Option<String> {
    let r = headers.get(axum::http::header::REFERER)?.to_str().ok()?;
    let uri: axum::http::Uri = r.parse().ok()?;
    uri.path_and_query().map(|p| p.as_str().to_string())
}

fn to_login(next: &str) -> Response {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    page::see_other(&format!("/ui/login?{q}"))
}

impl FromRequestParts<AppState> for Ui {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        match AdminSession::from_request_parts(parts, st).await {
            Ok(a) => Ok(Ui(a)),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                // Back to this page after signing in (a GET); a form whose
                // session ended goes back to the page the form was on (its
                // Referer's path: never another site), and is not replayed —
                // the person sees the page again and decides.
                let next = if parts.method == axum::http::Method::GET {
                    parts
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default()
                } else {
                    referer_path(&parts.headers).unwrap_or_else(|| "/ui/".to_string())
                };
                Err(to_login(&safe_next(Some(&next))))
            }
            // A POST without X-CSRF-Token is refused by AdminSession; the
            // console's forms are checked by `Posted` instead.
            Err(e) if e.status == StatusCode::FORBIDDEN => {
                let token = crate::api::extract::cookie(&parts.headers, SESSION_COOKIE)
                    .unwrap_or_default()
                    .to_string();
                let ip = ClientIp::from_request_parts(parts, st)
                    .await
                    .map(|c| c.0)
                    .unwrap_or_default();
                match sessions::authenticate(&st.core, &token).await {
                    Ok(Some(session)) => Ok(Ui(AdminSession { session, ip })),
                    Ok(None) => Err(to_login("/ui/")),
                    Err(e) => Err(page::error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &crate::api::ApiError::from(e).message,
                    )),
                }
            }
            Err(e) => Err(page::error(e.status, &e.message)),
        }
    }
}

/// A console form: the signed-in admin and the form's fields, after the
/// CSRF check.
pub struct Posted<T> {
    pub ui: AdminSession,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Posted<T> {
    type Rejection = Response;
    async fn from_request(req: Request, st: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let Ui(ui) = Ui::from_request_parts(&mut parts, st).await?;
        let bytes = Bytes::from_request(Request::from_parts(parts, body), st)
            .await
            .map_err(|_| page::error(StatusCode::BAD_REQUEST, "The form could not be read."))?;
        let sent = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if ui.session.csrf.is_empty() || !ct_eq(sent.as_bytes(), ui.session.csrf.as_bytes()) {
            return Err(page::error(
                StatusCode::FORBIDDEN,
                "This form is not from your current session (it may be from an older sign-in). Go back, reload the page and try again.",
            ));
        }
        let form = serde_urlencoded::from_bytes::<T>(&bytes).map_err(|e| {
            page::error(
                StatusCode::BAD_REQUEST,
                &format!("The form is incomplete: {e}."),
            )
        })?;
        Ok(Posted { ui, form })
    }
}

/// `/ui` → `/ui/`.
pub async fn to_console() -> Response {
    page::see_other("/ui/")
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub chrome: Chrome,
    pub next: String,
    pub csrf: String,
    pub email: String,
    pub org: String,
    pub error: Option<String>,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

fn login_digest(st: &AppState, nonce: &str) -> String {
    st.core.pepper.digest(&format!("ui-login-csrf\0{nonce}"))
}

/// The sign-in nonce: the browser's, or a new one set as a cookie.
fn login_nonce(st: &AppState, jar: CookieJar) -> (String, CookieJar) {
    if let Some(n) = jar.get(LOGIN_NONCE).map(|c| c.value().to_string()) {
        if n.len() >= 32 {
            return (n, jar);
        }
    }
    let n = token::mint(TokenKind::Csrf);
    let c = Cookie::build((LOGIN_NONCE, n.clone()))
        .path("/ui/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(st.secure_cookies())
        .build();
    (n, jar.add(c))
}

fn login_page(
    st: &AppState,
    jar: CookieJar,
    status: StatusCode,
    next: String,
    email: String,
    org: String,
    error: Option<String>,
) -> Response {
    let (nonce, jar) = login_nonce(st, jar);
    let p = LoginPage {
        chrome: Chrome::anonymous("Sign in"),
        next,
        csrf: login_digest(st, &nonce),
        email,
        org,
        error,
    };
    (jar, page::render(status, &p)).into_response()
}

pub async fn login_form(
    State(st): State<AppState>,
    jar: CookieJar,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    login_page(
        &st,
        jar,
        StatusCode::OK,
        next,
        String::new(),
        String::new(),
        None,
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    org: String,
    #[serde(default)]
    next: Option<String>,
}

pub async fn login(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    body: Bytes,
) -> Response {
    let f: LoginForm = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(_) => {
            return page::error(
                StatusCode::BAD_REQUEST,
                "The sign-in form could not be read.",
            )
        }
    };
    let next = safe_next(f.next.as_deref());
    let nonce_ok = jar
        .get(LOGIN_NONCE)
        .is_some_and(|n| ct_eq(f.csrf.as_bytes(), login_digest(&st, n.value()).as_bytes()));
    if !nonce_ok {
        return login_page(
            &st,
            jar,
            StatusCode::FORBIDDEN,
            next,
            f.email,
            f.org,
            Some("Your sign-in form expired. Please sign in again.".into()),
        );
    }
    let org = Some(f.org.trim()).filter(|o| !o.is_empty());
    match sessions::login(&st.core, &f.email, &f.password, org, ip.as_deref()).await {
        Ok((token, session)) => {
            let max_age = (session.expires_at - st.core.now()) / 1000;
            let jar = jar.add(cookies::session(&st, token, max_age));
            (jar, page::see_other(&next)).into_response()
        }
        Err(IdentityError::BadCredentials) => login_page(
            &st,
            jar,
            StatusCode::UNAUTHORIZED,
            next,
            f.email,
            f.org,
            Some("Wrong email or password, or not an admin.".into()),
        ),
        Err(e) => {
            let e = crate::api::ApiError::from(e);
            let msg = if e.status == StatusCode::TOO_MANY_REQUESTS {
                "Too many failed sign-ins for this account or address; try again later.".to_string()
            } else {
                e.message
            };
            login_page(&st, jar, e.status, next, f.email, f.org, Some(msg))
        }
    }
}

#[derive(Deserialize)]
pub struct Nothing {}

pub async fn logout(State(st): State<AppState>, jar: CookieJar, p: Posted<Nothing>) -> Response {
    if let Err(e) = sessions::logout(&st.core, &p.ui.session, p.ui.ip.as_deref()).await {
        let e = crate::api::ApiError::from(e);
        return page::error(e.status, &e.message);
    }
    let jar = jar.add(cookies::session(&st, String::new(), 0));
    (jar, page::see_other("/ui/login")).into_response()
}
