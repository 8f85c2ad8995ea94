//! Incident campaigns in the console: start one from its dry-run plan
//! (shown item by item, then started for real with the same fields), follow
//! it live (progress per org and kind, what waits on whom), cancel it,
//! retry an item, and download its report as md, csv or json. The
//! operator sees every campaign; an org admin their org's part of them
//! (`incident::Asker`, as in the admin API).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::connections::Confirm;
use super::page::{self, seg, Chrome};
use super::{Posted, Ui};
use crate::api::extract::AdminSession;
use crate::api::incidents::asker;
use crate::api::{ApiError, AppState};
use crate::config::Dur;
use crate::identity::sessions::Principal;
use crate::incident::{self, IncidentView, StartRequest, Started};
use crate::store::keyset::PAGE;

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The start form's fields, carried from the plan page to the real start.
#[derive(Default, Clone)]
pub struct Fields {
    pub reason: String,
    pub scope: String,
    pub kinds: String,
    pub include_own: bool,
    pub overlap: String,
    pub force_cutover: bool,
    pub end_sessions: bool,
}

impl Fields {
    fn from(f: &HashMap<String, String>) -> Fields {
        let on = |k: &str| f.get(k).is_some_and(|v| v == "true" || v == "on");
        Fields {
            reason: f.get("reason").cloned().unwrap_or_default(),
            scope: f.get("scope").cloned().unwrap_or_default(),
            kinds: f.get("kinds").cloned().unwrap_or_default(),
            include_own: on("include_own"),
            overlap: f.get("overlap").cloned().unwrap_or_default(),
            force_cutover: on("force_cutover"),
            end_sessions: on("end_sessions"),
        }
    }

    fn request(&self, dry_run: bool) -> Result<StartRequest, ApiError> {
        let overlap_ms = match self.overlap.trim() {
            "" => 0,
            o => o
                .parse::<Dur>()
                .map(Dur::ms)
                .map_err(|e| ApiError::bad_request(format!("overlap: {e}")))?,
        };
        Ok(StartRequest {
            reason: self.reason.clone(),
            scope: self.scope.trim().to_string(),
            kinds: self
                .kinds
                .split([',', ' '])
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect(),
            include_own: self.include_own,
            overlap_ms,
            force_cutover: self.force_cutover,
            end_sessions: self.end_sessions,
            dry_run,
        })
    }
}

pub struct Line {
    pub id: String,
    pub scope: String,
    pub reason: String,
    pub status: String,
    pub badge: &'static str,
    pub progress: u8,
    pub total: usize,
    pub started_at: String,
}

#[derive(Template)]
#[template(path = "incidents.html")]
pub struct ListPage {
    pub chrome: Chrome,
    pub lines: Vec<Line>,
    pub pager: page::Pager,
    pub f: Fields,
    pub error: Option<String>,
}

fn default_scope(admin: &AdminSession) -> String {
    match &admin.session.principal {
        Principal::Operator(_) => "all".into(),
        Principal::OrgAdmin { org, .. } => format!("org:{}", org.slug),
    }
}

async fn list_page(
    st: &AppState,
    admin: &AdminSession,
    status: StatusCode,
    f: Fields,
    error: Option<String>,
    after: Option<&str>,
) -> Response {
    let list = match incident::page(&st.core, &asker(admin), after, PAGE).await {
        Ok(l) => l,
        Err(e) => return page::fail(e),
    };
    let pager = page::Pager::of(&list, "/ui/incidents", &[], after);
    page::render(
        status,
        &ListPage {
            chrome: Chrome::of(admin, "Incidents", "incidents", None),
            lines: list
                .items
                .into_iter()
                .map(|v| Line {
                    badge: page::badge(&v.status),
                    id: v.id,
                    scope: v.scope,
                    reason: v.reason,
                    status: v.status,
                    progress: v.progress,
                    total: v.total,
                    started_at: v.started_at,
                })
                .collect(),
            pager,
            f,
            error,
        },
    )
}

