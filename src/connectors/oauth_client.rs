//! rekey as an OAuth client of a provider: the authorization request (state
//! and PKCE), the callback and code exchange, refresh, and revocation.

use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::catalog::{AuthMethod, ClientAuthStyle, OAuthSpec};
use super::connections::{self, Connection};
use super::template::{render, Vars};
use super::{hosts, probe, provider_clients, ConnectorError};
use crate::audit::Actor;
use crate::crypto::keyring::Place;
use crate::crypto::sealed;
use crate::crypto::token::{self, TokenKind};
use crate::egress;
use crate::events::activity::{self, ActivityType};
use crate::exec;
use crate::state::Core;

/// How long a started authorization may take.
const STATE_TTL_MS: i64 = 10 * 60_000;
/// Refresh at least this often even when the access token lives longer, so a
/// refresh token with a short idle life (rekey's own: one hour) never lapses.
pub const MAX_IDLE_MS: i64 = 30 * 60_000;

#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorize: Option<String>,
    pub token: String,
    pub revoke: Option<String>,
    /// Every endpoint is the catalog's own (see [`super::hosts`]): only
    /// then may the operator's kind-wide client be presented to them.
    pub catalog_own: bool,
}

fn spec(method: &AuthMethod) -> Result<&OAuthSpec, ConnectorError> {
    method.oauth.as_ref().ok_or_else(|| {
        ConnectorError::Invalid(format!(
            "{} connections do not use OAuth",
            method.method.as_str()
        ))
    })
}

/// The provider's endpoints: per-connection overrides, else RFC 8414
/// discovery (when the kind says so), else the catalog's templates.
pub async fn endpoints(
    core: &Core,
    conn: &Connection,
    method: &AuthMethod,
) -> Result<Endpoints, ConnectorError> {
    let spec = spec(method)?;
    let kind = conn.kind()?;
    let settings = conn.settings();
    let empty = Map::new();
    let vars = Vars {
        settings: &settings,
        credentials: &empty,
    };
    let r = |t: &str| hosts::render_url(kind, t, &vars);
    let token = r(&spec.token_url)?;
    let authorize = spec.authorize_url.as_deref().map(r).transpose()?;
    let revoke = spec.revoke_url.as_deref().map(r).transpose()?;
    let mut e = Endpoints {
        catalog_own: token.own
            && authorize.as_ref().is_none_or(|a| a.own)
            && revoke.as_ref().is_none_or(|a| a.own),
        authorize: authorize.map(|a| a.url),
        token: token.url,
        revoke: revoke.map(|a| a.url),
    };
    if spec.discovery {
        if let Some(base) = settings.get("base_url").and_then(Value::as_str) {
            let meta = discover(core, base).await?;
            e.authorize = Some(meta.authorize);
            e.token = meta.token;
            e.revoke = meta.revoke.or(e.revoke);
            e.catalog_own = false;
        }
    }
    let o = conn.endpoints();
    let over = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(a) = over("authorize_url") {
        e.authorize = Some(a);
        e.catalog_own = false;
    }
    if let Some(t) = over("token_url") {
        e.token = t;
        e.catalog_own = false;
    }
    if let Some(r) = over("revoke_url") {
        e.revoke = Some(r);
        e.catalog_own = false;
    }
    Ok(e)
}

#[derive(Clone, Debug)]
struct Discovered {
    authorize: String,
    token: String,
    revoke: Option<String>,
}

/// RFC 8414 metadata of the provider at `base`, cached for five minutes
/// (metadata changes rarely, and a keeper refreshing thousands of
/// connections of one provider should not fetch it thousands of times).
/// The metadata's `issuer` must be `base` (RFC 8414 §3.3) and every
/// endpoint must be on its origin: a provider cannot send rekey's tokens or
/// secrets to a host of its choosing.
async fn discover(core: &Core, base: &str) -> Result<Discovered, ConnectorError> {
    type Cache =
        std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Discovered)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let base = base.trim_end_matches('/');
    let url = format!("{base}/.well-known/oauth-authorization-server");
    let cache = CACHE.get_or_init(Default::default);
    if let Some((at, v)) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&url) {
        if at.elapsed() < Duration::from_secs(300) {
            return Ok(v.clone());
        }
    }
    let unavailable = |m: String| ConnectorError::Unavailable(format!("discovery at {url}: {m}"));
    let resp = core
        .egress
        .get(&url)
        .await
        .map_err(|e| ConnectorError::Invalid(e.to_string()))?
        .send()
        .await
        .map_err(|e| unavailable(egress::describe(&e)))?;
    if !resp.status().is_success() {
        return Err(unavailable(format!("HTTP {}", resp.status().as_u16())));
    }
    let meta: Value = resp
        .json()
        .await
        .map_err(|_| unavailable("the metadata is not JSON".into()))?;
    let d = check_metadata(base, &meta)?;
    let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
    if c.len() > 1000 {
        c.clear();
    }
    c.insert(url, (std::time::Instant::now(), d.clone()));
    Ok(d)
}

