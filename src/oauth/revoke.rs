//! Revocation: of one authorization (its refresh token and every access
//! token issued under it), and of a presented token (RFC 7009).

use super::clients::Client;
use super::OAuthError;
use crate::audit::{self, Actor, Event};
use crate::crypto::token::{well_formed, TokenKind};
use crate::state::Core;
use crate::store::Tx;
use crate::{exec, fetch_optional};

/// Marks a grant revoked with `reason` (first reason wins). Its access tokens
/// die with it: every token check reads the grant.
pub async fn revoke_grant(
    tx: &mut Tx,
    grant_id: &str,
    reason: &str,
    now: i64,
) -> Result<bool, OAuthError> {
    let n = exec!(
        tx,
        "UPDATE oauth_grants SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
        now,
        reason,
        grant_id
    )?;
    exec!(
        tx,
        "UPDATE oauth_access_tokens SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL",
        now,
        grant_id
    )?;
    Ok(n == 1)
}

#[derive(sqlx::FromRow)]
struct GrantOf {
    grant_id: String,
    client_pk: String,
}

/// RFC 7009: revokes `token` if it belongs to `client`. Unknown tokens,
/// and tokens of other clients, are answered the same (success, no change).
pub async fn revoke_token(
    core: &Core,
    client: &Client,
    token: &str,
    hint: Option<&str>,
    actor: &Actor,
) -> Result<(), OAuthError> {
    let now = core.now();
    let digest = core.pepper.digest(token.trim());
    let refresh_first = hint != Some("access_token");
    let mut tx = core.db.begin_write().await?;
    for kind in if refresh_first {
        [TokenKind::RefreshToken, TokenKind::AccessToken]
    } else {
        [TokenKind::AccessToken, TokenKind::RefreshToken]
    } {
        if !well_formed(kind, token.trim()) {
            continue;
        }
        match kind {
            TokenKind::RefreshToken => {
                let g = fetch_optional!(
                    &mut tx,
                    GrantOf,
                    "SELECT g.id AS grant_id, g.client_pk FROM oauth_refresh_tokens rt JOIN oauth_grants g ON g.id = rt.grant_id WHERE rt.digest = $1",
                    &digest
                )?;
                if let Some(g) = g.filter(|g| g.client_pk == client.id) {
                    if revoke_grant(&mut tx, &g.grant_id, "revoked by the client", now).await? {
                        audit::record(&mut tx, now, actor, Event {
                            org_id: Some(&client.org_id),
                            action: "oauth.authorization.revoke",
                            target: Some(&g.grant_id),
                            detail: serde_json::json!({"client_id": client.client_id, "reason": "revoked by the client"}),
                        })
                        .await?;
                    }
                }
            }
            _ => {
                let n = exec!(
                    &mut tx,
                    "UPDATE oauth_access_tokens SET revoked_at = $1 WHERE digest = $2 AND client_pk = $3 AND revoked_at IS NULL",
                    now,
                    &digest,
                    &client.id
                )?;
                if n == 1 {
                    audit::record(
                        &mut tx,
                        now,
                        actor,
                        Event {
                            org_id: Some(&client.org_id),
                            action: "oauth.access_token.revoke",
                            target: Some(&client.name),
                            detail: serde_json::json!({"client_id": client.client_id}),
                        },
                    )
                    .await?;
                }
            }
        }
    }
    tx.commit().await?;
    Ok(())
}
