//! Scheduled rotations: a connection with a `rotation_interval` whose
//! credential is older than that is due. Due automatic rotations start by
//! themselves from the jobs loop, a few at a time per target host so that
//! one database server is not asked to rotate everything at once; due
//! manual and re-authorize ones are listed (`connection list
//! --rotation-due`) for a person. A scheduled rotation that failed or
//! stalled is not started again until a person has dealt with it.
//!
//! Only work that can start is selected (in SQL), in turns across orgs:
//! every org's earliest due connection comes before any org's second, so
//! one org's backlog — of connections a person must rotate, or of its own
//! automatic ones — cannot keep another org's rotations from starting.
//! Due connections that cannot start by themselves are written down once
//! per due period with the reason (`rotation_waiting`, shown by `connection
//! show` and `credentials age`) and logged as a warning then, not looked at
//! again on every pass.
//!
//! The same passes raise the webhooks a person acts on ahead of time:
//! `credential.expiring` a week before a connection's or one of rekey's own
//! secrets' due date (or an access key's expiry), `rotation.due` when one
//! falls due and waits for a person; each once per credential per date.

use std::collections::HashMap;

use super::limits::{SCHEDULE_BATCH, SCHEDULE_PER_HOST, SCHEDULE_PER_ORG};
use super::{start, RotationError, StartRequest, TargetRef};
use serde_json::json;

use crate::audit::Actor;
use crate::clock::rfc3339;
use crate::connectors::catalog::{self, Rotation as Mode};
use crate::connectors::{connections, drivers};
use crate::events::webhooks::{self, WebhookEvent};
use crate::exec;
use crate::state::Core;
use crate::store::sql::{fetch_all_args, param_list, Arg};

/// When the current due period began: the credential's last replacement
/// plus the interval.
const DUE_AT: &str = "COALESCE(c.last_rotated_at, c.created_at) + c.rotation_interval_ms";

/// `c` is due at `$1` (now) and holds a credential to rotate.
fn due() -> String {
    format!("c.rotation_interval_ms IS NOT NULL AND c.has_credentials = TRUE AND {DUE_AT} <= $1")
}

/// A rotation of `c` that keeps a new one from starting: one in progress,
/// or one that failed or stalled since the credential was last replaced
/// (a person deals with it first).
const HELD_BY_ROTATION: &str = "EXISTS (
    SELECT 1 FROM rotations r WHERE r.target_type = 'connection' AND r.target_id = c.id
      AND (r.finished_at IS NULL
           OR (r.status IN ('failed', 'stalled')
               AND r.started_at > COALESCE(c.last_rotated_at, c.created_at))))";

/// A credential slot that `rotation::start` refuses to rotate over: a
/// pending one an earlier rotation kept, a previous one still working.
const HELD_BY_SLOT: &str = "EXISTS (
    SELECT 1 FROM credential_slots s WHERE s.connection_id = c.id
      AND (s.slot = 'pending' OR (s.slot = 'previous' AND s.retired_at IS NULL)))";

/// `c` can start a scheduled rotation: a status that allows one, a kind and
/// method the catalog rotates with a driver (bound from `$first`, one
/// `kind/method` each), and nothing holding it.
fn startable(first: usize, automatic: usize) -> String {
    let kinds = if automatic == 0 {
        "FALSE".to_string()
    } else {
        format!(
            "c.kind || '/' || c.auth IN ({})",
            param_list(first, automatic)
        )
    };
    format!(
        "c.status IN ('connected', 'error') AND {kinds} AND NOT {HELD_BY_ROTATION} AND NOT {HELD_BY_SLOT}"
    )
}

/// Every `kind/method` the catalog rotates by a driver, as SQL arguments.
fn automatic() -> Vec<Arg> {
    drivers::automatic()
        .into_iter()
        .map(|(k, m)| Arg::Text(format!("{k}/{m}")))
        .collect()
}

#[derive(sqlx::FromRow)]
struct Due {
    id: String,
    org_id: String,
}

#[derive(sqlx::FromRow)]
struct Waiting {
    id: String,
    org_id: String,
    org: String,
    name: String,
    kind: String,
    auth: String,
    status: String,
    due_at: i64,
    /// The failed or stalled rotation that holds it, if one does.
    held_by: Option<String>,
    pending: bool,
    previous_live: bool,
}

