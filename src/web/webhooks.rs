//! An org's signed webhooks in the console (`/ui/orgs/{org}/webhooks`): the
//! receivers and the events each takes, the form that adds one (its
//! signing secret shown once, on the form's answer), Delete… behind its
//! confirm page, "Send test" (a `ping`), and the deliveries with a Replay
//! button each. Every action calls the function its admin API twin
//! (`api::events`) calls, so both are audited alike.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::connections::Confirm;
use super::page::{self, seg, Chrome, Reveal};
use super::{Posted, Ui};
use crate::api::apps::org_for;
use crate::api::extract::AdminSession;
use crate::api::{ApiError, AppState};
use crate::clock::rfc3339;
use crate::events::webhooks::{self, WebhookEvent};
use crate::identity::orgs::Org;
use crate::store::keyset::PAGE;

/// Messages a redirect may ask the page to show (`?notice=`): fixed texts,
/// so a link cannot make the console say something it did not.
fn notice(code: Option<&str>) -> Option<String> {
    Some(
        match code? {
            "deleted" => "Webhook deleted, with its secret and its deliveries.",
            "test-delivered" => "Test sent: the receiver accepted the ping.",
            "test-refused" => "Test sent, but the receiver did not accept it; its delivery below says why and is retried with backoff.",
            "replayed" => "Delivery queued again; it is sent as a new attempt.",
            _ => return None,
        }
        .to_string(),
    )
}

pub struct Hook {
    pub id: String,
    pub url: String,
    pub events: String,
    pub created_at: String,
}

/// An event's checkbox on the create form.
pub struct EventBox {
    pub name: &'static str,
    pub checked: bool,
}