fn check_metadata(base: &str, meta: &Value) -> Result<Discovered, ConnectorError> {
    let get = |k: &str| meta.get(k).and_then(Value::as_str).map(str::to_string);
    let refuse = |m: String| ConnectorError::Invalid(format!("discovery refused: {m}"));
    let issuer = get("issuer").unwrap_or_default();
    if issuer.trim_end_matches('/') != base {
        return Err(refuse(format!(
            "the metadata's issuer {issuer:?} is not {base:?} (RFC 8414 section 3.3)"
        )));
    }
    let origin = hosts::origin(base);
    let same_origin = |k: &str, v: &str| {
        if origin.is_some() && hosts::origin(v) == origin {
            Ok(v.to_string())
        } else {
            Err(refuse(format!("{k} {v:?} is not on the issuer's origin")))
        }
    };
    let need = |k: &str| {
        get(k)
            .ok_or_else(|| refuse(format!("the metadata has no {k}")))
            .and_then(|v| same_origin(k, &v))
    };
    Ok(Discovered {
        authorize: need("authorization_endpoint")?,
        token: need("token_endpoint")?,
        revoke: get("revocation_endpoint")
            .map(|v| same_origin("revocation_endpoint", &v))
            .transpose()?,
    })
}

fn verifier_place(digest: &str) -> Place<'_> {
    Place {
        table: "connection_states",
        column: "verifier",
        row: digest,
    }
}

pub(super) fn provider_url_place(digest: &str) -> Place<'_> {
    Place {
        table: "connection_states",
        column: "provider_url",
        row: digest,
    }
}

/// A started authorization, not yet bound to a browser.
#[derive(Debug)]
pub struct Begun {
    pub conn: Connection,
    /// The client rekey presents to the provider.
    pub client_id: String,
    /// The single-use `state`; also the key of the flow's start link.
    pub state: String,
    pub expires_at: i64,
}

impl Begun {
    /// The link a person opens (see [`super::flow`]): it signs them in,
    /// binds the flow to their browser and sends it on to the provider.
    pub fn link(&self, public_url: &str) -> String {
        super::flow::link(public_url, &self.state)
    }
}

