//! Fixed-window failure counters in the database, shared by every instance:
//! failed logins per account and per client IP.

use super::IdentityError;
use crate::store::Db;
use crate::{exec, fetch_optional};

#[derive(sqlx::FromRow)]
struct Window {
    window_start: i64,
    count: i64,
}

/// Seconds until `key` may try again, if it has used up `limit` failures in
/// the current window.
pub async fn blocked(
    db: &Db,
    key: &str,
    limit: i64,
    window_ms: i64,
    now: i64,
) -> Result<Option<i64>, IdentityError> {
    let mut c = db.read().await?;
    let w = fetch_optional!(
        &mut c,
        Window,
        "SELECT window_start, count FROM rate_limits WHERE key = $1",
        key
    )?;
    Ok(w.and_then(|w| {
        let ends = w.window_start + window_ms;
        (ends > now && w.count >= limit).then(|| ((ends - now) / 1000).max(1))
    }))
}

/// Counts one failure for `key`.
pub async fn hit(db: &Db, key: &str, window_ms: i64, now: i64) -> Result<(), IdentityError> {
    let mut tx = db.begin_write().await?;
    // A window that has ended starts over at 1.
    exec!(
        &mut tx,
        "INSERT INTO rate_limits (key, window_start, count) VALUES ($1, $2, 1)
         ON CONFLICT (key) DO UPDATE SET
           count = CASE WHEN rate_limits.window_start + $3 <= $2 THEN 1 ELSE rate_limits.count + 1 END,
           window_start = CASE WHEN rate_limits.window_start + $3 <= $2 THEN $2 ELSE rate_limits.window_start END",
        key,
        now,
        window_ms
    )?;
    tx.commit().await?;
    Ok(())
}

pub async fn clear(db: &Db, key: &str) -> Result<(), IdentityError> {
    let mut tx = db.begin_write().await?;
    exec!(&mut tx, "DELETE FROM rate_limits WHERE key = $1", key)?;
    tx.commit().await?;
    Ok(())
}
