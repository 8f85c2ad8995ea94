//! Deliveries in the console: the Delivery section of a connection's page
//! (state, cursor, lag, the last error, a parked batch to retry, the last
//! catch-up, filter and batch, pause / resume / disable) with its Backfill
//! form (a dry run counts first) and the backfill's live progress; and the
//! org's list of deliveries. Every action calls the function its admin API
//! twin (`api::deliveries`) calls, so both are audited alike.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::connections::{self as pages, Confirm, Said};
use super::page::{self, seg, Chrome, Reveal};
use super::{Posted, Ui};
use crate::api::apps::org_for;
use crate::api::deliveries::window;
use crate::api::{ApiError, AppState};
use crate::connectors::connections::{self, Connection};
use crate::store::keyset::PAGE;
use crate::sync::delivery::{self, BackfillProgress, Status};
use crate::sync::{backfill, target, Event, State as DeliveryState, DEFAULT_BATCH, MAX_BATCH};

/// A backfill as the page shows it.
pub struct Progress {
    pub state: String,
    pub badge: &'static str,
    pub done: i64,
    pub total: i64,
    pub percent: u8,
    pub rate: String,
    pub eta: String,
    pub window: String,
    pub running: bool,
    pub last_error: Option<String>,
    pub finished_at: String,
}

impl Progress {
    fn of(b: &BackfillProgress) -> Progress {
        let percent = if b.total <= 0 {
            100
        } else {
            u8::try_from(b.done.clamp(0, b.total).saturating_mul(100) / b.total).unwrap_or(100)
        };
        Progress {
            badge: match b.state.as_str() {
                backfill::RUNNING => "warn",
                backfill::DONE => "ok",
                _ => page::badge(&b.state),
            },
            state: b.state.clone(),
            done: b.done,
            total: b.total,
            percent,
            rate: format!("{:.1}", b.records_per_s),
            eta: b
                .eta_s
                .map(page::human_s)
                .unwrap_or_else(|| "not known yet".into()),
            window: format!("sequences {} to {}", b.from_seq.saturating_add(1), b.to_seq),
            running: b.state == backfill::RUNNING,
            last_error: b.last_error.clone(),
            finished_at: b.finished_at.map(crate::clock::rfc3339).unwrap_or_default(),
        }
    }
}

/// An enabled delivery as its section shows it.
pub struct View {
    pub state: String,
    pub badge: &'static str,
    /// What the state means, in words.
    pub meaning: &'static str,
    pub paused_auth: bool,
    pub paused_by_user: bool,
    pub facts: Vec<(&'static str, String)>,
    pub last_error: Option<String>,
    /// (sequences, the receiver's message).
    pub parked: Option<(String, String)>,
    /// The outbox would have compacted past this delivery's cursor.
    pub behind: Option<String>,
    pub backfill: Option<Progress>,
    /// The live region refreshes itself while something moves.
    pub live: bool,
    pub filter: String,
    pub batch: i64,
}

/// The Delivery section of a connection that can receive.
pub struct Section {
    pub delivery: Option<View>,
    pub default_batch: i64,
    pub max_batch: i64,
}

fn meaning(s: DeliveryState) -> &'static str {
    match s {
        DeliveryState::Running => "sending what has been written since the last delivery",
        DeliveryState::PausedAuth => "waiting for re-authorization",
        DeliveryState::PausedError => {
            "paused after a failure; retried with backoff, or now with Retry"
        }
        DeliveryState::PausedByUser => "paused by a person; records wait until it is resumed",
        DeliveryState::Backfilling => "a backfill runs; live delivery waits for it",
        DeliveryState::CaughtUp => "everything written so far is delivered",
    }
}

fn at(ms: Option<i64>) -> String {
    ms.map(crate::clock::rfc3339)
        .unwrap_or_else(|| "never".into())
}

