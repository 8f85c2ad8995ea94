//! Authorizations (grants) of an application as an admin sees them, each
//! with its refresh-token status: `Active`, `Expired` (unused past its
//! life), `Revoked` (by the user, an admin, reuse detection, app deletion or
//! a bulk cut-off; with the reason), `Invalid` (its user was deactivated).

use serde::Serialize;

use super::clients::Client;
use super::grants::cut_off;
use super::revoke::revoke_grant;
use super::OAuthError;
use crate::audit::{self, Actor, Event};
use crate::clock::rfc3339;
use crate::state::Core;
use crate::store::keyset::{Cursor, Page};
use crate::store::Db;
use crate::{fetch_all, fetch_optional};

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    scope: String,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
    revoked_reason: Option<String>,
    user_email: String,
    user_active: bool,
    user_permission: String,
    user_cutoff: Option<i64>,
    org_cutoff: Option<i64>,
    live_expires_at: Option<i64>,
}

#[derive(Serialize, Debug, Clone, utoipa::ToSchema)]
pub struct Authorization {
    pub id: String,
    pub user: String,
    pub scope: String,
    pub created: String,
    pub last_used: Option<String>,
    pub status: &'static str,
    pub reason: Option<String>,
    pub refresh_token_expires_at: Option<String>,
}

fn status(r: &Row, client: &Client, now: i64) -> (&'static str, Option<String>) {
    if r.revoked_at.is_some() {
        return ("Revoked", r.revoked_reason.clone());
    }
    if !r.user_active || cut_off(r.created_at, &[r.user_cutoff]) {
        return ("Invalid", Some("the user was deactivated".into()));
    }
    if cut_off(r.created_at, &[client.revoked_before]) {
        return (
            "Revoked",
            Some(
                client
                    .revoked_reason
                    .clone()
                    .unwrap_or_else(|| "every token of the application was revoked".into()),
            ),
        );
    }
    if cut_off(r.created_at, &[r.org_cutoff]) {
        return ("Revoked", Some("every token of the org was revoked".into()));
    }
    match r.live_expires_at {
        Some(t) if t > now => ("Active", None),
        _ => (
            "Expired",
            Some("the refresh token was not used within its lifetime".into()),
        ),
    }
}

// Last used: the newest refresh (a refresh writes no grant row; the token
// rows already say when), else the code exchange.
const SELECT: &str = "SELECT g.id, g.scope, g.created_at,
        COALESCE((SELECT MAX(rt.issued_at) FROM oauth_refresh_tokens rt WHERE rt.grant_id = g.id), g.last_used_at) AS last_used_at,
        g.revoked_at, g.revoked_reason,
        u.email AS user_email, u.active AS user_active, u.permission AS user_permission, u.revoked_before AS user_cutoff, o.revoked_before AS org_cutoff,
        (SELECT MAX(rt.expires_at) FROM oauth_refresh_tokens rt WHERE rt.grant_id = g.id AND rt.used_at IS NULL) AS live_expires_at
     FROM oauth_grants g JOIN users u ON u.id = g.user_id JOIN orgs o ON o.id = g.org_id";

fn view(r: Row, client: &Client, now: i64) -> Authorization {
    let (status, reason) = status(&r, client, now);
    Authorization {
        status,
        reason,
        refresh_token_expires_at: r.live_expires_at.map(rfc3339),
        id: r.id,
        user: r.user_email,
        // What the authorization confers now, not what was consented to.
        scope: crate::oauth::effective_scope(
            &r.scope,
            client.scope().as_str(),
            Some(&r.user_permission),
        )
        .map(|s| s.as_str().to_string())
        .unwrap_or(r.scope),
        created: rfc3339(r.created_at),
        last_used: r.last_used_at.map(rfc3339),
    }
}

pub async fn list(db: &Db, client: &Client, now: i64) -> Result<Vec<Authorization>, OAuthError> {
    let mut c = db.read().await?;
    let rows = fetch_all!(
        &mut c,
        Row,
        &format!("{SELECT} WHERE g.client_pk = $1 ORDER BY g.created_at DESC"),
        &client.id
    )?;
    Ok(rows.into_iter().map(|r| view(r, client, now)).collect())
}

