//! `grant_type=client_credentials`: a machine client gets an access token
//! (never a refresh token). A client mapped to a user is capped by that
//! user's permission and stops working when the user is deactivated.

use crate::identity::Permission;
use crate::oauth::clients::{Client, ClientKind};
use crate::oauth::tokens::{access_row, AccessSpec, Issued, ACCESS_COLS, ACCESS_INSERT};
use crate::oauth::{parse_scope, OAuthError};
use crate::state::Core;

pub async fn issue(
    core: &Core,
    client: &Client,
    requested: Option<&str>,
) -> Result<Issued, OAuthError> {
    if client.kind() != ClientKind::M2m {
        return Err(OAuthError::UnauthorizedClient(
            "this client may not use the client_credentials grant (it is an application; use authorization_code)".into(),
        ));
    }
    let scope: Permission = match requested.map(str::trim).filter(|s| !s.is_empty()) {
        None => client.scope(),
        Some(s) => {
            let s = parse_scope(s)?;
            if s > client.scope() {
                return Err(OAuthError::InvalidScope(format!(
                    "scope {s} exceeds the client's scope {}",
                    client.scope()
                )));
            }
            s
        }
    };
    let now = core.now();
    if let Some(uid) = &client.user_id {
        if !user_active(core, &client.org_id, uid).await? {
            return Err(OAuthError::UnauthorizedClient(
                "the user this client acts for is deactivated".into(),
            ));
        }
    }
    // Machine tokens live at most `m2m_token_ttl_max` whatever the client
    // row says (rows written before the cap existed may say more).
    let ttl_ms = client.access_ttl_ms.min(core.config.m2m_token_ttl_max.ms());
    // One INSERT, coalesced with the other token requests of this moment.
    let (access, row) = access_row(
        &core.pepper,
        AccessSpec {
            client,
            grant_id: None,
            user_id: client.user_id.as_deref(),
            scope: scope.as_str(),
            ttl_ms,
        },
        now,
    );
    core.writer
        .insert_row(ACCESS_INSERT, ACCESS_COLS, row)
        .await
        .map_err(crate::store::StoreError::from)?;
    Ok(Issued {
        access_token: access,
        refresh_token: None,
        expires_in: ttl_ms / 1000,
        scope: scope.as_str().to_string(),
    })
}

/// Whether the user a machine client acts for is active, from the
/// validation cache when it may be trusted.
async fn user_active(core: &Core, org_id: &str, user_id: &str) -> Result<bool, OAuthError> {
    let load = async {
        let mut c = core.db.read().await?;
        let user = crate::identity::users::get(&mut c, org_id, user_id).await?;
        Ok::<_, OAuthError>(user.map(|u| u.active))
    };
    let key = format!("{org_id}/{user_id}");
    let active = core
        .cache
        .users_active
        .get_or_load(core.db.epoch(), &key, |_| true, load)
        .await?;
    Ok(active.unwrap_or(false))
}
