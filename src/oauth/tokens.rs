//! Minting the rows of issued tokens. Callers pass their transaction so a
//! grant and its tokens appear together or not at all.

use serde::Serialize;

use super::clients::Client;
use crate::crypto::token::{self, TokenKind};
use crate::crypto::Pepper;
use crate::exec;
use crate::store::sql::{exec_args, placeholders, Arg};
use crate::store::Tx;

/// What a token endpoint returns.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Issued {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: i64,
    pub scope: String,
}

pub struct AccessSpec<'a> {
    pub client: &'a Client,
    pub grant_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub scope: &'a str,
    /// How long the token lives.
    pub ttl_ms: i64,
}

/// The statement that stores access tokens, without its VALUES tuples.
pub const ACCESS_INSERT: &str =
    "INSERT INTO oauth_access_tokens (digest, client_pk, grant_id, org_id, user_id, scope, issued_at, expires_at) VALUES";
pub const ACCESS_COLS: usize = 8;

/// A new access token and the row that stores it (its digest, never itself).
pub fn access_row(pepper: &Pepper, spec: AccessSpec<'_>, now: i64) -> (String, Vec<Arg>) {
    let t = token::mint_timed(TokenKind::AccessToken, now);
    let row = vec![
        Arg::Text(pepper.digest(&t)),
        Arg::Text(spec.client.id.clone()),
        Arg::OptText(spec.grant_id.map(str::to_string)),
        Arg::Text(spec.client.org_id.clone()),
        Arg::OptText(spec.user_id.map(str::to_string)),
        Arg::Text(spec.scope.to_string()),
        Arg::Int(now),
        Arg::Int(now.saturating_add(spec.ttl_ms)),
    ];
    (t, row)
}

/// Inserts an access token inside `tx`; returns the token (never stored).
pub async fn insert_access(
    tx: &mut Tx,
    pepper: &Pepper,
    spec: AccessSpec<'_>,
    now: i64,
) -> Result<String, sqlx::Error> {
    let (t, row) = access_row(pepper, spec, now);
    exec_args(
        tx,
        &format!("{ACCESS_INSERT} {}", placeholders(1, ACCESS_COLS)),
        row,
    )
    .await?;
    Ok(t)
}

/// Inserts a refresh token for `grant_id`; returns (token, digest).
pub async fn insert_refresh(
    tx: &mut Tx,
    pepper: &Pepper,
    grant_id: &str,
    ttl_ms: i64,
    now: i64,
) -> Result<(String, String), sqlx::Error> {
    let t = token::mint_timed(TokenKind::RefreshToken, now);
    let d = pepper.digest(&t);
    exec!(
        tx,
        "INSERT INTO oauth_refresh_tokens (digest, grant_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)",
        &d,
        grant_id,
        now,
        now + ttl_ms
    )?;
    Ok((t, d))
}
