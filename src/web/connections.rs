//! Connections in the console: the list, a catalog picker and a settings
//! form generated from the catalog's schema, and a connection's page with
//! its ⋮ menu (Authorize, Re-Authenticate, Revoke Authorization, Test, Set
//! credential, Rotate after its dry-run plan, Delete) and, for a kind that
//! can receive records, its Delivery section (`web::deliveries`).
//! Credential fields are write-only: no page ever puts a stored value back
//! into a form.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use serde_json::Value;

use super::deliveries::Section;
use super::page::{self, seg, Chrome, Reveal};
use super::{Posted, Ui};
use crate::api::apps::org_for;
use crate::api::extract::AdminSession;
use crate::api::{cookies, ApiError, AppState};
use crate::connectors::catalog::{self, Field, Format};
use crate::connectors::connections::{self, Connection, NewConnection};
use crate::connectors::{actions, flow, oauth_client};
use crate::identity::orgs::Org;
use crate::rotation::{self, limits, StartRequest, Started, TargetRef};
use crate::store::keyset::PAGE;

/// Messages a redirect may ask a page to show (`?notice=`): fixed texts,
/// so a link cannot make the console say something it did not.
fn notice(code: Option<&str>) -> Option<String> {
    Some(
        match code? {
            "created" => "Connection created. Set its credential or authorize it.",
            "authorized" => "Authentication status: connected. The connection is authorized and its settings are unchanged.",
            "tested" => "Test finished; its outcome is below.",
            "credential" => "Credential stored (sealed); the test's outcome is below.",
            "revoked" => "Authorization revoked at the provider where it allows; the connection needs re-authorization.",
            "deleted" => "Connection deleted, with its credentials.",
            "settings" => "Settings saved.",
            "client" => "OAuth client set for this connection; its secret is sealed. Authorize the connection next.",
            "delivery-enabled" => "Delivery enabled. It starts at the outbox's head: what was written before is a backfill.",
            "delivery-updated" => "Delivery settings saved; its cursor is kept.",
            "delivery-paused" => "Delivery paused. Records wait until it is resumed.",
            "delivery-resumed" => "Delivery resumed; it sends from its cursor.",
            "delivery-disabled" => "Delivery disabled; its cursor is forgotten.",
            "backfill-started" => "Backfill started. Its progress is below.",
            "backfill-cancelled" => "Backfill cancelled; live delivery resumes.",
            _ => return None,
        }
        .to_string(),
    )
}

/// One input of a form generated from the catalog.
pub struct Input {
    pub name: String,
    pub id: String,
    pub label: String,
    pub hint: String,
    /// `text`, `password`, `number`, `email`, `url`, `select`, `textarea`, `checkbox`.
    pub kind: &'static str,
    pub required: bool,
    pub options: Vec<String>,
    pub value: String,
    /// Frozen while a credential is held (decides where it goes).
    pub frozen: bool,
}

impl Input {
    /// A plain text input outside the catalog (a window, a deadline, an
    /// overlap), optional unless `required`.
    pub fn text(name: &str, label: &str, hint: &str, value: String, required: bool) -> Input {
        Input {
            name: name.into(),
            id: name.into(),
            label: label.into(),
            hint: hint.into(),
            kind: "text",
            required,
            options: vec![],
            value,
            frozen: false,
        }
    }
}

fn input(prefix: &str, f: &Field, value: Option<&str>, for_update: bool) -> Input {
    let kind = if f.secret {
        if matches!(
            f.format,
            Format::PemPrivateKey | Format::PemCertificate | Format::ServiceAccountJson
        ) {
            "textarea"
        } else {
            "password"
        }
    } else {
        match f.format {
            Format::Integer | Format::Port => "number",
            Format::Email => "email",
            Format::Url => "url",
            Format::Enum => "select",
            Format::Bool => "checkbox",
            Format::PemPrivateKey | Format::PemCertificate | Format::ServiceAccountJson => {
                "textarea"
            }
            _ => "text",
        }
    };
    let mut hint = f.description.clone().unwrap_or_default();
    if f.optional {
        hint = if hint.is_empty() {
            "optional".into()
        } else {
            format!("optional; {hint}")
        };
    }
    Input {
        name: format!("{prefix}{}", f.key),
        id: format!("{}{}", prefix.replace('.', "-"), f.key),
        label: f.label.clone(),
        hint,
        kind,
        // On an update, an empty field keeps what is stored.
        required: !f.optional && !for_update && kind != "checkbox",
        options: f.options.clone(),
        // Never a secret's value, and only the stored or default value of
        // a setting.
        value: if f.secret {
            String::new()
        } else {
            value
                .map(str::to_string)
                .or_else(|| f.default.clone())
                .unwrap_or_default()
        },
        frozen: false,
    }
}

