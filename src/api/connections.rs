//! Admin API for the catalog and connections, the OAuth callback, and the
//! credentials endpoint platform code reads with a service key.

use std::collections::{BTreeMap, HashMap};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use axum_extra::extract::cookie::CookieJar;

use super::apps::{body, org_for};
use super::extract::{AdminSession, ClientIp};
use super::pages;
use super::{cookies, ApiError, AppState};
use crate::audit::Actor;
use crate::connectors::connections::{self, NewConnection};
use crate::connectors::{
    actions, catalog, credentials, flow, oauth_client, provider_clients, service_keys,
    ConnectorError,
};
use crate::identity::orgs;

impl From<ConnectorError> for ApiError {
    fn from(e: ConnectorError) -> Self {
        match e {
            ConnectorError::Invalid(m) => ApiError::bad_request(m),
            ConnectorError::NotFound(m) => ApiError::not_found(format!("{m} not found")),
            ConnectorError::Forbidden(m) => ApiError::forbidden(m),
            ConnectorError::Conflict(m) => ApiError::conflict(format!("{m} already exists")),
            ConnectorError::Refused(m) => ApiError::conflict(m),
            ConnectorError::ProbeFailed(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "probe_failed", m)
            }
            ConnectorError::Provider(m) => {
                ApiError::new(StatusCode::CONFLICT, "provider_refused", m)
            }
            ConnectorError::Unavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "provider_unavailable", m)
            }
            ConnectorError::Identity(i) => i.into(),
            other => ApiError::internal(other),
        }
    }
}

pub async fn catalog_list() -> Result<Json<Value>, ApiError> {
    let c = catalog::catalog().map_err(ApiError::internal)?;
    Ok(Json(json!(c
        .values()
        .map(|k| k.view())
        .collect::<Vec<_>>())))
}

