//! Rotations in the console: the list, and a rotation's page with each
//! step (its time and detail), a runbook's steps with a done box each, the
//! cut-over's consumers (who read which version, from where, when), and
//! cancel / retry / finish (`now` behind a page that names who breaks).
//! What an org admin sees of the platform's own readers is redacted as in
//! the admin API (`api::rotations::seen_by`).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::connections::Confirm;
use super::page::{self, seg, Chrome};
use super::{Posted, Ui};
use crate::api::apps::org_for;
use crate::api::extract::AdminSession;
use crate::api::rotations::seen_by;
use crate::api::{ApiError, AppState};
use crate::identity::orgs::Org;
use crate::rotation::{self, Started};
use crate::store::keyset::PAGE;

fn notice(code: Option<&str>) -> Option<String> {
    Some(
        match code? {
            "started" => "Rotation started. This page follows its steps.",
            "cancelled" => "Rotation cancelled.",
            "retried" => "Retrying.",
            "finished" => "Cut-over finished.",
            "step" => "Runbook step marked done.",
            _ => return None,
        }
        .to_string(),
    )
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub struct Line {
    pub org: String,
    pub id: String,
    pub target: String,
    pub status: String,
    pub badge: &'static str,
    pub progress: u8,
    pub started_at: String,
    pub finished_at: String,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "rotations.html")]
pub struct ListPage {
    pub chrome: Chrome,
    /// Empty on the operator's queue across orgs.
    pub org: String,
    pub status: String,
    pub lines: Vec<Line>,
    pub pager: page::Pager,
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    notice: Option<String>,
    /// The list's page cursor (`next` of the page before).
    after: Option<String>,
}