/// The fields posted under `prefix` (`s.` settings, `f.` credential fields),
/// blanks dropped (an optional field left empty is not set).
fn fields(form: &HashMap<String, String>, prefix: &str) -> BTreeMap<String, String> {
    form.iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.trim().to_string())))
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

pub struct Row {
    pub name: String,
    pub kind: String,
    pub auth: String,
    pub status: String,
    pub badge: &'static str,
    pub reason: String,
    pub last_test: String,
    pub due: String,
}

#[derive(Template)]
#[template(path = "connections.html")]
pub struct ListPage {
    pub chrome: Chrome,
    pub org: String,
    pub rows: Vec<Row>,
    pub pager: page::Pager,
}

#[derive(serde::Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
    kind: Option<String>,
    /// The list's page cursor (`next` of the page before).
    after: Option<String>,
}

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
    let after = q.after.as_deref();
    let l = match connections::page(&st.core.db, &o.id, None, after, PAGE).await {
        Ok(l) => l,
        Err(e) => return page::fail(e),
    };
    let pager = page::Pager::of(
        &l,
        &format!("/ui/orgs/{}/connections", seg(&o.slug)),
        &[],
        after,
    );
    let now = st.core.now();
    let rows = l
        .items
        .iter()
        .map(|c| {
            let v = c.view_at(now);
            Row {
                name: c.name.clone(),
                kind: c.kind.clone(),
                auth: c.auth.clone(),
                badge: page::badge(&c.status),
                status: c.status.clone(),
                reason: c.status_reason.clone().unwrap_or_default(),
                last_test: v
                    .last_test
                    .map(|t| format!("{} — {}", t.outcome.as_str(), t.time))
                    .unwrap_or_else(|| "never".into()),
                due: match (v.rotation_due, v.rotation_due_at) {
                    (true, Some(d)) => format!("due since {d}"),
                    (false, Some(d)) => d,
                    _ => "no schedule".into(),
                },
            }
        })
        .collect();
    page::ok(&ListPage {
        chrome: Chrome::of(&admin, "Connections", "connections", Some(&o.slug))
            .notice(notice(q.notice.as_deref())),
        org: o.slug,
        rows,
        pager,
    })
}

pub struct KindChoice {
    pub kind: String,
    pub name: String,
    pub category: String,
}

pub struct MethodChoice {
    pub method: String,
    pub rotation: String,
}

#[derive(Template)]
#[template(path = "connection_new.html")]
pub struct NewPage {
    pub chrome: Chrome,
    pub org: String,
    pub kinds: Vec<KindChoice>,
    /// The chosen kind's form, once a kind is picked.
    pub kind: Option<KindChoice>,
    pub methods: Vec<MethodChoice>,
    pub settings: Vec<Input>,
    pub name: String,
    pub error: Option<String>,
}

