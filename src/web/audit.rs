//! The audit log in the console: an org's events (`/ui/orgs/{org}/audit`)
//! and the operator's across every org (`/ui/audit`), filtered by actor,
//! action, target and time, newest first, paged by keyset on `seq` with
//! the exact number of matching events. The query string is the admin
//! API's (`/api/v1/orgs/{org}/audit`, `/api/v1/audit`), read by the same
//! parser and answered by the same search.

use std::collections::HashMap;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::page::{self, fail, seg, Chrome};
use super::Ui;
use crate::api::apps::org_for;
use crate::api::audit::{AuditQuery, Search};
use crate::api::extract::AdminSession;
use crate::api::AppState;
use crate::audit;
use crate::clock::rfc3339;
use crate::identity::orgs;

pub struct Line {
    pub seq: i64,
    pub at: String,
    pub org: String,
    pub actor: String,
    pub ip: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub chrome: Chrome,
    /// The org whose log this is; empty on the operator's page.
    pub org: String,
    /// Where the filter form and the page links go.
    pub path: String,
    pub f: Fields,
    pub lines: Vec<Line>,
    pub total: i64,
    pub first: bool,
    pub next: Option<String>,
    pub error: Option<String>,
}

/// The search as typed, to fill the form again.
pub struct Fields {
    pub org: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub since: String,
    pub until: String,
}

impl Fields {
    fn of(q: &AuditQuery) -> Fields {
        let v = |o: &Option<String>| o.clone().unwrap_or_default();
        Fields {
            org: v(&q.org),
            actor: v(&q.actor),
            action: v(&q.action),
            target: v(&q.target),
            since: v(&q.since),
            until: v(&q.until),
        }
    }
}

/// The query string of a page of the same search (`before_seq` aside).
fn link(path: &str, q: &AuditQuery, before_seq: Option<i64>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("org", &q.org),
        ("actor", &q.actor),
        ("action", &q.action),
        ("target", &q.target),
        ("since", &q.since),
        ("until", &q.until),
        ("limit", &q.limit),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            s.append_pair(k, v);
        }
    }
    if let Some(b) = before_seq {
        s.append_pair("before_seq", &b.to_string());
    }
    let qs = s.finish();
    if qs.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{qs}")
    }
}

async fn render(
    st: &AppState,
    admin: &AdminSession,
    org: Option<&orgs::Org>,
    q: AuditQuery,
) -> Response {
    let (path, title, nav) = match org {
        Some(o) => (
            format!("/ui/orgs/{}/audit", seg(&o.slug)),
            "Audit log",
            "audit",
        ),
        None => (
            "/ui/audit".to_string(),
            "Audit log (every org)",
            "audit-all",
        ),
    };
    let mut pg = AuditPage {
        chrome: Chrome::of(admin, title, nav, org.map(|o| o.slug.as_str())),
        org: org.map(|o| o.slug.clone()).unwrap_or_default(),
        path: path.clone(),
        f: Fields::of(&q),
        lines: vec![],
        total: 0,
        first: true,
        next: None,
        error: None,
    };
    let searched = async {
        let mut s = Search::parse(&q, st.core.now())?;
        s.filter.org_id = match (org, q.org.as_deref().map(str::trim)) {
            (Some(o), _) => Some(o.id.clone()),
            (None, Some(slug)) if !slug.is_empty() => Some(org_for(st, admin, slug).await?.id),
            (None, _) => None,
        };
        let first = s.before_seq.is_none();
        let found = audit::search(&st.core.db, &s.filter, s.before_seq, s.limit).await?;
        Ok::<_, crate::api::ApiError>((found, first))
    };
    match searched.await {
        Ok((found, first)) => {
            // The operator sees slugs, not org ids.
            let slugs: HashMap<String, String> = if org.is_none() {
                match orgs::list(&st.core.db).await {
                    Ok(l) => l.into_iter().map(|o| (o.id, o.slug)).collect(),
                    Err(e) => return fail(e),
                }
            } else {
                HashMap::new()
            };
            pg.total = found.total;
            pg.first = first;
            pg.next = found.next_before_seq.map(|b| link(&path, &q, Some(b)));
            pg.lines = found
                .items
                .into_iter()
                .map(|r| Line {
                    seq: r.seq,
                    at: rfc3339(r.at),
                    org: match &r.org_id {
                        Some(id) => slugs.get(id).cloned().unwrap_or_default(),
                        None => "platform".into(),
                    },
                    actor: r.actor,
                    ip: r.ip.unwrap_or_default(),
                    action: r.action,
                    target: r.target.unwrap_or_default(),
                    detail: r.detail,
                })
                .collect();
            page::ok(&pg)
        }
        Err(e) => {
            let status = e.status;
            pg.error = Some(e.message);
            page::render(status, &pg)
        }
    }
}

fn unreadable() -> Response {
    page::error(
        StatusCode::BAD_REQUEST,
        "The search could not be read; start from the log's first page.",
    )
}

/// `GET /ui/orgs/{org}/audit`.
pub async fn org_page(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path(org): Path<String>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(mut q)) = q else {
        return unreadable();
    };
    q.org = None;
    match org_for(&st, &admin, &org).await {
        Ok(o) => render(&st, &admin, Some(&o), q).await,
        Err(e) => fail(e),
    }
}

/// `GET /ui/audit`: the operator's.
pub async fn all_page(
    State(st): State<AppState>,
    Ui(admin): Ui,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    if !admin.session.principal.is_operator() {
        return page::error(
            StatusCode::FORBIDDEN,
            "Only the platform operator reads every org's audit log; your org's is under Audit log.",
        );
    }
    match q {
        Ok(Query(q)) => render(&st, &admin, None, q).await,
        Err(_) => unreadable(),
    }
}
