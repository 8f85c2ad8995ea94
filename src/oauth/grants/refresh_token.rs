//! `grant_type=refresh_token`: rotation by compare-and-set.
//!
//! The presented refresh token is consumed (`used_at` set where it was
//! NULL) and records its successor's digest. Of any number of concurrent
//! uses exactly one wins. A consumed token presented again revokes the whole
//! authorization (reuse detection) — unless the application has a grace
//! window, inside which the replay receives the *same* successor pair, held
//! sealed (bound to the consumed row) only for the window.

use super::cut_off;
use crate::audit::{self, Actor, Event};
use crate::crypto::keyring::Place;
use crate::crypto::sealed;
use crate::crypto::token::{well_formed, TokenKind};
use crate::oauth::clients::{Client, ClientKind};
use crate::oauth::revoke::revoke_grant;
use crate::oauth::tokens::{insert_access, AccessSpec, Issued};
use crate::oauth::OAuthError;
use crate::state::Core;
use crate::store::Tx;
use crate::{exec, fetch_optional};

#[derive(sqlx::FromRow)]
struct Row {
    grant_id: String,
    expires_at: i64,
    used_at: Option<i64>,
    used_ip: Option<String>,
    client_pk: String,
    user_id: String,
    scope: String,
    grant_created_at: i64,
    grant_revoked_at: Option<i64>,
    user_active: bool,
    user_permission: String,
    user_cutoff: Option<i64>,
    org_cutoff: Option<i64>,
}

fn successor_place(digest: &str) -> Place<'_> {
    Place {
        table: "oauth_refresh_tokens",
        column: "successor",
        row: digest,
    }
}

async fn load<C: crate::store::AsEx>(tx: &mut C, digest: &str) -> Result<Option<Row>, sqlx::Error> {
    fetch_optional!(
        tx,
        Row,
        "SELECT rt.grant_id, rt.expires_at, rt.used_at, rt.used_ip, g.client_pk, g.user_id, g.scope,
                g.created_at AS grant_created_at, g.revoked_at AS grant_revoked_at,
                u.active AS user_active, u.permission AS user_permission, u.revoked_before AS user_cutoff, o.revoked_before AS org_cutoff
         FROM oauth_refresh_tokens rt
         JOIN oauth_grants g ON g.id = rt.grant_id
         JOIN users u ON u.id = g.user_id
         JOIN orgs o ON o.id = g.org_id
         WHERE rt.digest = $1",
        digest
    )
}

pub async fn refresh(
    core: &Core,
    client: &Client,
    presented: &str,
    actor: &Actor,
) -> Result<Issued, OAuthError> {
    if client.kind() != ClientKind::App {
        return Err(OAuthError::UnauthorizedClient(
            "this client may not use the refresh_token grant".into(),
        ));
    }
    let presented = presented.trim();
    if !well_formed(TokenKind::RefreshToken, presented) {
        return Err(OAuthError::InvalidGrant("invalid refresh token".into()));
    }
    let digest = core.pepper.digest(presented);
    // What can be refused without writing is refused here, on a read
    // connection, outside the serialized writer; the compare-and-set inside
    // the writer still decides who wins. A token already consumed goes to the
    // writer, which re-reads it (reuse detection writes).
    let mut c = core.db.read().await?;
    let pre = load(&mut c, &digest)
        .await?
        .filter(|r| r.client_pk == client.id)
        .ok_or_else(|| OAuthError::InvalidGrant("invalid refresh token".into()))?;
    drop(c);
    let pre = if pre.used_at.is_none() {
        check(&pre, client, core.now())?;
        Some(pre)
    } else {
        None
    };
    let (core2, client2, actor2) = (core.clone(), client.clone(), actor.clone());
    // Unguarded: `rotate` answers every refusal as `Ok(Err(..))` before it
    // writes, so its only `Err` is a database error.
    core.writer
        .run_unguarded(move |tx| {
            Box::pin(async move {
                match rotate(tx, &core2, &client2, &digest, &actor2, pre).await {
                    Err(OAuthError::Store(e)) => Err(OAuthError::Store(e)),
                    Err(OAuthError::Sealed(e)) => Err(OAuthError::Sealed(e)),
                    Err(refusal) => Ok(Err(refusal)),
                    Ok(answer) => Ok(answer),
                }
            })
        })
        .await
        .map_err(crate::store::StoreError::from)?
        .and_then(|inner| inner)
}