pub struct Line {
    pub id: String,
    pub url: String,
    pub event: String,
    pub state: String,
    pub badge: &'static str,
    pub attempts: i64,
    pub last_status: String,
    pub last_error: String,
    pub created_at: String,
    pub delivered_at: String,
    pub next_attempt_at: String,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
pub struct WebhooksPage {
    pub chrome: Chrome,
    pub org: String,
    pub hooks: Vec<Hook>,
    pub pager: page::Pager,
    pub lines: Vec<Line>,
    pub sent_pager: page::Pager,
    /// The create form, as typed when it was refused.
    pub url: String,
    pub events: Vec<EventBox>,
    pub error: Option<String>,
    /// The signing secret, shown once on the answer to the create form.
    pub shown: Option<Reveal>,
}

/// What the page says above the list besides its notice.
#[derive(Default)]
struct Said {
    notice: Option<String>,
    error: Option<String>,
    shown: Option<Reveal>,
    /// The create form as it was posted.
    url: String,
    events: Vec<String>,
    /// The receivers' page cursor (`?after=`) and the deliveries'
    /// (`?deliveries_after=`): the two lists page apart.
    after: Option<String>,
    deliveries_after: Option<String>,
}

async fn render(
    st: &AppState,
    admin: &AdminSession,
    o: &Org,
    status: StatusCode,
    said: Said,
) -> Response {
    let (after, d_after) = (said.after.as_deref(), said.deliveries_after.as_deref());
    let hooks = match webhooks::page(&st.core.db, &o.id, after, PAGE).await {
        Ok(h) => h,
        Err(e) => return page::fail(e),
    };
    let sent = match webhooks::deliveries_page(&st.core.db, &o.id, d_after, PAGE).await {
        Ok(d) => d,
        Err(e) => return page::fail(e),
    };
    let path = format!("/ui/orgs/{}/webhooks", seg(&o.slug));
    let pager = page::Pager::named(
        &hooks,
        &path,
        &[("deliveries_after", d_after.unwrap_or_default())],
        "after",
        after,
    );
    let sent_pager = page::Pager::named(
        &sent,
        &path,
        &[("after", after.unwrap_or_default())],
        "deliveries_after",
        d_after,
    );
    let sent = sent.items;
    // The receivers of the deliveries shown, whichever page they are on.
    let mut url_of: HashMap<String, String> = HashMap::new();
    let looked_up = async {
        let mut c = st.core.db.read().await?;
        for d in &sent {
            if !url_of.contains_key(&d.webhook_id) {
                match webhooks::find(&mut c, &o.id, &d.webhook_id).await {
                    Ok(h) => {
                        url_of.insert(h.id, h.url);
                    }
                    // Gone since (its deliveries go with it): no URL to show.
                    Err(webhooks::WebhookError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok::<_, webhooks::WebhookError>(())
    };
    if let Err(e) = looked_up.await {
        return page::fail(e);
    }
    let lines = sent
        .iter()
        .map(|d| Line {
            id: d.id.clone(),
            url: url_of
                .get(d.webhook_id.as_str())
                .map(|u| u.to_string())
                .unwrap_or_default(),
            event: d.event.clone(),
            badge: page::badge(&d.state),
            state: d.state.clone(),
            attempts: d.attempts,
            last_status: d.last_status.map(|s| s.to_string()).unwrap_or_default(),
            last_error: d.last_error.clone().unwrap_or_default(),
            created_at: rfc3339(d.created_at),
            delivered_at: d.delivered_at.map(rfc3339).unwrap_or_default(),
            // Only a delivery still waiting has a next attempt worth showing.
            next_attempt_at: d
                .next_attempt_at
                .filter(|_| matches!(d.state.as_str(), "queued" | "retrying"))
                .map(rfc3339)
                .unwrap_or_default(),
        })
        .collect();
    let hooks = hooks
        .items
        .iter()
        .map(|h| Hook {
            id: h.id.clone(),
            url: h.url.clone(),
            events: h.events().join(", "),
            created_at: rfc3339(h.created_at),
        })
        .collect();
    page::render(
        status,
        &WebhooksPage {
            chrome: Chrome::of(admin, "Webhooks", "webhooks", Some(&o.slug)).notice(said.notice),
            org: o.slug.clone(),
            hooks,
            pager,
            lines,
            sent_pager,
            url: said.url,
            events: WebhookEvent::ALL
                .iter()
                .map(|e| EventBox {
                    name: e.as_str(),
                    checked: said.events.iter().any(|s| s == e.as_str()),
                })
                .collect(),
            error: said.error,
            shown: said.shown,
        },
    )
}

#[derive(serde::Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
    after: Option<String>,
    deliveries_after: Option<String>,
}

/// `GET /ui/orgs/{org}/webhooks`.
pub async fn list(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path(org): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let o = match org_for(&st, &admin, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    let said = Said {
        notice: notice(q.notice.as_deref()),
        after: q.after,
        deliveries_after: q.deliveries_after,
        ..Said::default()
    };
    render(&st, &admin, &o, StatusCode::OK, said).await
}

/// `POST /ui/orgs/{org}/webhooks`: the create form. `events` repeats (one
/// per checkbox), so the form is read as pairs.
pub async fn create(
    State(st): State<AppState>,
    Path(org): Path<String>,
    p: Posted<Vec<(String, String)>>,
) -> Response {
    let o = match org_for(&st, &p.ui, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    let url = p
        .form
        .iter()
        .rev()
        .find(|(k, _)| k == "url")
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let events: Vec<String> = p
        .form
        .iter()
        .filter(|(k, _)| k == "events")
        .map(|(_, v)| v.clone())
        .collect();
    match webhooks::create(&st.core, &p.ui.actor(), &o.id, &url, &events).await {
        // The secret is on this answer only: a reload of the list never
        // shows it again.
        Ok(w) => {
            let said = Said {
                notice: Some(format!("Webhook to {} created.", w.url)),
                shown: Some(Reveal {
                    heading: "The webhook's signing secret".into(),
                    note: "Shown once: give it to the receiver now, which checks X-Rekey-Signature with it. rekey keeps it sealed and never shows it again.".into(),
                    fields: vec![("Signing secret".into(), w.signing_secret)],
                }),
                ..Said::default()
            };
            render(&st, &p.ui, &o, StatusCode::CREATED, said).await
        }
        Err(e) => {
            let e = ApiError::from(e);
            let said = Said {
                error: Some(e.message),
                url,
                events,
                ..Said::default()
            };
            render(&st, &p.ui, &o, e.status, said).await
        }
    }
}

/// `GET /ui/orgs/{org}/webhooks/{id}/{action}`: the page that asks before
/// deleting; a GET of the other actions (a reload after a form's answer)
/// goes back to the list.
pub async fn confirm(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path((org, id, action)): Path<(String, String, String)>,
) -> Response {
    let o = match org_for(&st, &admin, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    let w = match st.core.db.read().await {
        Ok(mut c) => webhooks::find(&mut c, &o.id, &id).await,
        Err(e) => return page::fail(ApiError::from(e)),
    };
    let w = match w {
        Ok(w) => w,
        Err(e) => return page::fail(e),
    };
    let base = format!("/ui/orgs/{}/webhooks", seg(&o.slug));
    match action.as_str() {
        "delete" => page::ok(&Confirm {
            chrome: Chrome::of(&admin, "Confirm", "webhooks", Some(&o.slug)),
            heading: format!("Delete the webhook to {}?", w.url),
            lines: vec![
                format!("It stops receiving {}.", w.events().join(", ")),
                "Its signing secret and its deliveries are deleted; sends still waiting are cancelled.".into(),
            ],
            action: format!("{base}/{}/delete", seg(&w.id)),
            button: "Delete webhook".into(),
            danger: true,
            back: base,
            inputs: Vec::new(),
            hidden: Vec::new(),
        }),
        "test" => page::see_other(&base),
        _ => page::no_such_action("a webhook"),
    }
}

/// `POST /ui/orgs/{org}/webhooks/{id}/{action}`: delete, test.
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
    let done = |code: &str, at: &str| {
        page::see_other(&format!(
            "/ui/orgs/{}/webhooks?notice={code}{at}",
            seg(&o.slug)
        ))
    };
    match action.as_str() {
        "delete" => match webhooks::delete(&st.core, &actor, &o.id, &id).await {
            Ok(_) => done("deleted", ""),
            Err(e) => page::fail(e),
        },
        // Sent at once; the notice says how the receiver answered.
        "test" => match webhooks::test(&st.core, &actor, &o.id, &id).await {
            Ok(d) if d.state == "delivered" => done("test-delivered", "#deliveries"),
            Ok(_) => done("test-refused", "#deliveries"),
            Err(e) => page::fail(e),
        },
        _ => page::no_such_action("a webhook"),
    }
}

/// `POST /ui/orgs/{org}/webhook-deliveries/{id}/replay`.
pub async fn replay(
    State(st): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    p: Posted<HashMap<String, String>>,
) -> Response {
    let o = match org_for(&st, &p.ui, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    match webhooks::replay(&st.core, &p.ui.actor(), &o.id, &id).await {
        Ok(_) => page::see_other(&format!(
            "/ui/orgs/{}/webhooks?notice=replayed#deliveries",
            seg(&o.slug)
        )),
        Err(e) => page::fail(e),
    }
}