/// Starts authorizing (or re-authenticating) a connection. `state` is
/// single use, lives ten minutes, and is bound to the connection; the
/// provider URL (which carries it) is held sealed until a signed-in admin's
/// browser is bound to the flow ([`super::flow::bind`]), and the callback
/// completes only in that browser. `campaign` names the campaign the flow
/// is issued for, if any.
pub async fn start(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    key: &str,
    public_url: &str,
    campaign: Option<&str>,
) -> Result<Begun, ConnectorError> {
    let conn = connections::find_in(&core.db, org_id, key).await?;
    let method = conn.method()?;
    if !method.is_oauth_code() {
        return Err(ConnectorError::Invalid(format!(
            "{} uses {}; set its credential with `rekey connection set-credential`",
            conn.name, conn.auth
        )));
    }
    let spec = spec(method)?;
    let ep = endpoints(core, &conn, method).await?;
    let authorize = ep.authorize.ok_or_else(|| {
        ConnectorError::Invalid("the provider has no authorization endpoint".into())
    })?;
    let mut c = core.db.read().await?;
    let (client_id, _) = provider_clients::resolve(&mut c, core, &conn, ep.catalog_own).await?;
    drop(c);
    let state = token::mint(TokenKind::OAuthState);
    let digest = core.pepper.digest(&state);
    let verifier = format!(
        "{}{}",
        B64URL.encode(rand_bytes()),
        B64URL.encode(rand_bytes())
    );
    let challenge = B64URL.encode(Sha256::digest(verifier.as_bytes()));
    let redirect_uri = format!("{}/oauth/callback", public_url.trim_end_matches('/'));
    let settings = conn.settings();
    let empty = Map::new();
    let vars = Vars {
        settings: &settings,
        credentials: &empty,
    };
    let scopes: Vec<String> = spec
        .scopes
        .iter()
        .filter_map(|s| render(s, &vars).ok())
        .collect();
    let mut u = url::Url::parse(&authorize).map_err(|_| {
        ConnectorError::Invalid(format!("authorization endpoint {authorize:?} is not a URL"))
    })?;
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("state", &state);
        if !scopes.is_empty() {
            q.append_pair(
                "scope",
                &scopes.join(spec.scope_separator.as_deref().unwrap_or(" ")),
            );
        }
        if spec.pkce {
            q.append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
        }
        for (k, v) in &spec.authorize_params {
            if let Ok(v) = render(v, &vars) {
                q.append_pair(k, &v);
            }
        }
    }
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    exec!(
        &mut tx,
        "INSERT INTO connection_states (digest, connection_id, started_by, redirect_uri, created_at, expires_at, campaign_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &digest,
        &conn.id,
        &actor.name,
        &redirect_uri,
        now,
        now + STATE_TTL_MS,
        campaign
    )?;
    sealed::put(
        &mut tx,
        &core.keyring,
        provider_url_place(&digest),
        u.as_str().as_bytes(),
        now,
    )
    .await?;
    sealed::put(
        &mut tx,
        &core.keyring,
        verifier_place(&digest),
        verifier.as_bytes(),
        now,
    )
    .await?;
    connections::record(
        &mut tx,
        now,
        actor,
        &conn,
        "connection.authorize_start",
        json!({"redirect_uri": redirect_uri, "campaign": campaign}),
    )
    .await?;
    tx.commit().await?;
    Ok(Begun {
        conn,
        client_id,
        state,
        expires_at: now + STATE_TTL_MS,
    })
}

fn rand_bytes() -> [u8; 24] {
    use rand::RngCore;
    let mut b = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// The provider sent the browser back. Checks `state` and that this is
/// the browser the flow was bound to (`browser`: the flow cookie's value)
/// before anything is written — a request from anywhere else neither
/// completes the flow nor uses it up — then consumes `state`, exchanges the
/// code, stores the tokens, probes and sets the status, as the admin whose
/// browser it is.
pub async fn callback(
    core: &Core,
    state: &str,
    code: Option<&str>,
    error: Option<&str>,
    ip: Option<String>,
    browser: Option<&str>,
) -> Result<Connection, ConnectorError> {
    let digest = core.pepper.digest(state.trim());
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let row = super::flow::check_callback(core, &mut tx, state, browser, now).await?;
    // The browser's binding is part of the compare-and-set: a rebinding
    // between the check and here loses the race instead of completing.
    let n = exec!(
        &mut tx,
        "UPDATE connection_states SET used_at = $1 WHERE digest = $2 AND used_at IS NULL AND browser_digest = $3",
        now,
        &digest,
        &row.browser_digest
    )?;
    if n != 1 {
        return Err(super::flow::invalid_link());
    }
    sealed::delete(&mut tx, provider_url_place(&digest)).await?;
    let verifier = sealed::get(&mut tx, &core.keyring, verifier_place(&digest))
        .await?
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    sealed::delete(&mut tx, verifier_place(&digest)).await?;
    let conn = connections::get(&mut tx, &row.connection_id).await?;
    // The admin whose browser completes it acts, not whoever (or whatever
    // campaign) issued the link.
    let actor = Actor::new(row.bound_by.clone().unwrap_or(row.started_by.clone()), ip);
    if let Some(err) = error {
        connections::record(
            &mut tx,
            now,
            &actor,
            &conn,
            "connection.authorize_denied",
            json!({"error": err}),
        )
        .await?;
        tx.commit().await?;
        return Err(ConnectorError::Provider(format!(
            "the provider answered {err}"
        )));
    }
    tx.commit().await?;
    let code = code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ConnectorError::Invalid("the provider sent no code".into()))?;
    let method = conn.method()?;
    let spec = spec(method)?;
    let ep = endpoints(core, &conn, method).await?;
    let mut c = core.db.read().await?;
    let (client_id, secret) =
        provider_clients::resolve(&mut c, core, &conn, ep.catalog_own).await?;
    drop(c);
    let mut form: Vec<(String, String)> = vec![
        ("grant_type".into(), "authorization_code".into()),
        ("code".into(), code.to_string()),
        ("redirect_uri".into(), row.redirect_uri.clone()),
    ];
    if spec.pkce {
        if let Some(v) = verifier {
            form.push(("code_verifier".into(), v));
        }
    }
    let settings = conn.settings();
    let empty = Map::new();
    for (k, v) in &spec.token_params {
        if let Ok(v) = render(
            v,
            &Vars {
                settings: &settings,
                credentials: &empty,
            },
        ) {
            form.push((k.clone(), v));
        }
    }
    let body = token_request(
        &core.egress,
        &ep.token,
        Some((spec.client_auth, &client_id, &secret)),
        form,
    )
    .await
    .map_err(|f| match f {
        Failure::InvalidGrant(m) | Failure::Refused(m) => ConnectorError::Provider(m),
        Failure::Unavailable { message, .. } => ConnectorError::Unavailable(message),
    })?;
    let creds = token_map(&body, None, now).map_err(ConnectorError::Provider)?;
    store_tokens_and_probe(core, &actor, &conn, creds, "connection.authorized").await
}

