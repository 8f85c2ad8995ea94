//! RFC 7662 token introspection, for resource servers. A client sees only
//! tokens of its own org; anything else is `{"active": false}`.

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
        return Ok(access_answer(&row, &caller.org_id, now, issuer));
    }
    if well_formed(TokenKind::RefreshToken, token) {
        let mut c = core.db.read().await?;
        let row = fetch_optional!(
            &mut c,
            RefreshRow,
            "SELECT rt.expires_at, rt.issued_at, rt.used_at, g.scope, g.org_id, g.created_at AS grant_created_at,
                    g.revoked_at AS grant_revoked_at, c.client_id, c.active AS client_active,
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
        return Ok(json!({
            "active": true,
            "scope": r.scope,
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

#[derive(sqlx::FromRow)]
struct Combined {
    caller_org_id: String,
    caller_secret_digest: String,
    caller_prev_digest: Option<String>,
    caller_prev_until: Option<i64>,
    caller_active: bool,
    scope: Option<String>,
    issued_at: Option<i64>,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    user_id: Option<String>,
    grant_id: Option<String>,
    client_id: Option<String>,
    client_kind: Option<String>,
    client_active: Option<bool>,
    client_cutoff: Option<i64>,
    org_id: Option<String>,
    org_slug: Option<String>,
    org_cutoff: Option<i64>,
    user_email: Option<String>,
    user_active: Option<bool>,
    user_permission: Option<String>,
    user_cutoff: Option<i64>,
    grant_revoked_at: Option<i64>,
}

/// Introspection of an access token in one statement: the calling client
/// and the token are read together (each statement costs more than its SQL
/// on SQLite), then the client is authenticated exactly as everywhere else.
pub async fn access_token_once(
    core: &Core,
    p: &super::client_auth::Presented,
    token: &str,
    issuer: &str,
) -> Result<Value, OAuthError> {
    let mut c = core.db.read().await?;
    let row = fetch_optional!(
        &mut c,
        Combined,
        "SELECT caller.org_id AS caller_org_id, caller.secret_digest AS caller_secret_digest,
                caller.prev_secret_digest AS caller_prev_digest, caller.prev_secret_expires_at AS caller_prev_until,
                caller.active AS caller_active,
                t.scope, t.issued_at, t.expires_at, t.revoked_at, t.user_id, t.grant_id,
                tc.client_id, tc.kind AS client_kind, tc.active AS client_active, tc.revoked_before AS client_cutoff,
                o.id AS org_id, o.slug AS org_slug, o.revoked_before AS org_cutoff,
                u.email AS user_email, u.active AS user_active, u.permission AS user_permission,
                u.revoked_before AS user_cutoff, g.revoked_at AS grant_revoked_at
         FROM oauth_clients caller
         LEFT JOIN oauth_access_tokens t ON t.digest = $2
         LEFT JOIN oauth_clients tc ON tc.id = t.client_pk
         LEFT JOIN orgs o ON o.id = t.org_id
         LEFT JOIN users u ON u.id = t.user_id
         LEFT JOIN oauth_grants g ON g.id = t.grant_id
         WHERE caller.client_id = $1",
        p.client_id.trim(),
        core.pepper.digest(token.trim())
    )?;
    drop(c);
    let now = core.now();
    let secret_ok = super::client_auth::secret_matches(
        core,
        &p.secret,
        row.as_ref().map(|r| {
            (
                r.caller_secret_digest.as_str(),
                r.caller_prev_digest.as_deref(),
                r.caller_prev_until,
            )
        }),
        now,
    );
    let Some(r) = row.filter(|_| secret_ok) else {
        return Err(OAuthError::InvalidClient(
            "unknown client or wrong client secret".into(),
        ));
    };
    if !r.caller_active {
        return Err(OAuthError::InvalidClient(
            "this client is deactivated".into(),
        ));
    }
    let token_row = match (
        r.scope,
        r.issued_at,
        r.expires_at,
        r.client_id,
        r.client_kind,
        r.client_active,
        r.org_id,
        r.org_slug,
    ) {
        (
            Some(scope),
            Some(issued_at),
            Some(expires_at),
            Some(client_id),
            Some(client_kind),
            Some(client_active),
            Some(org_id),
            Some(org_slug),
        ) => guard::TokenRow {
            scope,
            issued_at,
            expires_at,
            revoked_at: r.revoked_at,
            user_id: r.user_id,
            grant_id: r.grant_id,
            client_id,
            client_kind,
            client_active,
            client_cutoff: r.client_cutoff,
            org_id,
            org_slug,
            org_cutoff: r.org_cutoff,
            user_email: r.user_email,
            user_active: r.user_active,
            user_permission: r.user_permission,
            user_cutoff: r.user_cutoff,
            grant_revoked_at: r.grant_revoked_at,
        },
        _ => return Ok(json!({"active": false})),
    };
    Ok(access_answer(&token_row, &r.caller_org_id, now, issuer))
}