pub async fn list(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path(org): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let o = match org_for(&st, &admin, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    let status = q.status.filter(|s| !s.is_empty());
    let after = q.after.as_deref();
    let rows = match rotation::page(&st.core, &o.id, status.as_deref(), after, PAGE).await {
        Ok(r) => r,
        Err(e) => return page::fail(e),
    };
    let pager = page::Pager::of(
        &rows,
        &format!("/ui/orgs/{}/rotations", seg(&o.slug)),
        &[("status", status.as_deref().unwrap_or_default())],
        after,
    );
    let lines = rows
        .items
        .iter()
        .map(|r| {
            let v = r.view();
            Line {
                org: o.slug.clone(),
                id: r.id.clone(),
                target: format!("{} {}", r.target_type, r.target_name),
                badge: page::badge(&r.status),
                status: r.status.clone(),
                progress: v.progress,
                started_at: v.started_at,
                finished_at: v.finished_at.unwrap_or_default(),
                reason: r.reason.clone().unwrap_or_default(),
            }
        })
        .collect();
    page::ok(&ListPage {
        chrome: Chrome::of(&admin, "Rotations", "rotations", Some(&o.slug))
            .notice(notice(q.notice.as_deref())),
        org: o.slug,
        status: status.unwrap_or_default(),
        lines,
        pager,
    })
}

pub struct Step {
    pub name: String,
    pub status: String,
    pub badge: &'static str,
    pub at: String,
    pub detail: String,
}

pub struct BookStep {
    pub n: u64,
    pub text: String,
    pub done: bool,
}

/// A copy of an older version a reader may still use from its cache.
pub struct Cached {
    pub who: String,
    pub version: String,
    pub until_at: String,
}

pub struct Consumer {
    pub reader: String,
    pub ip: String,
    pub version: String,
    pub last_read_at: String,
    /// Until when it may keep the version it has from its cache; empty
    /// when it holds none.
    pub cached_until_at: String,
    pub on_current: bool,
}

#[derive(Template)]
#[template(path = "rotation.html")]
pub struct ShowPage {
    pub chrome: Chrome,
    pub org: String,
    pub id: String,
    pub target: String,
    pub target_href: String,
    pub status: String,
    pub badge: &'static str,
    pub reason: String,
    pub progress: u8,
    pub steps: Vec<Step>,
    pub runbook: Vec<BookStep>,
    pub consumers: Vec<Consumer>,
    pub cached: Vec<Cached>,
    pub authorize_url: Option<String>,
    pub facts: Vec<(&'static str, String)>,
    pub ended: bool,
    pub promoted: bool,
    pub error: Option<String>,
}

async fn show_page(
    st: &AppState,
    admin: &AdminSession,
    o: &Org,
    id: &str,
    status: StatusCode,
    notice_text: Option<String>,
    error: Option<String>,
) -> Response {
    let row = match rotation::get(
        &mut match st.core.db.read().await {
            Ok(c) => c,
            Err(e) => return page::fail(e),
        },
        &o.id,
        id,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return page::fail(e),
    };
    let v = match rotation::detailed_view(&st.core, &row).await {
        Ok(v) => v,
        Err(e) => return page::fail(e),
    };
    let v = match seen_by(st, admin, v).await {
        Ok(v) => v,
        Err(e) => return page::fail(e),
    };
    let steps: Vec<Step> = v["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| Step {
                    name: s(&x["name"]),
                    badge: page::badge(x["status"].as_str().unwrap_or("")),
                    status: s(&x["status"]),
                    at: s(&x["at"]),
                    detail: s(&x["detail"]),
                })
                .collect()
        })
        .unwrap_or_default();
    let promoted = steps
        .iter()
        .any(|x| x.name == "promote" && x.status == "done");
    let runbook = v["runbook"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| BookStep {
                    n: x["n"].as_u64().unwrap_or(0),
                    text: s(&x["text"]),
                    done: x["done"].as_bool().unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default();
    let consumers = v["consumers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| Consumer {
                    reader: s(&x["reader"]),
                    ip: s(&x["ip"]),
                    version: s(&x["version"]),
                    last_read_at: s(&x["last_read_at"]),
                    cached_until_at: s(&x["cached_until_at"]),
                    on_current: x["on_current"].as_bool().unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default();
    let cached = v["cached"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| Cached {
                    who: match x["consumer"].as_str() {
                        Some(c) => format!("{} (consumer {c})", s(&x["reader"])),
                        None => s(&x["reader"]),
                    },
                    version: s(&x["version"]),
                    until_at: s(&x["until_at"]),
                })
                .collect()
        })
        .unwrap_or_default();
    let target_href = match row.target_type.as_str() {
        "connection" => format!(
            "/ui/orgs/{}/connections/{}",
            seg(&o.slug),
            seg(&row.target_name)
        ),
        "app" => format!("/ui/orgs/{}/apps/{}", seg(&o.slug), seg(&row.target_name)),
        _ => format!("/ui/orgs/{}/age", seg(&o.slug)),
    };
    let facts = vec![
        (
            "Started",
            format!("{} by {}", s(&v["started_at"]), s(&v["started_by"])),
        ),
        ("Finished", s(&v["finished_at"])),
        (
            "Cut-over window",
            page::human_s(v["cutover_window_s"].as_i64().unwrap_or(0)),
        ),
        ("Deadline", s(&v["deadline_at"])),
    ];
    page::render(
        status,
        &ShowPage {
            chrome: Chrome::of(
                admin,
                format!("Rotation {}", row.id),
                "rotations",
                Some(&o.slug),
            )
            .notice(notice_text),
            org: o.slug.clone(),
            id: row.id.clone(),
            target: format!("{} {}", row.target_type, row.target_name),
            target_href,
            badge: page::badge(&row.status),
            status: row.status.clone(),
            reason: row.reason.clone().unwrap_or_default(),
            progress: v["progress"]
                .as_u64()
                .and_then(|p| u8::try_from(p).ok())
                .unwrap_or(0),
            steps,
            runbook,
            consumers,
            cached,
            authorize_url: v["authorize_url"].as_str().map(str::to_string),
            facts,
            ended: row.finished_at.is_some(),
            promoted,
            error,
        },
    )
}