/// Stores tokens (first), then probes, then sets the status from the probe.
pub async fn store_tokens_and_probe(
    core: &Core,
    actor: &Actor,
    conn: &Connection,
    creds: Map<String, Value>,
    action: &str,
) -> Result<Connection, ConnectorError> {
    let method = conn.method()?;
    let now = core.now();
    let due = refresh_due(method.oauth.as_ref(), &creds, now);
    let mut tx = core.db.begin_write().await?;
    connections::put_credentials(&mut tx, core, conn, &creds, due, now).await?;
    // A new grant replaces the credential (a token refresh does not).
    connections::mark_rotated(&mut tx, &conn.id, now).await?;
    // The person's step of a rotation waiting for this grant is done with
    // it; its verification follows (below, or by the job after a crash).
    crate::rotation::credential_stored_in(&mut tx, &conn.id, None, now).await?;
    connections::record(
        &mut tx,
        now,
        actor,
        conn,
        action,
        json!({"scope": creds.get("scope"), "expires_at": creds.get("expires_at")}),
    )
    .await?;
    let detail = json!({"scope": creds.get("scope"), "by": actor.name});
    activity::record(
        &mut tx,
        &conn.org_id,
        &conn.id,
        ActivityType::Authorization,
        "authorized at the provider",
        detail,
        now,
    )
    .await?;
    tx.commit().await?;
    let out = probe::run(core, conn, &creds).await;
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    connections::record_test(&mut tx, conn, &out, now).await?;
    // A new grant that nothing can verify is still the grant the provider
    // just issued: connected, with the test saying `unverified`.
    if out.verdict != probe::Verdict::Failed {
        connections::set_status(&mut tx, actor, conn, "connected", None, now).await?;
    } else {
        connections::set_status(
            &mut tx,
            actor,
            conn,
            "error",
            Some(&format!("connection test failed: {}", out.message)),
            now,
        )
        .await?;
    }
    // The rotation waiting for this re-authorization is done (or told
    // why not) with the probe's record.
    crate::rotation::credential_stored_in(&mut tx, &conn.id, Some(&out), now).await?;
    tx.commit().await?;
    connections::get(&mut core.db.read().await?, &conn.id).await
}

/// When the keeper should refresh: before the access token expires (by the
/// kind's margin), and at least every `MAX_IDLE_MS`.
pub fn refresh_due(spec: Option<&OAuthSpec>, creds: &Map<String, Value>, now: i64) -> Option<i64> {
    creds.get("refresh_token").and_then(Value::as_str)?;
    let margin = margin_for(spec, creds);
    let by_expiry = creds
        .get("expires_at")
        .and_then(Value::as_i64)
        .map(|e| e - margin);
    let by_refresh_life = creds
        .get("refresh_expires_at")
        .and_then(Value::as_i64)
        .map(|e| e - margin);
    [by_expiry, by_refresh_life, Some(now + MAX_IDLE_MS)]
        .into_iter()
        .flatten()
        .min()
}

