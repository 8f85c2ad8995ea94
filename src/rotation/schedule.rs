//! Scheduled rotations: a connection with a `rotation_interval` whose
//! credential is older than that is due. Due automatic rotations start by
//! themselves from the jobs loop, a few at a time per target host so that
//! one database server is not asked to rotate everything at once; due
//! manual and re-authorize ones are listed (`connection list
//! --rotation-due`) for a person. A scheduled rotation that failed or
//! stalled is not started again until a person has dealt with it.

use std::collections::HashMap;

use super::{start, RotationError, StartRequest, TargetRef};
use crate::audit::Actor;
use crate::connectors::catalog::Rotation as Mode;
use crate::connectors::{connections, drivers};
use crate::fetch_all;
use crate::state::Core;

/// Rotations started per target host in one pass.
const PER_HOST: usize = 4;
const BATCH: i64 = 500;

#[derive(sqlx::FromRow)]
struct Due {
    id: String,
    org_id: String,
}

/// Starts the due automatic rotations; returns how many it started.
pub async fn start_due(core: &Core) -> Result<usize, RotationError> {
    let now = core.now();
    let due = fetch_all!(
        &mut core.db.read().await?,
        Due,
        "SELECT c.id, c.org_id FROM connections c
         WHERE c.rotation_interval_ms IS NOT NULL AND c.has_credentials = TRUE
           AND c.status IN ('connected', 'error')
           AND COALESCE(c.last_rotated_at, c.created_at) + c.rotation_interval_ms <= $1
           AND NOT EXISTS (
             SELECT 1 FROM rotations r WHERE r.target_type = 'connection' AND r.target_id = c.id
               AND (r.finished_at IS NULL
                    OR (r.status IN ('failed', 'stalled')
                        AND r.started_at > COALESCE(c.last_rotated_at, c.created_at))))
         ORDER BY COALESCE(c.last_rotated_at, c.created_at) + c.rotation_interval_ms
         LIMIT $2",
        now,
        BATCH
    )?;
    let mut per_host: HashMap<String, usize> = HashMap::new();
    let mut started = 0;
    let actor = Actor::new("schedule".to_string(), None);
    for d in due {
        let conn = connections::get(&mut core.db.read().await?, &d.id).await?;
        let automatic = conn
            .method()
            .is_ok_and(|m| matches!(m.rotation, Mode::Automatic));
        if !automatic || drivers::for_kind(&conn.kind, &conn.auth).is_none() {
            continue;
        }
        let settings = conn.settings();
        let host = settings
            .get("host")
            .or_else(|| settings.get("base_url"))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let n = per_host.entry(host).or_default();
        if *n >= PER_HOST {
            continue;
        }
        let req = StartRequest {
            target: TargetRef::Connection(conn.id.clone()),
            dry_run: false,
            preflight: false,
            cutover_window_ms: super::limits::CUTOVER_WINDOW_MS,
            deadline_ms: super::limits::DEADLINE_MS,
            rotate_with: None,
            force_at_deadline: false,
        };
        match start(core, &actor, &d.org_id, &req).await {
            Ok(_) => {
                *n += 1;
                started += 1;
            }
            Err(RotationError::InProgress(_)) => {}
            Err(e) => {
                tracing::warn!(connection = %conn.id, error = %e, "scheduled rotation not started")
            }
        }
    }
    Ok(started)
}
