//! Credential age in the console: the one view over every credential of an
//! org (`/ui/orgs/{org}/age`) or, for the operator, of every org and the
//! platform's own (`/ui/age`), worst first, paged by keyset with the exact
//! total (`rotation::age::paged`, the order of the view
//! `/api/v1/orgs/{org}/credentials/age` answers), with a small chart drawn
//! on the server as SVG (no script): one bar per credential, its age, a
//! tick at its schedule, red past due. The table beside it carries the
//! same facts, for those who do not see the chart.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::page::{self, fail, human_s, seg, Chrome};
use super::Ui;
use crate::api::apps::org_for;
use crate::api::extract::AdminSession;
use crate::api::AppState;
use crate::identity::orgs::Org;
use crate::rotation::age::{paged, AgeRow};
use crate::store::keyset::PAGE;

/// "Due soon": within a week of the schedule, or within a quarter of a
/// shorter schedule (an hourly one is not always "due soon").
const SOON_S: i64 = 7 * 86_400;

// The chart's geometry, in SVG user units.
const WIDTH: i64 = 760;
const LABEL_W: i64 = 250;
const BAR_X: i64 = 260;
const BAR_W: i64 = 380;
const ROW_H: i64 = 24;
const TOP: i64 = 34;

/// One credential in the table.
pub struct Line {
    pub kind: String,
    pub name: String,
    pub href: String,
    pub org: String,
    pub detail: String,
    pub age: String,
    pub since: String,
    pub schedule: String,
    pub next_due: String,
    pub state: &'static str,
    pub badge: &'static str,
    pub last_used: String,
    pub last_verified: String,
    pub rotation: String,
}

/// One bar of the chart.
pub struct Bar {
    /// The baseline of its label and the top of its bar.
    pub text_y: i64,
    pub bar_y: i64,
    pub label: String,
    pub width: i64,
    /// Where the schedule falls on the bar's scale.
    pub tick: Option<i64>,
    pub tick_y1: i64,
    pub tick_y2: i64,
    pub fill: &'static str,
    pub figure: String,
    pub title: String,
}

pub struct Chart {
    pub height: i64,
    pub bars: Vec<Bar>,
    pub summary: String,
    pub scale: String,
}

#[derive(Template)]
#[template(path = "age.html")]
pub struct AgePage {
    pub chrome: Chrome,
    /// Empty on the operator's page.
    pub org: String,
    pub lines: Vec<Line>,
    pub chart: Chart,
    pub total: i64,
    pub due: i64,
    pub pager: page::Pager,
    pub bar_x: i64,
    pub width: i64,
    pub label_x: i64,
    pub figure_x: i64,
}

fn short(kind: &str) -> &str {
    match kind {
        "connection" => "connection",
        "access_key" => "access key",
        "m2m_secret" => "machine client",
        "app_secret" => "application",
        "provider_client" => "provider client",
        "master_key" => "master key",
        other => other,
    }
}

/// Where a credential is managed in the console.
fn href(r: &AgeRow) -> String {
    let Some(org) = &r.org else {
        return String::new();
    };
    let org = seg(org);
    match r.kind.as_str() {
        "connection" => format!("/ui/orgs/{org}/connections/{}", seg(&r.name)),
        "app_secret" => format!("/ui/orgs/{org}/apps/{}", seg(&r.name)),
        "access_key" => format!("/ui/orgs/{org}/keys#keys"),
        "m2m_secret" => format!("/ui/orgs/{org}/keys#m2m"),
        _ => String::new(),
    }
}

