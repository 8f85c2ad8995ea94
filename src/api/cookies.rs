//! The cookies rekey's HTTP surface sets, built with the `cookie` crate
//! (through axum-extra's `CookieJar`) rather than by hand.

use axum_extra::extract::cookie::{Cookie, SameSite};
use cookie::time::Duration;

use super::extract::SESSION_COOKIE;
use super::AppState;
use crate::connectors::flow::Bound;

/// The admin session: `Strict`, so no other site can make a browser send
/// it (the admin API's forms and links need no cross-site arrival).
pub fn session(st: &AppState, token: String, max_age_s: i64) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, token))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(st.secure_cookies())
        .max_age(Duration::seconds(max_age_s.max(0)))
        .build()
}

/// A cookie of the authorization pages (`/oauth2/authorize`, `/connect`):
/// the CSRF nonce of their forms, the end user's sign-in. `Lax`, not
/// `Strict`: the user arrives by a top-level navigation from the client
/// application's site and must still be recognised. A session cookie (no
/// `Max-Age`): it ends with the browser.
pub fn authorize(st: &AppState, name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(st.secure_cookies())
        .build()
}

/// The name of a connection flow's cookie (see `connectors::flow`).
///
/// On https it carries the `__Host-` prefix: browsers then accept it only
/// with `Secure`, `Path=/` and no `Domain`, so neither a sibling subdomain
/// nor a plain-http page can plant or overwrite it. On http (a
/// `public_url` like `http://localhost:8080`, development only) the prefix
/// cannot be used — a `__Host-` cookie without `Secure` is dropped by the
/// browser — so the same cookie goes without it.
pub fn flow_name(st: &AppState, tag: &str) -> String {
    if st.secure_cookies() {
        format!("__Host-rekey_flow_{tag}")
    } else {
        format!("rekey_flow_{tag}")
    }
}

/// A connection flow's cookie: `Lax` (the provider's redirect back is a
/// cross-site top-level navigation, on which `Strict` cookies are not
/// sent), HttpOnly, host-only, `Path=/` (what `__Host-` requires), for as
/// long as the flow lives.
pub fn flow(st: &AppState, bound: &Bound, now_ms: i64) -> Cookie<'static> {
    flow_cookie(
        st,
        &bound.cookie_tag,
        bound.cookie_value.clone(),
        (bound.expires_at - now_ms) / 1000,
    )
}

/// Clears a flow's cookie once the flow is used.
pub fn flow_removal(st: &AppState, tag: &str) -> Cookie<'static> {
    flow_cookie(st, tag, String::new(), 0)
}

fn flow_cookie(st: &AppState, tag: &str, value: String, max_age_s: i64) -> Cookie<'static> {
    Cookie::build((flow_name(st, tag), value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(st.secure_cookies())
        .max_age(Duration::seconds(max_age_s.max(0)))
        .build()
}
