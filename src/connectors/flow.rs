//! Binding an OAuth connection flow to the browser of the admin who opens
//! it (security issue #22, item 10).
//!
//! The `state` in a provider's authorize URL alone proves nothing: the URL
//! can be shared, logged or left in history, and whoever completes it
//! chooses the provider account whose grant is stored. So a flow completes
//! only in the browser it was bound to:
//!
//! - A flow is started ([`super::oauth_client::start`]) with its provider
//!   URL held sealed. A person is given a *link* to rekey
//!   (`{public_url}/connect/{state}`), never the provider URL.
//! - Opening the link needs a signed-in admin who may act on the
//!   connection's org (for a campaign's flow: an admin of that org, not the
//!   operator). [`bind`] then mints a random value for a flow cookie in
//!   that browser, stores its digest with the state, and hands out the
//!   provider URL to redirect to. Opening it again (signed in) binds anew:
//!   the last browser opened wins, and only admins of the org can do it.
//! - The callback ([`check_callback`]) refuses a request without the cookie
//!   or with a wrong one *before* anything is written, so a stranger's
//!   request neither completes the flow nor uses it up; and it requires the
//!   binding admin's session to be still live. The admin is the actor.
//!
//! The flow cookie is `SameSite=Lax` (unlike the `Strict` session cookie)
//! because the provider's redirect back is a cross-site top-level
//! navigation, on which a `Strict` cookie is not sent.

use serde_json::json;
use subtle::ConstantTimeEq;

use super::connections::{self, Connection};
use super::oauth_client::provider_url_place;
use super::ConnectorError;
use crate::audit::Actor;
use crate::crypto::sealed;
use crate::crypto::token::{self, TokenKind};
use crate::identity::sessions::{self, Principal, Session};
use crate::state::Core;
use crate::store::Tx;
use crate::{exec, fetch_optional};

/// The link a person opens to start the flow in their browser.
pub fn link(public_url: &str, state: &str) -> String {
    format!("{}/connect/{state}", public_url.trim_end_matches('/'))
}

pub fn invalid_link() -> ConnectorError {
    ConnectorError::Invalid(
        "this authorization link is invalid, expired or already used; start again".into(),
    )
}

fn not_this_browser() -> ConnectorError {
    ConnectorError::Invalid(
        "this authorization must be finished in the browser that opened its link (its flow \
         cookie is missing or wrong); nothing was changed. Open the authorize link rekey gave \
         in your browser, signed in, and try again."
            .into(),
    )
}

/// What distinguishes one flow's cookie from another's, so that flows
/// opened side by side in one browser (a campaign's re-authorizations in
/// several tabs) do not overwrite each other's cookie. Keyed: it says
/// nothing about the state.
pub fn cookie_tag(core: &Core, state: &str) -> String {
    let d = core
        .pepper
        .digest(&format!("flow-cookie\0{}", state.trim()));
    d[d.len().saturating_sub(16)..].to_string()
}

#[derive(sqlx::FromRow, Debug)]
pub(super) struct StateRow {
    pub connection_id: String,
    pub started_by: String,
    pub redirect_uri: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub browser_digest: Option<String>,
    pub bound_by: Option<String>,
    pub bound_session: Option<String>,
    pub campaign_id: Option<String>,
}

/// The live, unused flow `state` names.
async fn pending<C: crate::store::AsEx>(
    core: &Core,
    c: &mut C,
    state: &str,
    now: i64,
) -> Result<StateRow, ConnectorError> {
    let state = state.trim();
    if !token::well_formed(TokenKind::OAuthState, state) {
        return Err(invalid_link());
    }
    let row = fetch_optional!(
        c,
        StateRow,
        "SELECT connection_id, started_by, redirect_uri, expires_at, used_at, browser_digest, bound_by, bound_session, campaign_id
         FROM connection_states WHERE digest = $1",
        core.pepper.digest(state)
    )?
    .ok_or_else(invalid_link)?;
    if row.used_at.is_some() || row.expires_at <= now {
        return Err(invalid_link());
    }
    Ok(row)
}

