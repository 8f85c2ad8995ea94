//! Server-rendered pages of the authorization flow: sign-in, consent,
//! error, message. They are the console's templates (`templates/oauth_*`),
//! on its stylesheet and headers; every value is HTML-escaped by askama.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

use crate::web::page::{self, Chrome};

fn with_cookies(mut resp: Response, set_cookies: &[String]) -> Response {
    for c in set_cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

#[derive(Template)]
#[template(path = "oauth_message.html")]
struct Message<'a> {
    chrome: Chrome,
    heading: &'a str,
    message: &'a str,
    error: bool,
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    page::render(
        status,
        &Message {
            chrome: Chrome::anonymous("Authorization error"),
            heading: "This authorization request cannot continue",
            message,
            error: true,
        },
    )
}

pub fn message_page(status: StatusCode, title: &str, message: &str) -> Response {
    page::render(
        status,
        &Message {
            chrome: Chrome::anonymous(title),
            heading: title,
            message,
            error: false,
        },
    )
}

pub struct LoginPage<'a> {
    pub org: &'a str,
    pub app: &'a str,
    pub action: &'a str,
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    pub status: StatusCode,
    pub cookies: Vec<String>,
}

#[derive(Template)]
#[template(path = "oauth_login.html")]
struct Login<'a> {
    chrome: Chrome,
    heading: String,
    intro: String,
    button: &'a str,
    action: &'a str,
    csrf: &'a str,
    error: Option<&'a str>,
}

pub fn login_page(p: LoginPage<'_>) -> Response {
    let t = Login {
        chrome: Chrome::anonymous("Sign in"),
        heading: format!("Sign in to {}", p.org),
        intro: format!("{} wants to access your {} account.", p.app, p.org),
        button: "Sign in",
        action: p.action,
        csrf: p.csrf,
        error: p.error,
    };
    with_cookies(page::render(p.status, &t), &p.cookies)
}

pub struct ConsentPage<'a> {
    pub org: &'a str,
    pub app: &'a str,
    pub user: &'a str,
    pub scope: &'a str,
    pub redirect_host: &'a str,
    pub action: &'a str,
    pub csrf: &'a str,
    pub cookies: Vec<String>,
}

#[derive(Template)]
#[template(path = "oauth_consent.html")]
struct Consent<'a> {
    chrome: Chrome,
    p: &'a ConsentPage<'a>,
    what: &'a str,
}

pub fn consent_page(p: ConsentPage<'_>) -> Response {
    let what = if p.scope == "read_write" {
        "read and change"
    } else {
        "read"
    };
    let t = Consent {
        chrome: Chrome::anonymous("Authorize"),
        p: &p,
        what,
    };
    with_cookies(page::render(StatusCode::OK, &t), &p.cookies)
}

pub struct ConnectLoginPage<'a> {
    pub org: &'a str,
    pub connection: &'a str,
    pub kind: &'a str,
    pub action: &'a str,
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    pub status: StatusCode,
    pub cookies: Vec<String>,
}

/// Sign-in before an OAuth connection flow is bound to this browser.
pub fn connect_login_page(p: ConnectLoginPage<'_>) -> Response {
    let t = Login {
        chrome: Chrome::anonymous("Connect"),
        heading: format!("Connect {}", p.connection),
        intro: format!(
            "Sign in as an admin of {} to authorize its {} connection {}; you will then be sent to the provider.",
            p.org, p.kind, p.connection
        ),
        button: "Sign in and continue",
        action: p.action,
        csrf: p.csrf,
        error: p.error,
    };
    with_cookies(page::render(p.status, &t), &p.cookies)
}

#[derive(Template)]
#[template(path = "oauth_connected.html")]
struct Connected<'a> {
    chrome: Chrome,
    name: &'a str,
    kind: &'a str,
    status: &'a str,
    test: Option<&'a str>,
    console: &'a str,
}

/// The end of a connection's OAuth flow: the "Authentication status"
/// confirmation, and the way back to the connection in the console.
pub fn connected_page(
    name: &str,
    kind: &str,
    status: &str,
    test: Option<&str>,
    console: &str,
) -> Response {
    page::render(
        StatusCode::OK,
        &Connected {
            chrome: Chrome::anonymous("Connected"),
            name,
            kind,
            status,
            test,
            console,
        },
    )
}
