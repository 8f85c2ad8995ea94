//! Admin API for the catalog and connections, the OAuth callback, and the
//! credentials endpoint platform code reads with a service key.

use std::collections::{BTreeMap, HashMap};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use axum_extra::extract::cookie::CookieJar;

use super::apps::{body, org_for};
use super::error::{AdminErrorBody, AdminReadErrors, AdminWriteErrors};
use super::extract::{AdminSession, ClientIp};
use super::openapi::{ConnParam, KindParam, OrgParam};
use super::pages;
use super::{cookies, ApiError, AppState};
use crate::audit::Actor;
use crate::connectors::connections::{self, ConnectionView, NewConnection};
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
            ConnectorError::Store(s) => s.into(),
            other => ApiError::internal(other),
        }
    }
}

/// A connector kind of the catalog, as the API shows it.
#[derive(ToSchema)]
#[schema(example = json!({"kind": "redis", "name": "Redis", "category": "database", "settings": [{"key": "host", "label": "Host", "format": "hostname"}], "auth_methods": [{"method": "basic", "credentials": [{"key": "password", "secret": true}]}]}))]
#[allow(dead_code)]
pub struct ConnectorKind {
    kind: String,
    name: String,
    category: Option<String>,
    /// Where the provider documents it.
    docs: Option<String>,
    /// Host patterns the URLs of this kind must stay within.
    hosts: Vec<String>,
    /// The settings' input schema: key, label, format, default, optional.
    settings: Vec<Value>,
    /// The authentication methods, each with its credential fields,
    /// endpoints and rotation mode.
    auth_methods: Vec<Value>,
}

/// The connector catalog.
#[utoipa::path(
    get, path = "/api/v1/connectors", tag = "connectors",
    responses((status = 200, description = "Every connector kind.", body = Vec<ConnectorKind>), AdminReadErrors),
    security(()),
)]
pub async fn catalog_list() -> Result<Json<Value>, ApiError> {
    let c = catalog::catalog().map_err(ApiError::internal)?;
    Ok(Json(json!(c
        .values()
        .map(|k| k.view())
        .collect::<Vec<_>>())))
}

/// One connector kind.
#[utoipa::path(
    get, path = "/api/v1/connectors/{kind}", tag = "connectors", params(KindParam),
    responses((status = 200, description = "The kind.", body = ConnectorKind), AdminReadErrors),
    security(()),
)]
pub async fn catalog_show(Path(kind): Path<String>) -> Result<Json<Value>, ApiError> {
    let k = catalog::kind(&kind)
        .ok_or_else(|| ApiError::not_found(format!("connector kind {kind:?} not found")))?;
    Ok(Json(k.view()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"client_id": "provider-client-id", "client_secret": "provider-client-secret"}))]
pub struct Configure {
    client_id: String,
    client_secret: String,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"kind": "jira", "client_id": "provider-client-id", "configured": true}))]
pub struct Configured {
    kind: String,
    client_id: String,
    configured: bool,
}

/// Sets the platform's OAuth client at a provider (a platform operator).
#[utoipa::path(
    post, path = "/api/v1/connectors/{kind}/client", tag = "connectors", params(KindParam), request_body = Configure,
    responses((status = 200, description = "Configured.", body = Configured), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
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
    Ok(Json(json!(Configured {
        kind,
        client_id: b.client_id,
        configured: true,
    })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind": "redis", "name": "cache", "settings": {"host": "redis.example.com", "port": "6379"}}))]
pub struct Create {
    /// A connector kind of the catalog.
    kind: String,
    name: String,
    /// The authentication method, when the kind has several.
    auth: Option<String>,
    #[serde(default)]
    settings: BTreeMap<String, String>,
    #[serde(default)]
    endpoints: BTreeMap<String, String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"rotation_interval": "90d"}))]
