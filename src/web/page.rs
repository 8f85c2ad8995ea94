//! What every console page shares: the frame around it (`Chrome`: who is
//! signed in, which org, the CSRF token its forms carry, a notice), the
//! headers every page answers with, and the HTML error page.

use askama::Template;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::api::extract::AdminSession;
use crate::identity::sessions::Principal;

/// The frame of a page: the header's navigation and the signed-in person.
pub struct Chrome {
    pub title: String,
    /// The signed-in person's email; `None` on pages before sign-in.
    pub who: Option<String>,
    pub role: Option<String>,
    pub operator: bool,
    /// The org whose pages the navigation links to.
    pub org: Option<String>,
    /// Which navigation entry is this page's.
    pub nav: &'static str,
    pub csrf: String,
    pub notice: Option<String>,
}

impl Chrome {
    /// Before sign-in: no navigation.
    pub fn anonymous(title: impl Into<String>) -> Chrome {
        Chrome {
            title: title.into(),
            who: None,
            role: None,
            operator: false,
            org: None,
            nav: "",
            csrf: String::new(),
            notice: None,
        }
    }

    /// For a signed-in admin, on a page of `org` (or none).
    pub fn of(
        admin: &AdminSession,
        title: impl Into<String>,
        nav: &'static str,
        org: Option<&str>,
    ) -> Chrome {
        let (who, role, own_org) = match &admin.session.principal {
            Principal::Operator(o) => (o.email.clone(), "operator".to_string(), None),
            Principal::OrgAdmin { user, org } => (
                user.email.clone(),
                format!("admin of {}", org.slug),
                Some(org.slug.clone()),
            ),
        };
        Chrome {
            title: title.into(),
            who: Some(who),
            role: Some(role),
            operator: admin.session.principal.is_operator(),
            org: org.map(str::to_string).or(own_org),
            nav,
            csrf: admin.session.csrf.clone(),
            notice: None,
        }
    }

    pub fn notice(mut self, n: Option<String>) -> Chrome {
        self.notice = n;
        self
    }
}

/// The headers of every console page: never cached (pages show secrets
/// once and state that changes), never framed, nothing loaded from
/// anywhere but this origin.
pub fn harden(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
}

/// Renders a template into a response with `status` and the page headers.
pub fn render<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => {
            let mut resp = (status, Html(html)).into_response();
            harden(resp.headers_mut());
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "console template failed to render");
            let mut resp = (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the server log",
            )
                .into_response();
            harden(resp.headers_mut());
            resp
        }
    }
}

pub fn ok<T: Template>(t: &T) -> Response {
    render(StatusCode::OK, t)
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub chrome: Chrome,
    pub status: u16,
    pub reason: String,
    pub message: String,
}

/// The console's error page: the status, what went wrong, a way back.
/// The 403 page for a page of the platform operator's, unless the
/// operator is signed in.
pub fn operator_only(admin: &AdminSession) -> Option<Response> {
    (!admin.session.principal.is_operator()).then(|| {
        error(
            StatusCode::FORBIDDEN,
            "Only the platform operator may open this page.",
        )
    })
}

pub fn error(status: StatusCode, message: &str) -> Response {
    render(
        status,
        &ErrorPage {
            chrome: Chrome::anonymous(status.canonical_reason().unwrap_or("Error")),
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error").to_string(),
            message: message.to_string(),
        },
    )
}

/// A domain or API error as the console's error page (its status, its message).
pub fn fail(e: impl Into<crate::api::ApiError>) -> Response {
    let e: crate::api::ApiError = e.into();
    error(e.status, &e.message)
}

pub async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "There is no such page in the console.",
    )
}

/// A redirect after a form (303: the browser follows with GET).
pub fn see_other(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    harden(resp.headers_mut());
    resp
}

/// A secret shown once, on the answer to the form that made it: labelled
/// values, each with a copy button the script reveals (`reveal.html`).
pub struct Reveal {
    pub heading: String,
    pub note: String,
    /// (label, value)
    pub fields: Vec<(String, String)>,
}