/// The refresh margin for these tokens: the kind's, but at most half the
/// access token's life (a token that lives a minute is not "expiring" the
/// moment it is issued).
pub fn margin_for(spec: Option<&OAuthSpec>, creds: &Map<String, Value>) -> i64 {
    let margin = spec.map(OAuthSpec::margin_ms).unwrap_or(300_000);
    let life = match (
        creds.get("expires_at").and_then(Value::as_i64),
        creds.get("obtained_at").and_then(Value::as_i64),
    ) {
        (Some(e), Some(o)) if e > o => e - o,
        _ => return margin,
    };
    margin.min(life / 2)
}

/// A provider's `expires_in`: seconds as a number or a numeral, between 0
/// and ten years (anything else is a broken or hostile answer).
fn lifetime_ms(v: &Value) -> Option<i64> {
    const MAX_SECS: i64 = 10 * 365 * 86_400;
    let secs = v
        .as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))?;
    (0..=MAX_SECS).contains(&secs).then(|| secs * 1000)
}

/// The credentials map from a token response. A response without a refresh
/// token keeps the previous one (providers that do not rotate).
pub fn token_map(
    body: &Value,
    previous: Option<&Map<String, Value>>,
    now: i64,
) -> Result<Map<String, Value>, String> {
    let access = body
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or("the token response has no access_token")?;
    let mut m = Map::new();
    m.insert("access_token".into(), json!(access));
    m.insert(
        "token_type".into(),
        body.get("token_type").cloned().unwrap_or(json!("Bearer")),
    );
    if let Some(s) = body.get("scope") {
        m.insert("scope".into(), s.clone());
    }
    for (field, key) in [
        ("expires_in", "expires_at"),
        ("refresh_token_expires_in", "refresh_expires_at"),
    ] {
        if let Some(v) = body.get(field) {
            let at = lifetime_ms(v)
                .and_then(|ms| now.checked_add(ms))
                .ok_or_else(|| {
                    format!("the token response's {field} is not a lifetime in seconds")
                })?;
            m.insert(key.into(), json!(at));
        }
    }
    match body.get("refresh_token").and_then(Value::as_str) {
        Some(r) => {
            m.insert("refresh_token".into(), json!(r));
        }
        None => {
            if let Some(r) = previous.and_then(|p| p.get("refresh_token")) {
                m.insert("refresh_token".into(), r.clone());
            }
            if let Some(r) = previous.and_then(|p| p.get("refresh_expires_at")) {
                m.insert("refresh_expires_at".into(), r.clone());
            }
        }
    }
    // Where the provider says the API of this grant lives.
    for k in ["instance_url", "api_domain"] {
        if let Some(Value::String(v)) = body.get(k).or_else(|| previous.and_then(|p| p.get(k))) {
            m.insert(k.into(), json!(v.trim_end_matches('/')));
        }
    }
    m.insert("obtained_at".into(), json!(now));
    Ok(m)
}

#[derive(Debug)]
pub enum Failure {
    /// The grant is dead (`invalid_grant`): a person must re-authorize.
    InvalidGrant(String),
    /// Refused for another reason (`invalid_client`, …): retried, not re-auth.
    Refused(String),
    /// Timeout, connection failure, 5xx or 429: retried with backoff.
    Unavailable {
        message: String,
        retry_after_ms: Option<i64>,
    },
}