/// Whether `principal` may open (and so complete) this flow: an admin who
/// may act on the connection's org; for a campaign's flow, only an admin of
/// that org — the operator sees every org's links, and must not be able to
/// attach an account of their choosing to an org's connection.
fn may_open(principal: &Principal, row: &StateRow, conn: &Connection) -> bool {
    match (&row.campaign_id, principal) {
        (Some(_), Principal::OrgAdmin { org, .. }) => org.id == conn.org_id,
        (Some(_), Principal::Operator(_)) => false,
        (None, p) => p.can_act_on(&conn.org_id),
    }
}

/// A flow the link names, for the sign-in page: the connection and its org.
pub async fn describe(core: &Core, state: &str) -> Result<(Connection, String), ConnectorError> {
    let mut c = core.db.read().await?;
    let row = pending(core, &mut c, state, core.now()).await?;
    let conn = connections::get(&mut c, &row.connection_id).await?;
    let org = crate::identity::orgs::find(&mut c, &conn.org_id).await?;
    Ok((conn, org.slug))
}

/// A flow bound to a browser: where to send it, and its cookie.
#[derive(Debug)]
pub struct Bound {
    pub provider_url: String,
    /// The flow cookie's value (only its digest is stored).
    pub cookie_value: String,
    pub cookie_tag: String,
    pub expires_at: i64,
}

/// Binds flow `state` to the browser of `session`'s admin (see the module).
pub async fn bind(
    core: &Core,
    state: &str,
    session: &Session,
    ip: Option<String>,
) -> Result<Bound, ConnectorError> {
    let now = core.now();
    let digest = core.pepper.digest(state.trim());
    let mut tx = core.db.begin_write().await?;
    let row = pending(core, &mut tx, state, now).await?;
    let conn = connections::get(&mut tx, &row.connection_id).await?;
    if !may_open(&session.principal, &row, &conn) {
        return Err(ConnectorError::Forbidden(if row.campaign_id.is_some() {
            "a campaign's re-authorization is completed by an admin of the connection's org".into()
        } else {
            "this authorization is for a connection of another org".into()
        }));
    }
    let value = token::mint(TokenKind::Csrf);
    let actor = Actor::new(session.principal.actor_name(), ip);
    let n = exec!(
        &mut tx,
        "UPDATE connection_states SET browser_digest = $1, bound_by = $2, bound_session = $3
         WHERE digest = $4 AND used_at IS NULL",
        core.pepper.digest(&value),
        &actor.name,
        &session.id,
        &digest
    )?;
    if n != 1 {
        return Err(invalid_link());
    }
    let provider_url = sealed::get(&mut tx, &core.keyring, provider_url_place(&digest))
        .await?
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid_link)?;
    connections::record(
        &mut tx,
        now,
        &actor,
        &conn,
        "connection.authorize_open",
        json!({"campaign": row.campaign_id, "rebound": row.browser_digest.is_some()}),
    )
    .await?;
    tx.commit().await?;
    Ok(Bound {
        provider_url,
        cookie_value: value,
        cookie_tag: cookie_tag(core, state),
        expires_at: row.expires_at,
    })
}

/// The callback's checks, before anything is written: a live flow, this
/// browser's cookie (`browser`), and the binding admin still signed in and
/// still allowed to complete it.
pub(super) async fn check_callback(
    core: &Core,
    tx: &mut Tx,
    state: &str,
    browser: Option<&str>,
    now: i64,
) -> Result<StateRow, ConnectorError> {
    let row = pending(core, tx, state, now).await?;
    let (Some(stored), Some(presented)) = (&row.browser_digest, browser) else {
        return Err(not_this_browser());
    };
    let presented = core.pepper.digest(presented);
    if !bool::from(presented.as_bytes().ct_eq(stored.as_bytes())) {
        return Err(not_this_browser());
    }
    let conn = connections::get(&mut *tx, &row.connection_id).await?;
    let session = match &row.bound_session {
        Some(id) => sessions::live(core, id).await?,
        None => None,
    };
    match session {
        Some(s) if may_open(&s.principal, &row, &conn) => Ok(row),
        _ => Err(ConnectorError::Invalid(
            "your rekey session ended before the provider sent you back; sign in and open the \
             authorize link again (nothing was changed)"
                .into(),
        )),
    }
}

/// Whether `state` names a flow that can still complete (so a refused
/// callback leaves its browser's cookie in place).
pub async fn is_pending(core: &Core, state: &str) -> bool {
    match core.db.read().await {
        Ok(mut c) => pending(core, &mut c, state, core.now()).await.is_ok(),
        Err(_) => true,
    }
}
