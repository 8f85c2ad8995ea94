//! Rotating rekey's own secrets: an org access key, a machine client's
//! secret, an application's client secret. The new secret is issued at
//! once (and shown once, in the answer), the old one keeps working for the
//! cut-over window — the overlap `key reset` and `regenerate-secret` have —
//! and the job retires it when the window has passed.

use serde_json::json;

use super::{
    finish, insert, record_step, NewRotation, RotationError, StartRequest, Started, TargetRef,
};
use crate::audit::Actor;
use crate::clock::rfc3339;
use crate::oauth::access_keys;
use crate::oauth::client_auth::{self, Method, Presented};
use crate::oauth::clients::{self, ClientKind};
use crate::state::Core;

/// The longest overlap rekey keeps for its own secrets.
use super::limits::MAX_OVERLAP_MS as MAX_WINDOW_MS;

pub(super) async fn start(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    req: &StartRequest,
) -> Result<Started, RotationError> {
    let (target_type, name, kind) = match &req.target {
        TargetRef::Key(n) => ("key", n, None),
        TargetRef::M2m(n) => ("m2m", n, Some(ClientKind::M2m)),
        TargetRef::App(n) => ("app", n, Some(ClientKind::App)),
        TargetRef::Connection(_) => {
            return Err(RotationError::Invalid(
                "not one of rekey's own secrets".into(),
            ))
        }
    };
    if !(0..=MAX_WINDOW_MS).contains(&req.cutover_window_ms) {
        return Err(RotationError::Invalid(
            "the cut-over window of a key or secret must be between 0s and 30d".into(),
        ));
    }
    let mut c = core.db.read().await?;
    let (target_id, client_id) = match kind {
        None => {
            let k = access_keys::find(&mut c, org_id, name).await?;
            if k.revoked_at.is_some() {
                return Err(RotationError::Invalid(format!(
                    "access key {:?} is revoked; create a new one",
                    k.name
                )));
            }
            (k.id, None)
        }
        Some(kind) => {
            let cl = clients::find(&mut c, org_id, kind, name).await?;
            (cl.id.clone(), Some(cl.client_id))
        }
    };
    drop(c);
    if req.preflight {
        // rekey's own secrets are presented, not read: their consumers are
        // whoever holds them; the old one ends with the cut-over window.
        return Ok(Started::Plan(json!({
            "preflight": true,
            "target": {"type": target_type, "name": name},
            "readers": [],
            "not_moved": [],
            "note": "callers present this secret; after a rotation the previous one works until the cut-over window ends",
        })));
    }
    if req.dry_run {
        return Ok(Started::Plan(json!({
            "dry_run": true,
            "target": {"type": target_type, "name": name},
            "steps": ["check", "apply", "verify", "cutover", "retire"],
            "statements": [
                "issue a new secret (shown once); the current one keeps working for the cut-over window",
                "authenticate with the new secret (verify)",
                "after the window, the previous secret stops working (retire)",
            ],
            "dual_credentials": true,
            "cutover_window_s": req.cutover_window_ms / 1000,
        })));
    }
    let now = core.now();
    let until = now.saturating_add(req.cutover_window_ms);
    // Reserve the target before anything is issued.
    let row = insert(
        core,
        actor,
        NewRotation {
            org_id,
            target_type,
            target_id: &target_id,
            target_name: name,
            step: "cutover",
            payload: json!({"cutover_until": until}),
            status: "running",
            run_at: until,
            cutover_window_ms: req.cutover_window_ms,
            deadline_ms: req.deadline_ms,
            rotate_with: None,
            host: None,
        },
    )
    .await?;
    let issued = match kind {
        None => access_keys::reset(core, actor, org_id, name, req.cutover_window_ms)
            .await
            .map(|(_, s)| s),
        Some(kind) => {
            clients::regenerate_secret(core, actor, org_id, kind, name, req.cutover_window_ms)
                .await
                .map(|(_, s)| s)
        }
    };
    let now = core.now();
    let secret = match issued {
        Ok(s) => s,
        Err(e) => {
            let mut tx = core.db.begin_write().await?;
            crate::jobs::queue::cancel(&mut tx, &row.job_id, now).await?;
            super::run::fail_rotation(&mut tx, &row, "apply", &e.to_string(), now).await?;
            tx.commit().await?;
            return Ok(Started::Rotation(Box::new(
                super::get_any(core, &row.id).await?.view(),
            )));
        }
    };
    let verified = match &client_id {
        None => access_keys::authenticate(core, &secret).await.is_ok(),
        Some(id) => client_auth::authenticate(
            core,
            &Presented {
                client_id: id.clone(),
                secret: secret.clone(),
                method: Method::Basic,
            },
        )
        .await
        .is_ok(),
    };
    let mut tx = core.db.begin_write().await?;
    record_step(
        &mut tx,
        &row,
        "check",
        "done",
        "the target exists and is not revoked",
        "running",
        now,
    )
    .await?;
    let applied = if req.cutover_window_ms > 0 {
        format!(
            "a new secret was issued; the previous one works until {}",
            rfc3339(until)
        )
    } else {
        "a new secret was issued; the previous one stopped working".to_string()
    };
    record_step(&mut tx, &row, "apply", "done", &applied, "running", now).await?;
    if verified {
        let status = if req.cutover_window_ms > 0 {
            "waiting_cutover"
        } else {
            "running"
        };
        record_step(
            &mut tx,
            &row,
            "verify",
            "done",
            "the new secret authenticates",
            status,
            now,
        )
        .await?;
    } else {
        // Not expected: the secret was just stored. Say so loudly; the
        // previous secret still works for the window.
        record_step(
            &mut tx,
            &row,
            "verify",
            "failed",
            "the new secret does not authenticate",
            "failed",
            now,
        )
        .await?;
        finish(
            &mut tx,
            &row,
            "failed",
            Some("verify: the new secret does not authenticate"),
            now,
        )
        .await?;
        crate::jobs::queue::cancel(&mut tx, &row.job_id, now).await?;
    }
    tx.commit().await?;
    let mut view = super::get_any(core, &row.id).await?.view();
    view.secret = Some(secret);
    Ok(Started::Rotation(Box::new(view)))
}