/// Starts the due automatic rotations; returns how many it started. Due
/// connections that cannot start are noted (once per due period) first.
pub async fn start_due(core: &Core) -> Result<usize, RotationError> {
    let now = core.now();
    note_waiting(core, now).await?;
    note_expiring(core, now).await?;
    note_own(core, now).await?;
    let kinds = automatic();
    let mut args = vec![
        Arg::Int(now),
        Arg::Int(SCHEDULE_PER_ORG),
        Arg::Int(SCHEDULE_BATCH),
    ];
    let sql = format!(
        "SELECT d.id, d.org_id FROM (
           SELECT c.id, c.org_id, {DUE_AT} AS due_at,
                  ROW_NUMBER() OVER (PARTITION BY c.org_id ORDER BY {DUE_AT}, c.id) AS turn
           FROM connections c
           WHERE {} AND {}
         ) d
         WHERE d.turn <= $2
         ORDER BY d.turn, d.due_at, d.id
         LIMIT $3",
        due(),
        startable(4, kinds.len())
    );
    args.extend(kinds);
    let due: Vec<Due> = fetch_all_args(&mut core.db.read().await?, &sql, args).await?;
    let mut per_host: HashMap<String, usize> = HashMap::new();
    let mut started = 0;
    let actor = Actor::new("schedule".to_string(), None);
    for d in due {
        let conn = connections::get(&mut core.db.read().await?, &d.id).await?;
        let n = per_host
            .entry(crate::incident::plan::host_of(&conn))
            .or_default();
        if *n >= SCHEDULE_PER_HOST {
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
            end_sessions: false,
        };
        match start(core, &actor, &d.org_id, &req).await {
            Ok(_) => {
                *n += 1;
                started += 1;
                // What was written down while it could not start no
                // longer holds.
                if conn.rotation_waiting.is_some() {
                    let mut tx = core.db.begin_write().await?;
                    exec!(
                        &mut tx,
                        "UPDATE connections SET rotation_waiting = NULL, rotation_waiting_at = NULL WHERE id = $1",
                        &conn.id
                    )?;
                    tx.commit().await?;
                }
            }
            Err(RotationError::InProgress(_)) => {}
            Err(e) => {
                tracing::warn!(connection = %conn.id, error = %e, "scheduled rotation not started")
            }
        }
    }
    Ok(started)
}

/// How long before a scheduled rotation falls due `credential.expiring`
/// is raised.
const EXPIRING_WITHIN_MS: i64 = 7 * 86_400_000;

#[derive(sqlx::FromRow)]
struct Expiring {
    id: String,
    org_id: String,
    name: String,
    kind: String,
    due_at: i64,
}