/// An admin revokes one authorization of `client`.
/// One page of an application's authorizations, newest first, by keyset:
/// `after` is the cursor `CREATED_AT.ID` of the last row of the page
/// before (its `next`). With the exact total. A deep page costs what the
/// first does (no OFFSET).
pub async fn page(
    db: &Db,
    client: &Client,
    now: i64,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<Authorization>, OAuthError> {
    let after = Cursor::opt_at(after).map_err(|e| OAuthError::InvalidRequest(e.to_string()))?;
    let mut c = db.read().await?;
    let total = crate::scalar_optional!(
        &mut c,
        i64,
        "SELECT COUNT(*) FROM oauth_grants WHERE client_pk = $1",
        &client.id
    )?
    .unwrap_or(0);
    let (at, id) = after.unwrap_or((i64::MAX, String::new()));
    let rows = fetch_all!(
        &mut c,
        Row,
        &format!(
            "{SELECT} WHERE g.client_pk = $1 AND (g.created_at < $2 OR (g.created_at = $2 AND g.id < $3))
             ORDER BY g.created_at DESC, g.id DESC LIMIT $4"
        ),
        &client.id,
        at,
        &id,
        limit.saturating_add(1)
    )?;
    Ok(
        Page::from_rows(rows, limit, total, |r| Cursor::of(r.created_at, &r.id))
            .map(|r| view(r, client, now)),
    )
}

pub async fn revoke(
    core: &Core,
    actor: &Actor,
    client: &Client,
    grant_id: &str,
) -> Result<Authorization, OAuthError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let exists = fetch_optional!(
        &mut tx,
        Row,
        &format!("{SELECT} WHERE g.client_pk = $1 AND g.id = $2"),
        &client.id,
        grant_id.trim()
    )?;
    if exists.is_none() {
        return Err(OAuthError::NotFound(format!("authorization {grant_id:?}")));
    }
    if revoke_grant(&mut tx, grant_id.trim(), "revoked by an admin", now).await? {
        audit::record(
            &mut tx,
            now,
            actor,
            Event {
                org_id: Some(&client.org_id),
                action: "oauth.authorization.revoke",
                target: Some(grant_id.trim()),
                detail: serde_json::json!({"app": client.name, "reason": "revoked by an admin"}),
            },
        )
        .await?;
    }
    let row = fetch_optional!(
        &mut tx,
        Row,
        &format!("{SELECT} WHERE g.client_pk = $1 AND g.id = $2"),
        &client.id,
        grant_id.trim()
    )?
    .ok_or_else(|| OAuthError::NotFound(format!("authorization {grant_id:?}")))?;
    tx.commit().await?;
    Ok(view(row, client, now))
}

/// What deactivating a user does to what they authorized: `active`
/// authorizations (a live refresh token, no cut-off) stop working and,
/// with every other one not revoked (`listed`), read `Invalid`; machine
/// clients that act as the user are refused while the user is inactive.
#[derive(Debug, Default, Clone, Copy)]
pub struct OfUser {
    pub active: i64,
    pub listed: i64,
    pub machine_clients: i64,
}

pub async fn of_user(db: &Db, org_id: &str, user_id: &str, now: i64) -> Result<OfUser, OAuthError> {
    let mut c = db.read().await?;
    // Not revoked, and not already cut off by an earlier deactivation.
    const LISTED: &str = "FROM oauth_grants g JOIN users u ON u.id = g.user_id
         WHERE g.org_id = $1 AND g.user_id = $2 AND g.revoked_at IS NULL
           AND g.created_at >= COALESCE(u.revoked_before, 0)";
    let listed = crate::scalar_optional!(
        &mut c,
        i64,
        &format!("SELECT COUNT(*) {LISTED}"),
        org_id,
        user_id
    )?
    .unwrap_or(0);
    // `Active` as `status` reads it: no app or org cut-off, a live refresh token.
    let active = crate::scalar_optional!(
        &mut c,
        i64,
        &format!(
            "SELECT COUNT(*) {LISTED}
               AND g.created_at >= COALESCE((SELECT cl.revoked_before FROM oauth_clients cl WHERE cl.id = g.client_pk), 0)
               AND g.created_at >= COALESCE((SELECT o.revoked_before FROM orgs o WHERE o.id = g.org_id), 0)
               AND EXISTS (SELECT 1 FROM oauth_refresh_tokens rt
                           WHERE rt.grant_id = g.id AND rt.used_at IS NULL AND rt.expires_at > $3)"
        ),
        org_id,
        user_id,
        now
    )?
    .unwrap_or(0);
    let machine_clients = crate::scalar_optional!(
        &mut c,
        i64,
        "SELECT COUNT(*) FROM oauth_clients WHERE org_id = $1 AND user_id = $2 AND kind = 'm2m'",
        org_id,
        user_id
    )?
    .unwrap_or(0);
    Ok(OfUser {
        active,
        listed,
        machine_clients,
    })
}