/// The rotation inside the group transaction. The outer `Err` rolls the
/// job back (nothing was written); `Ok(Err(..))` is a refusal whose writes
/// (reuse detection revoking the authorization) must be committed.
async fn rotate(
    tx: &mut Tx,
    core: &Core,
    client: &Client,
    digest: &str,
    actor: &Actor,
    pre: Option<Row>,
) -> Result<Result<Issued, OAuthError>, OAuthError> {
    let now = core.now();
    let row = match pre {
        // Read and checked just before; its grant, user and scope cannot
        // change, and the compare-and-set below catches a concurrent use.
        Some(r) => r,
        None => {
            let row = load(tx, digest)
                .await?
                .filter(|r| r.client_pk == client.id)
                .ok_or_else(|| OAuthError::InvalidGrant("invalid refresh token".into()))?;
            if let Some(first_use) = row.used_at {
                if row.grant_revoked_at.is_some() {
                    return Err(OAuthError::InvalidGrant(
                        "the authorization was revoked".into(),
                    ));
                }
                return replayed(core, tx, client, digest, &row, first_use, actor, now).await;
            }
            check(&row, client, now)?;
            row
        }
    };

    let (new_refresh, new_digest) = {
        // Mint first so the successor digest is recorded by the same CAS.
        let t = crate::crypto::token::mint_timed(TokenKind::RefreshToken, now);
        let d = core.pepper.digest(&t);
        (t, d)
    };
    let won = exec!(
        tx,
        "UPDATE oauth_refresh_tokens SET used_at = $1, used_ip = $2, successor_digest = $3 WHERE digest = $4 AND used_at IS NULL",
        now,
        &actor.ip,
        &new_digest,
        digest
    )?;
    if won != 1 {
        // A concurrent request consumed it between our read and our write
        // (PostgreSQL): this is a second use of the same token.
        let row = load(tx, digest)
            .await?
            .ok_or_else(|| OAuthError::InvalidGrant("invalid refresh token".into()))?;
        let first_use = row.used_at.unwrap_or(now);
        return replayed(core, tx, client, digest, &row, first_use, actor, now).await;
    }
    exec!(
        tx,
        "INSERT INTO oauth_refresh_tokens (digest, grant_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)",
        &new_digest,
        &row.grant_id,
        now,
        now + client.refresh_ttl_ms
    )?;
    // The new tokens carry the grant's scope as it stands now (the app's
    // scope and the user's permission may have shrunk since consent).
    let scope = crate::oauth::effective_scope(
        &row.scope,
        client.scope().as_str(),
        Some(&row.user_permission),
    )
    .ok_or_else(|| OAuthError::InvalidGrant("the authorization has no valid scope".into()))?;
    let access = insert_access(
        tx,
        &core.pepper,
        AccessSpec {
            client,
            grant_id: Some(&row.grant_id),
            user_id: Some(&row.user_id),
            scope: scope.as_str(),
            ttl_ms: client.access_ttl_ms,
        },
        now,
    )
    .await?;
    let issued = Issued {
        access_token: access,
        refresh_token: Some(new_refresh),
        expires_in: client.access_ttl_ms / 1000,
        scope: scope.as_str().to_string(),
    };
    if client.refresh_grace_ms > 0 {
        let pair = serde_json::to_vec(&issued).unwrap_or_default();
        sealed::put(tx, &core.keyring, successor_place(digest), &pair, now).await?;
    }
    Ok(Ok(issued))
}

/// The refusals that need no write: a revoked or cut-off authorization, an
/// expired token, a deactivated user.
fn check(row: &Row, client: &Client, now: i64) -> Result<(), OAuthError> {
    if row.grant_revoked_at.is_some()
        || cut_off(
            row.grant_created_at,
            &[client.revoked_before, row.user_cutoff, row.org_cutoff],
        )
    {
        return Err(OAuthError::InvalidGrant(
            "the authorization was revoked".into(),
        ));
    }
    if row.expires_at <= now {
        return Err(OAuthError::InvalidGrant(
            "refresh token expired; authorize again".into(),
        ));
    }
    if !row.user_active {
        return Err(OAuthError::InvalidGrant(
            "the authorizing user is deactivated".into(),
        ));
    }
    Ok(())
}

/// A consumed token was presented again.
#[allow(clippy::too_many_arguments)]
async fn replayed(
    core: &Core,
    tx: &mut Tx,
    client: &Client,
    digest: &str,
    row: &Row,
    first_use: i64,
    actor: &Actor,
    now: i64,
) -> Result<Result<Issued, OAuthError>, OAuthError> {
    if client.refresh_grace_ms > 0 && now - first_use <= client.refresh_grace_ms {
        if let Some(pair) = sealed::get(tx, &core.keyring, successor_place(digest)).await? {
            if let Ok(mut issued) = serde_json::from_slice::<Issued>(&pair) {
                issued.expires_in = ((first_use + client.access_ttl_ms - now) / 1000).max(0);
                return Ok(Ok(issued));
            }
        }
    }
    if revoke_grant(tx, &row.grant_id, "refresh token reuse detected", now).await? {
        audit::record(tx, now, actor, Event {
            org_id: Some(&client.org_id),
            action: "oauth.refresh.reuse_detected",
            target: Some(&row.grant_id),
            detail: serde_json::json!({
                "client_id": client.client_id,
                "app": client.name,
                "reason": "a rotated refresh token was presented again; the authorization is revoked",
                "first_presenter": {"ip": row.used_ip, "at": crate::clock::rfc3339(first_use)},
                "second_presenter": {"ip": actor.ip, "at": crate::clock::rfc3339(now)},
            }),
        })
        .await?;
    }
    // Whatever was held for the grace window goes with the authorization.
    sealed::delete(tx, successor_place(digest)).await?;
    Ok(Err(OAuthError::InvalidGrant(
        "refresh token was already used; the authorization is revoked (reuse detection)".into(),
    )))
}
