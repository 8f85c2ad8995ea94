//! The validation cache in front of the hot read paths: access tokens by
//! digest, access keys by digest, clients by client id, and whether a
//! machine client's user is active. Entries are valid only under the
//! invalidation epoch they were read in (`store::epoch`), and only while
//! this instance polls that epoch; every change that could make an entry
//! wrong bumps the epoch by trigger, and the changing call waits until every
//! instance has let go of the old entries before it answers.
//!
//! Unknown tokens, keys and clients are never cached, and tokens and keys
//! only while they are valid: an unknown, revoked or expired one always
//! costs a database read, so a stranger guessing learns nothing from timing.

use std::sync::Arc;

use super::access_keys::KeyAuthRow;
use super::clients::Client;
use super::guard::TokenRow;
use crate::store::epoch::EpochCache;

/// Bound of each map; a full map drops its entries (a miss is one read).
const CAPACITY: usize = 100_000;

#[derive(Debug)]
pub struct ValidationCache {
    pub tokens: EpochCache<Arc<TokenRow>>,
    pub keys: EpochCache<Arc<KeyAuthRow>>,
    pub clients: EpochCache<Arc<Client>>,
    /// `org id/user id` → active, for clients acting for a user.
    pub users_active: EpochCache<bool>,
}

impl Default for ValidationCache {
    fn default() -> Self {
        ValidationCache {
            tokens: EpochCache::new(CAPACITY),
            keys: EpochCache::new(CAPACITY),
            clients: EpochCache::new(CAPACITY),
            users_active: EpochCache::new(CAPACITY),
        }
    }
}
