//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the admin API,
//! the platform API and the OAuth endpoints, generated from the handlers'
//! `#[utoipa::path]` annotations and their bodies' `ToSchema`. A route the
//! router serves under `/api/v1`, `/v1` or `/oauth2` without an entry here
//! fails the `openapi` integration test.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi};

use super::error::{AdminErrorBody, OAuthErrorBody, SeedErrorBody};
use super::{
    apps, audit, authorize, blast, connect, connections, events, incidents, keys, oauth,
    oauth_seed, oauth_std, ops, orgs, people, platform, rotations, service_keys, session, users,
};

/// `{org}`: an org named by its slug (or id).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct OrgParam {
    /// The org's slug (or id).
    #[param(example = "acme")]
    org: String,
}

/// `{app}`: an OAuth application by name, client id or id.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct AppParam {
    /// The application's name, client id or id.
    #[param(example = "billing")]
    app: String,
}

/// `{name}`: an access key or a machine client by name (or id).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct NameParam {
    /// The access key's or machine client's name (or id).
    #[param(example = "etl")]
    name: String,
}

/// `{conn}`: a connection by name (or id).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct ConnParam {
    /// The connection's name (or id).
    #[param(example = "cache")]
    conn: String,
}

/// `?limit=&after=`: a list a page at a time by keyset. Where a list
/// answers whole without them (its contract before paging), either one asks
/// for a page.
#[derive(serde::Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Entries per page, 1–1000 (50 when only `after` is given).
    #[serde(default)]
    pub limit: Option<String>,
    /// The page after this cursor (`next_after` of the page before).
    #[serde(default)]
    pub after: Option<String>,
}

impl PageQuery {
    /// Whether a page is asked for (a list that answers whole without).
    pub fn asks(&self) -> bool {
        self.limit.is_some() || self.after.is_some()
    }

    /// The page size (checked, 50 when not given) and the cursor (none for
    /// the first page).
    pub fn page(&self) -> Result<(i64, Option<&str>), super::ApiError> {
        let n = super::users::limit(
            self.limit.as_deref(),
            crate::store::keyset::PAGE,
            crate::store::keyset::MAX,
        )?;
        Ok((n, self.after.as_deref().filter(|a| !a.is_empty())))
    }
}

/// `{id}`: an object by its id.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct IdParam {
    /// The object's id.
    #[param(example = "01J9Z3Q4W5E6R7T8Y9U0I1O2P3")]
    id: String,
}

/// `{kind}`: a connector kind of the catalog.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct KindParam {
    /// The connector kind (`rekey connector list`).
    #[param(example = "redis")]
    kind: String,
}

/// `POST …/keys`: a new access key, shown once (the handler lives in
/// `keys.rs`; the shape is described here).
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"id": "01J9Z3Q4W5E6R7T8Y9U0I1O2P3", "key": "rk_ak_9dX…", "name": "etl", "scope": "read"}))]
#[allow(dead_code)]
pub struct NewKey {
    id: String,
    key: String,
    name: String,
    scope: String,
}

/// `POST …/keys/{name}/reset`: the key's new value, shown once.
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"id": "01J9Z3Q4W5E6R7T8Y9U0I1O2P3", "key": "rk_ak_2kP…", "name": "etl"}))]
#[allow(dead_code)]
pub struct ResetKey {
    id: String,
    key: String,
    name: String,
}

/// The security schemes the operations name.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        let key = |kind: fn(ApiKeyValue) -> ApiKey, name: &str, what: &str| {
            SecurityScheme::ApiKey(kind(ApiKeyValue::with_description(name, what)))
        };
        c.add_security_scheme(
            "session",
            key(
                ApiKey::Cookie,
                super::extract::SESSION_COOKIE,
                "The admin session cookie set by `POST /api/v1/session`.",
            ),
        );
        c.add_security_scheme(
            "csrf",
            key(
                ApiKey::Header,
                "X-CSRF-Token",
                "The session's CSRF token (`csrf_token` of `POST /api/v1/session`); required on every admin write.",
            ),
        );
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description =
            Some("An OAuth access token (`rk_at_…`) or a machine client's token.".to_string());
        c.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        c.add_security_scheme(
            "accesskey",
            key(ApiKey::Header, "Accesskey", "An access key (`rk_ak_…`)."),
        );
        let mut basic = Http::new(HttpAuthScheme::Basic);
        basic.description = Some(
            "The client's id and secret (`client_secret_basic`); `client_secret_post` puts them in the form instead.".to_string(),
        );
        c.add_security_scheme("client_basic", SecurityScheme::Http(basic));
        let mut service = Http::new(HttpAuthScheme::Bearer);
        service.description = Some("A platform service key (`rk_sk_…`).".to_string());
        c.add_security_scheme("service_key", SecurityScheme::Http(service));
    }
}

/// Operation ids are the handlers' names, which repeat across files
/// (`apps::list`, `connections::list`): a repeated one gets its tag in
/// front (`apps_list`), so every id is unique as OpenAPI requires.
struct UniqueIds;

impl Modify for UniqueIds {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let mut seen = std::collections::HashMap::<String, usize>::new();
        let ops = || doc.paths.paths.values();
        for item in ops() {
            for op in operations(item) {
                if let Some(id) = &op.operation_id {
                    *seen.entry(id.clone()).or_default() += 1;
                }
            }
        }
        for item in doc.paths.paths.values_mut() {
            for op in operations_mut(item) {
                let Some(id) = op.operation_id.clone() else {
                    continue;
                };
                if seen.get(&id).copied().unwrap_or(0) > 1 {
                    let tag = op.tags.as_ref().and_then(|t| t.first()).cloned();
                    op.operation_id = Some(format!("{}_{id}", tag.unwrap_or_default()));
                }
            }
        }
    }
}