pub async fn list(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Query(q): Query<page::AfterQuery>,
) -> Response {
    let f = Fields {
        scope: default_scope(&admin),
        ..Fields::default()
    };
    list_page(&st, &admin, StatusCode::OK, f, None, q.after.as_deref()).await
}

pub struct PlanLine {
    pub n: String,
    pub org: String,
    pub target: String,
    pub action: String,
    pub after: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "incident_plan.html")]
pub struct PlanPage {
    pub chrome: Chrome,
    pub f: Fields,
    pub lines: Vec<PlanLine>,
    pub total: usize,
}

/// `POST /ui/incidents/plan`: the dry run, item by item; nothing changes.
pub async fn plan(State(st): State<AppState>, p: Posted<HashMap<String, String>>) -> Response {
    let f = Fields::from(&p.form);
    let req = match f.request(true) {
        Ok(r) => r,
        Err(e) => return list_page(&st, &p.ui, e.status, f, Some(e.message), None).await,
    };
    match incident::start(&st.core, &p.ui.actor(), &asker(&p.ui), &req).await {
        Ok(Started::Plan(plan)) => {
            let lines: Vec<PlanLine> = plan["items"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|i| PlanLine {
                            n: s(&i["n"]),
                            org: s(&i["org"]),
                            target: format!(
                                "{} {}{}",
                                s(&i["target"]["type"]),
                                s(&i["target"]["name"]),
                                i["target"]["kind"]
                                    .as_str()
                                    .map(|k| format!(" ({k})"))
                                    .unwrap_or_default()
                            ),
                            action: s(&i["action"]),
                            after: s(&i["after"]),
                            detail: s(&i["detail"]),
                        })
                        .collect()
                })
                .unwrap_or_default();
            page::ok(&PlanPage {
                chrome: Chrome::of(&p.ui, "Incident plan", "incidents", None),
                total: lines.len(),
                f,
                lines,
            })
        }
        Ok(Started::Campaign(..)) => page::see_other("/ui/incidents"),
        Err(e) => {
            let e = ApiError::from(e);
            list_page(&st, &p.ui, e.status, f, Some(e.message), None).await
        }
    }
}

/// `POST /ui/incidents`: starts the campaign for real. New secrets of
/// rekey's own (with `include_own`) are shown once, on this answer.
pub async fn start(State(st): State<AppState>, p: Posted<HashMap<String, String>>) -> Response {
    let f = Fields::from(&p.form);
    let req = match f.request(false) {
        Ok(r) => r,
        Err(e) => return list_page(&st, &p.ui, e.status, f, Some(e.message), None).await,
    };
    match incident::start(&st.core, &p.ui.actor(), &asker(&p.ui), &req).await {
        Ok(Started::Campaign(v, secrets)) => {
            let shown: Vec<String> = secrets
                .iter()
                .map(|x| {
                    format!(
                        "{} {}{}: {}",
                        s(&x["type"]),
                        s(&x["name"]),
                        x["client_id"]
                            .as_str()
                            .map(|c| format!(" ({c})"))
                            .unwrap_or_default(),
                        x["secret"].as_str().or(x["key"].as_str()).unwrap_or("")
                    )
                })
                .collect();
            if shown.is_empty() {
                // Nothing shown once: the campaign's own page, which a
                // reload does not start again.
                page::see_other(&format!("/ui/incidents/{}", seg(&v.id)))
            } else {
                show_page(
                    &st,
                    &p.ui,
                    &v.id,
                    &ItemsQuery::default(),
                    StatusCode::CREATED,
                    None,
                    shown,
                )
                .await
            }
        }
        Ok(Started::Plan(_)) => page::see_other("/ui/incidents"),
        Err(e) => {
            let e = ApiError::from(e);
            list_page(&st, &p.ui, e.status, f, Some(e.message), None).await
        }
    }
}

pub struct Group {
    pub org: String,
    pub kind: String,
    pub total: i64,
    pub failed: i64,
    pub settled: i64,
    pub progress: i64,
}

