//! Access keys and machine clients in the console: both lists with last
//! use, create (the key or secret shown once, on the answer to the form,
//! with copy buttons), reset / regenerate with the overlap choice, rotate
//! (verified cut-over, `rotation::start`), end an overlap, revoke a key,
//! deactivate / activate / delete a machine client. Everything that breaks
//! a caller asks first. The same domain functions as
//! `/api/v1/orgs/{org}/keys…` and `/api/v1/orgs/{org}/m2m…`.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::connections::{Confirm, Input};
use super::page::{self, fail, seg, Chrome, Reveal};
use super::{Posted, Ui};
use crate::api::apps::org_for;
use crate::api::extract::AdminSession;
use crate::api::{ApiError, AppState};
use crate::clock::rfc3339;
use crate::identity::orgs::Org;
use crate::identity::users;
use crate::oauth::clients::{self, ClientKind, Lifetimes, NewClient};
use crate::oauth::{access_keys, usage};
use crate::rotation::{self, limits, StartRequest, Started, TargetRef};
use crate::store::keyset::PAGE;

fn notice(code: Option<&str>) -> Option<String> {
    Some(
        match code? {
            "revoked" => "Access key revoked: it no longer works.",
            "ended" => "Overlap ended: only the newest value works now.",
            "deleted" => "Machine client deleted, with every token it held.",
            "deactivated" => {
                "Machine client deactivated: its tokens are refused until it is activated again."
            }
            "activated" => "Machine client activated: its tokens work again.",
            _ => return None,
        }
        .to_string(),
    )
}

pub struct KeyLine {
    pub name: String,
    pub scope: String,
    pub status: &'static str,
    pub badge: &'static str,
    pub created: String,
    pub last_used: String,
    pub expires: String,
    /// While the previous value still works: until when.
    pub previous: Option<String>,
}

pub struct ClientLine {
    pub name: String,
    pub client_id: String,
    pub scope: String,
    pub user: String,
    pub status: &'static str,
    pub active: bool,
    pub created: String,
    pub last_used: String,
    pub previous: Option<String>,
}

#[derive(Template)]
#[template(path = "keys.html")]
pub struct ListPage {
    pub chrome: Chrome,
    pub org: String,
    pub keys: Vec<KeyLine>,
    pub keys_pager: page::Pager,
    pub clients: Vec<ClientLine>,
    pub m2m_pager: page::Pager,
    pub shown: Option<Reveal>,
    pub error: Option<String>,
}

/// While a previous value still works: until a time (a reset's overlap) or
/// until the rotation that replaced it retires it.
fn previous(live: bool, until: Option<String>) -> Option<String> {
    live.then(|| match until {
        Some(t) => format!("until {t}"),
        None => "until its rotation retires it (once nobody uses it)".into(),
    })
}

#[derive(Default)]
struct Extras {
    notice: Option<String>,
    /// The two lists' page cursors (`?keys_after=`, `?m2m_after=`), each
    /// paged on its own.
    keys_after: Option<String>,
    m2m_after: Option<String>,
    shown: Option<Reveal>,
    error: Option<String>,
}