/// POSTs `form` to a token endpoint, presenting `client` (style, id,
/// secret) when given (a JWT-assertion grant carries its own proof), and
/// sorts the answer into what the caller must do about it.
pub(super) async fn token_request(
    egress: &egress::Egress,
    url: &str,
    client: Option<(ClientAuthStyle, &str, &str)>,
    mut form: Vec<(String, String)>,
) -> Result<Value, Failure> {
    let mut req = egress
        .post(url)
        .await
        .map_err(|e| Failure::Refused(e.to_string()))?
        .header("accept", "application/json");
    match client {
        Some((ClientAuthStyle::Basic, id, secret)) => req = req.basic_auth(id, Some(secret)),
        Some((ClientAuthStyle::Body, id, secret)) => {
            form.push(("client_id".into(), id.into()));
            form.push(("client_secret".into(), secret.into()));
        }
        None => {}
    }
    let resp = req
        .form(&form)
        .send()
        .await
        .map_err(|e| match egress::refusal(&e) {
            // A refusal is a decision, not an outage: not retried.
            Some(r) => Failure::Refused(r.to_string()),
            None => Failure::Unavailable {
                message: if e.is_timeout() {
                    "the token endpoint timed out".into()
                } else {
                    "could not reach the token endpoint".into()
                },
                retry_after_ms: None,
            },
        })?;
    let status = resp.status();
    let retry_after_ms = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        // A peer's number: at most a day, never an overflow.
        .map(|s| s.clamp(0, 86_400) * 1000);
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let code = body.get("error").and_then(Value::as_str).unwrap_or("");
    let desc = body
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or("");
    let message = format!("HTTP {} {code} {desc}", status.as_u16())
        .trim()
        .to_string();
    if status.as_u16() == 429 || status.is_server_error() {
        return Err(Failure::Unavailable {
            message,
            retry_after_ms,
        });
    }
    if code == "invalid_grant" {
        return Err(Failure::InvalidGrant(message));
    }
    Err(Failure::Refused(message))
}

/// Calls the provider's token endpoint with the stored refresh token.
pub async fn refresh_call(
    core: &Core,
    conn: &Connection,
    creds: &Map<String, Value>,
) -> Result<Map<String, Value>, Failure> {
    let method = conn.method().map_err(|e| Failure::Refused(e.to_string()))?;
    let spec = spec(method).map_err(|e| Failure::Refused(e.to_string()))?;
    let rt = creds
        .get("refresh_token")
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::InvalidGrant("no refresh token is stored".into()))?;
    let ep = endpoints(core, conn, method).await.map_err(|e| match e {
        ConnectorError::Invalid(m) => Failure::Refused(m),
        e => Failure::Unavailable {
            message: e.to_string(),
            retry_after_ms: None,
        },
    })?;
    let mut c = core.db.read().await.map_err(|e| Failure::Unavailable {
        message: e.to_string(),
        retry_after_ms: None,
    })?;
    let (id, secret) = provider_clients::resolve(&mut c, core, conn, ep.catalog_own)
        .await
        .map_err(|e| Failure::Refused(e.to_string()))?;
    drop(c);
    let mut form = vec![
        ("grant_type".to_string(), "refresh_token".to_string()),
        ("refresh_token".to_string(), rt.to_string()),
    ];
    let settings = conn.settings();
    let empty = Map::new();
    for (k, v) in &spec.refresh_params {
        if let Ok(v) = render(
            v,
            &Vars {
                settings: &settings,
                credentials: &empty,
            },
        ) {
            form.push((k.clone(), v));
        }
    }
    let body = token_request(
        &core.egress,
        &ep.token,
        Some((spec.client_auth, &id, &secret)),
        form,
    )
    .await?;
    token_map(&body, Some(creds), core.now()).map_err(Failure::Refused)
}

/// Whether the provider accepts the OAuth client `conn` uses (its own, or
/// the kind's the operator configured) — after its secret was rotated,
/// before any connection depends on it. An authorization-code exchange
/// with a made-up code: RFC 6749 §4.1.3 has the server authenticate the
/// client before it looks at the code, so `invalid_grant` means the client
/// was accepted, and `invalid_client` (or 401) that it was not; any other
/// answer cannot tell.
pub async fn probe_client(core: &Core, conn: &Connection) -> probe::Outcome {
    let unverified = probe::Outcome::unverified;
    let (method, spec) = match conn.method().and_then(|m| Ok((m, spec(m)?))) {
        Ok(x) => x,
        Err(e) => return probe::Outcome::failed(e.to_string()),
    };
    let ep = match endpoints(core, conn, method).await {
        Ok(ep) => ep,
        Err(e) => return unverified(format!("the token endpoint is unknown: {e}")),
    };
    let client = match core.db.read().await {
        Ok(mut c) => provider_clients::resolve(&mut c, core, conn, ep.catalog_own).await,
        Err(e) => return unverified(e.to_string()),
    };
    let (id, secret) = match client {
        Ok(c) => c,
        Err(e) => return probe::Outcome::failed(e.to_string()),
    };
    let made_up = format!("rekey-client-probe-{}", B64URL.encode(rand_bytes()));
    let form = vec![
        ("grant_type".to_string(), "authorization_code".to_string()),
        ("code".to_string(), made_up),
    ];
    match token_request(
        &core.egress,
        &ep.token,
        Some((spec.client_auth, &id, &secret)),
        form,
    )
    .await
    {
        Err(Failure::InvalidGrant(m)) => probe::Outcome {
            verdict: probe::Verdict::Ok,
            message: format!(
                "the provider accepted client {id} (it refused only a made-up code: {m})"
            ),
        },
        Err(Failure::Refused(m)) if m.contains("invalid_client") || m.starts_with("HTTP 401") => {
            probe::Outcome::failed(format!("the provider refuses client {id}: {m}"))
        }
        Err(Failure::Refused(m)) | Err(Failure::Unavailable { message: m, .. }) => {
            unverified(format!("the provider's answer does not tell: {m}"))
        }
        Ok(_) => probe::Outcome::failed(
            "the provider issued a token for a made-up code; it cannot be trusted to check clients",
        ),
    }
}

