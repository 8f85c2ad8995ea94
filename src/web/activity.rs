//! A connection's activity log in the console
//! (`/ui/orgs/{org}/connections/{conn}/activity`): newest first, a page at
//! a time by keyset (the cursor `events::activity::page` returns), filtered
//! by type and by time exactly as the CLI and the admin API filter it (the
//! same parsers), each entry with the provider's own words and its detail
//! folded away.

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::page::{self, seg, Chrome};
use super::Ui;
use crate::api::apps::org_for;
use crate::api::{ApiError, AppState};
use crate::connectors::connections;
use crate::events::activity::{self, ActivityType};

/// Entries on one page.
const PAGE_SIZE: i64 = 50;

pub struct Line {
    pub at: String,
    pub kind: String,
    pub badge: &'static str,
    pub message: String,
    /// The structured detail, pretty-printed; empty when there is none.
    pub detail: String,
}

/// A type's checkbox.
pub struct TypeBox {
    pub name: &'static str,
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "activity.html")]
pub struct ActivityPage {
    pub chrome: Chrome,
    pub org: String,
    pub name: String,
    /// This page's path, where the filter form and the page links go.
    pub path: String,
    pub types: Vec<TypeBox>,
    pub since: String,
    pub lines: Vec<Line>,
    /// The first page of this filter (no cursor).
    pub first: bool,
    pub first_link: String,
    pub older: Option<String>,
    /// Entries of the filter on every page.
    pub total: i64,
    pub error: Option<String>,
}

/// The filter as the query string carries it: `type` may repeat (one per
/// checkbox), `since` and `after` once.
struct Filter {
    types: Vec<String>,
    since: String,
    after: Option<String>,
}

impl Filter {
    fn parse(raw: Option<&str>) -> Filter {
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let last = |k: &str| {
            pairs
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Filter {
            types: pairs
                .iter()
                .filter(|(n, _)| n == "type")
                .map(|(_, v)| v.clone())
                .collect(),
            since: last("since").unwrap_or_default(),
            after: last("after"),
        }
    }

    /// The link to a page of the same filter, starting after `after`.
    fn link(&self, path: &str, after: Option<&str>) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for t in &self.types {
            s.append_pair("type", t);
        }
        if !self.since.is_empty() {
            s.append_pair("since", &self.since);
        }
        if let Some(a) = after {
            s.append_pair("after", a);
        }
        let qs = s.finish();
        if qs.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{qs}")
        }
    }
}

/// `GET /ui/orgs/{org}/connections/{conn}/activity`.
pub async fn log(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path((org, conn)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let o = match org_for(&st, &admin, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    let c = match connections::find_in(&st.core.db, &o.id, &conn).await {
        Ok(c) => c,
        Err(e) => return page::fail(e),
    };
    let f = Filter::parse(raw.as_deref());
    let path = format!(
        "/ui/orgs/{}/connections/{}/activity",
        seg(&o.slug),
        seg(&c.name)
    );
    let mut pg = ActivityPage {
        chrome: Chrome::of(
            &admin,
            format!("Activity of {}", c.name),
            "connections",
            Some(&o.slug),
        ),
        org: o.slug.clone(),
        name: c.name.clone(),
        types: ActivityType::ALL
            .iter()
            .map(|t| TypeBox {
                name: t.as_str(),
                checked: f.types.iter().any(|g| g.trim() == t.as_str()),
            })
            .collect(),
        since: f.since.clone(),
        lines: Vec::new(),
        first: f.after.is_none(),
        first_link: f.link(&path, None),
        path: path.clone(),
        older: None,
        total: 0,
        error: None,
    };
    let found = async {
        let types = activity::parse_types(&f.types)?;
        let since = (!f.since.is_empty())
            .then(|| activity::parse_since(&f.since, st.core.now()))
            .transpose()?;
        activity::page(
            &st.core.db,
            &o.id,
            &c.id,
            since,
            &types,
            f.after.as_deref(),
            PAGE_SIZE,
        )
        .await
    };
    match found.await {
        Ok(found) => {
            pg.older = found.next.as_deref().map(|n| f.link(&path, Some(n)));
            pg.total = found.total;
            pg.lines = found
                .items
                .into_iter()
                .map(|e| Line {
                    badge: page::badge(&e.kind),
                    detail: match &e.detail {
                        serde_json::Value::Null => String::new(),
                        serde_json::Value::Object(m) if m.is_empty() => String::new(),
                        d => serde_json::to_string_pretty(d).unwrap_or_default(),
                    },
                    at: e.at,
                    kind: e.kind,
                    message: e.message,
                })
                .collect();
            page::ok(&pg)
        }
        Err(e) => {
            let e = ApiError::from(e);
            let status = if e.status.is_client_error() {
                e.status
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            pg.error = Some(e.message);
            page::render(status, &pg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_keeps_repeated_types_and_links_the_next_page() {
        let f = Filter::parse(Some("type=probe&type=error&since=2h&after=1.abc"));
        assert_eq!(f.types, ["probe", "error"]);
        assert_eq!(f.since, "2h");
        assert_eq!(f.after.as_deref(), Some("1.abc"));
        assert_eq!(
            f.link("/p", Some("9.z")),
            "/p?type=probe&type=error&since=2h&after=9.z"
        );
        let none = Filter::parse(None);
        assert!(none.types.is_empty() && none.since.is_empty() && none.after.is_none());
        assert_eq!(none.link("/p", None), "/p");
    }
}