fn operations(
    item: &utoipa::openapi::PathItem,
) -> impl Iterator<Item = &utoipa::openapi::path::Operation> {
    [
        &item.get,
        &item.put,
        &item.post,
        &item.delete,
        &item.patch,
        &item.head,
        &item.options,
        &item.trace,
    ]
    .into_iter()
    .flatten()
}

fn operations_mut(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rekey",
        description = "The admin API (`/api/v1`), the platform API (`/v1/people`, `/v1/me`) and the OAuth endpoints \
(standard under `/oauth2`, seed-compatible under `/v1`) of rekey: an OAuth 2.0 authorization server, credential vault \
and rotation engine.\n\n\
Errors come in the format of the endpoint: the admin API answers `{error, message}`; the standard OAuth endpoints and \
the platform API answer RFC 6749's `{error, error_description}`; the seed-compatible endpoints answer the envelope \
`{result, errorCode, errorDesc, requestId, data, message}`. Every answer carries `X-Request-Id`.\n\n\
Times are RFC 3339 strings named `…_at`; durations are seconds named `…_s`, and a duration given in a body is `30s`, \
`15m`, `1h`, `90d` or a number of seconds.",
        license(name = "Apache-2.0"),
    ),
    paths(
        session::login, session::whoami, session::logout,
        orgs::list, orgs::create,
        service_keys::list, service_keys::create, service_keys::revoke,
        apps::list, apps::create, apps::show, apps::update, apps::delete,
        apps::deactivate, apps::activate, apps::regenerate_secret, apps::end_overlap,
        apps::authorizations, apps::revoke_authorization,
        keys::list_keys, keys::create_key, keys::revoke_key, keys::reset_key, keys::end_key_overlap,
        users::list, users::create, users::update, users::deactivate, users::activate,
        audit::org_list, audit::list,
        keys::list_m2m, keys::create_m2m, keys::delete_m2m, keys::regenerate_m2m,
        keys::deactivate_m2m, keys::activate_m2m, keys::end_m2m_overlap,
        connections::catalog_list, connections::catalog_show, connections::configure,
        connections::list, connections::create, connections::show, connections::update,
        connections::delete, connections::test, connections::authorize,
        connections::reauthenticate, connections::revoke, connections::set_credential,
        connections::set_client, connections::read_credentials, connections::callback,
        connect::get, connect::post,
        events::activity, events::create, events::list, events::delete, events::deliveries,
        events::webhook_deliveries, events::replay, events::test,
        rotations::start, rotations::list, rotations::show, rotations::cancel,
        rotations::finish, rotations::retry, rotations::step, rotations::age,
        rotations::org_age,
        incidents::start, incidents::list, incidents::show, incidents::progress, incidents::cancel,
        incidents::retry, incidents::report, blast::post,
        platform::me, people::get, people::put, people::delete, people::changes,
        super::deliveries::enable, super::deliveries::status, super::deliveries::disable,
        super::deliveries::pause, super::deliveries::resume, super::deliveries::start_backfill,
        super::deliveries::cancel_backfill, super::deliveries::list,
        oauth_std::token, oauth_std::revoke, oauth_std::introspect, oauth::metadata,
        authorize::std_get, authorize::std_post, authorize::seed_get, authorize::seed_post,
        oauth_seed::token, oauth_seed::revoke,
        ops::healthz, ops::readyz, ops::metrics,
        openapi_json,
    ),
    components(schemas(AdminErrorBody, OAuthErrorBody, SeedErrorBody)),
    modifiers(&Security, &UniqueIds),
    tags(
        (name = "session", description = "Admin sign-in: a session cookie and a CSRF token for writes."),
        (name = "orgs", description = "The platform's orgs (the operator)."),
        (name = "service-keys", description = "The platform's service keys, what platform code presents to read credentials (the operator)."),
        (name = "apps", description = "OAuth applications of an org and their authorizations."),
        (name = "keys", description = "Access keys of an org."),
        (name = "m2m", description = "Machine clients (client credentials grant) of an org."),
        (name = "connectors", description = "The connector catalog."),
        (name = "connections", description = "Connections to outside systems and the credentials rekey holds for them."),
        (name = "deliveries", description = "Deliveries of an org's People changes to its connections, and backfills."),
        (name = "webhooks", description = "Signed webhooks for the events a person must act on, and their deliveries."),
        (name = "rotations", description = "Make-before-break rotations and the age of every credential."),
        (name = "incidents", description = "Campaigns that rotate or revoke everything in a scope."),
        (name = "platform", description = "The platform API, called with an OAuth access token or an access key."),
        (name = "oauth2", description = "Standard OAuth 2.0 (RFC 6749, 7009, 7662, 8414, PKCE)."),
        (name = "seed", description = "Seed-compatible OAuth endpoints: camelCase JSON and the result envelope."),
        (name = "ops", description = "Liveness, readiness, metrics and this document."),
    ),
)]
pub struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"server_error\",\"message\":\"{e}\"}}"))
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "ops",
    responses((status = 200, description = "The OpenAPI 3.1 document.", content_type = "application/json", body = Object)),
    security(()),
)]
pub async fn openapi_json() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        document(),
    )
        .into_response()
}