/// Revokes the grant at the provider (when it has a revocation endpoint),
/// destroys the stored tokens, and marks the connection `disconnected`.
pub async fn revoke(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    key: &str,
) -> Result<(Connection, Option<String>), ConnectorError> {
    let conn = connections::find_in(&core.db, org_id, key).await?;
    let method = conn.method()?;
    let mut provider_note = None;
    if method.is_oauth_code() && conn.has_credentials {
        let ep = endpoints(core, &conn, method).await;
        let mut c = core.db.read().await?;
        let creds = connections::credentials(&mut c, core, &conn.id).await?;
        let own = ep.as_ref().is_ok_and(|e| e.catalog_own);
        let client = provider_clients::resolve(&mut c, core, &conn, own).await;
        drop(c);
        match (ep, client) {
            (
                Ok(Endpoints {
                    revoke: Some(url), ..
                }),
                Ok((id, secret)),
            ) => {
                let (token, hint) = match creds.get("refresh_token").and_then(Value::as_str) {
                    Some(r) => (r.to_string(), "refresh_token"),
                    None => (
                        creds
                            .get("access_token")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        "access_token",
                    ),
                };
                let req = core.egress.post(&url).await;
                let mut form = vec![
                    ("token".to_string(), token),
                    ("token_type_hint".to_string(), hint.to_string()),
                ];
                let sent = match req {
                    Err(e) => Err(e.to_string()),
                    Ok(mut req) => {
                        match spec(method)?.client_auth {
                            ClientAuthStyle::Basic => req = req.basic_auth(&id, Some(&secret)),
                            ClientAuthStyle::Body => {
                                form.push(("client_id".into(), id));
                                form.push(("client_secret".into(), secret));
                            }
                        }
                        req.form(&form)
                            .send()
                            .await
                            .map_err(|e| egress::describe(&e))
                    }
                };
                provider_note = Some(match sent {
                    Ok(r) if r.status().is_success() => "revoked at the provider".to_string(),
                    Ok(r) => format!(
                        "the provider's revocation answered HTTP {}",
                        r.status().as_u16()
                    ),
                    Err(e) => format!("the provider's revocation endpoint was not reached: {e}"),
                });
            }
            (
                Ok(Endpoints {
                    revoke: Some(_), ..
                }),
                Err(e),
            ) => {
                provider_note = Some(format!(
                    "not revoked at the provider ({e}); tokens were destroyed here"
                ))
            }
            (Ok(_), _) => {
                provider_note = Some(
                    "the provider has no revocation endpoint; tokens were destroyed here".into(),
                )
            }
            (Err(e), _) => {
                provider_note = Some(format!("could not reach the provider to revoke: {e}"))
            }
        }
    }
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    super::slots::clear(&mut tx, &conn.id).await?;
    exec!(
        &mut tx,
        "UPDATE connections SET has_credentials = FALSE, access_expires_at = NULL, refresh_due_at = NULL, updated_at = $1 WHERE id = $2",
        now,
        &conn.id
    )?;
    connections::record(
        &mut tx,
        now,
        actor,
        &conn,
        "connection.revoke_authorization",
        json!({"provider": provider_note}),
    )
    .await?;
    connections::set_status(
        &mut tx,
        actor,
        &conn,
        "disconnected",
        Some("authorization revoked"),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok((
        connections::find_in(&core.db, org_id, key).await?,
        provider_note,
    ))
}
