//! The OAuth client rekey presents to a provider: configured once per kind
//! by the operator, overridable per connection (custom connectors, the
//! `rekey` kind, an org that brings its own app). Secrets are sealed.

use serde_json::json;

use super::connections::{self, client_secret_place, Connection};
use super::{catalog, ConnectorError};
use crate::audit::{self, Actor, Event};
use crate::crypto::keyring::Place;
use crate::crypto::sealed;
use crate::state::Core;
use crate::store::AsEx;
use crate::{exec, scalar_optional};

fn kind_place(kind: &str) -> Place<'_> {
    Place {
        table: "connector_clients",
        column: "client_secret",
        row: kind,
    }
}

pub async fn configure(
    core: &Core,
    actor: &Actor,
    kind: &str,
    client_id: &str,
    secret: &str,
) -> Result<(), ConnectorError> {
    let Some(k) = catalog::kind(kind) else {
        return Err(ConnectorError::Invalid(format!(
            "unknown connector kind {kind:?}"
        )));
    };
    // A client nothing would present is a secret kept for nothing.
    if !k.takes_oauth_client() {
        return Err(ConnectorError::Invalid(format!(
            "{kind} connects without an OAuth authorization, so rekey presents no OAuth client to it"
        )));
    }
    if client_id.trim().is_empty() || secret.is_empty() {
        return Err(ConnectorError::Invalid(
            "client id and client secret are required".into(),
        ));
    }
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    exec!(
        &mut tx,
        "INSERT INTO connector_clients (kind, client_id, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (kind) DO UPDATE SET client_id = excluded.client_id, updated_at = excluded.updated_at",
        kind,
        client_id.trim(),
        now
    )?;
    sealed::put(
        &mut tx,
        &core.keyring,
        kind_place(kind),
        secret.as_bytes(),
        now,
    )
    .await?;
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: None,
            action: "connector.configure",
            target: Some(kind),
            detail: json!({"client_id": client_id.trim()}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn set_for_connection(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    key: &str,
    client_id: &str,
    secret: &str,
) -> Result<Connection, ConnectorError> {
    if client_id.trim().is_empty() || secret.is_empty() {
        return Err(ConnectorError::Invalid(
            "client id and client secret are required".into(),
        ));
    }
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let mut c = connections::find(&mut tx, org_id, key).await?;
    exec!(
        &mut tx,
        "UPDATE connections SET client_id = $1, updated_at = $2 WHERE id = $3",
        client_id.trim(),
        now,
        &c.id
    )?;
    sealed::put(
        &mut tx,
        &core.keyring,
        client_secret_place(&c.id),
        secret.as_bytes(),
        now,
    )
    .await?;
    c.client_id = Some(client_id.trim().to_string());
    connections::record(
        &mut tx,
        now,
        actor,
        &c,
        "connection.set_client",
        json!({"client_id": client_id.trim()}),
    )
    .await?;
    tx.commit().await?;
    Ok(c)
}

/// (client id, client secret) for a connection: its own, else its kind's —
/// but the kind's (the operator's, shared by every org) only when
/// `catalog_own`: every endpoint it goes to is the catalog's own. An
/// endpoint an org admin chose (an override, a discovered provider, a host
/// from a setting) never sees the operator's secret.
pub async fn resolve<C: AsEx>(
    c: &mut C,
    core: &Core,
    conn: &Connection,
    catalog_own: bool,
) -> Result<(String, String), ConnectorError> {
    if let Some(id) = &conn.client_id {
        if let Some(s) = sealed::get(c, &core.keyring, client_secret_place(&conn.id)).await? {
            return Ok((id.clone(), String::from_utf8_lossy(&s).into_owned()));
        }
    }
    if !catalog_own {
        return Err(ConnectorError::Invalid(format!(
            "{} uses OAuth endpoints of its own (overridden, discovered or chosen by a setting); \
             the platform's {} client is never sent there: set this connection's client with \
             `rekey connection set-client --org ORG --name {} --client-id ID --client-secret-stdin`",
            conn.name, conn.kind, conn.name
        )));
    }
    let id: Option<String> = scalar_optional!(
        c,
        String,
        "SELECT client_id FROM connector_clients WHERE kind = $1",
        &conn.kind
    )?;
    let secret = sealed::get(c, &core.keyring, kind_place(&conn.kind)).await?;
    match (id, secret) {
        (Some(id), Some(s)) => Ok((id, String::from_utf8_lossy(&s).into_owned())),
        _ => Err(ConnectorError::Invalid(format!(
            "no OAuth client is configured for {} (rekey connector configure {} --client-id ID --client-secret-stdin, or rekey connection set-client)",
            conn.kind, conn.kind
        ))),
    }
}

/// The OAuth client configured for each kind: kind → (client id, when it
/// was last set, unix ms). Never a secret.
pub async fn configured(
    db: &crate::store::Db,
) -> Result<std::collections::HashMap<String, (String, i64)>, ConnectorError> {
    let rows: Vec<(String, String, i64)> = crate::fetch_all!(
        &mut db.read().await?,
        (String, String, i64),
        "SELECT kind, client_id, updated_at FROM connector_clients"
    )?;
    Ok(rows.into_iter().map(|(k, c, at)| (k, (c, at))).collect())
}