async fn list_page(
    st: &AppState,
    admin: &AdminSession,
    o: &Org,
    status: StatusCode,
    x: Extras,
) -> Response {
    let now = st.core.now();
    let (ka, ma) = (x.keys_after.as_deref(), x.m2m_after.as_deref());
    let loaded = async {
        let keys = access_keys::page(&st.core.db, &o.id, ka, PAGE).await?;
        let cls = clients::page(&st.core.db, &o.id, ClientKind::M2m, ma, PAGE).await?;
        // Only the people the shown clients act as, not the whole org.
        let mut people: Vec<users::User> = Vec::new();
        let mut c = st.core.db.read().await.map_err(ApiError::from)?;
        for id in cls.items.iter().filter_map(|c| c.user_id.as_deref()) {
            if !people.iter().any(|u| u.id == id) {
                people.extend(users::get(&mut c, &o.id, id).await?);
            }
        }
        drop(c);
        let last = usage::latest_in_org(&st.core.db, &o.id).await?;
        Ok::<_, ApiError>((keys, cls, people, last))
    };
    let (keys, cls, people, last) = match loaded.await {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let path = format!("/ui/orgs/{}/keys", seg(&o.slug));
    let keys_pager = page::Pager::named(
        &keys,
        &path,
        &[("m2m_after", ma.unwrap_or_default())],
        "keys_after",
        ka,
    );
    let m2m_pager = page::Pager::named(
        &cls,
        &path,
        &[("keys_after", ka.unwrap_or_default())],
        "m2m_after",
        ma,
    );
    let (keys, cls) = (keys.items, cls.items);
    let email = |id: &Option<String>| {
        id.as_ref()
            .and_then(|id| people.iter().find(|u| &u.id == id))
            .map(|u| u.email.clone())
            .unwrap_or_default()
    };
    page::render(
        status,
        &ListPage {
            chrome: Chrome::of(admin, "Keys & clients", "keys", Some(&o.slug)).notice(x.notice),
            org: o.slug.clone(),
            keys: keys
                .iter()
                .map(|k| {
                    let v = k.view(now);
                    KeyLine {
                        badge: match v.status {
                            "active" => "ok",
                            _ => "bad",
                        },
                        name: v.name,
                        scope: v.scope,
                        status: v.status,
                        created: v.created,
                        last_used: last
                            .get(&k.id)
                            .map(usage::LastUse::who)
                            .or(v.last_used)
                            .unwrap_or_else(|| "never".into()),
                        expires: v.expires.unwrap_or_else(|| "never".into()),
                        previous: previous(v.previous_key_live, v.previous_key_valid_until),
                    }
                })
                .collect(),
            keys_pager,
            clients: cls
                .iter()
                .map(|c| ClientLine {
                    name: c.name.clone(),
                    client_id: c.client_id.clone(),
                    scope: c.scope.clone(),
                    user: email(&c.user_id),
                    status: c.status(),
                    active: c.active,
                    created: rfc3339(c.created_at),
                    last_used: last
                        .get(&c.id)
                        .map(usage::LastUse::who)
                        .unwrap_or_else(|| "never".into()),
                    previous: previous(
                        c.previous_live(now),
                        c.prev_secret_expires_at.filter(|t| *t > now).map(rfc3339),
                    ),
                })
                .collect(),
            m2m_pager,
            shown: x.shown,
            error: x.error,
        },
    )
}

async fn failed(st: &AppState, admin: &AdminSession, o: &Org, e: impl Into<ApiError>) -> Response {
    let e: ApiError = e.into();
    let x = Extras {
        error: Some(e.message),
        ..Default::default()
    };
    list_page(st, admin, o, e.status, x).await
}

#[derive(Deserialize)]
pub struct Q {
    notice: Option<String>,
    keys_after: Option<String>,
    m2m_after: Option<String>,
}

pub async fn list(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path(org): Path<String>,
    Query(q): Query<Q>,
) -> Response {
    let o = match org_for(&st, &admin, &org).await {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let x = Extras {
        notice: notice(q.notice.as_deref()),
        keys_after: q.keys_after,
        m2m_after: q.m2m_after,
        ..Default::default()
    };
    list_page(&st, &admin, &o, StatusCode::OK, x).await
}

/// `GET /ui/orgs/{org}/m2m`: the machine clients are on the keys page.
pub async fn to_list(Path(org): Path<String>) -> Response {
    page::see_other(&format!("/ui/orgs/{}/keys#m2m", seg(&org)))
}

fn field<'a>(f: &'a HashMap<String, String>, k: &str) -> &'a str {
    f.get(k).map(|v| v.trim()).unwrap_or("")
}

