//! Refreshing a connection's tokens, single-flight across tasks and
//! instances (a lease in the database), and the credentials platform code
//! reads, refreshed first when about to expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::connections::{self, Connection};
use super::oauth_client::{self, Failure};
use super::ConnectorError;
use crate::audit::Actor;
use crate::exec;
use crate::state::Core;

/// This process's name in leases.
pub fn instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| format!("instance-{}", crate::store::new_id()))
}

/// Takes the connection's refresh lock (its refresh job's lease), or
/// renews our own. True when we hold it.
pub async fn acquire_lease(core: &Core, id: &str, owner: &str) -> Result<bool, ConnectorError> {
    super::refresh_jobs::lock(core, id, owner).await
}

pub async fn release_lease(core: &Core, id: &str, owner: &str) -> Result<(), ConnectorError> {
    super::refresh_jobs::release(core, owner, &[id.to_string()]).await
}

/// What a refresh attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// New tokens are stored.
    Done,
    /// Nothing to do: the tokens were fresh (a sibling refreshed them).
    Fresh,
    /// The grant is dead; the connection is `needs_reauth`.
    NeedsReauth,
    /// A passing failure; retried later.
    Retry(String),
}

fn stale(conn: &Connection, creds: &Map<String, Value>, now: i64) -> bool {
    let margin = oauth_client::margin_for(conn.method().ok().and_then(|m| m.oauth.as_ref()), creds);
    let expiring = creds
        .get("expires_at")
        .and_then(Value::as_i64)
        .is_some_and(|e| e - margin <= now);
    let due = conn.refresh_due_at.is_some_and(|d| d <= now);
    expiring || due
}

/// Refreshes one connection; the caller holds its lease. Re-reads first and
/// does nothing when a sibling already refreshed. A rotated refresh token is
/// stored before anything else happens.
pub async fn refresh_locked(
    core: &Core,
    id: &str,
    force: bool,
) -> Result<Refreshed, ConnectorError> {
    let actor = Actor::system();
    let mut c = core.db.read().await?;
    let conn = connections::get(&mut c, id).await?;
    let creds = connections::credentials(&mut c, core, id).await?;
    drop(c);
    if !conn.has_credentials || conn.status == "needs_reauth" {
        return Ok(Refreshed::Fresh);
    }
    if !force && !stale(&conn, &creds, core.now()) {
        return Ok(Refreshed::Fresh);
    }
    match oauth_client::refresh_call(core, &conn, &creds).await {
        Ok(new) => {
            let now = core.now();
            let method = conn.method()?;
            let due = oauth_client::refresh_due(method.oauth.as_ref(), &new, now);
            let rotated = new.get("refresh_token") != creds.get("refresh_token");
            // Through the group-commit writer: many connections refreshed at
            // once share one commit (the keeper refreshes in parallel).
            let (core2, conn2) = (core.clone(), conn.clone());
            core.writer
                .run(move |tx| {
                    Box::pin(async move {
                        connections::put_credentials(tx, &core2, &conn2, &new, due, now).await?;
                        connections::record(
                            tx,
                            now,
                            &actor,
                            &conn2,
                            "connection.refresh",
                            json!({"refresh_token_rotated": rotated}),
                        )
                        .await?;
                        if conn2.status != "connected" {
                            connections::set_status(
                                tx,
                                &actor,
                                &conn2,
                                "connected",
                                Some("refreshed"),
                                now,
                            )
                            .await?;
                        }
                        Ok::<_, ConnectorError>(())
                    })
                })
                .await
                .map_err(crate::store::StoreError::from)??;
            Ok(Refreshed::Done)
        }
        Err(Failure::InvalidGrant(msg)) => {
            // A sibling may have rotated the token under us: only a refusal
            // of the token we still hold means the grant is dead.
            let mut c = core.db.read().await?;
            let now_creds = connections::credentials(&mut c, core, id).await?;
            drop(c);
            if now_creds.get("refresh_token") != creds.get("refresh_token") {
                return Ok(Refreshed::Fresh);
            }
            let now = core.now();
            let mut tx = core.db.begin_write().await?;
            exec!(
                &mut tx,
                "UPDATE connections SET refresh_due_at = NULL WHERE id = $1",
                id
            )?;
            connections::set_status(
                &mut tx,
                &actor,
                &conn,
                "needs_reauth",
                Some(&format!("the provider refused the refresh token: {msg}")),
                now,
            )
            .await?;
            tx.commit().await?;
            Ok(Refreshed::NeedsReauth)
        }
        Err(Failure::Refused(message))
        | Err(Failure::Unavailable {
            message,
            retry_after_ms: None,
        }) => retry_later(core, &conn, &creds, &message, None).await,
        Err(Failure::Unavailable {
            message,
            retry_after_ms,
        }) => retry_later(core, &conn, &creds, &message, retry_after_ms).await,
    }
}