pub async fn catalog_show(Path(kind): Path<String>) -> Result<Json<Value>, ApiError> {
    let k = catalog::kind(&kind)
        .ok_or_else(|| ApiError::not_found(format!("connector kind {kind:?} not found")))?;
    Ok(Json(k.view()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Configure {
    client_id: String,
    client_secret: String,
}

pub async fn configure(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(kind): Path<String>,
    b: Result<Json<Configure>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let b = body(b)?;
    if !admin.session.principal.is_operator() {
        return Err(ApiError::forbidden(
            "only a platform operator configures a connector's OAuth client",
        ));
    }
    provider_clients::configure(
        &st.core,
        &admin.actor(),
        &kind,
        &b.client_id,
        &b.client_secret,
    )
    .await?;
    Ok(Json(
        json!({"kind": kind, "client_id": b.client_id, "configured": true}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Create {
    kind: String,
    name: String,
    auth: Option<String>,
    #[serde(default)]
    settings: BTreeMap<String, String>,
    #[serde(default)]
    endpoints: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    #[serde(default)]
    settings: BTreeMap<String, String>,
    #[serde(default)]
    endpoints: BTreeMap<String, String>,
    /// The rotation schedule (`"90d"`); `0` turns it off.
    #[serde(default)]
    rotation_interval: Option<crate::config::Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetCredential {
    fields: BTreeMap<String, String>,
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetClient {
    client_id: String,
    client_secret: String,
}

pub async fn list(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(org): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let l = connections::list(&st.core.db, &o.id, q.get("status").map(String::as_str)).await?;
    let due_only = q.get("rotation_due").is_some_and(|v| v == "true");
    let now = st.core.now();
    Ok(Json(json!(l
        .iter()
        .map(|c| c.view_at(now))
        .filter(|v| !due_only || v.rotation_due)
        .collect::<Vec<_>>())))
}

pub async fn create(
    State(st): State<AppState>,
    admin: AdminSession,
    Path(org): Path<String>,
    b: Result<Json<Create>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(b)?;
    let o = org_for(&st, &admin, &org).await?;
    let c = connections::create(
        &st.core,
        &admin.actor(),
        NewConnection {
            org_id: &o.id,
            kind: &b.kind,
            name: &b.name,
            auth: b.auth.as_deref(),
            settings: &b.settings,
            endpoints: &b.endpoints,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!(c.view()))).into_response())
}

pub async fn show(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let c = connections::find_in(&st.core.db, &o.id, &conn).await?;
    Ok(Json(json!(connections::detailed_view(&st.core, &c).await?)))
}

pub async fn update(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
    b: Result<Json<Update>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let b = body(b)?;
    let o = org_for(&st, &admin, &org).await?;
    let mut c = connections::find_in(&st.core.db, &o.id, &conn).await?;
    if !b.settings.is_empty() || !b.endpoints.is_empty() || b.rotation_interval.is_none() {
        c = connections::update(
            &st.core,
            &admin.actor(),
            &o.id,
            &conn,
            &b.settings,
            &b.endpoints,
        )
        .await?;
    }
    if let Some(d) = b.rotation_interval {
        let ms = Some(d.ms()).filter(|ms| *ms > 0);
        c = connections::set_rotation_interval(&st.core, &admin.actor(), &o.id, &c.id, ms).await?;
    }
    Ok(Json(json!(c.view_at(st.core.now()))))
}

pub async fn delete(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    connections::delete(&st.core, &admin.actor(), &o.id, &conn).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn test(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let (c, _) = actions::test(&st.core, &admin.actor(), &o.id, &conn).await?;
    Ok(Json(json!(c.view())))
}

/// Starts the flow and binds it to the calling browser at once (it holds
/// the admin's session): the answer sets the flow cookie and carries the
/// provider URL to send that browser to. Only that browser can finish it.
pub async fn authorize(
    State(st): State<AppState>,
    admin: AdminSession,
    jar: CookieJar,
    Path((org, conn)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let begun =
        oauth_client::start(&st.core, &admin.actor(), &o.id, &conn, &st.public_url, None).await?;
    let bound = flow::bind(&st.core, &begun.state, &admin.session, admin.ip.clone()).await?;
    Ok((
        jar.add(cookies::flow(&st, &bound, st.core.now())),
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "authorize_url": bound.provider_url,
            "client_id": begun.client_id,
            "expires_at": crate::clock::rfc3339(bound.expires_at),
        })),
    )
        .into_response())
}

pub async fn revoke(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let (c, note) = oauth_client::revoke(&st.core, &admin.actor(), &o.id, &conn).await?;
    let mut v = json!(c.view());
    v["provider"] = json!(note);
    Ok(Json(v))
}

pub async fn set_credential(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
    b: Result<Json<SetCredential>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let b = body(b)?;
    let o = org_for(&st, &admin, &org).await?;
    let (c, _) =
        actions::set_credential(&st.core, &admin.actor(), &o.id, &conn, &b.fields, b.force).await?;
    Ok(Json(json!(c.view())))
}

pub async fn set_client(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
    b: Result<Json<SetClient>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let b = body(b)?;
    let o = org_for(&st, &admin, &org).await?;
    let c = provider_clients::set_for_connection(
        &st.core,
        &admin.actor(),
        &o.id,
        &conn,
        &b.client_id,
        &b.client_secret,
    )
    .await?;
    Ok(Json(json!(c.view())))
}

/// `GET /oauth/callback`: the provider sends the browser back here. It
/// completes only in the browser the flow was bound to (its flow cookie);
/// anything else is refused with nothing written.
pub async fn callback(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let state = q.get("state").map(String::as_str).unwrap_or("");
    let tag = flow::cookie_tag(&st.core, state);
    let name = cookies::flow_name(&st, &tag);
    let browser = jar.get(&name).map(|c| c.value().to_string());
    let result = oauth_client::callback(
        &st.core,
        state,
        q.get("code").map(String::as_str),
        q.get("error").map(String::as_str),
        ip,
        browser.as_deref(),
    )
    .await;
    // The flow is over once its state is used (done or failed after it):
    // its cookie goes. A refusal before that leaves it for the real return.
    let used = result.is_ok() || !flow::is_pending(&st.core, state).await;
    let jar = if used && browser.is_some() {
        jar.add(cookies::flow_removal(&st, &tag))
    } else {
        jar
    };
    let page = match result {
        Ok(c) => {
            let slug = orgs::find_in(&st.core.db, &c.org_id)
                .await
                .map(|o| o.slug)
                .unwrap_or_default();
            let console = format!(
                "/ui/orgs/{}/connections/{}?notice=authorized",
                crate::web::page::seg(&slug),
                crate::web::page::seg(&c.name)
            );
            pages::connected_page(
                &c.name,
                &c.kind,
                &c.status,
                c.last_test_message.as_deref(),
                &console,
            )
        }
        Err(ConnectorError::Store(e)) => {
            tracing::error!(error = %e, "OAuth callback failed");
            pages::error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong; start the authorization again.",
            )
        }
        Err(e) => pages::error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    (jar, page).into_response()
}

/// `GET /api/v1/orgs/{org}/connections/{id}/credentials` for a platform
/// service key: the current credentials, refreshed first when about to expire.
pub async fn read_credentials(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path((org, conn)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .unwrap_or("");
    let key = service_keys::authenticate(&st.core, presented)
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized(
                "a platform service key is required (Authorization: Bearer rk_sk_…)",
            )
        })?;
    let o = orgs::find_in(&st.core.db, &org)
        .await
        .map_err(|_| ApiError::not_found(format!("org {org:?} not found")))?;
    let reader = format!("service:{}", key.name);
    // Who reads which version: what a rotation's cut-over waits on.
    let target = connections::find_in(&st.core.db, &o.id, &conn).await?;
    let slot = crate::connectors::slots::served(&mut st.core.db.read().await?, &target).await?;
    crate::connectors::slots::record_read(
        &st.core,
        &target.id,
        slot,
        &reader,
        ip.as_deref(),
        st.core.now(),
    )
    .await?;
    let actor = Actor::new(reader, ip);
    let (c, creds) = credentials::read(&st.core, &o.id, &target.id, slot, &actor).await?;
    let mut resp = Json(json!({
        "id": c.id,
        "name": c.name,
        "kind": c.kind,
        "auth": c.auth,
        "status": c.status,
        "settings": c.settings(),
        "credentials": creds,
    }))
    .into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}
