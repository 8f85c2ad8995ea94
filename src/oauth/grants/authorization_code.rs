//! `grant_type=authorization_code`: trades a single-use code for a new
//! authorization (grant) with its first refresh and access tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::audit::{self, Actor, Event};
use crate::crypto::token::{ct_eq, well_formed, TokenKind};
use crate::oauth::clients::{Client, ClientKind};
use crate::oauth::revoke::revoke_grant;
use crate::oauth::tokens::{insert_access, insert_refresh, AccessSpec, Issued};
use crate::oauth::OAuthError;
use crate::state::Core;
use crate::store::{new_id, Tx};
use crate::{exec, fetch_optional};

#[derive(sqlx::FromRow)]
struct CodeRow {
    client_pk: String,
    user_id: String,
    redirect_uri: String,
    scope: String,
    code_challenge: Option<String>,
    expires_at: i64,
    used_at: Option<i64>,
    grant_id: Option<String>,
}

/// RFC 7636: `BASE64URL(SHA256(verifier)) == challenge`, verifier 43–128
/// unreserved characters.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let shape = (43..=128).contains(&verifier.len())
        && verifier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'));
    let computed = B64URL.encode(Sha256::digest(verifier.as_bytes()));
    shape & ct_eq(computed.as_bytes(), challenge.as_bytes())
}

pub async fn exchange(
    core: &Core,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    actor: &Actor,
) -> Result<Issued, OAuthError> {
    if client.kind() != ClientKind::App {
        return Err(OAuthError::UnauthorizedClient(
            "this client may not use the authorization_code grant".into(),
        ));
    }
    let code = code.trim();
    if !well_formed(TokenKind::AuthCode, code) {
        return Err(OAuthError::InvalidGrant(
            "invalid authorization code".into(),
        ));
    }
    let redirect_uri = redirect_uri
        .filter(|r| !r.is_empty())
        .ok_or_else(|| OAuthError::InvalidRequest("redirect_uri is required".into()))?;
    let digest = core.pepper.digest(code);
    let (core2, client2, actor2) = (core.clone(), client.clone(), actor.clone());
    let (redirect_uri, verifier) = (redirect_uri.to_string(), verifier.map(str::to_string));
    core.writer
        .run(move |tx| {
            Box::pin(async move {
                exchange_in(
                    tx,
                    &core2,
                    &client2,
                    &digest,
                    &redirect_uri,
                    verifier.as_deref(),
                    &actor2,
                )
                .await
            })
        })
        .await
        .map_err(crate::store::StoreError::from)?
        .and_then(|inner| inner)
}

/// The exchange inside the group transaction: the outer `Err` rolls back
/// (nothing changed); `Ok(Err(..))` is a refusal whose writes (a replayed
/// code revoking its tokens) are committed.
async fn exchange_in(
    tx: &mut Tx,
    core: &Core,
    client: &Client,
    digest: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
    actor: &Actor,
) -> Result<Result<Issued, OAuthError>, OAuthError> {
    let now = core.now();
    let row = fetch_optional!(
        tx,
        CodeRow,
        "SELECT client_pk, user_id, redirect_uri, scope, code_challenge, expires_at, used_at, grant_id FROM oauth_codes WHERE digest = $1",
        digest
    )?
    .filter(|r| r.client_pk == client.id)
    .ok_or_else(|| OAuthError::InvalidGrant("invalid authorization code".into()))?;

    if row.used_at.is_some() {
        // A replayed code: whatever it produced is now suspect (RFC 6749 §4.1.2).
        if let Some(g) = &row.grant_id {
            if revoke_grant(tx, g, "authorization code replayed", now).await? {
                audit::record(tx, now, actor, Event {
                    org_id: Some(&client.org_id),
                    action: "oauth.code.replay",
                    target: Some(g),
                    detail: serde_json::json!({"client_id": client.client_id, "reason": "authorization code replayed; its tokens are revoked"}),
                })
                .await?;
            }
        }
        return Ok(Err(OAuthError::InvalidGrant(
            "authorization code was already used; tokens issued from it are revoked".into(),
        )));
    }
    if row.expires_at <= now {
        return Err(OAuthError::InvalidGrant(
            "authorization code expired".into(),
        ));
    }
    if !ct_eq(row.redirect_uri.as_bytes(), redirect_uri.as_bytes()) {
        return Err(OAuthError::InvalidGrant(
            "redirect_uri does not match the authorization request".into(),
        ));
    }
    match (&row.code_challenge, verifier) {
        (Some(ch), Some(v)) if pkce_matches(v, ch) => {}
        (Some(_), Some(_)) => {
            return Err(OAuthError::InvalidGrant(
                "code_verifier does not match the code_challenge".into(),
            ))
        }
        (Some(_), None) => {
            return Err(OAuthError::InvalidGrant(
                "code_verifier is required (the authorization used PKCE)".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(OAuthError::InvalidRequest(
                "code_verifier sent, but the authorization used no code_challenge".into(),
            ))
        }
        (None, None) => {}
    }
    let user = crate::identity::users::get(tx, &client.org_id, &row.user_id)
        .await?
        .filter(|u| u.active)
        .ok_or_else(|| OAuthError::InvalidGrant("the authorizing user is deactivated".into()))?;

    // Single use: exactly one of any number of concurrent exchanges wins.
    let won = exec!(
        tx,
        "UPDATE oauth_codes SET used_at = $1 WHERE digest = $2 AND used_at IS NULL",
        now,
        digest
    )?;
    if won != 1 {
        return Err(OAuthError::InvalidGrant(
            "authorization code was already used".into(),
        ));
    }
    let grant_id = new_id();
    exec!(
        tx,
        "INSERT INTO oauth_grants (id, org_id, client_pk, user_id, scope, code_digest, created_at, last_used_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        &grant_id,
        &client.org_id,
        &client.id,
        &user.id,
        &row.scope,
        digest,
        now
    )?;
    exec!(
        tx,
        "UPDATE oauth_codes SET grant_id = $1 WHERE digest = $2",
        &grant_id,
        digest
    )?;
    let (refresh, _) =
        insert_refresh(tx, &core.pepper, &grant_id, client.refresh_ttl_ms, now).await?;
    let scope = crate::oauth::effective_scope(
        &row.scope,
        client.scope().as_str(),
        Some(user.permission.as_str()),
    )
    .ok_or_else(|| OAuthError::InvalidGrant("the authorization has no valid scope".into()))?;
    let access = insert_access(
        tx,
        &core.pepper,
        AccessSpec {
            client,
            grant_id: Some(&grant_id),
            user_id: Some(&user.id),
            scope: scope.as_str(),
            ttl_ms: client.access_ttl_ms,
        },
        now,
    )
    .await?;
    audit::record(tx, now, actor, Event {
        org_id: Some(&client.org_id),
        action: "oauth.authorization.create",
        target: Some(&grant_id),
        detail: serde_json::json!({"client_id": client.client_id, "app": client.name, "user": user.email, "scope": row.scope}),
    })
    .await?;
    Ok(Ok(Issued {
        access_token: access,
        refresh_token: Some(refresh),
        expires_in: client.access_ttl_ms / 1000,
        scope: scope.as_str().to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        assert!(pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
            "short",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }
}