async fn retry_later(
    core: &Core,
    conn: &Connection,
    creds: &Map<String, Value>,
    message: &str,
    retry_after_ms: Option<i64>,
) -> Result<Refreshed, ConnectorError> {
    let now = core.now();
    let wait = retry_after_ms
        .unwrap_or_else(|| crate::jobs::queue::backoff_ms(conn.failures))
        .clamp(1_000, 3_600_000);
    let mut tx = core.db.begin_write().await?;
    exec!(
        &mut tx,
        "UPDATE connections SET failures = failures + 1, next_attempt_at = $1, status_reason = $2 WHERE id = $3",
        now + wait,
        format!("refresh failed, retrying: {message}"),
        &conn.id
    )?;
    // Only once the access token is actually gone is the connection in error;
    // a passing failure never makes it needs_reauth.
    let expired = creds
        .get("expires_at")
        .and_then(Value::as_i64)
        .is_some_and(|e| e <= now);
    if expired {
        connections::set_status(
            &mut tx,
            &Actor::system(),
            conn,
            "error",
            Some(&format!("refresh failed, retrying: {message}")),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Refreshed::Retry(message.to_string()))
}

/// One in-process lock per connection, so concurrent readers in this
/// process wait on memory rather than poll the lease.
fn local_lock(id: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut m = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if m.len() > 10_000 {
        m.retain(|_, v| Arc::strong_count(v) > 1);
    }
    m.entry(id.to_string()).or_default().clone()
}

/// Refreshes if stale, exactly once however many callers ask at the same
/// time, in this process (a local lock) and across instances (the lease).
pub async fn ensure_fresh(core: &Core, conn: &Connection) -> Result<(), ConnectorError> {
    let lock = local_lock(&conn.id);
    let _guard = lock.lock().await;
    for _ in 0..200 {
        let mut c = core.db.read().await?;
        let now_conn = connections::get(&mut c, &conn.id).await?;
        let creds = connections::credentials(&mut c, core, &conn.id).await?;
        drop(c);
        if !stale(&now_conn, &creds, core.now()) || now_conn.status == "needs_reauth" {
            return Ok(());
        }
        let owner = instance_id();
        if acquire_lease(core, &conn.id, owner).await? {
            let r = refresh_locked(core, &conn.id, false).await;
            release_lease(core, &conn.id, owner).await?;
            return r.map(|_| ());
        }
        // another instance holds the lease: wait for it to finish
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(ConnectorError::Unavailable(
        "the connection is being refreshed elsewhere; try again".into(),
    ))
}

/// The current credentials of a connection for platform code: refreshed
/// first when about to expire. Every read is audited.
pub async fn read(
    core: &Core,
    org_id: &str,
    key: &str,
    reader: &Actor,
) -> Result<(Connection, Map<String, Value>), ConnectorError> {
    let conn = connections::find_in(&core.db, org_id, key).await?;
    if !conn.has_credentials {
        return Err(ConnectorError::Invalid(format!(
            "connection {} has no credentials (status {})",
            conn.name, conn.status
        )));
    }
    if conn.method()?.is_oauth_code() {
        ensure_fresh(core, &conn).await?;
    }
    let mut c = core.db.read().await?;
    let conn = connections::get(&mut c, &conn.id).await?;
    let creds = connections::credentials(&mut c, core, &conn.id).await?;
    drop(c);
    if conn.status == "needs_reauth" {
        return Err(ConnectorError::Provider(format!(
            "connection {} needs re-authorization: {}",
            conn.name,
            conn.status_reason.clone().unwrap_or_default()
        )));
    }
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    connections::record(
        &mut tx,
        now,
        reader,
        &conn,
        "connection.credentials_read",
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok((conn, creds))
}
