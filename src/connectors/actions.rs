//! What an admin does to a connection beyond its settings: set a credential
//! (shape-checked and probed before it is stored), and test it.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::connections::{self, Connection};
use super::probe::{self, Outcome, Verdict};
use super::{credentials, shapes, ConnectorError};
use crate::audit::Actor;
use crate::events::activity::{self, ActivityType};
use crate::state::Core;

/// Stores credential fields (merged over the stored ones) once they have the
/// right shape and pass the probe; with `force`, even when the probe fails.
pub async fn set_credential(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    key: &str,
    fields: &BTreeMap<String, String>,
    force: bool,
) -> Result<(Connection, Outcome), ConnectorError> {
    let conn = connections::find_in(&core.db, org_id, key).await?;
    let method = conn.method()?;
    if method.is_oauth_code() {
        return Err(ConnectorError::Invalid(format!(
            "{} is authorized through OAuth; use `rekey connection authorize` (or set-client for the OAuth client)",
            conn.name
        )));
    }
    if fields.is_empty() {
        return Err(ConnectorError::Invalid("name at least one --field".into()));
    }
    let mut c = core.db.read().await?;
    let mut creds: Map<String, Value> = connections::credentials(&mut c, core, &conn.id).await?;
    drop(c);
    let before = serde_json::to_vec(&creds).unwrap_or_default();
    for (k, v) in fields {
        let Some(f) = method.fields.iter().find(|f| &f.key == k) else {
            let known: Vec<&str> = method.fields.iter().map(|f| f.key.as_str()).collect();
            return Err(ConnectorError::Invalid(format!(
                "{} ({}) has no credential field {k:?} (fields: {})",
                conn.kind,
                conn.auth,
                known.join(", ")
            )));
        };
        shapes::check(f, v).map_err(ConnectorError::Invalid)?;
        creds.insert(
            k.clone(),
            Value::String(v.trim_end_matches(['\r', '\n']).to_string()),
        );
    }
    for f in &method.fields {
        if !f.optional && !creds.contains_key(&f.key) {
            return Err(ConnectorError::Invalid(format!(
                "credential field {:?} is required too",
                f.key
            )));
        }
    }
    // The same value again is no new credential: it neither completes a
    // rotation waiting for one (it would verify the leaked value) nor
    // resets the credential's age. Compared in constant time.
    let unchanged = {
        use subtle::ConstantTimeEq;
        let after = serde_json::to_vec(&creds).unwrap_or_default();
        bool::from(after.ct_eq(&before))
    };
    if unchanged && crate::rotation::waits_for_person(core, &conn.id).await? {
        return Err(ConnectorError::Invalid(format!(
            "that is the credential {} holds now: a rotation waits for a new one; nothing was stored",
            conn.name
        )));
    }
    let out = probe::run(core, &conn, &creds).await;
    if out.verdict == Verdict::Failed && !force {
        return Err(ConnectorError::ProbeFailed(format!(
            "{}; nothing was stored (use --force to store it anyway)",
            out.message
        )));
    }
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    // The same value again: nothing new to seal, so its version, age and
    // rotation date stay (a passing test still marks it verified, in
    // `record_test`).
    if !unchanged {
        connections::put_credentials(&mut tx, core, &conn, &creds, None, now).await?;
        connections::mark_rotated(&mut tx, &conn.id, now).await?;
    }
    connections::record_test(&mut tx, &conn, &out, now).await?;
    connections::record(
        &mut tx,
        now,
        actor,
        &conn,
        "connection.set_credential",
        json!({
            "fields": fields.keys().collect::<Vec<_>>(),
            "forced": force && out.verdict == Verdict::Failed,
            "test": out.verdict,
        }),
    )
    .await?;
    let detail = json!({"fields": fields.keys().collect::<Vec<_>>(), "by": actor.name, "unchanged": unchanged});
    activity::record(
        &mut tx,
        &conn.org_id,
        &conn.id,
        ActivityType::Credential,
        "credential set",
        detail,
        now,
    )
    .await?;
    let (status, reason) = match out.verdict {
        Verdict::Ok => ("connected", "credential set".to_string()),
        // Stored, since nothing could prove it either way; the view says so.
        Verdict::Unverified => (
            "connected",
            format!("credential set; not verified: {}", out.message),
        ),
        Verdict::Failed => (
            "error",
            format!("stored with --force; test failed: {}", out.message),
        ),
    };
    connections::set_status(&mut tx, actor, &conn, status, Some(&reason), now).await?;
    // A manual rotation waiting for this value is done (or told why not),
    // in the transaction that stored it; the same value completes none.
    if !unchanged {
        crate::rotation::credential_stored_in(&mut tx, &conn.id, Some(&out), now).await?;
    }
    tx.commit().await?;
    Ok((
        connections::get(&mut core.db.read().await?, &conn.id).await?,
        out,
    ))
}

/// Runs the probe now and records the outcome and time.
pub async fn test(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    key: &str,
) -> Result<(Connection, Outcome), ConnectorError> {
    let conn = connections::find_in(&core.db, org_id, key).await?;
    let method = conn.method()?;
    let out = if !conn.has_credentials {
        Outcome::failed("no credentials are stored")
    } else {
        if method.is_oauth_code() {
            credentials::ensure_fresh(core, &conn).await?;
        }
        let mut c = core.db.read().await?;
        let creds = connections::credentials(&mut c, core, &conn.id).await?;
        drop(c);
        probe::run(core, &conn, &creds).await
    };
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let conn = connections::get(&mut tx, &conn.id).await?;
    connections::record_test(&mut tx, &conn, &out, now).await?;
    if conn.has_credentials && conn.status != "needs_reauth" {
        match out.verdict {
            Verdict::Ok => {
                connections::set_status(&mut tx, actor, &conn, "connected", None, now).await?;
            }
            Verdict::Failed => {
                connections::set_status(
                    &mut tx,
                    actor,
                    &conn,
                    "error",
                    Some(&format!("connection test failed: {}", out.message)),
                    now,
                )
                .await?;
            }
            // Nothing was learned: the status stays what it was.
            Verdict::Unverified => {}
        }
    }
    tx.commit().await?;
    Ok((
        connections::get(&mut core.db.read().await?, &conn.id).await?,
        out,
    ))
}
