//! Client authentication at the token, revocation and introspection
//! endpoints: `client_secret_basic`, `client_secret_post`, or the seed
//! endpoints' JSON fields. Secrets are compared by keyed digest in constant
//! time; an unknown client costs the same as a wrong secret.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::clients::{self, Client};
use super::usage::{Owner, UsedBy};
use super::OAuthError;
use crate::crypto::token::ct_eq;
use crate::state::Core;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Basic,
    Post,
}

#[derive(Clone, Debug)]
pub struct Presented {
    pub client_id: String,
    pub secret: String,
    pub method: Method,
}

/// Reads client credentials from an `Authorization: Basic` header value
/// and/or body fields. Using both at once is an error (RFC 6749 §2.3).
pub fn presented(
    authorization: Option<&str>,
    body_id: Option<&str>,
    body_secret: Option<&str>,
) -> Result<Presented, OAuthError> {
    let basic = authorization.and_then(|h| {
        let (scheme, rest) = h.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("basic")
            .then(|| rest.trim().to_string())
    });
    match (basic, body_secret) {
        (Some(_), Some(_)) => Err(OAuthError::InvalidRequest(
            "use one client authentication method, not both Basic and client_secret".into(),
        )),
        (Some(b64), None) => {
            let raw = B64
                .decode(b64)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| OAuthError::InvalidClient("malformed Basic credentials".into()))?;
            let (id, secret) = raw
                .split_once(':')
                .ok_or_else(|| OAuthError::InvalidClient("malformed Basic credentials".into()))?;
            // RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
            let dec = |s: &str| {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            Ok(Presented {
                client_id: dec(id),
                secret: dec(secret),
                method: Method::Basic,
            })
        }
        (None, Some(secret)) => Ok(Presented {
            client_id: body_id
                .filter(|s| !s.is_empty())
                .ok_or_else(|| OAuthError::InvalidClient("client_id is missing".into()))?
                .to_string(),
            secret: secret.to_string(),
            method: Method::Post,
        }),
        (None, None) => Err(OAuthError::InvalidClient(
            "client authentication is required (Basic or client_secret)".into(),
        )),
    }
}

/// Authenticates a client. Deactivated clients are refused, after the secret
/// check so that a deactivated client's state is not revealed to strangers.
/// A use is noted for the secret presented (`by`; `None` for rekey's own
/// check of a secret it just issued, which is no use).
pub async fn authenticate(
    core: &Core,
    p: &Presented,
    by: Option<&UsedBy<'_>>,
) -> Result<Client, OAuthError> {
    let client_id = p.client_id.trim();
    let now = core.now();
    let digest = core.pepper.digest(&p.secret);
    // Served from the cache only for the right secret: a wrong secret or
    // an unknown client always takes the read, so the two cost the same.
    let right = |c: &Arc<Client>| digest_matches(&digest, Some(stored(c)), now);
    let load = async {
        let mut c = core.db.read().await?;
        Ok::<_, OAuthError>(
            clients::by_client_id(&mut c, client_id)
                .await?
                .map(Arc::new),
        )
    };
    let client = core
        .cache
        .clients
        .get_or_load(core.db.epoch(), client_id, right, load)
        .await?;
    let ok = digest_matches(&digest, client.as_deref().map(stored), now);
    let bad = || OAuthError::InvalidClient("unknown client or wrong client secret".into());
    let client = client.filter(|_| ok).ok_or_else(bad)?;
    if !client.active {
        return Err(OAuthError::InvalidClient(
            "this client is deactivated".into(),
        ));
    }
    if let Some(by) = by {
        core.usage
            .touch(Owner::Client, &client.id, &digest, now, by);
    }
    Ok(Client::clone(&client))
}

fn stored(c: &Client) -> (&str, Option<&str>, Option<i64>) {
    (
        c.secret_digest.as_str(),
        c.prev_secret_digest.as_deref(),
        c.prev_secret_expires_at,
    )
}

/// Checks the digest of a presented secret against a client's stored
/// digests (the current one, and the previous one while its overlap lasts
/// or, without an end, until its rotation retires it), in constant time. An unknown client (`None`) costs the same and never
/// matches.
fn digest_matches(
    digest: &str,
    stored: Option<(&str, Option<&str>, Option<i64>)>,
    now: i64,
) -> bool {
    match stored {
        Some((current, prev, until)) => {
            let a = ct_eq(digest.as_bytes(), current.as_bytes());
            let b = match (prev, until) {
                (Some(d), Some(u)) if u > now => ct_eq(digest.as_bytes(), d.as_bytes()),
                (Some(d), None) => ct_eq(digest.as_bytes(), d.as_bytes()),
                _ => false,
            };
            a | b
        }
        None => {
            let _ = ct_eq(digest.as_bytes(), &[0u8; 64]);
            false
        }
    }
}