pub struct Item {
    pub n: i64,
    pub org: String,
    pub target: String,
    pub action: String,
    pub status: String,
    pub badge: &'static str,
    pub detail: String,
    pub rotation_id: String,
    pub retry: bool,
    /// It may be cancelled (behind the row's confirmation).
    pub cancel: bool,
}

/// One choice of the items' status filter: its link, how many items it
/// holds, and whether it is the one shown.
pub struct Filter {
    pub label: &'static str,
    pub count: i64,
    pub href: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "incident.html")]
pub struct ShowPage {
    pub chrome: Chrome,
    pub v: IncidentView,
    pub badge: &'static str,
    /// One page of the progress per org and kind, worst first.
    pub groups: Vec<Group>,
    pub groups_pager: page::Pager,
    /// The progress table's cursor; empty on its first page.
    pub groups_after: String,
    pub items: Vec<Item>,
    /// The status the items are filtered by; empty for every item.
    pub status: String,
    /// This page's cursor; empty on the first page.
    pub after: String,
    pub filters: Vec<Filter>,
    pub items_pager: page::Pager,
    pub waiting: Vec<(String, String, String)>,
    /// Items waiting on a person beyond those named in `waiting`.
    pub waiting_more: i64,
    /// The `waiting_person` filter's link.
    pub waiting_href: String,
    pub secrets: Vec<String>,
    pub running: bool,
    pub error: Option<String>,
}

/// A refusal shown on the campaign's page.
fn refused(notice: &Option<String>) -> Option<String> {
    notice
        .as_ref()
        .and_then(|n| n.strip_prefix("Refused: ").map(str::to_string))
}

/// Which of a campaign's items its page lists: a status filter and the
/// page's cursor (the last item number of the page before); and which
/// page of its progress per org and kind (`groups_after`).
#[derive(serde::Deserialize, Default, Clone)]
pub struct ItemsQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    groups_after: Option<String>,
}

impl ItemsQuery {
    fn status(&self) -> &str {
        self.status.as_deref().map(str::trim).unwrap_or("")
    }

    fn after(&self) -> Option<&str> {
        self.after.as_deref().filter(|a| !a.trim().is_empty())
    }

    fn groups_after(&self) -> Option<&str> {
        self.groups_after
            .as_deref()
            .filter(|a| !a.trim().is_empty())
    }

    /// The query string that shows this view of the items again (after an
    /// action), `&`-joined to what precedes it.
    fn again(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if !self.status().is_empty() {
            s.append_pair("status", self.status());
        }
        if let Some(a) = self.after() {
            s.append_pair("after", a);
        }
        if let Some(a) = self.groups_after() {
            s.append_pair("groups_after", a);
        }
        let qs = s.finish();
        if qs.is_empty() {
            qs
        } else {
            format!("&{qs}")
        }
    }
}

/// The statuses the items can be filtered by, in the order of a
/// campaign's life.
const FILTERS: [&str; 7] = [
    "failed",
    "waiting_person",
    "acting",
    "pending",
    "done",
    "verified",
    "cancelled",
];

