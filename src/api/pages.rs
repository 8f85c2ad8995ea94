//! Server-rendered pages of the authorization flow: sign-in, consent, error.
//! Every interpolated value is HTML-escaped.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}\
main{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}\
h1{font-size:1.3rem;margin-top:0}label{display:block;margin:.8rem 0}input[type=email],input[type=password]{width:100%;padding:.5rem;box-sizing:border-box}\
button{padding:.55rem 1.2rem;margin-right:.5rem;cursor:pointer}.error{color:#a00;background:#fee;padding:.5rem;border-radius:4px}\
.muted{color:#666;font-size:.9rem}";

fn page(status: StatusCode, title: &str, body: &str, set_cookies: &[String]) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{} · rekey</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        escape(title)
    );
    let mut resp = (status, Html(html)).into_response();
    let h: &mut HeaderMap = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    for c in set_cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    resp
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Authorization error",
        &format!(
            "<h1>This authorization request cannot continue</h1><p class=\"error\">{}</p>",
            escape(message)
        ),
        &[],
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

pub fn login_page(p: LoginPage<'_>) -> Response {
    let err = p
        .error
        .map(|e| format!("<p class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in to {org}</h1><p class=\"muted\"><b>{app}</b> wants to access your {org} account.</p>{err}\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label>Email<input type=\"email\" name=\"email\" autocomplete=\"username\" required autofocus></label>\
         <label>Password<input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>",
        org = escape(p.org),
        app = escape(p.app),
        action = escape(p.action),
        csrf = escape(p.csrf),
    );
    page(p.status, "Sign in", &body, &p.cookies)
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

pub fn consent_page(p: ConsentPage<'_>) -> Response {
    let what = if p.scope == "read_write" {
        "read and change"
    } else {
        "read"
    };
    let body = format!(
        "<h1>Authorize {app}</h1>\
         <p><b>{app}</b> asks to <b>{what}</b> data of <b>{org}</b> on your behalf (scope <code>{scope}</code>).</p>\
         <p class=\"muted\">Signed in as {user}. You will be sent back to {host}.</p>\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        app = escape(p.app),
        org = escape(p.org),
        scope = escape(p.scope),
        user = escape(p.user),
        host = escape(p.redirect_host),
        action = escape(p.action),
        csrf = escape(p.csrf),
    );
    page(StatusCode::OK, "Authorize", &body, &p.cookies)
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
    let err = p
        .error
        .map(|e| format!("<p class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Connect {conn}</h1><p class=\"muted\">Sign in as an admin of <b>{org}</b> to authorize \
         its {kind} connection <b>{conn}</b>; you will then be sent to the provider.</p>{err}\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label>Email<input type=\"email\" name=\"email\" autocomplete=\"username\" required autofocus></label>\
         <label>Password<input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in and continue</button></form>",
        org = escape(p.org),
        conn = escape(p.connection),
        kind = escape(p.kind),
        action = escape(p.action),
        csrf = escape(p.csrf),
    );
    page(p.status, "Connect", &body, &p.cookies)
}

pub fn message_page(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        title,
        &format!("<h1>{}</h1><p>{}</p>", escape(title), escape(message)),
        &[],
    )
}