fn new_page(
    admin: &AdminSession,
    o: &Org,
    kind: Option<&str>,
    posted: Option<&HashMap<String, String>>,
    error: Option<String>,
) -> NewPage {
    let all = catalog::catalog()
        .map(|c| c.values().collect::<Vec<_>>())
        .unwrap_or_default();
    let kinds = all
        .iter()
        .map(|k| KindChoice {
            kind: k.kind.clone(),
            name: k.name.clone(),
            category: k.category.clone().unwrap_or_default(),
        })
        .collect();
    let chosen = kind.and_then(catalog::kind);
    NewPage {
        chrome: Chrome::of(admin, "New connection", "connections", Some(&o.slug)),
        org: o.slug.clone(),
        kinds,
        kind: chosen.map(|k| KindChoice {
            kind: k.kind.clone(),
            name: k.name.clone(),
            category: k.category.clone().unwrap_or_default(),
        }),
        methods: chosen
            .map(|k| {
                k.auth
                    .iter()
                    .filter(|m| !m.deprecated)
                    .map(|m| MethodChoice {
                        method: m.method.as_str().to_string(),
                        rotation: format!("{:?}", m.rotation).to_lowercase(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        settings: chosen
            .map(|k| {
                k.settings
                    .iter()
                    .map(|f| {
                        let v = posted.and_then(|p| p.get(&format!("s.{}", f.key)));
                        input("s.", f, v.map(String::as_str), false)
                    })
                    .collect()
            })
            .unwrap_or_default(),
        name: posted
            .and_then(|p| p.get("name").cloned())
            .unwrap_or_default(),
        error,
    }
}

pub async fn new_form(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path(org): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let o = match org_for(&st, &admin, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    if let Some(k) = q.kind.as_deref() {
        if catalog::kind(k).is_none() {
            return page::error(
                StatusCode::NOT_FOUND,
                &format!("There is no connector kind {k:?} in the catalog."),
            );
        }
    }
    page::ok(&new_page(&admin, &o, q.kind.as_deref(), None, None))
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
    let kind = p.form.get("kind").cloned().unwrap_or_default();
    let name = p.form.get("name").cloned().unwrap_or_default();
    let auth = p.form.get("auth").cloned().filter(|a| !a.is_empty());
    let settings = fields(&p.form, "s.");
    let made = connections::create(
        &st.core,
        &p.ui.actor(),
        NewConnection {
            org_id: &o.id,
            kind: &kind,
            name: &name,
            auth: auth.as_deref(),
            settings: &settings,
            endpoints: &BTreeMap::new(),
        },
    )
    .await;
    match made {
        Ok(c) => page::see_other(&format!(
            "/ui/orgs/{}/connections/{}?notice=created",
            seg(&o.slug),
            seg(&c.name)
        )),
        Err(e) => {
            let e = ApiError::from(e);
            page::render(
                e.status,
                &new_page(&p.ui, &o, Some(&kind), Some(&p.form), Some(e.message)),
            )
        }
    }
}

pub struct Fact {
    pub label: &'static str,
    pub value: String,
}

#[derive(Template)]
#[template(path = "connection.html")]
pub struct ShowPage {
    pub chrome: Chrome,
    pub org: String,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub badge: &'static str,
    pub reason: String,
    pub oauth: bool,
    pub facts: Vec<Fact>,
    pub settings: Vec<Input>,
    pub credential: Vec<Input>,
    pub last_test: Option<(String, &'static str, String, String)>,
    pub interval: String,
    pub error: Option<String>,
    /// For a kind that can receive records.
    pub delivery: Option<Section>,
    /// A secret shown once, on the answer to the form that made it.
    pub shown: Option<Reveal>,
}

/// What a connection's page says above its sections: a notice, an error
/// (a form refused, nothing written), a secret shown once.
#[derive(Default)]
pub struct Said {
    pub notice: Option<String>,
    pub error: Option<String>,
    pub shown: Option<Reveal>,
}

impl Said {
    pub fn error(message: String) -> Said {
        Said {
            error: Some(message),
            ..Said::default()
        }
    }
}

pub(super) async fn show_page(
    st: &AppState,
    admin: &AdminSession,
    o: &Org,
    c: &Connection,
    status: StatusCode,
    said: Said,
) -> Response {
    let v = match connections::detailed_view(&st.core, c).await {
        Ok(v) => v,
        Err(e) => return page::fail(e),
    };
    let delivery = match super::deliveries::section(st, c).await {
        Ok(d) => d,
        Err(e) => return page::fail(e),
    };
    let kind = c.kind().ok();
    let method = c.method().ok();
    let stored = c.settings();
    let frozen = c.has_credentials;
    let settings = kind
        .map(|k| {
            k.settings
                .iter()
                .map(|f| {
                    let value = stored.get(&f.key).map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                    let mut i = input("s.", f, value.as_deref(), true);
                    i.frozen = frozen && k.decides_destination(&f.key);
                    i
                })
                .collect()
        })
        .unwrap_or_default();
    let credential = method
        .map(|m| {
            m.fields
                .iter()
                .map(|f| input("f.", f, None, false))
                .collect()
        })
        .unwrap_or_default();
    let mut facts = vec![
        Fact {
            label: "Kind",
            value: format!(
                "{} ({})",
                c.kind,
                kind.map(|k| k.name.as_str()).unwrap_or("?")
            ),
        },
        Fact {
            label: "Authentication",
            value: c.auth.clone(),
        },
        Fact {
            label: "Rotation",
            value: method
                .map(|m| format!("{:?}", m.rotation).to_lowercase())
                .unwrap_or_default(),
        },
        Fact {
            label: "Credential stored",
            value: if c.has_credentials {
                "yes (sealed)".into()
            } else {
                "no".into()
            },
        },
    ];
    if let Some(age) = v.credential_age_s {
        facts.push(Fact {
            label: "Credential age",
            value: page::human_s(age),
        });
    }
    if let Some(at) = &v.access_token_expires_at {
        facts.push(Fact {
            label: "Access token expires",
            value: at.clone(),
        });
    }
    facts.push(Fact {
        label: "Rotation due",
        value: match (&v.rotation_due_at, v.rotation_due) {
            (Some(d), true) => format!("due since {d}"),
            (Some(d), false) => d.clone(),
            (None, _) => "no schedule".into(),
        },
    });
    if let Some(r) = &v.last_rotated_at {
        facts.push(Fact {
            label: "Last rotated",
            value: r.clone(),
        });
    }
    facts.push(Fact {
        label: "Created",
        value: v.created_at.clone(),
    });
    let last_test = v.last_test.as_ref().map(|t| {
        let o = t.outcome.as_str().to_string();
        let b = page::badge(&o);
        (o, b, t.time.clone(), t.message.clone())
    });
    page::render(
        status,
        &ShowPage {
            chrome: Chrome::of(
                admin,
                format!("Connection {}", c.name),
                "connections",
                Some(&o.slug),
            )
            .notice(said.notice),
            org: o.slug.clone(),
            name: c.name.clone(),
            kind: c.kind.clone(),
            badge: page::badge(&c.status),
            status: c.status.clone(),
            reason: c.status_reason.clone().unwrap_or_default(),
            oauth: method.is_some_and(|m| m.is_oauth_code()),
            facts,
            settings,
            credential,
            last_test,
            interval: v
                .rotation_interval_s
                .map(page::dur_field)
                .unwrap_or_default(),
            error: said.error,
            delivery,
            shown: said.shown,
        },
    )
}

pub async fn show(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path((org, conn)): Path<(String, String)>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let o = match org_for(&st, &admin, &org).await {
        Ok(o) => o,
        Err(e) => return page::fail(e),
    };
    let c = match connections::find_in(&st.core.db, &o.id, &conn).await {
        Ok(c) => c,
        Err(e) => return page::fail(e),
    };
    let said = Said {
        notice: notice(q.notice.as_deref()),
        ..Said::default()
    };
    show_page(&st, &admin, &o, &c, StatusCode::OK, said).await
}

#[derive(Template)]
#[template(path = "confirm.html")]
pub struct Confirm {
    pub chrome: Chrome,
    pub heading: String,
    pub lines: Vec<String>,
    pub action: String,
    pub button: String,
    pub danger: bool,
    pub back: String,
    /// Extra inputs the form posts (a rotation's window and deadline).
    pub inputs: Vec<Input>,
    pub hidden: Vec<(String, String)>,
}

/// `GET …/{action}`: the page that asks before a destructive or
/// far-reaching action (revoke, delete, rotate with its dry-run plan).
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
    let mut page_ = Confirm {
        chrome: Chrome::of(&admin, "Confirm", "connections", Some(&o.slug)),
        heading: String::new(),
        lines: Vec::new(),
        action: format!("{base}/{action}"),
        button: String::new(),
        danger: true,
        back: base.clone(),
        inputs: Vec::new(),
        hidden: Vec::new(),
    };
    match action.as_str() {
        "delete" => {
            page_.heading = format!("Delete connection {}?", c.name);
            page_.lines = vec![
                "Its settings and every stored credential (current, pending and previous) are destroyed; platform code reading it gets 404 from now on.".into(),
                "Credentials at the outside system are not revoked by this: revoke the authorization first if the provider should forget the grant.".into(),
                "A rotation of it still under way is cancelled where it stands (a campaign item following it fails), and its delivery, with its cursor, is removed.".into(),
            ];
            page_.button = "Delete connection".into();
        }
        "revoke-authorization" => {
            page_.heading = format!("Revoke the authorization of {}?", c.name);
            page_.lines = vec![
                "rekey asks the provider to revoke the grant (where it offers a revoke endpoint) and forgets the tokens.".into(),
                "Until someone authorizes it again, the connection is needs_reauth and platform code cannot use it. Its settings stay.".into(),
            ];
            page_.button = "Revoke authorization".into();
        }
        "rotate" => {
            let req = StartRequest {
                target: TargetRef::Connection(c.name.clone()),
                dry_run: true,
                preflight: false,
                cutover_window_ms: limits::CUTOVER_WINDOW_MS,
                deadline_ms: limits::DEADLINE_MS,
                rotate_with: None,
                force_at_deadline: false,
                end_sessions: false,
            };
            page_.heading = format!("Rotate the credential of {}?", c.name);
            page_.danger = false;
            page_.button = "Start rotation".into();
            match rotation::start(&st.core, &admin.actor(), &o.id, &req).await {
                Ok(Started::Plan(p)) => {
                    page_
                        .lines
                        .push("Dry run — nothing has changed yet. The rotation will:".into());
                    if let Some(steps) = p["steps"].as_array() {
                        page_.lines.push(format!(
                            "Steps: {}.",
                            steps
                                .iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(" → ")
                        ));
                    }
                    if let Some(stmts) = p["statements"].as_array() {
                        for s in stmts.iter().filter_map(Value::as_str) {
                            page_.lines.push(format!("At the target: {s}"));
                        }
                    }
                    if p["dual_credentials"] == Value::Bool(true) {
                        page_.lines.push("The target holds both credentials during the cut-over, so nobody breaks while consumers move.".into());
                    }
                    page_.lines.push("The old credential is retired only after nobody has used it for the cut-over window; at the deadline the rotation stops as stalled and names who has not moved.".into());
                }
                Ok(Started::Rotation(_)) => {}
                Err(e) => {
                    let e = ApiError::from(e);
                    return page::render(
                        e.status,
                        &Confirm {
                            heading: format!("{} cannot be rotated now", c.name),
                            lines: vec![e.message],
                            button: String::new(),
                            ..page_
                        },
                    );
                }
            }
            page_.inputs = vec![
                Input::text(
                    "cutover_window",
                    "Cut-over window",
                    "how long the old credential must go unused before it is retired (30s, 10m, 1h)",
                    page::dur_field(limits::CUTOVER_WINDOW_MS / 1000),
                    true,
                ),
                Input::text(
                    "deadline",
                    "Deadline",
                    "when an unfinished cut-over stops as stalled (24h)",
                    format!("{}h", limits::DEADLINE_MS / 3_600_000),
                    true,
                ),
            ];
        }
        _ => return page::no_such_action("a connection"),
    }
    page::ok(&page_)
}

/// `POST …/{action}`: the ⋮ menu's actions.
pub async fn act(
    State(st): State<AppState>,
    jar: CookieJar,
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
    let done = |code: &str| page::see_other(&format!("{base}?notice={code}"));
    let shown = |e: ApiError, c: &Connection| {
        let (st, ui, o, c) = (st.clone(), p.ui.clone(), o.clone(), c.clone());
        async move { show_page(&st, &ui, &o, &c, e.status, Said::error(e.message)).await }
    };
    match action.as_str() {
        "test" => match actions::test(&st.core, &actor, &o.id, &c.id).await {
            Ok(_) => done("tested"),
            Err(e) => shown(e.into(), &c).await,
        },
        "authorize" | "reauthenticate" => {
            let begun =
                match oauth_client::start(&st.core, &actor, &o.id, &c.id, &st.public_url, None)
                    .await
                {
                    Ok(b) => b,
                    Err(e) => return shown(e.into(), &c).await,
                };
            match flow::bind(&st.core, &begun.state, &p.ui.session, p.ui.ip.clone()).await {
                Ok(bound) => {
                    let jar = jar.add(cookies::flow(&st, &bound, st.core.now()));
                    (jar, page::see_other(&bound.provider_url)).into_response()
                }
                Err(e) => shown(e.into(), &c).await,
            }
        }
        "revoke-authorization" => {
            match oauth_client::revoke(&st.core, &actor, &o.id, &c.id).await {
                Ok(_) => done("revoked"),
                Err(e) => shown(e.into(), &c).await,
            }
        }
        "credential" => {
            let f = fields(&p.form, "f.");
            let force = p
                .form
                .get("force")
                .is_some_and(|v| v == "on" || v == "true");
            match actions::set_credential(&st.core, &actor, &o.id, &c.id, &f, force).await {
                Ok(_) => done("credential"),
                Err(e) => shown(e.into(), &c).await,
            }
        }
        "settings" => {
            let s = fields(&p.form, "s.");
            let mut result =
                connections::update(&st.core, &actor, &o.id, &c.id, &s, &BTreeMap::new())
                    .await
                    .map_err(ApiError::from);
            if let (Ok(_), Some(iv)) = (&result, p.form.get("rotation_interval")) {
                let iv = iv.trim();
                let ms = if iv.is_empty() {
                    Ok(None)
                } else {
                    iv.parse::<crate::config::Dur>()
                        .map(|d| Some(d.ms()).filter(|ms| *ms > 0))
                        .map_err(|e| ApiError::bad_request(format!("rotation schedule: {e}")))
                };
                result = match ms {
                    Ok(ms) => {
                        connections::set_rotation_interval(&st.core, &actor, &o.id, &c.id, ms)
                            .await
                            .map_err(ApiError::from)
                    }
                    Err(e) => Err(e),
                };
            }
            match result {
                Ok(_) => done("settings"),
                Err(e) => shown(e, &c).await,
            }
        }
        "client" => {
            let get = |k: &str| {
                p.form
                    .get(k)
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            match crate::connectors::provider_clients::set_for_connection(
                &st.core,
                &actor,
                &o.id,
                &c.id,
                &get("client_id"),
                &get("client_secret"),
            )
            .await
            {
                Ok(_) => done("client"),
                Err(e) => shown(e.into(), &c).await,
            }
        }
        "delete" => match connections::delete(&st.core, &actor, &o.id, &c.id).await {
            Ok(_) => page::see_other(&format!(
                "/ui/orgs/{}/connections?notice=deleted",
                seg(&o.slug)
            )),
            Err(e) => shown(e.into(), &c).await,
        },
        "rotate" => {
            let dur = |k: &str, d: i64| -> Result<i64, ApiError> {
                match p.form.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()) {
                    None => Ok(d),
                    Some(v) => v
                        .parse::<crate::config::Dur>()
                        .map(|x| x.ms())
                        .map_err(|e| {
                            ApiError::bad_request(format!("{}: {e}", k.replace('_', " ")))
                        }),
                }
            };
            let (window, deadline) = match (
                dur("cutover_window", limits::CUTOVER_WINDOW_MS),
                dur("deadline", limits::DEADLINE_MS),
            ) {
                (Ok(w), Ok(d)) => (w, d),
                (Err(e), _) | (_, Err(e)) => return shown(e, &c).await,
            };
            let req = StartRequest {
                target: TargetRef::Connection(c.name.clone()),
                dry_run: false,
                preflight: false,
                cutover_window_ms: window,
                deadline_ms: deadline,
                rotate_with: None,
                force_at_deadline: false,
                end_sessions: false,
            };
            match rotation::start(&st.core, &actor, &o.id, &req).await {
                Ok(Started::Rotation(v)) => page::see_other(&format!(
                    "/ui/orgs/{}/rotations/{}?notice=started",
                    seg(&o.slug),
                    seg(&v.id)
                )),
                Ok(Started::Plan(_)) => done("tested"),
                Err(e) => shown(e.into(), &c).await,
            }
        }
        _ => page::no_such_action("a connection"),
    }
}