/// An optional duration field of a form (`1h`, `30d`, bare seconds) in
/// milliseconds; empty is `None`.
pub fn duration(
    form: &std::collections::HashMap<String, String>,
    key: &str,
    label: &str,
) -> Result<Option<i64>, crate::api::ApiError> {
    match form.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<crate::config::Dur>()
            .map(|d| Some(d.ms()))
            .map_err(|e| crate::api::ApiError::bad_request(format!("{label}: {e}"))),
    }
}

/// A status as a badge class: green when well, amber when waiting or
/// stale, red when someone must act.
pub fn badge(status: &str) -> &'static str {
    match status {
        "connected" | "completed" | "active" | "Active" | "verified" | "done" | "ok"
        | "running" | "caught_up" | "delivered" => "ok",
        "needs_reauth" | "failed" | "stalled" | "Revoked" | "Invalid" | "error"
        | "disconnected" | "deactivated" | "paused_auth" | "dead" => "bad",
        "waiting_person" | "waiting_cutover" | "rotating" | "Expired" | "planned" | "pending"
        | "acting" | "unverified" | "paused_error" | "backfilling" | "queued" | "retrying" => {
            "warn"
        }
        _ => "neutral",
    }
}

/// Percent-encodes one path segment (names users typed go into links).
pub fn seg(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// "3d 4h" / "5m" / "40s": a duration for people.
pub fn human_s(s: i64) -> String {
    let s = s.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Seconds as the duration a form field takes back (`3600` → `1h`).
pub fn dur_field(s: i64) -> String {
    match s {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The 404 of an action a console object does not have (`POST …/{action}`
/// with an unknown `action`): "There is no such action on a connection."
pub fn no_such_action(on: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("There is no such action on {on}."),
    )
}

/// The pager under a keyset-paged list: the exact total, a link back to
/// the first page when this is not it, and a "Next page" link carrying
/// the cursor when more follow (`templates/pager.html`).
pub struct Pager {
    pub total: i64,
    /// The first page's link; `None` on the first page.
    pub first: Option<String>,
    pub next: Option<String>,
    /// What the total counts (singular, plural), when the page says so
    /// ([`Pager::counting`]); else "in all".
    noun: Option<(&'static str, &'static str)>,
}

impl Pager {
    /// For `page` of the list at `path`, whose filters (`keep`, empty
    /// values dropped) every link carries; `after` is this page's cursor.
    pub fn of<T>(
        page: &crate::store::keyset::Page<T>,
        path: &str,
        keep: &[(&str, &str)],
        after: Option<&str>,
    ) -> Pager {
        Pager::named(page, path, keep, "after", after)
    }

    /// `of` for one of several lists on a page, whose cursor goes in
    /// `param` (the other lists' cursors are among `keep`).
    pub fn named<T>(
        page: &crate::store::keyset::Page<T>,
        path: &str,
        keep: &[(&str, &str)],
        param: &str,
        after: Option<&str>,
    ) -> Pager {
        let link = |cursor: Option<&str>| {
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in keep.iter().filter(|(_, v)| !v.is_empty()) {
                s.append_pair(k, v);
            }
            if let Some(c) = cursor {
                s.append_pair(param, c);
            }
            let qs = s.finish();
            if qs.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{qs}")
            }
        };
        Pager {
            total: page.total,
            first: after.filter(|a| !a.trim().is_empty()).map(|_| link(None)),
            next: page.next.as_deref().map(|n| link(Some(n))),
            noun: None,
        }
    }

    /// The total named by what it counts ("1 service key", "52 service
    /// keys") instead of "in all".
    pub fn counting(self, one: &'static str, many: &'static str) -> Pager {
        Pager {
            noun: Some((one, many)),
            ..self
        }
    }

    /// The words after the total.
    pub fn counted(&self) -> &'static str {
        match self.noun {
            Some((one, _)) if self.total == 1 => one,
            Some((_, many)) => many,
            None => "in all",
        }
    }

    /// A list shown whole (not paged here): its total only.
    pub fn whole(total: usize) -> Pager {
        Pager {
            total: i64::try_from(total).unwrap_or(i64::MAX),
            first: None,
            next: None,
            noun: None,
        }
    }
}

/// The query of a list that takes only a page cursor (`?after=`, the
/// `next` of the page before).
#[derive(serde::Deserialize)]
pub struct AfterQuery {
    pub after: Option<String>,
}
