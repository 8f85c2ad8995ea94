//! The first page, "what needs you": everything waiting on the signed-in
//! person, worst first, each with the button that does it. An org admin
//! sees their org; the operator every org (and the orgs list).

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::page::{self, seg, Chrome};
use super::{Posted, Ui};
use crate::api::extract::AdminSession;
use crate::api::{ApiError, AppState};
use crate::audit::Actor;
use crate::identity::orgs;
use crate::identity::sessions::Principal;

/// How much of each kind the page lists: the worst, not everything (each
/// section links to its full list).
const SHOWN: i64 = 50;
/// Schedules and expiries this close count as "soon".
const SOON_MS: i64 = 7 * 86_400_000;

/// One thing waiting on a person.
pub struct Need {
    pub badge: &'static str,
    pub status: String,
    pub org: String,
    pub what: String,
    pub href: String,
    pub why: String,
    pub action: Option<Action>,
}

/// The button beside a need: a form (POST, with the CSRF field) or a link
/// (to a page that asks before it acts).
pub struct Action {
    pub label: String,
    pub post: bool,
    pub to: String,
    /// Posted with the form as `item` (a campaign item's number).
    pub item: Option<i64>,
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct Home {
    pub chrome: Chrome,
    pub needs: Vec<Need>,
    pub soon: Vec<Need>,
}

/// The slugs of the orgs `ids` names (the rows shown), by id: not every
/// org of the platform for every landing page.
async fn slugs(st: &AppState, ids: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    Ok(orgs::slugs(&st.core.db, ids).await?)
}

async fn needs(st: &AppState, admin: &AdminSession) -> Result<(Vec<Need>, Vec<Need>), ApiError> {
    let org_id = match &admin.session.principal {
        Principal::Operator(_) => None,
        Principal::OrgAdmin { org, .. } => Some(org.id.clone()),
    };
    // What waits, at most SHOWN of each kind, read first; then the slugs
    // of their orgs alone.
    let conns =
        crate::connectors::connections::needing_person(&st.core.db, org_id.as_deref(), SHOWN)
            .await?;
    let dels = crate::sync::overview::needing_person(&st.core.db, org_id.as_deref(), SHOWN).await?;
    let rots = crate::rotation::needing_person(&st.core, org_id.as_deref(), SHOWN).await?;
    let ids: Vec<&str> = conns
        .iter()
        .map(|c| c.org_id.as_str())
        .chain(dels.iter().map(|d| d.org_id.as_str()))
        .chain(rots.iter().map(|r| r.org_id.as_str()))
        .collect();
    let slugs = slugs(st, &ids).await?;
    let slug = |id: &str| slugs.get(id).cloned().unwrap_or_default();
    let mut out = Vec::new();

    for c in conns {
        let org = slug(&c.org_id);
        let base = format!("/ui/orgs/{}/connections/{}", seg(&org), seg(&c.name));
        let oauth = c.method().map(|m| m.is_oauth_code()).unwrap_or(false);
        let action = if c.status == "needs_reauth" && oauth {
            Some(Action {
                label: "Authorize".into(),
                post: true,
                to: format!("{base}/authorize"),
                item: None,
            })
        } else {
            Some(Action {
                label: if c.status == "needs_reauth" {
                    "Set credential".into()
                } else {
                    "Test".into()
                },
                post: c.status != "needs_reauth",
                to: if c.status == "needs_reauth" {
                    format!("{base}#credential")
                } else {
                    format!("{base}/test")
                },
                item: None,
            })
        };
        out.push(Need {
            badge: page::badge(&c.status),
            status: c.status.clone(),
            org,
            what: format!("Connection {} ({})", c.name, c.kind),
            href: base,
            why: c
                .status_reason
                .clone()
                .unwrap_or_else(|| "no reason recorded".into()),
            action,
        });
    }

    // Deliveries waiting for a re-authorization or holding a batch the
    // receiver refused (one query).
    for d in dels {
        let org = slug(&d.org_id);
        let base = format!("/ui/orgs/{}/connections/{}", seg(&org), seg(&d.connection));
        let parked = d.parked_from.zip(d.parked_to);
        let (why, action) = match parked {
            Some((from, to)) => (
                format!(
                    "The receiver refused sequences {from} to {to}: {}",
                    d.last_error.as_deref().unwrap_or("no message")
                ),
                Action {
                    label: "Retry".into(),
                    post: true,
                    to: format!("{base}/delivery/resume"),
                    item: None,
                },
            ),
            None => (
                "Delivery waits for the connection's re-authorization; nothing is skipped.".into(),
                Action {
                    label: "Open the delivery".into(),
                    post: false,
                    to: format!("{base}#delivery"),
                    item: None,
                },
            ),
        };
        out.push(Need {
            badge: page::badge(&d.state),
            status: d.state.clone(),
            org,
            what: format!("Delivery to {} ({})", d.connection, d.kind),
            href: format!("{base}#delivery"),
            why,
            action: Some(action),
        });
    }

    for r in rots {
        let org = slug(&r.org_id);
        let href = format!("/ui/orgs/{}/rotations/{}", seg(&org), seg(&r.id));
        let (why, action) = match r.status.as_str() {
            "stalled" => {
                let v = crate::rotation::detailed_view(&st.core, &r).await?;
                let v = crate::api::rotations::seen_by(st, admin, v).await?;
                let readers: Vec<String> = v["not_moved"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| {
                                format!(
                                    "{}{} (last read {})",
                                    x["reader"].as_str().unwrap_or("?"),
                                    x["ip"]
                                        .as_str()
                                        .map(|ip| format!(" from {ip}"))
                                        .unwrap_or_default(),
                                    x["last_read_at"].as_str().unwrap_or("never"),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let why = if readers.is_empty() {
                    r.reason.clone().unwrap_or_default()
                } else {
                    format!("Not moved to the new credential: {}", readers.join("; "))
                };
                (
                    why,
                    Some(Action {
                        label: "Finish now…".into(),
                        post: false,
                        to: format!("{href}/finish"),
                        item: None,
                    }),
                )
            }
            "failed" => (
                r.reason.clone().unwrap_or_default(),
                Some(Action {
                    label: "Retry".into(),
                    post: true,
                    to: format!("{href}/retry"),
                    item: None,
                }),
            ),
            _ => (
                r.reason
                    .clone()
                    .unwrap_or_else(|| "a person must do the runbook's steps".into()),
                Some(Action {
                    label: "Open the runbook".into(),
                    post: false,
                    to: href.clone(),
                    item: None,
                }),
            ),
        };
        out.push(Need {
            badge: page::badge(&r.status),
            status: r.status.clone(),
            org,
            what: format!("Rotation of {} {}", r.target_type, r.target_name),
            href,
            why,
            action,
        });
    }

    // Campaign items that failed or wait on a person: the operator sees
    // every org's (its own turns — a provider's OAuth client to replace —
    // among them), an org admin their org's. A failed item of a campaign
    // the person may act on has its Retry.
    let asker = crate::api::incidents::asker(admin);
    for w in crate::incident::waiting_on(&st.core, &asker, SHOWN).await? {
        let item = &w.item;
        let target = format!(
            "{} {}",
            item["target"]["type"].as_str().unwrap_or(""),
            item["target"]["name"].as_str().unwrap_or("")
        );
        let campaign = format!("/ui/incidents/{}", seg(&w.incident_id));
        let provider = item["target"]["type"] == "provider_client";
        let action = if w.retry {
            Action {
                label: "Retry".into(),
                post: true,
                to: format!("{campaign}/retry"),
                item: item["n"].as_i64(),
            }
        } else if provider && w.status == "waiting_person" {
            Action {
                label: "Set the provider's client".into(),
                post: false,
                to: "/ui/catalog".into(),
                item: None,
            }
        } else {
            Action {
                label: "Open the campaign".into(),
                post: false,
                to: campaign.clone(),
                item: None,
            }
        };
        out.push(Need {
            badge: page::badge(&w.status),
            status: w.status.clone(),
            org: item["org"].as_str().unwrap_or("platform").to_string(),
            what: format!("Campaign item: {target}"),
            href: campaign,
            why: item["what"].as_str().unwrap_or("").to_string(),
            action: Some(action),
        });
    }
    // Worst first: what is broken (failed, stalled, needs a
    // re-authorization) before what waits its turn; within each, as read.
    out.sort_by_key(|n| match n.badge {
        "bad" => 0,
        "warn" => 1,
        _ => 2,
    });

    // Credentials past or near their schedule (the age view, worst first):
    // the first page of those due within SOON_MS, selected and ranked in
    // SQL, is all the page shows; nothing past it is read.
    let now = st.core.now();
    let due = crate::rotation::age::paged::page_of(
        &st.core,
        crate::rotation::age::paged::Which {
            org_id: org_id.as_deref(),
            older_than_ms: None,
            due_by_ms: Some(now.saturating_add(SOON_MS)),
        },
        None,
        SHOWN,
    )
    .await?;
    let mut soon = Vec::new();
    for a in due.page.items {
        // (Every credential with a schedule is an org's.)
        let Some(org) = a.org.clone() else { continue };
        let (o, name) = (seg(&org), seg(&a.name));
        let href = match a.kind.as_str() {
            "connection" => format!("/ui/orgs/{o}/connections/{name}"),
            "app_secret" => format!("/ui/orgs/{o}/apps/{name}"),
            "access_key" => format!("/ui/orgs/{o}/keys#keys"),
            "m2m_secret" => format!("/ui/orgs/{o}/keys#m2m"),
            _ => format!("/ui/orgs/{o}/age"),
        };
        // Each kind's own way to a new value, behind the page that asks.
        let action = match a.kind.as_str() {
            "connection" => Some(("Rotate…", format!("{href}/rotate"))),
            "access_key" => Some(("Reset…", format!("/ui/orgs/{o}/keys/{name}/reset"))),
            "m2m_secret" => Some((
                "Regenerate…",
                format!("/ui/orgs/{o}/m2m/{name}/regenerate-secret"),
            )),
            "app_secret" => Some((
                "Regenerate…",
                format!("/ui/orgs/{o}/apps/{name}/regenerate-secret"),
            )),
            _ => None,
        }
        .map(|(label, to)| Action {
            label: label.into(),
            post: false,
            to,
            item: None,
        });
        soon.push(Need {
            badge: if a.due { "bad" } else { "warn" },
            status: if a.due {
                "due".into()
            } else {
                "due soon".into()
            },
            org,
            what: format!("{} {} ({})", a.kind.replace('_', " "), a.name, a.detail),
            href,
            why: match &a.next_due_at {
                Some(d) => format!(
                    "{} old; rotation {} {d}",
                    page::human_s(a.age_s),
                    if a.due { "was due" } else { "due" }
                ),
                None => format!("{} old", page::human_s(a.age_s)),
            },
            action,
        });
    }
    // Access keys that expire within a week, or expired in the last one
    // (their callers are refused): each with its Reset.
    let keys = crate::oauth::access_keys::expiring(
        &st.core.db,
        org_id.as_deref(),
        now.saturating_sub(SOON_MS),
        now.saturating_add(SOON_MS),
        SHOWN,
    )
    .await?;
    let ids: Vec<&str> = keys.iter().map(|k| k.org_id.as_str()).collect();
    let key_orgs = orgs::slugs(&st.core.db, &ids).await?;
    for k in keys {
        let org = key_orgs.get(&k.org_id).cloned().unwrap_or_default();
        let at = k.expires_at.unwrap_or(now);
        let gone = at <= now;
        let (o, name) = (seg(&org), seg(&k.name));
        soon.push(Need {
            badge: if gone { "bad" } else { "warn" },
            status: if gone { "expired" } else { "expires soon" }.into(),
            what: format!("access key {} ({})", k.name, k.scope),
            href: format!("/ui/orgs/{o}/keys#keys"),
            why: if gone {
                format!(
                    "expired {} ago ({}): callers presenting it are refused",
                    page::human_s(now.saturating_sub(at) / 1000),
                    crate::clock::rfc3339(at)
                )
            } else {
                format!(
                    "expires in {} ({})",
                    page::human_s(at.saturating_sub(now) / 1000),
                    crate::clock::rfc3339(at)
                )
            },
            org,
            action: Some(Action {
                label: "Reset…".into(),
                post: false,
                to: format!("/ui/orgs/{o}/keys/{name}/reset"),
                item: None,
            }),
        });
    }
    // Worst first here too: past due and expired before due soon.
    soon.sort_by_key(|n| n.badge != "bad");
    Ok((out, soon))
}

pub async fn page(State(st): State<AppState>, Ui(admin): Ui) -> Response {
    match needs(&st, &admin).await {
        Ok((needs, soon)) => page::ok(&Home {
            chrome: Chrome::of(&admin, "What needs you", "home", None),
            needs,
            soon,
        }),
        Err(e) => page::fail(e),
    }
}

pub struct OrgLine {
    pub slug: String,
    pub name: String,
    pub created_at: String,
}

/// Orgs per page of the operator's list.
const ORGS_PAGE: i64 = 100;

#[derive(Template)]
#[template(path = "orgs.html")]
pub struct Orgs {
    pub chrome: Chrome,
    pub orgs: Vec<OrgLine>,
    pub total: i64,
    pub next: Option<String>,
    pub first: bool,
    pub error: Option<String>,
}

#[derive(Deserialize)]
pub struct OrgsQuery {
    after: Option<String>,
}

async fn orgs_page(
    st: &AppState,
    admin: &AdminSession,
    status: StatusCode,
    after: Option<&str>,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    if !admin.session.principal.is_operator() {
        return page::error(
            StatusCode::FORBIDDEN,
            "Only the platform operator sees every org.",
        );
    }
    let after = after.filter(|a| !a.is_empty());
    let (list, total, next) = match orgs::page(&st.core.db, after, ORGS_PAGE).await {
        Ok(p) => (p.items, p.total, p.next),
        Err(e) => return page::fail(e),
    };
    page::render(
        status,
        &Orgs {
            chrome: Chrome::of(admin, "Orgs", "orgs", None).notice(notice),
            orgs: list
                .into_iter()
                .map(|o| OrgLine {
                    slug: o.slug,
                    name: o.name,
                    created_at: crate::clock::rfc3339(o.created_at),
                })
                .collect(),
            total,
            next,
            first: after.is_none(),
            error,
        },
    )
}

pub async fn orgs(
    State(st): State<AppState>,
    Ui(admin): Ui,
    axum::extract::Query(q): axum::extract::Query<OrgsQuery>,
) -> Response {
    orgs_page(&st, &admin, StatusCode::OK, q.after.as_deref(), None, None).await
}

#[derive(Deserialize)]
pub struct NewOrg {
    slug: String,
    #[serde(default)]
    name: String,
}

pub async fn create_org(State(st): State<AppState>, p: Posted<NewOrg>) -> Response {
    if !p.ui.session.principal.is_operator() {
        return page::error(
            StatusCode::FORBIDDEN,
            "Only the platform operator creates orgs.",
        );
    }
    let name = Some(p.form.name.trim()).filter(|n| !n.is_empty());
    let actor: Actor = p.ui.actor();
    match orgs::create(&st.core.db, &actor, &p.form.slug, name, st.core.now()).await {
        Ok(o) => {
            orgs_page(
                &st,
                &p.ui,
                StatusCode::OK,
                None,
                Some(format!("Org {} created.", o.slug)),
                None,
            )
            .await
        }
        Err(e) => {
            let e = ApiError::from(e);
            orgs_page(&st, &p.ui, e.status, None, None, Some(e.message)).await
        }
    }
}
