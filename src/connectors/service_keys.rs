//! Platform service keys: what platform code presents (`Authorization:
//! Bearer rk_sk_…`) to read a connection's current credentials.

use serde::Serialize;
use serde_json::json;

use super::ConnectorError;
use crate::audit::{self, Actor, Event};
use crate::clock::rfc3339;
use crate::crypto::token::{self, TokenKind};
use crate::identity::validate_name;
use crate::state::Core;
use crate::store::{is_unique_violation, new_id};
use crate::{exec, fetch_all, fetch_optional};

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct ServiceKey {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Serialize)]
pub struct View {
    pub id: String,
    pub name: String,
    pub created: String,
    pub status: &'static str,
}

impl ServiceKey {
    pub fn view(&self) -> View {
        View {
            id: self.id.clone(),
            name: self.name.clone(),
            created: rfc3339(self.created_at),
            status: if self.revoked_at.is_some() {
                "revoked"
            } else {
                "active"
            },
        }
    }
}

pub async fn create(
    core: &Core,
    actor: &Actor,
    name: &str,
) -> Result<(ServiceKey, String), ConnectorError> {
    let name = validate_name("service key name", name)?;
    let key = token::mint(TokenKind::ServiceKey);
    let now = core.now();
    let k = ServiceKey {
        id: new_id(),
        name,
        created_at: now,
        revoked_at: None,
    };
    let mut tx = core.db.begin_write().await?;
    let r = exec!(
        &mut tx,
        "INSERT INTO service_keys (id, name, digest, created_at) VALUES ($1, $2, $3, $4)",
        &k.id,
        &k.name,
        core.pepper.digest(&key),
        now
    );
    match r {
        Err(e) if is_unique_violation(&e) => {
            return Err(ConnectorError::Conflict(format!(
                "service key {:?}",
                k.name
            )))
        }
        r => r?,
    };
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: None,
            action: "service_key.create",
            target: Some(&k.name),
            detail: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((k, key))
}

pub async fn list(core: &Core) -> Result<Vec<ServiceKey>, ConnectorError> {
    let mut c = core.db.read().await?;
    Ok(fetch_all!(
        &mut c,
        ServiceKey,
        "SELECT id, name, created_at, revoked_at FROM service_keys ORDER BY name"
    )?)
}

pub async fn revoke(core: &Core, actor: &Actor, name: &str) -> Result<(), ConnectorError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let n = exec!(
        &mut tx,
        "UPDATE service_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        now,
        name
    )?;
    if n == 0 {
        return Err(ConnectorError::NotFound(format!(
            "active service key {name:?}"
        )));
    }
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: None,
            action: "service_key.revoke",
            target: Some(name),
            detail: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The active service key behind a presented secret.
pub async fn authenticate(
    core: &Core,
    presented: &str,
) -> Result<Option<ServiceKey>, ConnectorError> {
    if !token::well_formed(TokenKind::ServiceKey, presented.trim()) {
        return Ok(None);
    }
    let mut c = core.db.read().await?;
    Ok(fetch_optional!(
        &mut c,
        ServiceKey,
        "SELECT id, name, created_at, revoked_at FROM service_keys WHERE digest = $1",
        core.pepper.digest(presented.trim())
    )?
    .filter(|k| k.revoked_at.is_none()))
}