pub struct Update {
    #[serde(default)]
    settings: BTreeMap<String, String>,
    #[serde(default)]
    endpoints: BTreeMap<String, String>,
    /// The rotation schedule (`"90d"`); `0` turns it off.
    #[serde(default)]
    rotation_interval: Option<crate::config::Dur>,
    /// How long a consumer may cache a credential it read (`"30s"`; `0`:
    /// read before each use), answered as `refresh_after_s` on every read.
    #[serde(default)]
    refresh_after: Option<crate::config::Dur>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"fields": {"password": "s3cret"}}))]
pub struct SetCredential {
    /// The credential's fields, as the kind's method names them.
    fields: BTreeMap<String, String>,
    /// Store it even though its test fails.
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"client_id": "org-own-client-id", "client_secret": "org-own-client-secret"}))]
pub struct SetClient {
    client_id: String,
    client_secret: String,
}

/// A connection's status.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ConnectionStatus {
    Connected,
    NeedsReauth,
    Error,
    Rotating,
    Disconnected,
}

/// Query of the connection list.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListQuery {
    /// Only connections in this status.
    #[param(inline)]
    status: Option<ConnectionStatus>,
    /// `true`: only connections whose rotation is due.
    rotation_due: Option<String>,
}

/// The org's connections.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/connections", tag = "connections", params(OrgParam, ListQuery),
    responses((status = 200, description = "The connections.", body = Vec<ConnectionView>), AdminReadErrors),
    security(("session" = [])),
)]
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

/// Creates a connection (settings only; credentials are set apart).
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/connections", tag = "connections", params(OrgParam), request_body = Create,
    responses((status = 201, description = "Created.", body = ConnectionView), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
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

/// One connection, with its credential slots and age (never a value).
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/connections/{conn}", tag = "connections", params(OrgParam, ConnParam),
    responses((status = 200, description = "The connection.", body = ConnectionView), AdminReadErrors),
    security(("session" = [])),
)]
pub async fn show(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let c = connections::find_in(&st.core.db, &o.id, &conn).await?;
    Ok(Json(json!(connections::detailed_view(&st.core, &c).await?)))
}

/// Changes settings, endpoints or the rotation schedule. Settings that
/// decide where a credential goes are frozen while one is held.
#[utoipa::path(
    patch, path = "/api/v1/orgs/{org}/connections/{conn}", tag = "connections", params(OrgParam, ConnParam), request_body = Update,
    responses((status = 200, description = "The connection as it is now.", body = ConnectionView), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn update(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
    b: Result<Json<Update>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let b = body(b)?;
    let o = org_for(&st, &admin, &org).await?;
    let mut c = connections::find_in(&st.core.db, &o.id, &conn).await?;
    let only_timing = b.rotation_interval.is_some() || b.refresh_after.is_some();
    if !b.settings.is_empty() || !b.endpoints.is_empty() || !only_timing {
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
    if let Some(d) = b.refresh_after {
        c = connections::set_refresh_after(&st.core, &admin.actor(), &o.id, &c.id, Some(d.ms()))
            .await?;
    }
    Ok(Json(json!(c.view_at(st.core.now()))))
}

/// Deletes a connection and its credentials.
#[utoipa::path(
    delete, path = "/api/v1/orgs/{org}/connections/{conn}", tag = "connections", params(OrgParam, ConnParam),
    responses((status = 204, description = "Deleted."), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn delete(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    connections::delete(&st.core, &admin.actor(), &o.id, &conn).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Tests the stored credential against the outside system.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/connections/{conn}/test", tag = "connections", params(OrgParam, ConnParam),
    responses((status = 200, description = "The connection with `last_test`.", body = ConnectionView), AdminWriteErrors,
        (status = 503, description = "The outside system is unreachable.", body = AdminErrorBody)),
    security(("session" = [], "csrf" = [])),
)]
pub async fn test(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let (c, _) = actions::test(&st.core, &admin.actor(), &o.id, &conn).await?;
    Ok(Json(json!(c.view())))
}

/// Where to send the browser to authorize (or re-authenticate) an OAuth connection.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"authorize_url": "https://auth.example.com/authorize?client_id=…&state=…", "client_id": "provider-client-id", "expires_at": "2026-01-01T00:10:00Z"}))]
pub struct AuthorizeAnswer {
    authorize_url: String,
    client_id: String,
    expires_at: String,
}

/// Starts the flow and binds it to the calling browser at once (it holds
/// the admin's session): the answer sets the flow cookie and carries the
/// provider URL to send that browser to. Only that browser can finish it.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/connections/{conn}/authorize", tag = "connections", params(OrgParam, ConnParam),
    responses((status = 200, description = "The provider URL; the flow cookie is set.", body = AuthorizeAnswer), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
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
        Json(AuthorizeAnswer {
            authorize_url: bound.provider_url.clone(),
            client_id: begun.client_id,
            expires_at: crate::clock::rfc3339(bound.expires_at),
        }),
    )
        .into_response())
}