/// `POST /ui/orgs/{org}/keys`: a new access key, shown on this answer only.
pub async fn create_key(
    State(st): State<AppState>,
    Path(org): Path<String>,
    p: Posted<HashMap<String, String>>,
) -> Response {
    let o = match org_for(&st, &p.ui, &org).await {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let expires = match page::duration(&p.form, "expires", "expires after") {
        Ok(e) => e,
        Err(e) => return failed(&st, &p.ui, &o, e).await,
    };
    let made = access_keys::create(
        &st.core,
        &p.ui.actor(),
        &o.id,
        field(&p.form, "name"),
        field(&p.form, "scope"),
        expires,
    )
    .await;
    match made {
        Ok((k, key)) => {
            let x = Extras {
                shown: Some(Reveal {
                    heading: format!("Access key {} created", k.name),
                    note: "Copy the key now: it is stored only as a hash and is never shown again — not on reload or in the list.".into(),
                    fields: vec![("Access key".into(), key)],
                }),
                ..Default::default()
            };
            list_page(&st, &p.ui, &o, StatusCode::CREATED, x).await
        }
        Err(e) => failed(&st, &p.ui, &o, e).await,
    }
}

/// `POST /ui/orgs/{org}/m2m`: a new machine client, its secret shown on
/// this answer only.
pub async fn create_m2m(
    State(st): State<AppState>,
    Path(org): Path<String>,
    p: Posted<HashMap<String, String>>,
) -> Response {
    let o = match org_for(&st, &p.ui, &org).await {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let f = &p.form;
    let ttl = match page::duration(f, "access_token_ttl", "access token lifetime") {
        Ok(t) => t,
        Err(e) => return failed(&st, &p.ui, &o, e).await,
    };
    let user = match Some(field(f, "user")).filter(|u| !u.is_empty()) {
        None => None,
        Some(e) => match users::find(&st.core.db, &o.id, e).await {
            Ok(u) => Some(u),
            Err(_) => {
                let e = ApiError::bad_request(format!("user {e:?} not found in {}", o.slug));
                return failed(&st, &p.ui, &o, e).await;
            }
        },
    };
    let made = clients::create(
        &st.core,
        &p.ui.actor(),
        NewClient {
            org_id: &o.id,
            kind: ClientKind::M2m,
            name: field(f, "name"),
            scope: field(f, "scope"),
            callbacks: &[],
            user_id: user.as_ref().map(|u| u.id.as_str()),
            lifetimes: Lifetimes {
                access_ms: ttl,
                ..Default::default()
            },
            may_introspect: field(f, "introspect") == "true",
        },
    )
    .await;
    match made {
        Ok((c, secret)) => {
            let x = Extras {
                shown: Some(Reveal {
                    heading: format!("Machine client {} created", c.name),
                    note: "Copy the secret now: it is stored only as a hash and is never shown again — not on reload or in the list.".into(),
                    fields: vec![
                        ("Client ID".into(), c.client_id.clone()),
                        ("Client secret".into(), secret),
                    ],
                }),
                ..Default::default()
            };
            list_page(&st, &p.ui, &o, StatusCode::CREATED, x).await
        }
        Err(e) => failed(&st, &p.ui, &o, e).await,
    }
}

/// Which list an action acts on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum What {
    Key,
    M2m,
}

impl What {
    fn path(self) -> &'static str {
        match self {
            What::Key => "keys",
            What::M2m => "m2m",
        }
    }
    fn noun(self) -> &'static str {
        match self {
            What::Key => "access key",
            What::M2m => "machine client",
        }
    }
}

/// The overlap choice of a reset or regenerate, as apps' regenerate page has it.
fn overlap_input(what: What) -> Input {
    Input {
        name: "overlap".into(),
        id: "overlap".into(),
        label: match what {
            What::Key => "Keep the old key working for".into(),
            What::M2m => "Keep the old secret working for".into(),
        },
        hint: "0 for no overlap; 1h, 1d, up to 30d".into(),
        kind: "text",
        required: false,
        options: vec![],
        value: "0".into(),
        frozen: false,
    }
}

/// The name as stored (the path may carry an id).
async fn resolve(st: &AppState, o: &Org, what: What, name: &str) -> Result<String, ApiError> {
    Ok(match what {
        What::Key => {
            access_keys::find(&mut st.core.db.read().await?, &o.id, name)
                .await?
                .name
        }
        What::M2m => {
            clients::find_in(&st.core.db, &o.id, ClientKind::M2m, name)
                .await?
                .name
        }
    })
}

