//! OAuth applications in the console: the list with a status toggle,
//! create (client id and secret shown once, on the answer to the form,
//! never again), an application's page (edit scope, callbacks and token
//! lifetimes; regenerate the secret with an overlap; rotate; delete behind
//! a page that names what dies) and its Authorizations tab (paged by
//! keyset, with Revoke behind a confirmation).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::connections::Confirm;
use super::page::{self, seg, Chrome};
use super::{Posted, Ui};
use crate::api::apps::org_for;
use crate::api::extract::AdminSession;
use crate::api::{ApiError, AppState};
use crate::identity::orgs::Org;
use crate::oauth::authorizations;
use crate::oauth::clients::{self, Client, ClientKind, Lifetimes, NewClient, Update};

/// Rows per page of the Authorizations tab.
const PAGE: i64 = 50;

fn notice(code: Option<&str>) -> Option<String> {
    Some(
        match code? {
            "activated" => "Application activated: its tokens work again.",
            "deactivated" => {
                "Application deactivated: its tokens are refused until it is activated again."
            }
            "saved" => "Application saved.",
            "revoked" => "Authorization revoked: its refresh and access tokens no longer work.",
            "deleted" => "Application deleted, with every code and token it held.",
            _ => return None,
        }
        .to_string(),
    )
}