/// The campaign's page: its counts over every item (aggregated by SQL),
/// one page of its progress per org and kind (worst first), and one page
/// of its items by number, filtered by `q`'s status; each list pages on
/// its own, its links keeping the other's place.
async fn show_page(
    st: &AppState,
    admin: &AdminSession,
    id: &str,
    q: &ItemsQuery,
    status: StatusCode,
    notice: Option<String>,
    secrets: Vec<String>,
) -> Response {
    let a = asker(admin);
    let sum = match incident::items::summary(&st.core, &a, id).await {
        Ok(s) => s,
        Err(e) => return page::fail(e),
    };
    let filter = q.status();
    let list = match incident::items::page(&st.core, &a, id, Some(filter), q.after(), PAGE).await {
        Ok(l) => l,
        Err(e) => return page::fail(e),
    };
    let grouped = match incident::items::groups(&st.core, &a, id, q.groups_after(), PAGE).await {
        Ok(g) => g,
        Err(e) => return page::fail(e),
    };
    let v = sum.view;
    let path = format!("/ui/incidents/{}", seg(&v.id));
    let groups_after = q.groups_after().unwrap_or_default();
    let pager = page::Pager::of(
        &list,
        &path,
        &[("status", filter), ("groups_after", groups_after)],
        q.after(),
    );
    let groups_pager = page::Pager::named(
        &grouped,
        &path,
        &[("status", filter), ("after", q.after().unwrap_or_default())],
        "groups_after",
        q.groups_after(),
    );
    let error = refused(&notice);
    let notice = if error.is_some() { None } else { notice };
    let groups = grouped
        .items
        .into_iter()
        .map(|g| Group {
            org: g.org.unwrap_or_else(|| "platform".into()),
            progress: g.progress,
            kind: g.kind,
            total: g.total,
            failed: g.failed,
            settled: g.settled,
        })
        .collect();
    let items = list
        .items
        .iter()
        .map(|i| Item {
            n: i.n,
            org: i.org.clone().unwrap_or_else(|| "platform".into()),
            target: format!("{} {}", s(&i.target["type"]), s(&i.target["name"])),
            action: i.action.clone(),
            badge: page::badge(&i.status),
            status: i.status.clone(),
            detail: i.detail.clone().unwrap_or_default(),
            rotation_id: i.rotation_id.clone().unwrap_or_default(),
            // (a cancelled campaign is not retried; a completed one is
            // reopened by a retry)
            retry: i.status == "failed" || (i.status == "cancelled" && v.status != "cancelled"),
            cancel: v.status == "running"
                && (matches!(i.status.as_str(), "pending" | "waiting_person" | "failed")
                    || (i.status == "acting" && i.rotation_id.is_some())),
        })
        .collect();
    // A filter's link starts its items afresh and keeps the progress
    // table's page.
    let link = |status: &str| {
        let mut qs = form_urlencoded::Serializer::new(String::new());
        if !status.is_empty() {
            qs.append_pair("status", status);
        }
        if !groups_after.is_empty() {
            qs.append_pair("groups_after", groups_after);
        }
        match qs.finish() {
            qs if qs.is_empty() => path.clone(),
            qs => format!("{path}?{qs}"),
        }
    };
    let count = |status: &str| v.counts[status].as_i64().unwrap_or(0);
    let mut filters = vec![Filter {
        label: "all",
        count: i64::try_from(v.total).unwrap_or(i64::MAX),
        href: link(""),
        current: filter.is_empty(),
    }];
    // A status no item is in is no choice, unless it is the one shown.
    filters.extend(
        FILTERS
            .iter()
            .filter(|f| count(f) > 0 || **f == filter)
            .map(|f| Filter {
                label: f,
                count: count(f),
                href: link(f),
                current: *f == filter,
            }),
    );
    let waiting: Vec<(String, String, String)> = v
        .waiting
        .iter()
        .map(|w| {
            (
                format!("{} {}", s(&w["target"]["type"]), s(&w["target"]["name"])),
                s(&w["who"]),
                s(&w["what"]),
            )
        })
        .collect();
    let waiting_more = count("waiting_person")
        .saturating_sub(i64::try_from(waiting.len()).unwrap_or(0))
        .max(0);
    page::render(
        status,
        &ShowPage {
            chrome: Chrome::of(admin, format!("Incident {}", v.id), "incidents", None)
                .notice(notice),
            badge: page::badge(&v.status),
            running: v.status == "running",
            error,
            groups,
            groups_pager,
            groups_after: groups_after.to_string(),
            items,
            status: filter.to_string(),
            after: q.after().unwrap_or("").to_string(),
            filters,
            items_pager: pager,
            waiting,
            waiting_more,
            waiting_href: link("waiting_person"),
            secrets,
            v,
        },
    )
}

#[derive(serde::Deserialize)]
pub struct ShowQuery {
    notice: Option<String>,
    #[serde(flatten)]
    items: ItemsQuery,
}

