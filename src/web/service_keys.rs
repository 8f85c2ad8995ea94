//! The operator's Service keys page: the platform's keys for reading
//! connection credentials — list, create (the key shown once, on the
//! answer to the form, never again), revoke behind a confirmation. Each
//! action is `connectors::service_keys`', as the API's and the CLI's.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::page::{self, operator_only, Chrome, Pager, Reveal};
use super::{Posted, Ui};
use crate::api::extract::AdminSession;
use crate::api::{ApiError, AppState};
use crate::connectors::service_keys::{self, View};

#[derive(Template)]
#[template(path = "service_keys.html")]
pub struct KeysPage {
    pub chrome: Chrome,
    pub keys: Vec<View>,
    pub pager: Pager,
    pub shown: Option<Reveal>,
    pub error: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn render(
    st: &AppState,
    admin: &AdminSession,
    status: StatusCode,
    after: Option<&str>,
    shown: Option<Reveal>,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let after = after.filter(|a| !a.is_empty());
    let found = match service_keys::page(&st.core, after, crate::store::keyset::PAGE).await {
        Ok(p) => p,
        Err(e) => {
            let e: ApiError = e.into();
            return page::error(e.status, &e.message);
        }
    };
    let pager =
        Pager::of(&found, "/ui/service-keys", &[], after).counting("service key", "service keys");
    page::render(
        status,
        &KeysPage {
            chrome: Chrome::of(admin, "Service keys", "service-keys", None).notice(notice),
            keys: found.items.iter().map(|k| k.view()).collect(),
            pager,
            shown,
            error,
        },
    )
}

#[derive(serde::Deserialize)]
pub struct KeysQuery {
    after: Option<String>,
}

pub async fn list(
    State(st): State<AppState>,
    Ui(admin): Ui,
    axum::extract::Query(q): axum::extract::Query<KeysQuery>,
) -> Response {
    if let Some(r) = operator_only(&admin) {
        return r;
    }
    render(
        &st,
        &admin,
        StatusCode::OK,
        q.after.as_deref(),
        None,
        None,
        None,
    )
    .await
}

/// `POST /ui/service-keys`: a new key, shown on this answer only.
pub async fn create(State(st): State<AppState>, p: Posted<HashMap<String, String>>) -> Response {
    if let Some(r) = operator_only(&p.ui) {
        return r;
    }
    let name = p.form.get("name").map(|n| n.trim()).unwrap_or_default();
    match service_keys::create(&st.core, &p.ui.actor(), name).await {
        Ok((k, key)) => {
            let shown = Reveal {
                heading: format!("Service key {} created", k.name),
                note: "Platform code presents it as `Authorization: Bearer …` to read a connection's credentials. Copy it now: it is never shown again.".into(),
                fields: vec![("Service key".into(), key)],
            };
            render(
                &st,
                &p.ui,
                StatusCode::CREATED,
                None,
                Some(shown),
                None,
                None,
            )
            .await
        }
        Err(e) => {
            let e: ApiError = e.into();
            render(&st, &p.ui, e.status, None, None, None, Some(e.message)).await
        }
    }
}

/// `POST /ui/service-keys/{name}/revoke` (the form behind the page's
/// confirmation).
pub async fn revoke(
    State(st): State<AppState>,
    Path(name): Path<String>,
    p: Posted<HashMap<String, String>>,
) -> Response {
    if let Some(r) = operator_only(&p.ui) {
        return r;
    }
    match service_keys::revoke(&st.core, &p.ui.actor(), &name).await {
        Ok(()) => {
            let notice = format!("Service key {name} is revoked: platform code presenting it is refused from now on.");
            render(&st, &p.ui, StatusCode::OK, None, None, Some(notice), None).await
        }
        Err(e) => {
            let e: ApiError = e.into();
            render(&st, &p.ui, e.status, None, None, None, Some(e.message)).await
        }
    }
}
