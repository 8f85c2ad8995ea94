//! `POST /api/v1/blast-radius` (the platform operator): what a value found
//! in a log or a repository is, whom it speaks for, what it unlocks, and
//! — with `"revoke": true` — kill it, as `rekey incident blast-radius`
//! does. The value is in the body, never in a URL (it would be logged).

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::apps::body;
use super::extract::AdminSession;
use super::{ApiError, AppState};
use crate::audit::Actor;
use crate::incident::blast::{self, Query};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ask {
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub m2m: Option<String>,
    #[serde(default)]
    pub connection: Option<String>,
    #[serde(default)]
    pub revoke: bool,
}

/// Looks the value (or the named credential) up and, when asked, revokes
/// it; the answer is the CLI's `--json` document.
pub async fn ask(
    core: &crate::state::Core,
    actor: &Actor,
    a: Ask,
) -> Result<serde_json::Value, ApiError> {
    let org_id = match &a.org {
        Some(slug) => {
            crate::identity::orgs::find_in(&core.db, slug)
                .await
                .map_err(|_| ApiError::not_found(format!("org {slug:?} not found")))?
                .id
        }
        None => String::new(),
    };
    let named = [&a.key, &a.app, &a.m2m, &a.connection]
        .iter()
        .filter(|x| x.is_some())
        .count();
    let q = match (a.key, a.app, a.m2m, a.connection, a.value) {
        _ if named > 1 => {
            return Err(ApiError::bad_request(
                "name one credential: key, app, m2m or connection",
            ))
        }
        (Some(name), ..) => Query::Key { org_id, name },
        (None, Some(name), ..) => Query::App { org_id, name },
        (None, None, Some(name), ..) => Query::M2m { org_id, name },
        (None, None, None, Some(name), _) => Query::Connection { org_id, name },
        (None, None, None, None, Some(v)) if !v.trim().is_empty() => {
            Query::Secret(v.trim().to_string())
        }
        _ => {
            return Err(ApiError::bad_request(
                "send the value found (\"value\"), or name a credential",
            ))
        }
    };
    let r = blast::look_up(core, actor, q).await?;
    let mut answer = r.answer.clone();
    if a.revoke {
        match &r.revoke {
            Some(kill) => answer["revoke"] = blast::revoke(core, actor, kill).await?,
            None => {
                return Err(ApiError::conflict(
                    "nothing to revoke: the value is not live or not rekey's",
                ))
            }
        }
    }
    Ok(answer)
}

pub async fn post(
    State(st): State<AppState>,
    admin: AdminSession,
    b: Result<Json<Ask>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(b)?;
    if !admin.session.principal.is_operator() {
        return Err(ApiError::forbidden(
            "only a platform operator looks up the blast radius of a value",
        ));
    }
    let answer = ask(&st.core, &admin.actor(), b).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response())
}