pub async fn show(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path((org, id)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Response {
    let o = match org_for(&st, &admin, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    show_page(
        &st,
        &admin,
        &o,
        &id,
        StatusCode::OK,
        notice(q.notice.as_deref()),
        None,
    )
    .await
}

/// `GET …/finish`: who is still on the previous credential, and a button
/// for each way out (finish when they have moved; now, breaking them).
pub async fn confirm(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path((org, id, action)): Path<(String, String, String)>,
) -> Response {
    let o = match org_for(&st, &admin, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    let base = format!("/ui/orgs/{}/rotations/{}", seg(&o.slug), seg(&id));
    let row = match rotation::get(
        &mut match st.core.db.read().await {
            Ok(c) => c,
            Err(e) => return page::fail(e),
        },
        &o.id,
        &id,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return page::fail(e),
    };
    let (heading, button, hidden, lines) = match action.as_str() {
        "finish" => {
            let v = match rotation::detailed_view(&st.core, &row).await {
                Ok(v) => v,
                Err(e) => return page::fail(e),
            };
            let v = match seen_by(&st, &admin, v).await {
                Ok(v) => v,
                Err(e) => return page::fail(e),
            };
            let breaks: Vec<String> = v["not_moved"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            let ip = x["ip"].as_str().map(|i| format!(" from {i}")).unwrap_or_default();
                            format!("{}{ip}, last read {}", s(&x["reader"]), s(&x["last_read_at"]))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut lines = vec![
                "Finishing now retires the previous credential at once, whoever still uses it.".to_string(),
            ];
            if breaks.is_empty() {
                lines.push("Nobody rekey knows of still reads the previous credential.".into());
            } else {
                lines.push("These readers have not moved to the new credential and will break:".into());
                lines.extend(breaks);
            }
            (
                format!("Finish rotation {id} now?"),
                "Finish now — retire the previous credential".to_string(),
                vec![("now".to_string(), "true".to_string())],
                lines,
            )
        }
        "cancel" => (
            format!("Cancel rotation {id}?"),
            "Cancel rotation".to_string(),
            vec![],
            vec!["Before the new credential is promoted, its change at the target is undone and the pending credential discarded. After promotion a rotation cannot be cancelled: finish it instead.".to_string()],
        ),
        _ => return page::no_such_action("a rotation"),
    };
    page::ok(&Confirm {
        chrome: Chrome::of(&admin, "Confirm", "rotations", Some(&o.slug)),
        heading,
        lines,
        action: format!("{base}/{action}"),
        button,
        danger: true,
        back: base,
        inputs: vec![],
        hidden,
    })
}

pub async fn act(
    State(st): State<AppState>,
    Path((org, id, action)): Path<(String, String, String)>,
    p: Posted<HashMap<String, String>>,
) -> Response {
    let o = match org_for(&st, &p.ui, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    let actor = p.ui.actor();
    let base = format!("/ui/orgs/{}/rotations/{}", seg(&o.slug), seg(&id));
    let result: Result<String, ApiError> = match action.as_str() {
        "cancel" => rotation::cancel(&st.core, &actor, &o.id, &id)
            .await
            .map(|_| format!("{base}?notice=cancelled"))
            .map_err(Into::into),
        "finish" => {
            let now = p.form.get("now").is_some_and(|v| v == "true");
            rotation::finish_cutover(&st.core, &actor, &o.id, &id, now)
                .await
                .map(|_| format!("{base}?notice=finished"))
                .map_err(Into::into)
        }
        "retry" => match rotation::retry(&st.core, &actor, &o.id, &id).await {
            Ok(Started::Rotation(v)) => Ok(format!(
                "/ui/orgs/{}/rotations/{}?notice=retried",
                seg(&o.slug),
                seg(&v.id)
            )),
            Ok(Started::Plan(_)) => Ok(format!("{base}?notice=retried")),
            Err(e) => Err(e.into()),
        },
        "step" => {
            let n = p.form.get("done").and_then(|n| n.parse::<u64>().ok());
            match n {
                None => Err(ApiError::bad_request("name the step that is done")),
                Some(n) => rotation::runbook_step(&st.core, &actor, &o.id, &id, n)
                    .await
                    .map(|_| format!("{base}?notice=step"))
                    .map_err(Into::into),
            }
        }
        _ => return page::no_such_action("a rotation"),
    };
    match result {
        Ok(to) => page::see_other(&to),
        Err(e) => show_page(&st, &p.ui, &o, &id, e.status, None, Some(e.message)).await,
    }
}

/// `GET /ui/rotations`: the operator's rotation queue across orgs, paged
/// by keyset (`rotation::queue`: unfinished first, oldest first, then the
/// finished, newest first).
pub async fn queue(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Query(q): Query<ListQuery>,
) -> Response {
    if !admin.session.principal.is_operator() {
        return page::error(
            StatusCode::FORBIDDEN,
            "Only the platform operator sees every org's rotations.",
        );
    }
    let after = q.after.as_deref();
    let rows = match rotation::queue(&st.core, after, PAGE).await {
        Ok(r) => r,
        Err(e) => return page::fail(e),
    };
    let ids: Vec<&str> = rows.items.iter().map(|r| r.org_id.as_str()).collect();
    let slugs = match crate::identity::orgs::slugs(&st.core.db, &ids).await {
        Ok(s) => s,
        Err(e) => return page::fail(e),
    };
    let pager = page::Pager::of(&rows, "/ui/rotations", &[], after);
    let lines = rows
        .items
        .iter()
        .map(|r| {
            let v = r.view();
            Line {
                org: slugs.get(&r.org_id).cloned().unwrap_or_default(),
                id: r.id.clone(),
                target: format!("{} {}", r.target_type, r.target_name),
                badge: page::badge(&r.status),
                status: r.status.clone(),
                progress: v.progress,
                started_at: v.started_at,
                finished_at: v.finished_at.unwrap_or_default(),
                reason: r.reason.clone().unwrap_or_default(),
            }
        })
        .collect();
    page::ok(&ListPage {
        chrome: Chrome::of(&admin, "Rotation queue", "queue", None),
        org: String::new(),
        status: String::new(),
        lines,
        pager,
    })
}
