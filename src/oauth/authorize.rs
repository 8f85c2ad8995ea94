//! The authorization request: validate it (client, exact redirect URI,
//! scope, PKCE), then, once the user has logged in and consented, issue a
//! single-use code bound to client, redirect URI, user, scope and challenge.

use super::clients::{self, Client, ClientKind};
use super::OAuthError;
use crate::audit::Actor;
use crate::crypto::token::{self, TokenKind};
use crate::exec;
use crate::identity::users::User;
use crate::identity::Permission;
use crate::state::Core;

/// The parameters, whichever endpoint (seed or standard) they came from.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

/// Why a request failed, and whether it is safe to redirect.
#[derive(Debug)]
pub enum Refusal {
    /// Unknown client or redirect URI that is not registered: shown to the
    /// user, never redirected (an open redirector otherwise).
    Page(String),
    /// Sent back to the (validated) redirect URI as RFC 6749 parameters.
    Redirect {
        redirect_uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Valid {
    pub client: Client,
    pub redirect_uri: String,
    pub scope: Permission,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
}

pub async fn validate(core: &Core, req: &Request) -> Result<Valid, Refusal> {
    let client_id = req
        .client_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Refusal::Page("The request names no client (client_id is missing).".into())
        })?;
    let mut c = core
        .db
        .read()
        .await
        .map_err(|_| Refusal::Page("The server is unavailable; try again.".into()))?;
    // An unknown client and a known client with a wrong redirect URI get
    // the same page: telling them apart would let anyone enumerate client ids.
    let unrecognised = || {
        Refusal::Page(
            "This link does not match a registered application and callback address. \
             Check the link you followed."
                .into(),
        )
    };
    let client = clients::by_client_id(&mut c, client_id)
        .await
        .map_err(|_| Refusal::Page("The server is unavailable; try again.".into()))?
        .filter(|cl| cl.kind() == ClientKind::App)
        .ok_or_else(unrecognised)?;
    let callbacks = client.callbacks();
    let redirect_uri = match req.redirect_uri.as_deref().filter(|s| !s.is_empty()) {
        // Exact, character-for-character match against a registered callback.
        Some(r) if callbacks.iter().any(|c| c == r) => r.to_string(),
        Some(_) => return Err(unrecognised()),
        None if callbacks.len() == 1 => callbacks[0].clone(),
        // Several callbacks and none named: also the same page.
        None => return Err(unrecognised()),
    };
    let refuse = |error: &'static str, description: String| Refusal::Redirect {
        redirect_uri: redirect_uri.clone(),
        error,
        description,
        state: req.state.clone(),
    };
    if !client.active {
        return Err(refuse(
            "unauthorized_client",
            "this application is deactivated".into(),
        ));
    }
    match req.response_type.as_deref() {
        Some("code") => {}
        None => {
            return Err(refuse(
                "invalid_request",
                "response_type is required".into(),
            ))
        }
        Some(other) => {
            return Err(refuse(
                "unsupported_response_type",
                format!("response_type {other:?} is not supported; use code"),
            ))
        }
    }
    let scope = match req
        .scope
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => client.scope(),
        Some(s) => {
            let s: Permission = s.parse().map_err(|_| {
                refuse(
                    "invalid_scope",
                    format!("scope {s:?} is not read or read_write"),
                )
            })?;
            if s > client.scope() {
                return Err(refuse(
                    "invalid_scope",
                    format!(
                        "scope {s} exceeds the application's scope {}",
                        client.scope()
                    ),
                ));
            }
            s
        }
    };
    let challenge = match (
        req.code_challenge.as_deref(),
        req.code_challenge_method.as_deref(),
    ) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge_method without code_challenge".into(),
            ))
        }
        (Some(ch), Some("S256")) => {
            let ok = (43..=128).contains(&ch.len())
                && ch
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
            if !ok {
                return Err(refuse(
                    "invalid_request",
                    "code_challenge must be 43-128 base64url characters".into(),
                ));
            }
            Some(ch.to_string())
        }
        (Some(_), Some("plain")) | (Some(_), None) => {
            return Err(refuse(
                "invalid_request",
                "PKCE method plain is not accepted; use code_challenge_method=S256".into(),
            ))
        }
        (Some(_), Some(m)) => {
            return Err(refuse(
                "invalid_request",
                format!("unknown code_challenge_method {m:?}; use S256"),
            ))
        }
    };
    Ok(Valid {
        client,
        redirect_uri,
        scope,
        state: req.state.clone(),
        code_challenge: challenge,
    })
}

/// Issues the code for a consenting user of the application's org.
pub async fn issue_code(
    core: &Core,
    v: &Valid,
    user: &User,
    _actor: &Actor,
) -> Result<String, OAuthError> {
    if user.org_id != v.client.org_id || !user.active {
        return Err(OAuthError::InvalidRequest(
            "this user cannot authorize this application".into(),
        ));
    }
    let code = token::mint(TokenKind::AuthCode);
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    exec!(
        &mut tx,
        "INSERT INTO oauth_codes (digest, client_pk, org_id, user_id, redirect_uri, scope, code_challenge, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        core.pepper.digest(&code),
        &v.client.id,
        &v.client.org_id,
        &user.id,
        &v.redirect_uri,
        v.scope.as_str(),
        &v.code_challenge,
        now,
        now + core.config.authorization_code_ttl.ms()
    )?;
    tx.commit().await?;
    Ok(code)
}

/// The redirect URI with `params` appended to its query.
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => redirect_uri.to_string(),
    }
}