pub async fn show(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    let notice = match q.notice.as_deref() {
        Some("cancelled") => Some("Campaign cancelled.".to_string()),
        Some("item_cancelled") => {
            Some("Item cancelled: it will not run (Retry starts it again).".to_string())
        }
        Some("retried") => {
            Some("Retrying: a fresh rotation starts for each failed item.".to_string())
        }
        _ => None,
    };
    show_page(&st, &admin, &id, &q.items, StatusCode::OK, notice, vec![]).await
}

pub async fn confirm_cancel(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    if action != "cancel" {
        return page::error(
            StatusCode::NOT_FOUND,
            "There is no such page of a campaign.",
        );
    }
    // Counted, not listed: the question needs the counts only.
    let v = match incident::items::summary(&st.core, &asker(&admin), &id).await {
        Ok(s) => s.view,
        Err(e) => return page::fail(e),
    };
    let back = format!("/ui/incidents/{}", seg(&v.id));
    page::ok(&Confirm {
        chrome: Chrome::of(&admin, "Confirm", "incidents", None),
        heading: format!("Cancel campaign {}?", v.id),
        lines: vec![
            format!("{} of {} items are settled. Items not yet started are dropped; rotations already running finish their current step and stop where a rotation can stop (before promotion it is undone; after it, the rotation must be finished).", v.counts["verified"].as_u64().unwrap_or(0) + v.counts["failed"].as_u64().unwrap_or(0), v.total),
        ],
        action: format!("{back}/cancel"),
        button: "Cancel campaign".into(),
        danger: true,
        back,
        inputs: vec![],
        hidden: vec![],
    })
}

pub async fn act(
    State(st): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    p: Posted<HashMap<String, String>>,
) -> Response {
    let a = asker(&p.ui);
    let actor = p.ui.actor();
    let back = format!("/ui/incidents/{}", seg(&id));
    // The view of the items the form was posted from, shown again.
    let view = ItemsQuery {
        status: p.form.get("status").cloned(),
        after: p.form.get("after").cloned(),
        groups_after: p.form.get("groups_after").cloned(),
    };
    let r = match action.as_str() {
        "cancel" => match p.form.get("item").and_then(|n| n.parse::<i64>().ok()) {
            Some(n) => incident::cancel_item(&st.core, &actor, &a, &id, n)
                .await
                .map(|_| "item_cancelled"),
            None => incident::cancel(&st.core, &actor, &a, &id)
                .await
                .map(|_| "cancelled"),
        },
        "retry" => {
            let item = p.form.get("item").and_then(|n| n.parse::<i64>().ok());
            incident::retry(&st.core, &actor, &a, &id, item)
                .await
                .map(|_| "retried")
        }
        _ => return page::no_such_action("a campaign"),
    };
    match r {
        Ok(code) => page::see_other(&format!("{back}?notice={code}{}", view.again())),
        Err(e) => {
            let e = ApiError::from(e);
            if incident::items::summary(&st.core, &a, &id).await.is_err() {
                return page::error(e.status, &e.message);
            }
            show_page(
                &st,
                &p.ui,
                &id,
                &view,
                e.status,
                Some(format!("Refused: {}", e.message)),
                vec![],
            )
            .await
        }
    }
}

#[derive(serde::Deserialize)]
pub struct ReportQuery {
    format: Option<String>,
}

/// `GET /ui/incidents/{id}/report?format=md|csv|json`: the report as a
/// download.
pub async fn report(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path(id): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let name = q.format.unwrap_or_else(|| "md".into());
    let f: incident::Format = match name.parse() {
        Ok(f) => f,
        Err(e) => return page::fail(e),
    };
    let text = match incident::report(&st.core, &asker(&admin), &id, f).await {
        Ok(t) => t,
        Err(e) => return page::fail(e),
    };
    let (ctype, ext) = match f {
        incident::Format::Json => ("application/json", "json"),
        incident::Format::Csv => ("text/csv; charset=utf-8", "csv"),
        incident::Format::Md => ("text/markdown; charset=utf-8", "md"),
    };
    let mut r = text.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"incident-{}.{ext}\"",
        id.chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