async fn confirm_page(
    st: &AppState,
    admin: &AdminSession,
    org: &str,
    what: What,
    name: &str,
    action: &str,
) -> Response {
    let o = match org_for(st, admin, org).await {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let name = match resolve(st, &o, what, name).await {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    let list = format!("/ui/orgs/{}/keys", seg(&o.slug));
    let mut pg = Confirm {
        chrome: Chrome::of(admin, "Confirm", "keys", Some(&o.slug)),
        heading: String::new(),
        lines: vec![],
        action: format!(
            "/ui/orgs/{}/{}/{}/{action}",
            seg(&o.slug),
            what.path(),
            seg(&name)
        ),
        button: String::new(),
        danger: true,
        back: list,
        inputs: vec![],
        hidden: vec![],
    };
    match (what, action) {
        (What::Key, "reset") => {
            pg.heading = format!("Reset access key {name}?");
            pg.lines = vec![
                "Resetting immediately invalidates the old key, unless you keep it working for an overlap while its callers move to the new one.".into(),
                "The new key is shown once, on the next page.".into(),
            ];
            pg.button = "Reset access key".into();
            pg.inputs = vec![overlap_input(what)];
        }
        (What::M2m, "regenerate-secret") => {
            pg.heading = format!("Regenerate the secret of {name}?");
            pg.lines = vec![
                "Regenerating immediately invalidates the old secret, unless you keep it working for an overlap while the client is redeployed with the new one.".into(),
                "Access tokens it already got keep working until they expire, unless you revoke them too (after a leak).".into(),
                "The new secret is shown once, on the next page.".into(),
            ];
            pg.button = "Regenerate secret".into();
            pg.inputs = vec![
                overlap_input(what),
                Input {
                    name: "revoke_tokens".into(),
                    id: "revoke_tokens".into(),
                    label: "Also revoke every access token issued before now".into(),
                    hint: String::new(),
                    kind: "checkbox",
                    required: false,
                    options: vec![],
                    value: String::new(),
                    frozen: false,
                },
            ];
        }
        (_, "end-overlap") => {
            pg.heading = format!("End the overlap of {} {name}?", what.noun());
            pg.lines = vec![format!(
                "The previous {} stops working at once; anyone still using it is refused. Only the newest one works from now on.",
                if what == What::Key { "key" } else { "secret" }
            )];
            pg.button = "End overlap".into();
        }
        (What::Key, "revoke") => {
            pg.heading = format!("Revoke access key {name}?");
            pg.lines = vec![
                "The key (and any previous value still in its overlap) stops working at once, for every caller. A revoked key cannot be reset: create a new one.".into(),
            ];
            pg.button = "Revoke access key".into();
        }
        (What::M2m, "delete") => {
            pg.heading = format!("Delete machine client {name}?");
            pg.lines = vec![
                "Its secret and every access token it holds die with it; callers using it are refused at once.".into(),
                "To stop it for a while instead, deactivate it: its tokens are refused until it is activated again.".into(),
            ];
            pg.button = "Delete machine client".into();
        }
        _ => {
            return page::error(
                StatusCode::NOT_FOUND,
                &format!("There is no such page for an {}.", what.noun()),
            )
        }
    }
    page::ok(&pg)
}

pub async fn confirm_key(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path((org, name, action)): Path<(String, String, String)>,
) -> Response {
    confirm_page(&st, &admin, &org, What::Key, &name, &action).await
}

pub async fn confirm_m2m(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path((org, name, action)): Path<(String, String, String)>,
) -> Response {
    confirm_page(&st, &admin, &org, What::M2m, &name, &action).await
}

/// Starts a verified cut-over of rekey's own secret: the new value is
/// issued now (and shown once), the old one works for the cut-over window.
async fn rotate(
    st: &AppState,
    admin: &AdminSession,
    o: &Org,
    target: TargetRef,
) -> Result<Option<(String, String)>, ApiError> {
    let req = StartRequest {
        target,
        dry_run: false,
        preflight: false,
        cutover_window_ms: limits::CUTOVER_WINDOW_MS,
        deadline_ms: limits::DEADLINE_MS,
        rotate_with: None,
        force_at_deadline: false,
        end_sessions: false,
    };
    match rotation::start(&st.core, &admin.actor(), &o.id, &req).await? {
        Started::Rotation(v) => Ok(v.secret.clone().map(|s| (v.id.clone(), s))),
        Started::Plan(_) => Ok(None),
    }
}

fn overlap_note(what: &str, overlap_ms: i64) -> String {
    if overlap_ms > 0 {
        format!(
            "The old {what} keeps working for {}; then only this one does. Copy it now: it is never shown again.",
            page::human_s(overlap_ms / 1000)
        )
    } else {
        format!("The old {what} no longer works. Copy this one now: it is never shown again.")
    }
}

async fn act(
    st: &AppState,
    p: &Posted<HashMap<String, String>>,
    org: &str,
    what: What,
    name: &str,
    action: &str,
) -> Response {
    let o = match org_for(st, &p.ui, org).await {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let name = match resolve(st, &o, what, name).await {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    let actor = p.ui.actor();
    let list = format!("/ui/orgs/{}/keys", seg(&o.slug));
    let shown = |x: Reveal| Extras {
        shown: Some(x),
        ..Default::default()
    };
    let done: Result<Response, ApiError> = async {
        Ok(match (what, action) {
            (What::Key, "reset") => {
                let overlap = page::duration(&p.form, "overlap", "overlap")?.unwrap_or(0);
                let (k, key) = access_keys::reset(&st.core, &actor, &o.id, &name, overlap, false).await?;
                let x = shown(Reveal {
                    heading: format!("New access key for {}", k.name),
                    note: overlap_note("key", overlap),
                    fields: vec![("Access key".into(), key)],
                });
                list_page(st, &p.ui, &o, StatusCode::OK, x).await
            }
            (What::M2m, "regenerate-secret") => {
                let overlap = page::duration(&p.form, "overlap", "overlap")?.unwrap_or(0);
                let now = st.core.now();
                let (c, secret) = clients::regenerate_secret(
                    &st.core,
                    &actor,
                    &o.id,
                    ClientKind::M2m,
                    &name,
                    overlap,
                    false,
                )
                .await?;
                let revoke = field(&p.form, "revoke_tokens") == "true";
                if revoke {
                    clients::revoke_tokens_before(&st.core, &actor, &c, now, None).await?;
                }
                let mut note = overlap_note("secret", overlap);
                if revoke {
                    note.push_str(" Access tokens issued before now are revoked.");
                }
                let x = shown(Reveal {
                    heading: format!("New client secret for {}", c.name),
                    note,
                    fields: vec![
                        ("Client ID".into(), c.client_id.clone()),
                        ("Client secret".into(), secret),
                    ],
                });
                list_page(st, &p.ui, &o, StatusCode::OK, x).await
            }
            (_, "rotate") => {
                let target = match what {
                    What::Key => TargetRef::Key(name.clone()),
                    What::M2m => TargetRef::M2m(name.clone()),
                };
                let Some((id, secret)) = rotate(st, &p.ui, &o, target).await? else {
                    return Ok(page::see_other(&list));
                };
                let mut fields = vec![];
                if what == What::M2m {
                    let c = clients::find_in(&st.core.db, &o.id, ClientKind::M2m, &name).await?;
                    fields.push(("Client ID".to_string(), c.client_id));
                }
                fields.push((
                    if what == What::Key {
                        "Access key".into()
                    } else {
                        "Client secret".into()
                    },
                    secret,
                ));
                let x = shown(Reveal {
                    heading: format!("{} {name} rotating", what.noun()),
                    note: format!(
                        "The old value keeps working until nobody has used it for the cut-over window ({}); rotation {id} then retires it. Move its callers to this one now. Copy it now: it is never shown again.",
                        page::human_s(limits::CUTOVER_WINDOW_MS / 1000)
                    ),
                    fields,
                });
                list_page(st, &p.ui, &o, StatusCode::CREATED, x).await
            }
            (What::Key, "end-overlap") => {
                access_keys::end_overlap(&st.core, &actor, &o.id, &name).await?;
                page::see_other(&format!("{list}?notice=ended"))
            }
            (What::M2m, "end-overlap") => {
                clients::end_overlap(&st.core, &actor, &o.id, ClientKind::M2m, &name).await?;
                page::see_other(&format!("{list}?notice=ended"))
            }
            (What::Key, "revoke") => {
                access_keys::revoke(&st.core, &actor, &o.id, &name).await?;
                page::see_other(&format!("{list}?notice=revoked"))
            }
            (What::M2m, "delete") => {
                clients::delete(&st.core, &actor, &o.id, ClientKind::M2m, &name).await?;
                page::see_other(&format!("{list}?notice=deleted"))
            }
            (What::M2m, "deactivate" | "activate") => {
                let on = action == "activate";
                clients::set_active(&st.core, &actor, &o.id, ClientKind::M2m, &name, on).await?;
                page::see_other(&format!("{list}?notice={action}d#m2m"))
            }
            _ => page::no_such_action(&format!("an {}", what.noun())),
        })
    }
    .await;
    match done {
        Ok(r) => r,
        Err(e) => failed(st, &p.ui, &o, e).await,
    }
}

pub async fn act_key(
    State(st): State<AppState>,
    Path((org, name, action)): Path<(String, String, String)>,
    p: Posted<HashMap<String, String>>,
) -> Response {
    act(&st, &p, &org, What::Key, &name, &action).await
}

pub async fn act_m2m(
    State(st): State<AppState>,
    Path((org, name, action)): Path<(String, String, String)>,
    p: Posted<HashMap<String, String>>,
) -> Response {
    act(&st, &p, &org, What::M2m, &name, &action).await
}
