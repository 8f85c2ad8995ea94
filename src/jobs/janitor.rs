//! Deletes what can no longer matter: expired access tokens and codes,
//! grace-window successor pairs past any window, ended admin sessions,
//! stale rate-limit windows and the marks of events whose date has
//! passed. Consumed refresh tokens are kept while their authorization
//! lives: reuse detection needs them.

use crate::exec;
use crate::state::Core;
use crate::store::StoreError;

/// Rows older than this past their expiry are deleted.
const KEEP_MS: i64 = 3_600_000;

pub async fn sweep(core: &Core) -> Result<u64, StoreError> {
    let now = core.now();
    let cutoff = now - KEEP_MS;
    let mut tx = core.db.begin_write().await?;
    let mut n = 0;
    n += exec!(
        &mut tx,
        "DELETE FROM oauth_access_tokens WHERE expires_at < $1",
        cutoff
    )?;
    n += exec!(
        &mut tx,
        "DELETE FROM oauth_codes WHERE expires_at < $1",
        cutoff
    )?;
    // grace windows are at most an hour
    n += exec!(
        &mut tx,
        "DELETE FROM sealed WHERE owner_table = 'oauth_refresh_tokens' AND owner_column = 'successor' AND updated_at < $1",
        cutoff
    )?;
    n += exec!(
        &mut tx,
        "DELETE FROM sealed WHERE owner_table = 'admin_sessions' AND owner_id IN
           (SELECT id FROM admin_sessions WHERE expires_at < $1 OR revoked_at IS NOT NULL)",
        cutoff
    )?;
    n += exec!(
        &mut tx,
        "DELETE FROM admin_sessions WHERE expires_at < $1 OR (revoked_at IS NOT NULL AND revoked_at < $1)",
        cutoff
    )?;
    n += exec!(
        &mut tx,
        "DELETE FROM rate_limits WHERE window_start < $1",
        now - 86_400_000
    )?;
    // Marks of events whose date has passed: no scan can find it again.
    n += exec!(
        &mut tx,
        "DELETE FROM event_marks WHERE until_at < $1",
        cutoff
    )?;
    tx.commit().await?;
    Ok(n)
}
