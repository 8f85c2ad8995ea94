//! Refreshing a connection's tokens, single-flight across tasks and
//! instances (a lease in the database), and the credentials platform code
//! reads, refreshed first when about to expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::connections::{self, Connection};
use super::oauth_client::{self, Failure};
use super::slots::Slot;
use super::ConnectorError;
use crate::audit::Actor;
use crate::clock::rfc3339;
use crate::events::activity::{self, ActivityType};
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
    /// The refresh lock was lost (this instance stalled past its lease and
    /// another took the work over): nothing was sent, or nothing stored.
    LeaseLost,
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

/// Refreshes one connection; the caller holds its lease as `owner`.
/// Re-reads first and does nothing when a sibling already refreshed. The
/// lease is checked (and renewed) right before the refresh token is sent
/// and again in the transaction that stores the result: an instance that
/// stalled past its lease must not spend a token its successor may already
/// have rotated (the provider's reuse detection would kill the grant). A
/// rotated refresh token is stored before anything else happens.
pub async fn refresh_locked(
    core: &Core,
    id: &str,
    owner: &str,
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
    // Debug builds only: a test stalls here, before the check below.
    crate::test_hooks::pause_before_refresh(id).await;
    if !super::refresh_jobs::hold(core, id, owner).await? {
        return Ok(lease_lost(&conn, "before the refresh token was sent"));
    }
    match oauth_client::refresh_call(core, &conn, &creds).await {
        Ok(new) => {
            let now = core.now();
            let method = conn.method()?;
            let due = oauth_client::refresh_due(method.oauth.as_ref(), &new, now);
            let rotated = new.get("refresh_token") != creds.get("refresh_token");
            // Through the group-commit writer: many connections refreshed at
            // once share one commit (the keeper refreshes in parallel).
            let (core2, conn2, owner2) = (core.clone(), conn.clone(), owner.to_string());
            let stored = core
                .writer
                .run(move |tx| {
                    Box::pin(async move {
                        if !super::refresh_jobs::hold_in(tx, &conn2.id, &owner2, now).await? {
                            return Ok::<_, ConnectorError>(false);
                        }
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
                        let detail = json!({"refresh_token_rotated": rotated, "expires_at": new.get("expires_at")});
                        activity::record(tx, &conn2.org_id, &conn2.id, ActivityType::Refresh, "tokens refreshed", detail, now).await?;
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
                        Ok(true)
                    })
                })
                .await
                .map_err(crate::store::StoreError::from)??;
            if !stored {
                return Ok(lease_lost(&conn, "before the new tokens were stored"));
            }
            Ok(Refreshed::Done)
        }
        Err(Failure::InvalidGrant(msg)) => {
            // A sibling may have rotated the token under us: only a refusal
            // of the token we still hold means the grant is dead.
            let mut c = core.db.read().await?;
            let now_creds = connections::credentials(&mut c, core, id).await?;
            drop(c);
            if now_creds.get("refresh_token") != creds.get("refresh_token") {
                tracing::info!(connection = %conn.id, "refresh token refused, but another refresh had already replaced it");
                return Ok(Refreshed::Fresh);
            }
            // set_status audits the change and logs it at warn.
            let now = core.now();
            let mut tx = core.db.begin_write().await?;
            exec!(
                &mut tx,
                "UPDATE connections SET refresh_due_at = NULL WHERE id = $1",
                id
            )?;
            let message = format!("refresh refused by the provider: {msg}");
            activity::record(
                &mut tx,
                &conn.org_id,
                &conn.id,
                ActivityType::Refresh,
                &message,
                json!({"ok": false, "grant": "dead"}),
                now,
            )
            .await?;
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

/// Logs (no token, only the connection) that this instance lost the
/// refresh lock, and what it did not do because of it.
fn lease_lost(conn: &Connection, when: &str) -> Refreshed {
    tracing::warn!(connection = %conn.id, kind = %conn.kind, "lost the refresh lease {when}: another instance took the refresh over; nothing more is done here");
    Refreshed::LeaseLost
}

/// A refresh that failed before it could ask the provider (a credential
/// that does not open, a connection that cannot be read): counted like a
/// provider's failure, so the next try waits a growing backoff and the
/// connection's reason says why. Without it the keeper took the connection
/// again at every pass, forever, and nothing showed it.
pub async fn refresh_errored(core: &Core, id: &str, message: &str) -> Result<(), ConnectorError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let conn = match connections::get(&mut tx, id).await {
        Ok(c) => c,
        // Deleted meanwhile: nothing left to refresh.
        Err(ConnectorError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let wait = crate::jobs::queue::backoff_ms(conn.failures).clamp(1_000, 3_600_000);
    let reason = format!("refresh failed, retrying: {message}");
    exec!(
        &mut tx,
        "UPDATE connections SET failures = failures + 1, next_attempt_at = $1, status_reason = $2 WHERE id = $3",
        now.saturating_add(wait),
        &reason,
        id
    )?;
    // As a provider's failure does: once the access token is gone (its
    // expiry is on the row, the tokens themselves may not open), the
    // connection is in error, so readers and the console see it.
    if conn.access_expires_at.is_some_and(|e| e <= now) && conn.status == "connected" {
        connections::set_status(
            &mut tx,
            &Actor::system(),
            &conn,
            "error",
            Some(&reason),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
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
    let detail = json!({"ok": false, "retry_at": rfc3339(now + wait)});
    activity::record(
        &mut tx,
        &conn.org_id,
        &conn.id,
        ActivityType::Refresh,
        &format!("refresh failed, retrying: {message}"),
        detail,
        now,
    )
    .await?;
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

/// The keeper's refresh of a connection it claimed: under this process's
/// lock for the connection too, since every task here leases as the same
/// owner, so the lease alone does not keep a concurrent read's refresh
/// ([`ensure_fresh`]) out.
pub async fn refresh_locked_here(
    core: &Core,
    id: &str,
    owner: &str,
) -> Result<Refreshed, ConnectorError> {
    let lock = local_lock(id);
    let _guard = lock.lock().await;
    refresh_locked(core, id, owner, false).await
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
            let r = refresh_locked(core, &conn.id, owner, false).await;
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

/// Refreshes now, fresh or not: a target refused the access token (a 401
/// on a delivery) though it had not expired, so it was revoked or rotated
/// at the provider. Once per refusal; `NeedsReauth` when the grant is dead.
/// Waits for a refresh another instance holds, then reports `Fresh`.
pub async fn refresh_now(core: &Core, conn: &Connection) -> Result<Refreshed, ConnectorError> {
    let lock = local_lock(&conn.id);
    let _guard = lock.lock().await;
    let owner = instance_id();
    for _ in 0..200 {
        if acquire_lease(core, &conn.id, owner).await? {
            let r = refresh_locked(core, &conn.id, owner, true).await;
            release_lease(core, &conn.id, owner).await?;
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Refreshed::Retry(
        "the connection is being refreshed elsewhere".into(),
    ))
}

/// The current credentials of a connection for platform code: refreshed
/// first when about to expire. Every read is audited.
pub async fn read(
    core: &Core,
    org_id: &str,
    key: &str,
    slot: Slot,
    reader: &Actor,
    consumer: Option<&str>,
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
    let creds = match slot {
        Slot::Current => connections::credentials(&mut c, core, &conn.id).await?,
        other => super::slots::read(&mut c, core, &conn.id, other)
            .await?
            .unwrap_or_default(),
    };
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
        json!({"consumer": consumer}),
    )
    .await?;
    tx.commit().await?;
    Ok((conn, creds))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::config::Config;
    use crate::connectors::connections::NewConnection;
    use crate::connectors::refresh_jobs;
    use crate::crypto::keyring::generate_key;

    /// A connection whose refresh lease the provider takes away from
    /// "stalled" (as if it had stalled past it) while its token call runs.
    type Steal = Arc<tokio::sync::Mutex<Option<(Core, String)>>>;

    /// A provider that counts the requests it gets and describes itself
    /// (RFC 8414). A refresh is refused with `invalid_grant`, unless a
    /// [`Steal`] is set: then the lease is taken over meanwhile and the
    /// refresh answered with new tokens.
    async fn counting_provider() -> (String, Arc<AtomicUsize>, Steal) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let steal: Steal = Default::default();
        let (h, base, st) = (hits.clone(), url.clone(), steal.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                h.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let (status, body) = if buf[..n].starts_with(b"GET /.well-known/") {
                    let meta = json!({
                        "issuer": base,
                        "authorization_endpoint": format!("{base}/oauth2/authorize"),
                        "token_endpoint": format!("{base}/oauth2/token"),
                    });
                    ("200 OK", meta.to_string())
                } else if let Some((core, id)) = st.lock().await.take() {
                    take_over(&core, &id).await;
                    let tokens = json!({"access_token": "at2", "refresh_token": "rt2",
                        "token_type": "Bearer", "expires_in": 3600});
                    ("200 OK", tokens.to_string())
                } else {
                    (
                        "400 Bad Request",
                        r#"{"error":"invalid_grant"}"#.to_string(),
                    )
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        (url, hits, steal)
    }

    /// "stalled" held the refresh lease of connection `id` and stalled past
    /// it; "successor" takes it over.
    async fn take_over(core: &Core, id: &str) {
        let mut tx = core.db.begin_write().await.unwrap();
        let job = format!("refresh-{id}");
        crate::jobs::queue::heartbeat_in(&mut tx, &job, "stalled", -1, core.now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert!(refresh_jobs::lock(core, id, "successor").await.unwrap());
    }

    /// A core on a fresh SQLite file, with an OAuth connection (kind
    /// `rekey`) to `provider` holding a stale refresh token.
    async fn world(dir: &std::path::Path, provider: &str) -> (Core, String) {
        let config = Config {
            data_dir: dir.to_path_buf(),
            master_key: Some(generate_key()),
            argon2_memory_kib: 1024,
            argon2_iterations: 1,
            ..Config::default()
        };
        let (core, _) = Core::open(config, true).await.unwrap();
        let actor = Actor::cli();
        let org = crate::identity::orgs::create(&core.db, &actor, "acme", None, core.now())
            .await
            .unwrap();
        let settings = [
            ("base_url".to_string(), provider.to_string()),
            ("scope".to_string(), "read".to_string()),
        ]
        .into();
        let endpoints = [("token_url".to_string(), format!("{provider}/oauth2/token"))].into();
        let conn = connections::create(
            &core,
            &actor,
            NewConnection {
                org_id: &org.id,
                kind: "rekey",
                name: "upstream",
                auth: None,
                settings: &settings,
                endpoints: &endpoints,
            },
        )
        .await
        .unwrap();
        crate::connectors::provider_clients::set_for_connection(
            &core, &actor, &org.id, &conn.id, "client", "secret",
        )
        .await
        .unwrap();
        let creds = json!({"access_token": "at", "refresh_token": "rt", "expires_at": 0});
        let mut tx = core.db.begin_write().await.unwrap();
        connections::put_credentials(
            &mut tx,
            &core,
            &conn,
            creds.as_object().unwrap(),
            Some(0),
            core.now(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        (core, conn.id)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refresher_whose_lease_was_taken_over_does_not_call_the_provider() {
        let dir = tempfile::tempdir().unwrap();
        let (provider, hits, _) = counting_provider().await;
        let (core, id) = world(dir.path(), &provider).await;

        // We held the lease, stalled past it, and another instance took it.
        assert!(refresh_jobs::lock(&core, &id, "stalled").await.unwrap());
        take_over(&core, &id).await;

        let r = refresh_locked(&core, &id, "stalled", true).await.unwrap();
        assert_eq!(r, Refreshed::LeaseLost);
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "the provider was not called"
        );
        let mut c = core.db.read().await.unwrap();
        let conn = connections::get(&mut c, &id).await.unwrap();
        let creds = connections::credentials(&mut c, &core, &id).await.unwrap();
        assert_eq!(creds["refresh_token"], "rt", "nothing stored");
        assert_ne!(conn.status, "needs_reauth");
        drop(c);

        // The holder does call it (and, refused with the token it holds,
        // marks the connection needs_reauth).
        let r = refresh_locked(&core, &id, "successor", true).await.unwrap();
        assert!(hits.load(Ordering::SeqCst) >= 1);
        assert_eq!(r, Refreshed::NeedsReauth);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refresher_that_loses_its_lease_during_the_call_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (provider, _, steal) = counting_provider().await;
        let (core, id) = world(dir.path(), &provider).await;
        assert!(refresh_jobs::lock(&core, &id, "stalled").await.unwrap());
        *steal.lock().await = Some((core.clone(), id.clone()));

        let r = refresh_locked(&core, &id, "stalled", true).await.unwrap();
        assert_eq!(r, Refreshed::LeaseLost);
        assert!(steal.lock().await.is_none(), "the token call was made");
        let mut c = core.db.read().await.unwrap();
        let creds = connections::credentials(&mut c, &core, &id).await.unwrap();
        assert_eq!(
            creds["refresh_token"], "rt",
            "the late result was not stored"
        );
    }
}
