//! Fixed-window attempt counters in the database, shared by every instance:
//! login attempts per account and per client IP.
//!
//! Counting and checking are one statement ([`take`]): an attempt is
//! counted before the password is checked, and the count it gets back says
//! whether it may go on. Forty parallel guesses therefore get forty
//! different counts and only the first `limit` are checked at all — a
//! separate "am I blocked?" read followed by a later "count a failure"
//! write lets every parallel guess pass the read.

use super::IdentityError;
use crate::store::Db;
use crate::{exec, fetch_optional};

#[derive(sqlx::FromRow)]
struct Window {
    window_start: i64,
    count: i64,
}

/// Counts one attempt for `key`; returns the seconds until it may try again
/// when this attempt is past `limit` in the current window.
pub async fn take(
    db: &Db,
    key: &str,
    limit: i64,
    window_ms: i64,
    now: i64,
) -> Result<Option<i64>, IdentityError> {
    let mut tx = db.begin_write().await?;
    // A window that has ended starts over at 1.
    let w = fetch_optional!(
        &mut tx,
        Window,
        "INSERT INTO rate_limits (key, window_start, count) VALUES ($1, $2, 1)
         ON CONFLICT (key) DO UPDATE SET
           count = CASE WHEN rate_limits.window_start + $3 <= $2 THEN 1 ELSE rate_limits.count + 1 END,
           window_start = CASE WHEN rate_limits.window_start + $3 <= $2 THEN $2 ELSE rate_limits.window_start END
         RETURNING window_start, count",
        key,
        now,
        window_ms
    )?;
    tx.commit().await?;
    Ok(w.and_then(|w| {
        let ends = w.window_start.saturating_add(window_ms);
        (w.count > limit).then(|| ((ends - now) / 1000).max(1))
    }))
}

/// Gives back one attempt taken by [`take`] (a successful login does not
/// count against its client IP).
pub async fn give_back(db: &Db, key: &str) -> Result<(), IdentityError> {
    let mut tx = db.begin_write().await?;
    exec!(
        &mut tx,
        "UPDATE rate_limits SET count = count - 1 WHERE key = $1 AND count > 0",
        key
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