/// Re-authenticates a connection: the authorize flow again; its settings stay.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/connections/{conn}/reauthenticate", tag = "connections", params(OrgParam, ConnParam),
    responses((status = 200, description = "The provider URL; the flow cookie is set.", body = AuthorizeAnswer), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn reauthenticate(
    st: State<AppState>,
    admin: AdminSession,
    jar: CookieJar,
    path: Path<(String, String)>,
) -> Result<Response, ApiError> {
    authorize(st, admin, jar, path).await
}

/// A connection after its authorization was revoked.
#[derive(Serialize, ToSchema)]
pub struct RevokedConnection {
    #[serde(flatten)]
    connection: ConnectionView,
    /// What the provider said to the revocation, if it was asked.
    provider: Option<String>,
}

/// Revokes the connection's authorization (at the provider too, where it can).
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/connections/{conn}/revoke-authorization", tag = "connections", params(OrgParam, ConnParam),
    responses((status = 200, description = "The connection, `disconnected`.", body = RevokedConnection), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
pub async fn revoke(
    State(st): State<AppState>,
    admin: AdminSession,
    Path((org, conn)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let o = org_for(&st, &admin, &org).await?;
    let (c, note) = oauth_client::revoke(&st.core, &admin.actor(), &o.id, &conn).await?;
    Ok(Json(json!(RevokedConnection {
        connection: c.view(),
        provider: note,
    })))
}

/// Sets the connection's credential; it is tested before it is stored.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/connections/{conn}/credential", tag = "connections", params(OrgParam, ConnParam), request_body = SetCredential,
    responses((status = 200, description = "Stored.", body = ConnectionView), AdminWriteErrors,
        (status = 422, description = "The credential's test failed; nothing was stored.", body = AdminErrorBody),
        (status = 503, description = "The outside system is unreachable.", body = AdminErrorBody)),
    security(("session" = [], "csrf" = [])),
)]
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

/// Sets the org's own OAuth client at the provider for this connection.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/connections/{conn}/client", tag = "connections", params(OrgParam, ConnParam), request_body = SetClient,
    responses((status = 200, description = "Set.", body = ConnectionView), AdminWriteErrors),
    security(("session" = [], "csrf" = [])),
)]
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
#[utoipa::path(
    get, path = "/oauth/callback", tag = "connections",
    params(
        ("state" = Option<String>, Query, description = "The flow's state."),
        ("code" = Option<String>, Query, description = "The provider's authorization code."),
        ("error" = Option<String>, Query, description = "The provider's error."),
    ),
    responses(
        (status = 200, description = "An HTML page: connected.", content_type = "text/html"),
        (status = 400, description = "An HTML page: the flow cannot complete.", content_type = "text/html"),
    ),
    security(()),
)]
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

/// The credentials a platform service key reads.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "01J9Z3Q4W5E6R7T8Y9U0I1O2P3", "name": "cache", "kind": "redis", "auth": "basic", "status": "connected", "settings": {"host": "redis.example.com", "port": "6379"}, "credentials": {"password": "s3cret"}, "refresh_after_s": 300}))]
pub struct CredentialsAnswer {
    id: String,
    name: String,
    kind: String,
    auth: String,
    status: String,
    settings: Map<String, Value>,
    /// The credential's fields, in plaintext: never keep them past
    /// `refresh_after_s`.
    credentials: Map<String, Value>,
    /// How long these credentials may be used before reading them again
    /// (also `Cache-Control: private, max-age=N`). A rotation keeps the
    /// previous credential working until every such time handed out for it
    /// has passed, so a consumer that honours it never fails.
    refresh_after_s: i64,
}