/// Raises `credential.expiring` for connections whose scheduled rotation
/// falls due within [`EXPIRING_WITHIN_MS`]: once per credential per due
/// date (`event_marks`), whichever instance's pass finds it first.
async fn note_expiring(core: &Core, now: i64) -> Result<(), RotationError> {
    let key = format!("'credential.expiring:' || c.id || ':' || CAST({DUE_AT} AS TEXT)");
    let sql = format!(
        "SELECT c.id, c.org_id, c.name, c.kind, {DUE_AT} AS due_at FROM connections c
         WHERE c.rotation_interval_ms IS NOT NULL AND c.has_credentials = TRUE
           AND {DUE_AT} > $1 AND {DUE_AT} <= $2
           AND NOT EXISTS (SELECT 1 FROM event_marks m WHERE m.key = {key})
         ORDER BY {DUE_AT} LIMIT $3"
    );
    let args = vec![
        Arg::Int(now),
        Arg::Int(now.saturating_add(EXPIRING_WITHIN_MS)),
        Arg::Int(SCHEDULE_BATCH),
    ];
    let found: Vec<Expiring> = fetch_all_args(&mut core.db.read().await?, &sql, args).await?;
    if found.is_empty() {
        return Ok(());
    }
    let mut tx = core.db.begin_write().await?;
    for e in &found {
        let data = json!({"credential": {"type": "connection", "id": e.id, "name": e.name, "kind": e.kind}, "due_at": rfc3339(e.due_at)});
        let key = format!("credential.expiring:{}:{}", e.id, e.due_at);
        webhooks::emit_once(
            &mut tx,
            &key,
            // Found only while the due date lies ahead.
            Some(e.due_at),
            &e.org_id,
            WebhookEvent::CredentialExpiring,
            data,
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One of rekey's own secrets near or past a date a person must act by.
#[derive(sqlx::FromRow)]
struct OwnDate {
    /// `schedule` (its rotation interval runs out: due) or `expiry` (an
    /// access key's `--expires`: it stops working).
    what: String,
    /// `key`, `m2m`, `app`, as `secret_schedules` names them.
    target_type: String,
    id: String,
    org_id: String,
    org: String,
    name: String,
    at: i64,
}

/// The secrets of rekey's own (access keys, machine-client and application
/// secrets) with a date within [`EXPIRING_WITHIN_MS`] or a schedule past due
/// that no event has been raised for yet. The key of each event is in SQL
/// too, so a pass skips those already raised instead of reading them all.
const OWN_DATES: &str = "SELECT u.what, u.target_type, u.id, u.org_id, u.org, u.name, u.at FROM (
    SELECT 'schedule' AS what, 'key' AS target_type, k.id, k.org_id, o.slug AS org, k.name,
           COALESCE(s.rotated_at, k.created_at) + s.rotation_interval_ms AS at
      FROM access_keys k JOIN orgs o ON o.id = k.org_id
      JOIN secret_schedules s ON s.target_type = 'key' AND s.target_id = k.id
     WHERE k.revoked_at IS NULL AND s.rotation_interval_ms IS NOT NULL
       AND (k.expires_at IS NULL OR k.expires_at > $1)
    UNION ALL
    SELECT 'schedule' AS what, cl.kind AS target_type, cl.id, cl.org_id, o.slug AS org, cl.name,
           COALESCE(s.rotated_at, cl.created_at) + s.rotation_interval_ms AS at
      FROM oauth_clients cl JOIN orgs o ON o.id = cl.org_id
      JOIN secret_schedules s ON s.target_type = cl.kind AND s.target_id = cl.id
     WHERE cl.active = TRUE AND s.rotation_interval_ms IS NOT NULL
    UNION ALL
    SELECT 'expiry' AS what, 'key' AS target_type, k.id, k.org_id, o.slug AS org, k.name,
           k.expires_at AS at
      FROM access_keys k JOIN orgs o ON o.id = k.org_id
     WHERE k.revoked_at IS NULL AND k.expires_at IS NOT NULL
  ) u
  WHERE u.at <= $2 AND (u.what = 'schedule' OR u.at > $1)
    AND NOT EXISTS (SELECT 1 FROM event_marks m WHERE m.key =
        CASE WHEN u.what = 'schedule' AND u.at <= $1 THEN 'rotation.due:' ELSE 'credential.expiring:' END
        || u.what || ':' || u.target_type || ':' || u.id || ':' || CAST(u.at AS TEXT))
  ORDER BY u.at, u.id
  LIMIT $3";

impl OwnDate {
    /// The event this date raises now, and its `event_marks` key (the
    /// same as [`OWN_DATES`] builds).
    fn event(&self, now: i64) -> (WebhookEvent, String) {
        let (event, prefix) = if self.what == "schedule" && self.at <= now {
            (WebhookEvent::RotationDue, "rotation.due")
        } else {
            (WebhookEvent::CredentialExpiring, "credential.expiring")
        };
        let key = format!(
            "{prefix}:{}:{}:{}:{}",
            self.what, self.target_type, self.id, self.at
        );
        (event, key)
    }

    /// The type the age view (`credentials age`) gives it.
    fn credential_type(&self) -> &'static str {
        match self.target_type.as_str() {
            "key" => "access_key",
            "m2m" => "m2m_secret",
            _ => "app_secret",
        }
    }

    /// What a person runs to replace it.
    fn how(&self) -> String {
        let (flag, verb) = match self.target_type.as_str() {
            "key" => ("--key", "key reset"),
            "m2m" => ("--m2m", "m2m regenerate-secret"),
            _ => ("--app", "app regenerate-secret"),
        };
        format!(
            "a person rotates it (the new secret is shown once): `rekey rotate --org {org} {flag} {name}` (with an overlap), or `rekey {verb} --org {org} --name {name}`",
            org = self.org,
            name = self.name
        )
    }
}

/// Raises, for rekey's own secrets, `credential.expiring` once per secret
/// per date (an access key's expiry, a schedule's due date) when that date
/// is within [`EXPIRING_WITHIN_MS`], and `rotation.due` once per due period
/// when a schedule runs out: own secrets are never rotated by the
/// scheduler (a new one must be shown to someone), so a due one always
/// waits for a person.
async fn note_own(core: &Core, now: i64) -> Result<(), RotationError> {
    let args = vec![
        Arg::Int(now),
        Arg::Int(now.saturating_add(EXPIRING_WITHIN_MS)),
        Arg::Int(SCHEDULE_BATCH),
    ];
    let found: Vec<OwnDate> = fetch_all_args(&mut core.db.read().await?, OWN_DATES, args).await?;
    if found.is_empty() {
        return Ok(());
    }
    let mut tx = core.db.begin_write().await?;
    for d in &found {
        let (event, key) = d.event(now);
        let credential = json!({"type": d.credential_type(), "id": d.id, "name": d.name});
        let data = match (event, d.what.as_str()) {
            (WebhookEvent::RotationDue, _) => {
                json!({"credential": credential, "due_at": rfc3339(d.at), "waiting": d.how()})
            }
            (_, "expiry") => json!({"credential": credential, "expires_at": rfc3339(d.at)}),
            _ => json!({"credential": credential, "due_at": rfc3339(d.at)}),
        };
        // An expiring date is found only while it lies ahead; a due one
        // as long as it stands (until the secret is rotated).
        let until = (event == WebhookEvent::CredentialExpiring).then_some(d.at);
        webhooks::emit_once(&mut tx, &key, until, &d.org_id, event, data, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Writes down, once per due period, each due connection that cannot start
/// its rotation by itself, with what a person must do; warns about those
/// newly found. Ones a rotation is already under way for are not waiting.
async fn note_waiting(core: &Core, now: i64) -> Result<(), RotationError> {
    let kinds = automatic();
    let mut args = vec![Arg::Int(now), Arg::Int(SCHEDULE_BATCH)];
    let sql = format!(
        "SELECT c.id, c.org_id, o.slug AS org, c.name, c.kind, c.auth, c.status, {DUE_AT} AS due_at,
                (SELECT r.id FROM rotations r
                  WHERE r.target_type = 'connection' AND r.target_id = c.id
                    AND r.status IN ('failed', 'stalled')
                    AND r.started_at > COALESCE(c.last_rotated_at, c.created_at)
                  ORDER BY r.started_at DESC LIMIT 1) AS held_by,
                EXISTS (SELECT 1 FROM credential_slots s
                         WHERE s.connection_id = c.id AND s.slot = 'pending') AS pending,
                EXISTS (SELECT 1 FROM credential_slots s
                         WHERE s.connection_id = c.id AND s.slot = 'previous'
                           AND s.retired_at IS NULL) AS previous_live
         FROM connections c JOIN orgs o ON o.id = c.org_id
         WHERE {} AND NOT ({})
           AND NOT EXISTS (SELECT 1 FROM rotations r
                            WHERE r.target_type = 'connection' AND r.target_id = c.id
                              AND r.finished_at IS NULL)
           AND (c.rotation_waiting_at IS NULL OR c.rotation_waiting_at < {DUE_AT})
         ORDER BY {DUE_AT}, c.id
         LIMIT $2",
        due(),
        startable(3, kinds.len())
    );
    args.extend(kinds);
    let found: Vec<Waiting> = fetch_all_args(&mut core.db.read().await?, &sql, args).await?;
    if found.is_empty() {
        return Ok(());
    }
    let mut noted = Vec::new();
    let mut tx = core.db.begin_write().await?;
    for w in &found {
        let why = reason(w);
        // Once: another instance may have written it down meanwhile.
        let n = exec!(
            &mut tx,
            "UPDATE connections SET rotation_waiting = $1, rotation_waiting_at = $2
             WHERE id = $3 AND (rotation_waiting_at IS NULL OR rotation_waiting_at < $4)",
            &why,
            now,
            &w.id,
            w.due_at
        )?;
        if n == 1 {
            noted.push(format!("{}/{}: {why}", w.org, w.name));
            let data = json!({"connection": {"id": w.id, "name": w.name, "kind": w.kind}, "due_at": rfc3339(w.due_at), "waiting": why});
            webhooks::emit(&mut tx, &w.org_id, WebhookEvent::RotationDue, data, now).await?;
        }
    }
    tx.commit().await?;
    if !noted.is_empty() {
        tracing::warn!(
            count = noted.len(),
            first = %noted.iter().take(5).cloned().collect::<Vec<_>>().join("; "),
            "scheduled rotations are due that cannot start by themselves: a person must act (`rekey credentials age` lists them)"
        );
    }
    Ok(())
}

/// What keeps `w`'s scheduled rotation from starting, and what a person does.
fn reason(w: &Waiting) -> String {
    let rotate = format!("`rekey rotate --org {} --connection {}`", w.org, w.name);
    if let Some(r) = &w.held_by {
        return format!(
            "rotation {r} failed or stalled; `rekey rotation show {r}` says why, then retry or cancel it"
        );
    }
    let mode = catalog::kind(&w.kind)
        .and_then(|k| k.method(&w.auth))
        .map(|m| m.rotation);
    match mode {
        None => format!("{} ({}) is not in this rekey's catalog", w.kind, w.auth),
        Some(Mode::Manual) => {
            format!("a person rotates {} ({}) at the provider: {rotate} gives the steps", w.kind, w.auth)
        }
        Some(Mode::Reauthorize) => format!("a person re-authorizes it: {rotate}"),
        Some(Mode::Automatic) if !matches!(w.status.as_str(), "connected" | "error") => format!(
            "the connection is {}: it must be re-authorized or given a working credential before it can rotate",
            w.status
        ),
        Some(Mode::Automatic) if w.pending => format!(
            "a pending credential an earlier rotation kept must be resolved first (`rekey rotation list --org {}`, then `rekey rotation retry`)",
            w.org
        ),
        Some(Mode::Automatic) if w.previous_live => format!(
            "the previous credential still works: finish the rotation that left it (`rekey rotation list --org {}`)",
            w.org
        ),
        Some(Mode::Automatic) => format!("no driver rotates {} ({})", w.kind, w.auth),
    }
}
