//! Admin API for the audit log: `GET /api/v1/orgs/{org}/audit` (an org's
//! events) and `GET /api/v1/audit` (the operator's, across orgs), both
//! `?actor=&action=&target=&since=&until=&before_seq=&limit=`, answering
//! `{items, total, next_before_seq}`, newest first. The console's audit
//! pages read the same parameters through [`Search::parse`].

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::apps::org_for;
use super::extract::AdminSession;
use super::users::limit;
use super::{ApiError, AppState};
use crate::audit::{self, Filter};
use crate::clock::parse_instant;

/// Events per page, unless `limit` says otherwise (at most [`MAX_PAGE`]).
pub const PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 500;

/// The query string as sent; every field optional.
#[derive(Deserialize, Default, Clone)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// RFC 3339, or a duration meaning that long ago (`7d`).
    pub since: Option<String>,
    pub until: Option<String>,
    pub before_seq: Option<String>,
    pub limit: Option<String>,
    /// The operator's search only: one org's events.
    pub org: Option<String>,
}

/// A parsed search: the filter (without the org), the keyset and the page size.
pub struct Search {
    pub filter: Filter,
    pub before_seq: Option<i64>,
    pub limit: i64,
}

fn some(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl Search {
    pub fn parse(q: &AuditQuery, now: i64) -> Result<Search, ApiError> {
        let instant = |name: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
            some(v)
                .map(|s| {
                    parse_instant(s, now).ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "{name} {s:?} is neither an RFC 3339 time nor a duration such as 1h or 7d"
                        ))
                    })
                })
                .transpose()
        };
        let before_seq = some(&q.before_seq)
            .map(|s| {
                s.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ApiError::bad_request("before_seq must be a positive whole number")
                })
            })
            .transpose()?;
        Ok(Search {
            filter: Filter {
                org_id: None,
                actor: some(&q.actor).map(str::to_string),
                action: some(&q.action).map(str::to_string),
                target: some(&q.target).map(str::to_string),
                since: instant("since", &q.since)?,
                until: instant("until", &q.until)?,
            },
            before_seq,
            limit: limit(q.limit.as_deref(), PAGE, MAX_PAGE)?,
        })
    }
}

async fn answer(st: &AppState, s: Search) -> Result<Json<Value>, ApiError> {
    let pg = audit::search(&st.core.db, &s.filter, s.before_seq, s.limit).await?;
    Ok(Json(json!({
        "items": pg.items.iter().map(audit::AuditRow::json).collect::<Vec<_>>(),
        "total": pg.total,
        "next_before_seq": pg.next_before_seq,
    })))
}

fn query(q: Result<Query<AuditQuery>, QueryRejection>) -> Result<AuditQuery, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// `GET /api/v1/orgs/{org}/audit`.
pub async fn org_list(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(org): Path<String>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    if q.org.is_some() {
        return Err(ApiError::bad_request("the org is in the path"));
    }
    let o = org_for(&st, &admin, &org).await?;
    let mut s = Search::parse(&q, st.core.now())?;
    s.filter.org_id = Some(o.id);
    answer(&st, s).await
}

/// `GET /api/v1/audit`: the operator's, every org's and the platform's
/// own events (`?org=SLUG` for one org's).
pub async fn list(
    State(st): State<AppState>,
    admin: AdminSession,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    if !admin.session.principal.is_operator() {
        return Err(ApiError::forbidden(
            "only a platform operator reads the whole audit log; use /api/v1/orgs/{org}/audit",
        ));
    }
    let mut s = Search::parse(&q, st.core.now())?;
    if let Some(slug) = some(&q.org) {
        s.filter.org_id = Some(org_for(&st, &admin, slug).await?.id);
    }
    answer(&st, s).await
}