/// Past due, due within a week, on schedule, or with no schedule.
fn state(r: &AgeRow) -> (&'static str, &'static str, &'static str) {
    match r.rotation_interval_s {
        None => ("no schedule", "neutral", "#4f5863"),
        Some(_) if r.due => ("past due", "bad", "#a3161b"),
        Some(i) if i.saturating_sub(r.age_s) <= SOON_S.min(i / 4) => {
            ("due soon", "warn", "#7a4b00")
        }
        Some(_) => ("on schedule", "ok", "#136c2e"),
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Scales `v` of `max` onto the bar width (no overflow on huge ages).
fn scale(v: i64, max: i64) -> i64 {
    let w = (v.max(0) as i128 * BAR_W as i128) / (max.max(1) as i128);
    i64::try_from(w).unwrap_or(BAR_W).clamp(0, BAR_W)
}

fn chart(rows: &[AgeRow], operator: bool) -> Chart {
    let max = rows
        .iter()
        .map(|r| r.age_s.max(r.rotation_interval_s.unwrap_or(0)))
        .max()
        .unwrap_or(1)
        .max(1);
    let bars: Vec<Bar> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let i = i64::try_from(i).unwrap_or(0);
            let (st, _, fill) = state(r);
            let y = TOP + i * ROW_H;
            let who = match (&r.org, operator) {
                (Some(o), true) => format!("{o}/{}", r.name),
                (None, true) => format!("platform/{}", r.name),
                _ => r.name.clone(),
            };
            let figure = match r.rotation_interval_s {
                Some(iv) => format!("{} / {}", human_s(r.age_s), human_s(iv)),
                None => human_s(r.age_s),
            };
            Bar {
                text_y: y + 15,
                bar_y: y + 4,
                label: clip(&format!("{} {who}", short(&r.kind)), 34),
                width: scale(r.age_s, max).max(1),
                tick: r.rotation_interval_s.map(|iv| BAR_X + scale(iv, max)),
                tick_y1: y + 1,
                tick_y2: y + ROW_H - 3,
                fill,
                figure,
                title: format!(
                    "{} {who}: {} old; {}",
                    short(&r.kind),
                    human_s(r.age_s),
                    match (&r.rotation_interval_s, &r.next_due_at) {
                        (Some(iv), Some(due)) => format!("schedule {}, {st} ({due})", human_s(*iv)),
                        _ => "no schedule".into(),
                    }
                ),
            }
        })
        .collect();
    let due = rows.iter().filter(|r| r.due).count();
    Chart {
        height: TOP + i64::try_from(bars.len()).unwrap_or(0) * ROW_H + 8,
        summary: format!(
            "{} credentials on this page, worst first; {due} past due.",
            rows.len()
        ),
        scale: format!("bar: age, 0 to {}", human_s(max)),
        bars,
    }
}

#[derive(Deserialize)]
pub struct Q {
    /// The list's page cursor (`next` of the page before).
    after: Option<String>,
}

async fn render(st: &AppState, admin: &AdminSession, org: Option<&Org>, q: &Q) -> Response {
    let after = q.after.as_deref();
    let list = match paged::page(&st.core, org.map(|o| o.id.as_str()), None, after, PAGE).await {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let operator = org.is_none();
    let (path, title, nav) = match org {
        Some(o) => (
            format!("/ui/orgs/{}/age", seg(&o.slug)),
            "Credential age",
            "age",
        ),
        None => (
            "/ui/age".to_string(),
            "Credential age (every org)",
            "age-all",
        ),
    };
    let pager = page::Pager::of(&list.page, &path, &[], after);
    let shown = list.page.items;
    let lines = shown
        .iter()
        .map(|r| {
            let (st, badge, _) = state(r);
            Line {
                kind: short(&r.kind).to_string(),
                name: r.name.clone(),
                href: href(r),
                org: r.org.clone().unwrap_or_else(|| "platform".into()),
                detail: r.detail.clone(),
                age: human_s(r.age_s),
                since: r.since.clone(),
                schedule: r
                    .rotation_interval_s
                    .map(human_s)
                    .unwrap_or_else(|| "none".into()),
                next_due: r.next_due_at.clone().unwrap_or_default(),
                state: st,
                badge,
                last_used: r.last_used_at.clone().unwrap_or_else(|| "—".into()),
                last_verified: r.last_verified_at.clone().unwrap_or_else(|| "—".into()),
                rotation: r.rotation.clone(),
            }
        })
        .collect();
    page::ok(&AgePage {
        chrome: Chrome::of(admin, title, nav, org.map(|o| o.slug.as_str())),
        org: org.map(|o| o.slug.clone()).unwrap_or_default(),
        chart: chart(&shown, operator),
        lines,
        total: list.page.total,
        due: list.due,
        pager,
        bar_x: BAR_X,
        width: WIDTH,
        label_x: LABEL_W,
        figure_x: BAR_X + BAR_W + 8,
    })
}

/// `GET /ui/orgs/{org}/age`.
pub async fn org_page(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path(org): Path<String>,
    Query(q): Query<Q>,
) -> Response {
    match org_for(&st, &admin, &org).await {
        Ok(o) => render(&st, &admin, Some(&o), &q).await,
        Err(e) => fail(e),
    }
}

/// `GET /ui/age`: the operator's, every org's and the platform's own.
pub async fn all_page(State(st): State<AppState>, Ui(admin): Ui, Query(q): Query<Q>) -> Response {
    if !admin.session.principal.is_operator() {
        return page::error(
            StatusCode::FORBIDDEN,
            "Only the platform operator sees every org's credentials; your org's are under Credential age.",
        );
    }
    render(&st, &admin, None, &q).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_without_overflow() {
        assert_eq!(scale(0, 100), 0);
        assert_eq!(scale(50, 100), BAR_W / 2);
        assert_eq!(scale(i64::MAX, i64::MAX), BAR_W);
        assert_eq!(scale(10, 0), BAR_W);
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}
