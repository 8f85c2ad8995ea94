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
use crate::store::new_id;
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
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let row = fetch_optional!(
        &mut tx,
        CodeRow,
        "SELECT client_pk, user_id, redirect_uri, scope, code_challenge, expires_at, used_at, grant_id FROM oauth_codes WHERE digest = $1",
        &digest
    )?
    .filter(|r| r.client_pk == client.id)
    .ok_or_else(|| OAuthError::InvalidGrant("invalid authorization code".into()))?;

    if row.used_at.is_some() {
        // A replayed code: whatever it produced is now suspect (RFC 6749 §4.1.2).
        if let Some(g) = &row.grant_id {
            if revoke_grant(&mut tx, g, "authorization code replayed", now).await? {
                audit::record(&mut tx, now, actor, Event {
                    org_id: Some(&client.org_id),
                    action: "oauth.code.replay",
                    target: Some(g),
                    detail: serde_json::json!({"client_id": client.client_id, "reason": "authorization code replayed; its tokens are revoked"}),
                })
                .await?;
            }
        }
        tx.commit().await?;
        return Err(OAuthError::InvalidGrant(
            "authorization code was already used; tokens issued from it are revoked".into(),
        ));
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
    let user = crate::identity::users::get(&mut tx, &client.org_id, &row.user_id)
        .await?
        .filter(|u| u.active)
        .ok_or_else(|| OAuthError::InvalidGrant("the authorizing user is deactivated".into()))?;

    // Single use: exactly one of any number of concurrent exchanges wins.
    let won = exec!(
        &mut tx,
        "UPDATE oauth_codes SET used_at = $1 WHERE digest = $2 AND used_at IS NULL",
        now,
        &digest
    )?;
    if won != 1 {
        return Err(OAuthError::InvalidGrant(
            "authorization code was already used".into(),
        ));
    }
    let grant_id = new_id();
    exec!(
        &mut tx,
        "INSERT INTO oauth_grants (id, org_id, client_pk, user_id, scope, code_digest, created_at, last_used_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        &grant_id,
        &client.org_id,
        &client.id,
        &user.id,
        &row.scope,
        &digest,
        now
    )?;
    exec!(
        &mut tx,
        "UPDATE oauth_codes SET grant_id = $1 WHERE digest = $2",
        &grant_id,
        &digest
    )?;
    let (refresh, _) =
        insert_refresh(&mut tx, &core.pepper, &grant_id, client.refresh_ttl_ms, now).await?;
    let access = insert_access(
        &mut tx,
        &core.pepper,
        AccessSpec {
            client,
            grant_id: Some(&grant_id),
            user_id: Some(&user.id),
            scope: &row.scope,
        },
        now,
    )
    .await?;
    audit::record(&mut tx, now, actor, Event {
        org_id: Some(&client.org_id),
        action: "oauth.authorization.create",
        target: Some(&grant_id),
        detail: serde_json::json!({"client_id": client.client_id, "app": client.name, "user": user.email, "scope": row.scope}),
    })
    .await?;
    tx.commit().await?;
    Ok(Issued {
        access_token: access,
        refresh_token: Some(refresh),
        expires_in: client.access_ttl_ms / 1000,
        scope: row.scope,
    })
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