fn view(s: &Status) -> View {
    let lag = if s.lag.records == 0 {
        "none".to_string()
    } else {
        format!(
            "{} records, the oldest waiting {}",
            s.lag.records,
            page::human_s(s.lag.seconds)
        )
    };
    let mut facts = vec![
        (
            "Last delivered",
            format!(
                "sequence {} of {} (the outbox's head)",
                s.last_delivered_seq, s.head_seq
            ),
        ),
        ("Lag", lag),
        (
            "Delivered",
            format!(
                "{} records, last at {}",
                s.delivered,
                at(s.last_delivered_at)
            ),
        ),
    ];
    if let Some(p) = s.paused_at {
        facts.push(("Paused since", crate::clock::rfc3339(p)));
    }
    if let Some(c) = &s.last_catch_up {
        facts.push((
            "Last catch-up",
            format!(
                "{} records after {} paused",
                c.records,
                page::human_s(c.paused_s)
            ),
        ));
    }
    facts.push((
        "Filter",
        if s.filter_domains.is_empty() {
            "every record".into()
        } else {
            format!("emails at {}", s.filter_domains.join(", "))
        },
    ));
    facts.push(("Batch", format!("{} records", s.batch)));
    facts.push(("Enabled", crate::clock::rfc3339(s.created_at)));
    let backfill = s.backfill.as_ref().map(Progress::of);
    let moving = matches!(s.state, DeliveryState::Running | DeliveryState::Backfilling)
        || backfill.as_ref().is_some_and(|b| b.running);
    View {
        state: s.state.as_str().to_string(),
        badge: page::badge(s.state.as_str()),
        meaning: meaning(s.state),
        paused_auth: s.state == DeliveryState::PausedAuth,
        paused_by_user: s.state == DeliveryState::PausedByUser,
        facts,
        last_error: s
            .last_error
            .as_ref()
            .filter(|_| s.parked.is_none())
            .map(|e| format!("{e} ({})", at(s.last_error_at))),
        parked: s.parked.as_ref().map(|p| {
            (
                format!("sequences {} to {}", p.from_seq, p.to_seq),
                p.message.clone(),
            )
        }),
        behind: s.retention.behind.then(|| {
            format!(
                "Its oldest undelivered record is older than the outbox's retention ({}): this delivery holds the outbox back. A full backfill would send {} records.",
                page::human_s(s.retention.retention_s),
                s.retention.full_backfill_records
            )
        }),
        backfill,
        live: moving,
        filter: s.filter_domains.join("\n"),
        batch: s.batch,
    }
}

/// The Delivery section of `c`'s page; `None` for a kind that cannot
/// receive records.
pub async fn section(st: &AppState, c: &Connection) -> Result<Option<Section>, ApiError> {
    if !target::can_receive(&c.kind) {
        return Ok(None);
    }
    let mut r = st.core.db.read().await.map_err(ApiError::from)?;
    let d = delivery::by_connection(&mut r, &c.id).await?;
    drop(r);
    let delivery = match d {
        Some(d) => Some(view(&delivery::status_of(&st.core, c, &d.id).await?)),
        None => None,
    };
    Ok(Some(Section {
        delivery,
        default_batch: DEFAULT_BATCH,
        max_batch: MAX_BATCH,
    }))
}

