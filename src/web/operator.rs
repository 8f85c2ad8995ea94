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
    /// The value looked up, carried to the revoke form (this page is
    /// never cached; the operator pasted it into this very page).
    pub value: String,
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
        value: String::new(),
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
    let value = p.form.get("value").cloned().unwrap_or_default();
    let revoke = p.form.get("revoke").is_some_and(|v| v == "true");
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
                pg.value = value;
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
            oauth: k.auth.iter().any(|m| m.is_oauth_code()),
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
