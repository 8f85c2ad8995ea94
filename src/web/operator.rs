//! The operator's pages beside incidents: blast radius (paste a value, see
//! what it is and what it unlocks, revoke it behind a confirmation) and the
//! connector catalog with the provider OAuth clients (`connector
//! configure`).

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::page::{self, operator_only, Chrome};
use super::{Posted, Ui};
use crate::api::blast::{ask, Ask};
use crate::api::extract::AdminSession;
use crate::api::{ApiError, AppState};
use crate::connectors::{catalog, provider_clients};

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join("; "),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}: {}", text(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

#[derive(Template)]
#[template(path = "blast.html")]
pub struct BlastPage {
    pub chrome: Chrome,
    pub found: Option<bool>,
    pub facts: Vec<(String, String)>,
    /// The value looked up, sealed for the revoke form ([`Handle`]): the
    /// page never holds the value itself.
    pub handle: String,
    pub can_revoke: bool,
    pub kill: String,
    pub revoked: Option<String>,
    pub error: Option<String>,
}

fn blank(admin: &AdminSession) -> BlastPage {
    BlastPage {
        chrome: Chrome::of(admin, "Blast radius", "blast", None),
        found: None,
        facts: vec![],
        handle: String::new(),
        can_revoke: false,
        kill: String::new(),
        revoked: None,
        error: None,
    }
}

pub async fn blast_form(Ui(admin): Ui) -> Response {
    if let Some(r) = operator_only(&admin) {
        return r;
    }
    page::ok(&blank(&admin))
}

pub async fn blast(State(st): State<AppState>, p: Posted<HashMap<String, String>>) -> Response {
    if let Some(r) = operator_only(&p.ui) {
        return r;
    }
    let revoke = p.form.get("revoke").is_some_and(|v| v == "true");
    let handle = Handle {
        keyring: &st.core.keyring,
        session: &p.ui.session.id,
    };
    let value = match p.form.get("handle").filter(|_| revoke) {
        Some(h) => match handle.open(h, st.core.now()) {
            Some(v) => v,
            None => {
                let mut pg = blank(&p.ui);
                pg.error = Some(
                    "This revoke form has expired or belongs to another sign-in; look the value up again."
                        .into(),
                );
                return page::render(StatusCode::BAD_REQUEST, &pg);
            }
        },
        None => p.form.get("value").cloned().unwrap_or_default(),
    };
    let a = Ask {
        value: Some(value.clone()),
        org: None,
        key: None,
        app: None,
        m2m: None,
        connection: None,
        revoke,
    };
    let mut pg = blank(&p.ui);
    match ask(&st.core, &p.ui.actor(), a).await {
        Ok(answer) => {
            let found = answer["found"] == Value::Bool(true);
            pg.found = Some(found);
            if let Value::Object(m) = &answer {
                for (k, v) in m {
                    if k == "found" || k == "revoke" {
                        continue;
                    }
                    pg.facts.push((k.replace('_', " "), text(v)));
                }
            }
            pg.kill = answer["kill"]
                .as_str()
                .or(answer["command"].as_str())
                .unwrap_or_default()
                .to_string();
            pg.can_revoke = found && !revoke && answer["live"] == Value::Bool(true);
            if pg.can_revoke {
                pg.handle = handle.seal(&value, st.core.now());
            }
            if revoke {
                pg.revoked = Some(text(&answer["revoke"]));
            }
            page::ok(&pg)
        }
        Err(e) => {
            let e: ApiError = e;
            pg.error = Some(e.message);
            page::render(e.status, &pg)
        }
    }
}

/// The pasted value, carried from the lookup to its revoke form sealed
/// to the signed-in session for [`HANDLE_TTL_MS`]: the answer page holds
/// no secret (a screenshot, a saved page or a shared screen shows none),
/// and the form works for no other session and not for long.
struct Handle<'a> {
    keyring: &'a crate::crypto::keyring::Keyring,
    session: &'a str,
}

/// How long a blast-radius revoke form stays good.
const HANDLE_TTL_MS: i64 = 15 * 60_000;

impl Handle<'_> {
    fn place(&self) -> crate::crypto::keyring::Place<'_> {
        crate::crypto::keyring::Place {
            table: "console",
            column: "blast_radius",
            row: self.session,
        }
    }

    fn seal(&self, value: &str, now: i64) -> String {
        use base64::Engine;
        let mut plain = now.saturating_add(HANDLE_TTL_MS).to_be_bytes().to_vec();
        plain.extend_from_slice(value.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.keyring.seal(self.place(), &plain))
    }

    fn open(&self, handle: &str, now: i64) -> Option<String> {
        use base64::Engine;
        let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(handle.trim())
            .ok()?;
        let plain = self.keyring.open(self.place(), &sealed).ok()?;
        let (until, value) = plain.split_at_checked(8)?;
        let until = i64::from_be_bytes(until.try_into().ok()?);
        (now <= until).then(|| String::from_utf8(value.to_vec()).ok())?
    }
}

pub struct KindLine {
    pub kind: String,
    pub name: String,
    pub category: String,
    pub methods: String,
    pub oauth: bool,
    pub client: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "catalog.html")]
pub struct CatalogPage {
    pub chrome: Chrome,
    pub kinds: Vec<KindLine>,
    pub error: Option<String>,
}

async fn catalog_page(
    st: &AppState,
    admin: &AdminSession,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let configured = match provider_clients::configured(&st.core.db).await {
        Ok(c) => c,
        Err(e) => {
            let e: ApiError = e.into();
            return page::error(e.status, &e.message);
        }
    };
    let kinds = catalog::catalog()
        .map(|c| c.values().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|k| KindLine {
            kind: k.kind.clone(),
            name: k.name.clone(),
            category: k.category.clone().unwrap_or_default(),
            methods: k
                .auth
                .iter()
                .map(|m| format!("{} ({:?})", m.method.as_str(), m.rotation).to_lowercase())
                .collect::<Vec<_>>()
                .join(", "),
            oauth: k.takes_oauth_client(),
            client: configured
                .get(&k.kind)
                .map(|(id, at)| (id.clone(), crate::clock::rfc3339(*at))),
        })
        .collect();
    page::render(
        status,
        &CatalogPage {
            chrome: Chrome::of(admin, "Connector catalog", "catalog", None).notice(notice),
            kinds,
            error,
        },
    )
}

pub async fn catalog_list(State(st): State<AppState>, Ui(admin): Ui) -> Response {
    if let Some(r) = operator_only(&admin) {
        return r;
    }
    catalog_page(&st, &admin, StatusCode::OK, None, None).await
}

/// `POST /ui/catalog`: sets a kind's provider OAuth client (the secret is
/// sealed and never shown again).
pub async fn configure(State(st): State<AppState>, p: Posted<HashMap<String, String>>) -> Response {
    if let Some(r) = operator_only(&p.ui) {
        return r;
    }
    let get = |k: &str| {
        p.form
            .get(k)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let kind = get("kind");
    match provider_clients::configure(
        &st.core,
        &p.ui.actor(),
        &kind,
        &get("client_id"),
        &get("client_secret"),
    )
    .await
    {
        Ok(()) => {
            catalog_page(
                &st,
                &p.ui,
                StatusCode::OK,
                Some(format!(
                    "The OAuth client of {kind} is set; its secret is sealed."
                )),
                None,
            )
            .await
        }
        Err(e) => {
            let e: ApiError = e.into();
            catalog_page(&st, &p.ui, e.status, None, Some(e.message)).await
        }
    }
}
