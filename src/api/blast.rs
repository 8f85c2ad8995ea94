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
use super::error::AdminWriteErrors;
use super::extract::AdminSession;
use super::{ApiError, AppState};
use crate::audit::Actor;
use crate::incident::blast::{self, Query};

/// A value found (in a log, a repository), or one credential named by its
/// org and name; `revoke` kills it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"value": "rk_ak_9dX…"}))]
pub struct Ask {
    /// The value found.
    #[serde(default)]
    pub value: Option<String>,
    /// The org of a named credential.
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
    /// Revoke what was found (an overlap's previous secret: end the overlap).
    #[serde(default)]
    pub revoke: bool,
}

/// What a value is: `found`, and for a live one its `type`, org and name,
/// whom it speaks for, what it unlocks, when it was last used, and the
/// command that kills it (`revoke` holds what revoking did).
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"found": true, "type": "access_key", "live": true, "org": "acme", "name": "etl", "which": "current", "speaks_for": {"org": "acme", "scope": "read", "user": null}, "unlocks": {"api": "the org's People API with scope read"}, "last_used_at": null, "last_used_from": null, "kill": "rekey key revoke --org acme --name etl"}))]
#[allow(dead_code)]
pub struct Radius {
    found: bool,
    #[schema(rename = "type")]
    kind: Option<String>,
    live: Option<bool>,
    org: Option<String>,
    name: Option<String>,
    message: Option<String>,
    speaks_for: Option<serde_json::Value>,
    unlocks: Option<serde_json::Value>,
    last_used_at: Option<String>,
    kill: Option<String>,
    revoke: Option<serde_json::Value>,
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

/// What a leaked value is and what it unlocks; with `revoke`, kill it (a
/// platform operator). The value goes in the body, never in a URL.
#[utoipa::path(
    post, path = "/api/v1/blast-radius", tag = "incidents", request_body = Ask,
    responses((status = 200, description = "What it is (and what revoking did).", body = Radius), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
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