fn callbacks(form: &HashMap<String, String>) -> Vec<String> {
    form.get("callbacks")
        .map(|c| {
            c.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub struct AppLine {
    pub name: String,
    pub client_id: String,
    pub scope: String,
    pub status: &'static str,
    pub active: bool,
}

/// A secret shown once: on the answer to the form that made it.
pub struct Shown {
    pub heading: String,
    pub client_id: String,
    pub secret: String,
    pub note: String,
}

#[derive(Template)]
#[template(path = "apps.html")]
pub struct ListPage {
    pub chrome: Chrome,
    pub org: String,
    pub apps: Vec<AppLine>,
    pub pager: page::Pager,
    pub shown: Option<Shown>,
    pub error: Option<String>,
}

/// How the list was asked for: the notice a redirect names and the page
/// cursor (the answers to forms show the first page, without either).
#[derive(Default)]
struct Asked<'a> {
    notice: Option<String>,
    after: Option<&'a str>,
}

async fn list_page(
    st: &AppState,
    admin: &AdminSession,
    o: &Org,
    status: StatusCode,
    asked: Asked<'_>,
    shown: Option<Shown>,
    error: Option<String>,
) -> Response {
    let Asked {
        notice: notice_text,
        after,
    } = asked;
    let list = match clients::page(&st.core.db, &o.id, ClientKind::App, after, PAGE).await {
        Ok(l) => l,
        Err(e) => return page::fail(e),
    };
    let pager = page::Pager::of(
        &list,
        &format!("/ui/orgs/{}/apps", page::seg(&o.slug)),
        &[],
        after,
    );
    page::render(
        status,
        &ListPage {
            chrome: Chrome::of(admin, "Applications", "apps", Some(&o.slug)).notice(notice_text),
            org: o.slug.clone(),
            apps: list
                .items
                .iter()
                .map(|c| AppLine {
                    name: c.name.clone(),
                    client_id: c.client_id.clone(),
                    scope: c.scope.clone(),
                    status: c.status(),
                    active: c.status() == "active",
                })
                .collect(),
            pager,
            shown,
            error,
        },
    )
}

#[derive(serde::Deserialize)]
pub struct Q {
    notice: Option<String>,
    after: Option<String>,
}

pub async fn list(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path(org): Path<String>,
    Query(q): Query<Q>,
) -> Response {
    match org_for(&st, &admin, &org).await {
        Ok(o) => {
            list_page(
                &st,
                &admin,
                &o,
                StatusCode::OK,
                Asked {
                    notice: notice(q.notice.as_deref()),
                    after: q.after.as_deref(),
                },
                None,
                None,
            )
            .await
        }
        Err(e) => page::fail(e),
    }
}

pub async fn create(
    State(st): State<AppState>,
    Path(org): Path<String>,
    p: Posted<HashMap<String, String>>,
) -> Response {
    let o = match org_for(&st, &p.ui, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    let f = &p.form;
    let lifetimes = match (
        page::duration(f, "access_token_ttl", "access token ttl"),
        page::duration(f, "refresh_token_ttl", "refresh token ttl"),
        page::duration(f, "refresh_grace", "refresh grace"),
    ) {
        (Ok(a), Ok(r), Ok(g)) => Lifetimes {
            access_ms: a,
            refresh_ms: r,
            grace_ms: g,
        },
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
            return list_page(
                &st,
                &p.ui,
                &o,
                e.status,
                Asked::default(),
                None,
                Some(e.message),
            )
            .await
        }
    };
    let cbs = callbacks(f);
    let made = clients::create(
        &st.core,
        &p.ui.actor(),
        NewClient {
            org_id: &o.id,
            kind: ClientKind::App,
            name: f.get("name").map(String::as_str).unwrap_or(""),
            scope: f.get("scope").map(String::as_str).unwrap_or("read"),
            callbacks: &cbs,
            user_id: None,
            lifetimes,
            may_introspect: false,
        },
    )
    .await;
    match made {
        Ok((c, secret)) => {
            let shown = Shown {
                heading: format!("Application {} created", c.name),
                client_id: c.client_id.clone(),
                secret,
                note: "Copy the secret now: it is stored only as a hash and is never shown again — not on reload, in the list or on the application's page.".into(),
            };
            list_page(
                &st,
                &p.ui,
                &o,
                StatusCode::CREATED,
                Asked::default(),
                Some(shown),
                None,
            )
            .await
        }
        Err(e) => {
            let e = ApiError::from(e);
            list_page(
                &st,
                &p.ui,
                &o,
                e.status,
                Asked::default(),
                None,
                Some(e.message),
            )
            .await
        }
    }
}

#[derive(Template)]
#[template(path = "app.html")]
pub struct ShowPage {
    pub chrome: Chrome,
    pub org: String,
    pub name: String,
    pub client_id: String,
    pub scope: String,
    pub status: &'static str,
    pub active: bool,
    pub callbacks: String,
    pub access_ttl: String,
    pub refresh_ttl: String,
    pub grace: String,
    pub previous_valid_until: Option<String>,
    pub created_at: String,
    pub shown: Option<Shown>,
    pub error: Option<String>,
}

async fn find(st: &AppState, o: &Org, app: &str) -> Result<Client, ApiError> {
    Ok(clients::find_in(&st.core.db, &o.id, ClientKind::App, app).await?)
}

/// What an application's page shows besides the application.
#[derive(Default)]
struct Extras {
    notice: Option<String>,
    shown: Option<Shown>,
    error: Option<String>,
}

async fn show_page(
    st: &AppState,
    admin: &AdminSession,
    o: &Org,
    c: &Client,
    status: StatusCode,
    x: Extras,
) -> Response {
    let Extras {
        notice: notice_text,
        shown,
        error,
    } = x;
    let v = c.view(None, st.core.now());
    page::render(
        status,
        &ShowPage {
            chrome: Chrome::of(
                admin,
                format!("Application {}", c.name),
                "apps",
                Some(&o.slug),
            )
            .notice(notice_text),
            org: o.slug.clone(),
            name: c.name.clone(),
            client_id: c.client_id.clone(),
            scope: c.scope.clone(),
            status: v.status,
            active: v.status == "active",
            callbacks: c.callbacks().join("\n"),
            access_ttl: page::dur_field(v.access_token_ttl),
            refresh_ttl: page::dur_field(v.refresh_token_ttl.unwrap_or(0)),
            grace: page::dur_field(v.refresh_grace.unwrap_or(0)),
            previous_valid_until: v.previous_secret_valid_until.map(crate::clock::rfc3339),
            created_at: crate::clock::rfc3339(v.created_at),
            shown,
            error,
        },
    )
}

pub async fn show(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path((org, app)): Path<(String, String)>,
    Query(q): Query<Q>,
) -> Response {
    let o = match org_for(&st, &admin, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    match find(&st, &o, &app).await {
        Ok(c) => {
            show_page(
                &st,
                &admin,
                &o,
                &c,
                StatusCode::OK,
                Extras {
                    notice: notice(q.notice.as_deref()),
                    ..Default::default()
                },
            )
            .await
        }
        Err(e) => page::fail(e),
    }
}

pub struct AuthLine {
    pub id: String,
    pub user: String,
    pub scope: String,
    pub created: String,
    pub last_used: String,
    pub status: &'static str,
    pub badge: &'static str,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "authorizations.html")]
pub struct AuthPage {
    pub chrome: Chrome,
    pub org: String,
    pub name: String,
    pub lines: Vec<AuthLine>,
    pub total: i64,
    pub next: Option<String>,
    pub first: bool,
}

pub async fn authorizations(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path((org, app)): Path<(String, String)>,
    Query(q): Query<Q>,
) -> Response {
    let o = match org_for(&st, &admin, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    let c = match find(&st, &o, &app).await {
        Ok(c) => c,
        Err(e) => return page::fail(e),
    };
    // The keyset of the page before (`MILLIS.ID`); a malformed one is the
    // domain's 400.
    let after = q.after.as_deref().filter(|a| !a.is_empty());
    let first = after.is_none();
    let pg = match authorizations::page(&st.core.db, &c, st.core.now(), after, PAGE).await {
        Ok(p) => p,
        Err(e) => return page::fail(e),
    };
    page::ok(&AuthPage {
        chrome: Chrome::of(
            &admin,
            format!("Authorizations of {}", c.name),
            "apps",
            Some(&o.slug),
        )
        .notice(notice(q.notice.as_deref())),
        org: o.slug.clone(),
        name: c.name.clone(),
        lines: pg
            .items
            .into_iter()
            .map(|a| AuthLine {
                badge: page::badge(a.status),
                id: a.id,
                user: a.user,
                scope: a.scope,
                created: a.created,
                last_used: a.last_used.unwrap_or_else(|| "never".into()),
                status: a.status,
                reason: a.reason.unwrap_or_default(),
            })
            .collect(),
        total: pg.total,
        next: pg.next,
        first,
    })
}

/// `GET …/{action}`: the pages that ask first (delete; revoke an
/// authorization, `?id=`; regenerate the secret with its overlap choice).
pub async fn confirm(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path((org, app, action)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let o = match org_for(&st, &admin, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    let c = match find(&st, &o, &app).await {
        Ok(c) => c,
        Err(e) => return page::fail(e),
    };
    let base = format!("/ui/orgs/{}/apps/{}", seg(&o.slug), seg(&c.name));
    let mut pg = Confirm {
        chrome: Chrome::of(&admin, "Confirm", "apps", Some(&o.slug)),
        heading: String::new(),
        lines: vec![],
        action: format!("{base}/{action}"),
        button: String::new(),
        danger: true,
        back: base.clone(),
        inputs: vec![],
        hidden: vec![],
    };
    match action.as_str() {
        "delete" => {
            let total = authorizations::page(&st.core.db, &c, st.core.now(), None, 1)
                .await
                .map(|p| p.total)
                .unwrap_or(0);
            pg.heading = format!("Delete application {}?", c.name);
            pg.lines = vec![
                format!("Every code and token it holds dies with it: {total} authorizations, with their refresh and access tokens. Users must authorize a new application again."),
                "To stop it for a while instead, deactivate it: its tokens are refused until it is activated again.".into(),
            ];
            pg.button = "Delete application".into();
        }
        "revoke" => {
            let id = q.get("id").cloned().unwrap_or_default();
            pg.heading = "Revoke this authorization?".into();
            pg.lines = vec![format!("Authorization {id}: its refresh token and every access token issued from it stop working at once. The user must authorize {} again.", c.name)];
            pg.button = "Revoke".into();
            pg.back = format!("{base}/authorizations");
            pg.hidden = vec![("id".into(), id)];
        }
        "regenerate-secret" => {
            pg.heading = format!("Regenerate the secret of {}?", c.name);
            pg.lines = vec![
                "Regenerating immediately invalidates the old secret, unless you keep it working for an overlap while the application is redeployed with the new one.".into(),
                "The new secret is shown once, on the next page.".into(),
            ];
            pg.button = "Regenerate secret".into();
            pg.inputs = vec![super::connections::Input::text(
                "overlap",
                "Keep the old secret working for",
                "0 for no overlap; 1h, 1d, up to 30d",
                "0".into(),
                false,
            )];
        }
        _ => return page::no_such_action("an application"),
    }
    page::ok(&pg)
}

/// `POST …/{action}`.
pub async fn act(
    State(st): State<AppState>,
    Path((org, app, action)): Path<(String, String, String)>,
    p: Posted<HashMap<String, String>>,
) -> Response {
    let o = match org_for(&st, &p.ui, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    let c = match find(&st, &o, &app).await {
        Ok(c) => c,
        Err(e) => return page::fail(e),
    };
    let actor = p.ui.actor();
    let base = format!("/ui/orgs/{}/apps/{}", seg(&o.slug), seg(&c.name));
    let failed = |e: ApiError| {
        let (st, ui, o, c) = (st.clone(), p.ui.clone(), o.clone(), c.clone());
        async move {
            show_page(
                &st,
                &ui,
                &o,
                &c,
                e.status,
                Extras {
                    error: Some(e.message),
                    ..Default::default()
                },
            )
            .await
        }
    };
    match action.as_str() {
        "activate" | "deactivate" => {
            let on = action == "activate";
            let back = if p.form.get("from").is_some_and(|f| f == "list") {
                format!("/ui/orgs/{}/apps?notice={action}d", seg(&o.slug))
            } else {
                format!("{base}?notice={action}d")
            };
            match clients::set_active(&st.core, &actor, &o.id, ClientKind::App, &c.id, on).await {
                Ok(_) => page::see_other(&back),
                Err(e) => failed(e.into()).await,
            }
        }
        "update" => {
            let f = &p.form;
            let lt = match (
                page::duration(f, "access_token_ttl", "access token ttl"),
                page::duration(f, "refresh_token_ttl", "refresh token ttl"),
                page::duration(f, "refresh_grace", "refresh grace"),
            ) {
                (Ok(a), Ok(r), Ok(g)) => Lifetimes {
                    access_ms: a,
                    refresh_ms: r,
                    grace_ms: g,
                },
                (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => return failed(e).await,
            };
            let upd = Update {
                name: None,
                scope: f.get("scope").cloned().filter(|s| !s.is_empty()),
                callbacks: Some(callbacks(f)),
                lifetimes: lt,
            };
            match clients::update(&st.core, &actor, &o.id, ClientKind::App, &c.id, upd).await {
                Ok(_) => page::see_other(&format!("{base}?notice=saved")),
                Err(e) => failed(e.into()).await,
            }
        }
        "regenerate-secret" => {
            let overlap = match page::duration(&p.form, "overlap", "overlap") {
                Ok(o) => o.unwrap_or(0),
                Err(e) => return failed(e).await,
            };
            match clients::regenerate_secret(
                &st.core,
                &actor,
                &o.id,
                ClientKind::App,
                &c.id,
                overlap,
                false,
            )
            .await
            {
                Ok((c2, secret)) => {
                    let note = if overlap > 0 {
                        format!("The old secret keeps working for {}; then only this one does. Copy it now: it is never shown again.", page::human_s(overlap / 1000))
                    } else {
                        "The old secret no longer works. Copy this one now: it is never shown again.".into()
                    };
                    let shown = Shown {
                        heading: "New client secret".into(),
                        client_id: c2.client_id.clone(),
                        secret,
                        note,
                    };
                    show_page(
                        &st,
                        &p.ui,
                        &o,
                        &c2,
                        StatusCode::OK,
                        Extras {
                            shown: Some(shown),
                            ..Default::default()
                        },
                    )
                    .await
                }
                Err(e) => failed(e.into()).await,
            }
        }
        "rotate" => {
            let req = crate::rotation::StartRequest {
                target: crate::rotation::TargetRef::App(c.name.clone()),
                dry_run: false,
                preflight: false,
                cutover_window_ms: crate::rotation::limits::CUTOVER_WINDOW_MS,
                deadline_ms: crate::rotation::limits::DEADLINE_MS,
                rotate_with: None,
                force_at_deadline: false,
                end_sessions: false,
            };
            match crate::rotation::start(&st.core, &actor, &o.id, &req).await {
                Ok(crate::rotation::Started::Rotation(v)) => {
                    let shown = v.secret.clone().map(|secret| Shown {
                        heading: "New client secret (rotation started)".into(),
                        client_id: c.client_id.clone(),
                        secret,
                        note: format!(
                            "The old secret keeps working while the application moves over; rotation {} retires it after nobody has used it for the cut-over window. Copy the new one now: it is never shown again.",
                            v.id
                        ),
                    });
                    show_page(
                        &st,
                        &p.ui,
                        &o,
                        &c,
                        StatusCode::CREATED,
                        Extras {
                            shown,
                            ..Default::default()
                        },
                    )
                    .await
                }
                Ok(crate::rotation::Started::Plan(_)) => page::see_other(&base),
                Err(e) => failed(e.into()).await,
            }
        }
        "revoke" => {
            let id = p.form.get("id").cloned().unwrap_or_default();
            match authorizations::revoke(&st.core, &actor, &c, &id).await {
                Ok(_) => page::see_other(&format!("{base}/authorizations?notice=revoked")),
                Err(e) => failed(e.into()).await,
            }
        }
        "delete" => match clients::delete(&st.core, &actor, &o.id, ClientKind::App, &c.id).await {
            Ok(_) => page::see_other(&format!("/ui/orgs/{}/apps?notice=deleted", seg(&o.slug))),
            Err(e) => failed(e.into()).await,
        },
        _ => page::no_such_action("an application"),
    }
}