/// Names the consumer behind a service key (`X-Rekey-Consumer`), so that
/// several consumers sharing one key are tracked, and waited for, each on
/// its own.
pub const CONSUMER_HEADER: &str = "x-rekey-consumer";
/// Longest consumer name accepted.
const CONSUMER_MAX: usize = 128;

/// The consumer a read names, if any: printable ASCII of 1 to 128
/// characters, else a 400 before anything is recorded.
fn consumer(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(CONSUMER_HEADER) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(format!(
            "{CONSUMER_HEADER} must be 1 to {CONSUMER_MAX} printable ASCII characters"
        ))
    };
    let name = v.to_str().map_err(|_| bad())?;
    let printable = name.bytes().all(|b| (0x20..0x7f).contains(&b));
    if name.trim().is_empty() || name.len() > CONSUMER_MAX || !printable {
        return Err(bad());
    }
    Ok(Some(name.to_string()))
}

/// `GET /api/v1/orgs/{org}/connections/{id}/credentials` for a platform
/// service key: the current credentials, refreshed first when about to expire.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/connections/{conn}/credentials", tag = "connections",
    params(OrgParam, ConnParam,
        ("X-Rekey-Consumer" = Option<String>, Header, description = "The consumer behind the service key (1 to 128 printable ASCII characters): tracked, and waited for by a rotation's cut-over, as a reader of its own.")),
    responses((status = 200, description = "The credentials.", body = CredentialsAnswer), AdminReadErrors,
        (status = 400, description = "X-Rekey-Consumer is not 1 to 128 printable ASCII characters; nothing is recorded.", body = AdminErrorBody),
        (status = 503, description = "The provider is unreachable for a due refresh.", body = AdminErrorBody)),
    security(("service_key" = [])),
)]
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
    let consumer = consumer(&headers)?;
    let o = orgs::find_in(&st.core.db, &org)
        .await
        .map_err(|_| ApiError::not_found(format!("org {org:?} not found")))?;
    let reader = format!("service:{}", key.name);
    // Who reads which version, and until when it may use it: what a
    // rotation's cut-over waits on.
    let target = connections::find_in(&st.core.db, &o.id, &conn).await?;
    let refresh_after_ms = target.refresh_after_ms();
    let slot = crate::connectors::slots::served(&mut st.core.db.read().await?, &target).await?;
    let by = crate::connectors::slots::ReadBy {
        reader: &reader,
        consumer: consumer.as_deref(),
        ip: ip.as_deref(),
        refresh_after_ms,
    };
    crate::connectors::slots::record_read(&st.core, &target.id, slot, &by, st.core.now()).await?;
    let actor = Actor::new(reader, ip);
    let (c, creds) = credentials::read(
        &st.core,
        &o.id,
        &target.id,
        slot,
        &actor,
        consumer.as_deref(),
    )
    .await?;
    let settings = c.settings();
    let refresh_after_s = refresh_after_ms / 1000;
    let mut resp = Json(CredentialsAnswer {
        id: c.id,
        name: c.name,
        kind: c.kind,
        auth: c.auth,
        status: c.status,
        settings,
        credentials: creds,
        refresh_after_s,
    })
    .into_response();
    // Private: no shared cache may keep a credential; the reader may, for
    // as long as it was told.
    let cache = if refresh_after_s > 0 {
        header::HeaderValue::from_str(&format!("private, max-age={refresh_after_s}"))
            .unwrap_or(header::HeaderValue::from_static("no-store"))
    } else {
        header::HeaderValue::from_static("no-store")
    };
    resp.headers_mut().insert(header::CACHE_CONTROL, cache);
    Ok(resp)
}
