//! RFC 7662 token introspection, for resource servers. A client sees only
//! its own tokens, or, when granted introspection, the tokens of its own
//! org; anything else is `{"active": false}`.

use serde_json::{json, Value};

use super::clients::Client;
use super::grants::cut_off;
use super::guard;
use super::OAuthError;
use crate::crypto::token::{well_formed, TokenKind};
use crate::fetch_optional;
use crate::state::Core;

#[derive(sqlx::FromRow)]
struct RefreshRow {
    expires_at: i64,
    issued_at: i64,
    used_at: Option<i64>,
    scope: String,
    org_id: String,
    grant_created_at: i64,
    grant_revoked_at: Option<i64>,
    client_id: String,
    client_active: bool,
    client_scope: String,
    user_permission: String,
    client_cutoff: Option<i64>,
    user_id: String,
    user_email: String,
    user_active: bool,
    user_cutoff: Option<i64>,
    org_cutoff: Option<i64>,
}

pub async fn introspect(
    core: &Core,
    caller: &Client,
    token: &str,
    issuer: &str,
) -> Result<Value, OAuthError> {
    let token = token.trim();
    let now = core.now();
    let digest = core.pepper.digest(token);
    let inactive = json!({"active": false});
    if well_formed(TokenKind::AccessToken, token) {
        let Some(row) = guard::lookup(core, &digest).await.map_err(|e| match e {
            guard::GuardError::Store(s) => OAuthError::Store(s),
            _ => OAuthError::InvalidRequest("lookup failed".into()),
        })?
        else {
            return Ok(inactive);
        };
        if !may_see(caller, &row.client_id) {
            return Ok(inactive);
        }
        return Ok(access_answer(&row, &caller.org_id, now, issuer));
    }
    if well_formed(TokenKind::RefreshToken, token) {
        let mut c = core.db.read().await?;
        let row = fetch_optional!(
            &mut c,
            RefreshRow,
            "SELECT rt.expires_at, rt.issued_at, rt.used_at, g.scope, g.org_id, g.created_at AS grant_created_at,
                    g.revoked_at AS grant_revoked_at, c.client_id, c.active AS client_active, c.scope AS client_scope, u.permission AS user_permission,
                    c.revoked_before AS client_cutoff, u.id AS user_id, u.email AS user_email,
                    u.active AS user_active, u.revoked_before AS user_cutoff, o.revoked_before AS org_cutoff
             FROM oauth_refresh_tokens rt
             JOIN oauth_grants g ON g.id = rt.grant_id
             JOIN oauth_clients c ON c.id = g.client_pk
             JOIN users u ON u.id = g.user_id
             JOIN orgs o ON o.id = g.org_id
             WHERE rt.digest = $1",
            &digest
        )?;
        let Some(r) = row else { return Ok(inactive) };
        let live = r.org_id == caller.org_id
            && may_see(caller, &r.client_id)
            && r.used_at.is_none()
            && r.expires_at > now
            && r.grant_revoked_at.is_none()
            && r.client_active
            && r.user_active
            && !cut_off(
                r.grant_created_at,
                &[r.client_cutoff, r.user_cutoff, r.org_cutoff],
            );
        if !live {
            return Ok(inactive);
        }
        let Some(scope) =
            crate::oauth::effective_scope(&r.scope, &r.client_scope, Some(&r.user_permission))
        else {
            return Ok(inactive);
        };
        return Ok(json!({
            "active": true,
            "scope": scope.as_str(),
            "client_id": r.client_id,
            "username": r.user_email,
            "sub": r.user_id,
            "token_type": "refresh_token",
            "exp": r.expires_at / 1000,
            "iat": r.issued_at / 1000,
            "iss": issuer,
        }));
    }
    Ok(inactive)
}

/// A client sees its own tokens; only a client granted introspection (a
/// resource server's machine client, `m2m create --introspect`) sees the
/// other tokens of its org. Anything else is `{"active": false}`, the same
/// answer as for an unknown token.
fn may_see(caller: &Client, token_client_id: &str) -> bool {
    caller.may_introspect || caller.client_id == token_client_id
}

/// The RFC 7662 answer for an access token, seen by a client of `caller_org`.
pub fn access_answer(row: &guard::TokenRow, caller_org: &str, now: i64, issuer: &str) -> Value {
    let live = (row.org_id == caller_org)
        .then(|| row.caller(now))
        .flatten();
    let Some(c) = live else {
        return json!({"active": false});
    };
    json!({
        "active": true,
        "scope": c.scope.as_str(),
        "client_id": row.client_id,
        "username": row.user_email,
        "sub": row.user_id.clone().unwrap_or_else(|| row.client_id.clone()),
        "token_type": "Bearer",
        "exp": row.expires_at / 1000,
        "iat": row.issued_at / 1000,
        "iss": issuer,
        "org": row.org_slug,
    })
}
