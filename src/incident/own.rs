//! A campaign's items on rekey's own credentials: application tokens cut
//! off (one write per application), application, machine-client and
//! access-key secrets regenerated with the campaign's overlap.
//!
//! Each is done at most once: before acting, the item looks for the
//! evidence that it was done already (a cut-off or a regeneration since
//! the campaign started), which a crash between the act and the item's
//! record leaves behind.

use serde_json::{json, Value};

use super::{IncidentError, IncidentRow, ItemRow};
use crate::audit::{self, Actor, Event};
use crate::oauth::access_keys;
use crate::oauth::clients::{self, ClientKind};
use crate::state::Core;
use crate::{exec, fetch_optional};

pub fn is_own(item: &ItemRow) -> bool {
    matches!(
        item.target_type.as_str(),
        "app_tokens" | "app" | "m2m" | "key"
    )
}

/// Was the item's act already done since the campaign started?
async fn already(core: &Core, row: &IncidentRow, item: &ItemRow) -> Result<bool, IncidentError> {
    let mut c = core.db.read().await?;
    let since = match item.target_type.as_str() {
        "app_tokens" => fetch_optional!(
            &mut c,
            (Option<i64>,),
            "SELECT revoked_before FROM oauth_clients WHERE id = $1",
            &item.target_id
        )?
        .and_then(|r| r.0),
        _ => fetch_optional!(
            &mut c,
            (Option<i64>,),
            "SELECT rotated_at FROM secret_schedules WHERE target_type = $1 AND target_id = $2",
            &item.target_type,
            &item.target_id
        )?
        .and_then(|r| r.0),
    };
    Ok(since.is_some_and(|t| t >= row.started_at))
}

/// Does the item; returns the new secret to show once, if any.
pub async fn act(
    core: &Core,
    actor: &Actor,
    row: &IncidentRow,
    item: &ItemRow,
) -> Result<Option<Value>, IncidentError> {
    let org_id = item.org_id.clone().unwrap_or_default();
    let (detail, secret) = if already(core, row, item).await? {
        (
            "done before a restart; its new secret was shown then, or regenerate it again to see one"
                .to_string(),
            None,
        )
    } else {
        let reason = format!("incident {}: {}", row.id, row.reason);
        let overlap = row.overlap_ms;
        let until = |v: Option<String>| match v {
            Some(t) => format!("; the old one works until {t}"),
            None => "; the old one no longer works".to_string(),
        };
        match item.target_type.as_str() {
            "app_tokens" => {
                let c =
                    clients::find_in(&core.db, &org_id, ClientKind::App, &item.target_id).await?;
                clients::revoke_tokens_before(core, actor, &c, core.now(), Some(&reason)).await?;
                ("every authorization and refresh token revoked (status Revoked, this campaign the reason)".to_string(), None)
            }
            "app" | "m2m" => {
                let kind = if item.target_type == "app" {
                    ClientKind::App
                } else {
                    ClientKind::M2m
                };
                let (c, secret) = clients::regenerate_secret(
                    core,
                    actor,
                    &org_id,
                    kind,
                    &item.target_id,
                    overlap,
                    // The campaign presumes the old secrets leaked too.
                    true,
                )
                .await?;
                let valid = c
                    .prev_secret_expires_at
                    .filter(|_| c.prev_secret_digest.is_some())
                    .map(crate::clock::rfc3339);
                (
                    format!("secret regenerated{}", until(valid)),
                    Some(
                        json!({"type": item.target_type, "org_id": org_id, "name": c.name, "client_id": c.client_id, "secret": secret}),
                    ),
                )
            }
            _ => {
                let (k, secret) =
                    access_keys::reset(core, actor, &org_id, &item.target_id, overlap, true)
                        .await?;
                let valid = k.view(core.now()).previous_key_valid_until;
                (
                    format!("key regenerated{}", until(valid)),
                    Some(json!({"type": "key", "org_id": org_id, "name": k.name, "key": secret})),
                )
            }
        }
    };
    // Nothing outside to probe: the new secret is checked by rekey itself,
    // by digest, from the moment it is stored.
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    exec!(
        &mut tx,
        "UPDATE incident_items SET status = 'verified', detail = $1, done_by = $2, done_at = $3, verified_at = $3, updated_at = $3
         WHERE incident_id = $4 AND n = $5",
        &detail,
        &actor.name,
        now,
        &item.incident_id,
        item.n
    )?;
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: item.org_id.as_deref(),
            action: "incident.item_done",
            target: Some(&item.incident_id),
            detail: json!({"n": item.n, "target": {"type": item.target_type, "name": item.target_name}, "action": item.action}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(secret)
}