/// Filter domains as typed: one per line or separated by commas or spaces.
fn domains(form: &HashMap<String, String>) -> Vec<String> {
    form.get("filter_domains")
        .map(|v| {
            v.split(|ch: char| ch == ',' || ch.is_whitespace())
                .filter(|d| !d.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// An optional whole-number field; empty is `None`.
fn number(form: &HashMap<String, String>, key: &str, label: &str) -> Result<Option<i64>, ApiError> {
    match form.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{label} must be a whole number"))),
    }
}

fn text<'a>(form: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    form.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// `POST …/connections/{conn}/delivery/{action}`.
pub async fn act(
    State(st): State<AppState>,
    Path((org, conn, action)): Path<(String, String, String)>,
    p: Posted<HashMap<String, String>>,
) -> Response {
    let o = match org_for(&st, &p.ui, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    let c = match connections::find_in(&st.core.db, &o.id, &conn).await {
        Ok(c) => c,
        Err(e) => return page::fail(e),
    };
    let actor = p.ui.actor();
    let base = format!("/ui/orgs/{}/connections/{}", seg(&o.slug), seg(&c.name));
    let done = |code: &str| page::see_other(&format!("{base}?notice={code}#delivery"));
    let shown = |e: ApiError| {
        let (st, ui, o, c) = (st.clone(), p.ui.clone(), o.clone(), c.clone());
        async move { pages::show_page(&st, &ui, &o, &c, e.status, Said::error(e.message)).await }
    };
    let f = &p.form;
    match action.as_str() {
        "enable" => {
            let batch = match number(f, "batch", "Batch") {
                Ok(b) => b,
                Err(e) => return shown(e).await,
            };
            match delivery::enable(&st.core, &o.id, &c.name, &domains(f), batch, &actor).await {
                // A signing secret is shown on this answer, once.
                Ok(delivery::Enabled {
                    signing_secret: Some(secret),
                    ..
                }) => {
                    let said = Said {
                        notice: Some("Delivery enabled. It starts at the outbox's head: what was written before is a backfill.".into()),
                        error: None,
                        shown: Some(Reveal {
                            heading: "The delivery's signing secret".into(),
                            note: "Shown once: give it to the receiver now, which checks X-Rekey-Signature with it. rekey keeps it sealed and never shows it again.".into(),
                            fields: vec![("Signing secret".into(), secret)],
                        }),
                    };
                    pages::show_page(&st, &p.ui, &o, &c, StatusCode::CREATED, said).await
                }
                Ok(e) if e.created => done("delivery-enabled"),
                Ok(_) => done("delivery-updated"),
                Err(e) => shown(e.into()).await,
            }
        }
        "pause" | "resume" => {
            let event = if action == "pause" {
                Event::Pause
            } else {
                Event::Resume
            };
            match delivery::person(&st.core, &o.id, &c.name, event, &actor).await {
                Ok(_) if event == Event::Pause => done("delivery-paused"),
                Ok(_) => done("delivery-resumed"),
                Err(e) => shown(e.into()).await,
            }
        }
        "disable" => match delivery::disable(&st.core, &o.id, &c.name, &actor).await {
            Ok(()) => done("delivery-disabled"),
            Err(e) => shown(e.into()).await,
        },
        "backfill" => {
            let from = number(f, "from_seq", "From sequence")
                .and_then(|seq| window(text(f, "since"), seq, st.core.now()));
            let from = match from {
                Ok(w) => w,
                Err(e) => return shown(e).await,
            };
            let dry_run = f.get("dry_run").is_some_and(|v| v == "true");
            match backfill::start(&st.core, &o.id, &c.name, from, dry_run, &actor).await {
                Ok(s) if s.dry_run => {
                    let mut hidden = Vec::new();
                    for key in ["since", "from_seq"] {
                        if let Some(v) = text(f, key) {
                            hidden.push((key.to_string(), v.to_string()));
                        }
                    }
                    let lines = vec![
                        "Dry run — nothing has been sent or written.".to_string(),
                        format!(
                            "A backfill would send {} records (sequences {} to {}) that pass the delivery's filter, to {}.",
                            s.total, s.from_seq, s.to_seq, c.name
                        ),
                        "Live delivery waits while it runs and resumes after it; the target applies each record only once.".to_string(),
                    ];
                    page::ok(&Confirm {
                        chrome: Chrome::of(&p.ui, "Backfill", "connections", Some(&o.slug)),
                        heading: format!("Backfill {}?", c.name),
                        lines,
                        action: format!("{base}/delivery/backfill"),
                        button: if s.total > 0 {
                            "Start backfill".into()
                        } else {
                            String::new()
                        },
                        danger: false,
                        back: format!("{base}#delivery"),
                        inputs: Vec::new(),
                        hidden,
                    })
                }
                Ok(_) => done("backfill-started"),
                Err(e) => shown(e.into()).await,
            }
        }
        "cancel-backfill" => match backfill::cancel(&st.core, &o.id, &c.name, &actor).await {
            Ok(_) => done("backfill-cancelled"),
            Err(e) => shown(e.into()).await,
        },
        _ => page::no_such_action("a delivery"),
    }
}

/// `GET …/connections/{conn}/delivery/{action}`: the page that asks before
/// disabling; the other actions are forms on the connection's page, which
/// a GET (a reload after a form's answer) goes back to.
pub async fn confirm(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path((org, conn, action)): Path<(String, String, String)>,
) -> Response {
    let o = match org_for(&st, &admin, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    let c = match connections::find_in(&st.core.db, &o.id, &conn).await {
        Ok(c) => c,
        Err(e) => return page::fail(e),
    };
    let base = format!("/ui/orgs/{}/connections/{}", seg(&o.slug), seg(&c.name));
    match action.as_str() {
        "disable" => {
            let s = match delivery::status(&st.core, &o.id, &c.name).await {
                Ok(s) => s,
                Err(e) => return page::fail(e),
            };
            page::ok(&Confirm {
                chrome: Chrome::of(&admin, "Confirm", "connections", Some(&o.slug)),
                heading: format!("Disable delivery to {}?", c.name),
                lines: vec![
                    format!(
                        "The delivery's cursor (sequence {}) is forgotten, with its backfills: {} records written since are not sent.",
                        s.last_delivered_seq, s.lag.records
                    ),
                    "Enabling it again starts at the outbox's head; anything earlier is then a backfill.".into(),
                ],
                action: format!("{base}/delivery/disable"),
                button: "Disable delivery".into(),
                danger: true,
                back: format!("{base}#delivery"),
                inputs: Vec::new(),
                hidden: Vec::new(),
            })
        }
        "enable" | "pause" | "resume" | "backfill" | "cancel-backfill" => {
            page::see_other(&format!("{base}#delivery"))
        }
        _ => page::no_such_action("a delivery"),
    }
}

pub struct Line {
    pub connection: String,
    pub kind: String,
    pub state: String,
    pub badge: &'static str,
    pub lag: String,
    pub last_delivered: String,
    pub last_error: String,
    pub backfill: Option<Progress>,
}

#[derive(Template)]
#[template(path = "deliveries.html")]
pub struct ListPage {
    pub chrome: Chrome,
    pub org: String,
    pub lines: Vec<Line>,
    pub pager: page::Pager,
    pub live: bool,
}

/// `GET /ui/orgs/{org}/deliveries`: a page of the org's deliveries by
/// connection name, their statuses read together (`delivery::page`).
pub async fn list(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path(org): Path<String>,
    Query(q): Query<page::AfterQuery>,
) -> Response {
    let o = match org_for(&st, &admin, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    let after = q.after.as_deref();
    let p = match delivery::page(&st.core, &o.id, after, PAGE).await {
        Ok(p) => p,
        Err(e) => return page::fail(ApiError::from(e)),
    };
    let pager = page::Pager::of(
        &p,
        &format!("/ui/orgs/{}/deliveries", seg(&o.slug)),
        &[],
        after,
    );
    let live = p
        .items
        .iter()
        .any(|s| matches!(s.state, DeliveryState::Running | DeliveryState::Backfilling));
    let lines: Vec<Line> = p
        .items
        .iter()
        .map(|s| Line {
            connection: s.connection.clone(),
            kind: s.kind.clone(),
            state: s.state.as_str().to_string(),
            badge: page::badge(s.state.as_str()),
            lag: if s.lag.records == 0 {
                "none".into()
            } else {
                format!(
                    "{} records, {}",
                    s.lag.records,
                    page::human_s(s.lag.seconds)
                )
            },
            last_delivered: format!(
                "sequence {} at {}",
                s.last_delivered_seq,
                at(s.last_delivered_at)
            ),
            last_error: s.last_error.clone().unwrap_or_default(),
            backfill: s
                .backfill
                .as_ref()
                .filter(|b| b.state == backfill::RUNNING)
                .map(Progress::of),
        })
        .collect();
    page::ok(&ListPage {
        chrome: Chrome::of(&admin, "Deliveries", "deliveries", Some(&o.slug)),
        org: o.slug,
        lines,
        pager,
        live,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(done: i64, total: i64, state: &str) -> BackfillProgress {
        BackfillProgress {
            id: "b".into(),
            state: state.into(),
            from_seq: 0,
            to_seq: total,
            done,
            total,
            records_per_s: 12.345,
            eta_s: Some(90),
            last_error: None,
            started_at: 0,
            finished_at: None,
        }
    }

    #[test]
    fn filter_domains_are_taken_one_per_line_or_separated_by_commas() {
        let form = HashMap::from([(
            "filter_domains".to_string(),
            " example.com,other.org\r\n\nthird.net , ".to_string(),
        )]);
        assert_eq!(domains(&form), ["example.com", "other.org", "third.net"]);
        assert!(domains(&HashMap::new()).is_empty());
    }

    #[test]
    fn progress_is_a_bounded_percentage() {
        let p = Progress::of(&progress(50, 200, backfill::RUNNING));
        assert_eq!((p.percent, p.running, p.badge), (25, true, "warn"));
        assert_eq!(p.rate, "12.3");
        assert_eq!(p.eta, "1m");
        // nothing to send is done; more done than counted stays at 100
        assert_eq!(Progress::of(&progress(0, 0, backfill::DONE)).percent, 100);
        assert_eq!(Progress::of(&progress(9, 3, backfill::DONE)).percent, 100);
        assert_eq!(Progress::of(&progress(-1, 3, backfill::DONE)).percent, 0);
    }
}
