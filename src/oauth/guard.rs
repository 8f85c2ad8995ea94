//! The request guard: who is calling the platform API, and with what
//! effective access. Evaluated on every call, never frozen at issue time:
//! the effective scope is the lesser of the token's scope and the user's
//! current permission; deactivated users, deactivated clients, revoked
//! grants and bulk-revocation cut-offs are all checked here.

use std::sync::Arc;

use serde::Serialize;

use super::grants::cut_off;
use crate::crypto::token::{well_formed, TokenKind};
use crate::fetch_optional;
use crate::identity::Permission;
use crate::state::Core;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// An access token from the authorization-code flow.
    OauthAccessToken,
    /// An access token from the client-credentials grant.
    ClientCredentials,
    /// An org access key (`Accesskey` header).
    AccessKey,
}

#[derive(Clone, Debug, Serialize)]
pub struct Caller {
    pub org_id: String,
    pub org: String,
    pub user_id: Option<String>,
    pub user: Option<String>,
    pub client_id: Option<String>,
    pub scope: Permission,
    pub method: AuthMethod,
}

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("no credentials")]
    Missing,
    #[error("the token is invalid, expired or revoked")]
    Invalid,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<sqlx::Error> for GuardError {
    fn from(e: sqlx::Error) -> Self {
        GuardError::Store(e.into())
    }
}

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct TokenRow {
    pub scope: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub user_id: Option<String>,
    pub grant_id: Option<String>,
    pub client_id: String,
    pub client_kind: String,
    pub client_active: bool,
    pub client_scope: String,
    pub client_cutoff: Option<i64>,
    pub org_id: String,
    pub org_slug: String,
    pub org_cutoff: Option<i64>,
    pub user_email: Option<String>,
    pub user_active: Option<bool>,
    pub user_permission: Option<String>,
    pub user_cutoff: Option<i64>,
    pub grant_revoked_at: Option<i64>,
}

/// Reads an access token with everything its validity depends on, from
/// the validation cache when it may be trusted. Only tokens valid now are
/// served from (and put in) the cache; any other answer is read afresh.
pub async fn lookup(core: &Core, digest: &str) -> Result<Option<Arc<TokenRow>>, GuardError> {
    let now = core.now();
    let load = async { Ok(read(core, digest).await?.map(Arc::new)) };
    core.cache
        .tokens
        .get_or_load(
            core.db.epoch(),
            digest,
            |r| r.effective_scope(now).is_some(),
            load,
        )
        .await
}

async fn read(core: &Core, digest: &str) -> Result<Option<TokenRow>, GuardError> {
    let mut c = core.db.read().await?;
    Ok(fetch_optional!(
        &mut c,
        TokenRow,
        "SELECT t.scope, t.issued_at, t.expires_at, t.revoked_at, t.user_id, t.grant_id,
                c.client_id, c.kind AS client_kind, c.active AS client_active, c.scope AS client_scope, c.revoked_before AS client_cutoff,
                o.id AS org_id, o.slug AS org_slug, o.revoked_before AS org_cutoff,
                u.email AS user_email, u.active AS user_active, u.permission AS user_permission,
                u.revoked_before AS user_cutoff, g.revoked_at AS grant_revoked_at
         FROM oauth_access_tokens t
         JOIN oauth_clients c ON c.id = t.client_pk
         JOIN orgs o ON o.id = t.org_id
         LEFT JOIN users u ON u.id = t.user_id
         LEFT JOIN oauth_grants g ON g.id = t.grant_id
         WHERE t.digest = $1",
        digest
    )?)
}

impl TokenRow {
    /// The caller this token stands for now, or `None` if it is not valid now.
    pub fn caller(&self, now: i64) -> Option<Caller> {
        let scope = self.effective_scope(now)?;
        Some(Caller {
            org_id: self.org_id.clone(),
            org: self.org_slug.clone(),
            user_id: self.user_id.clone(),
            user: self.user_email.clone(),
            client_id: Some(self.client_id.clone()),
            scope,
            method: if self.client_kind == "m2m" {
                AuthMethod::ClientCredentials
            } else {
                AuthMethod::OauthAccessToken
            },
        })
    }

    /// The scope this token grants now, or `None` if it is not valid now.
    pub fn effective_scope(&self, now: i64) -> Option<Permission> {
        if self.expires_at <= now
            || self.revoked_at.is_some()
            || self.grant_revoked_at.is_some()
            || !self.client_active
        {
            return None;
        }
        if cut_off(
            self.issued_at,
            &[self.client_cutoff, self.org_cutoff, self.user_cutoff],
        ) {
            return None;
        }
        // Tokens acting for a user die with the user and are capped by the
        // user's permission at this moment; every token by its client's
        // scope at this moment.
        let user_perm = match &self.user_id {
            Some(_) if self.user_active != Some(true) => return None,
            Some(_) => Some(self.user_permission.as_deref()?),
            None => None,
        };
        super::effective_scope(&self.scope, &self.client_scope, user_perm)
    }
}

/// Authenticates `Authorization: Bearer <token>`.
pub async fn bearer(core: &Core, token: &str) -> Result<Caller, GuardError> {
    let token = token.trim();
    if !well_formed(TokenKind::AccessToken, token) {
        return Err(GuardError::Invalid);
    }
    let row = lookup(core, &core.pepper.digest(token)).await?;
    row.and_then(|r| r.caller(core.now()))
        .ok_or(GuardError::Invalid)
}

/// Authenticates an `Accesskey` header, noting the use with where it came
/// from.
pub async fn access_key(
    core: &Core,
    key: &str,
    by: &super::usage::UsedBy<'_>,
) -> Result<Caller, GuardError> {
    super::access_keys::authenticate(core, key, Some(by)).await
}
