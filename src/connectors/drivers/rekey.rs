//! rekey's own secrets, held by a connection: a platform access key
//! (`platform_access_key`, `bulk_api`) or a machine client's secret
//! (`platform_m2m`) that this rekey issued to the connection's org. rekey
//! is the target: the new value is minted here and sealed as pending before
//! anything changes; `apply` makes it the key's or client's value while the
//! old one keeps working as the previous value, held until the rotation
//! retires it (as `rotate --key` and `--m2m` do, `oauth::Overlap`);
//! `verify` calls the platform with the new one (the connection's probe);
//! the cut-over waits for the connection's readers and for whoever still
//! presents the old value (rekey sees every use of its own secrets,
//! `oauth::usage`); `retire` ends the old value.
//!
//! Only a key or client of the connection's own org is ever touched: one
//! the connection's value opens. A value this rekey did not issue (another
//! platform's, another org's), one revoked, or one whose previous value
//! still works (another rotation or overlap keeps it) fails before
//! anything changes. Each step is one transaction with its audit event,
//! and safe to run again after a crash: `apply` finds the new value in
//! place, `retire` and `rollback` find nothing left to do.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{text, Applied, BoxFut, Driver, Since, Target};
use crate::audit::Actor;
use crate::connectors::connections::{self, Connection};
use crate::connectors::ConnectorError;
use crate::crypto::token::{self, TokenKind};
use crate::oauth::access_keys::{self, AccessKey};
use crate::oauth::clients::{self, Client, ClientKind};
use crate::oauth::{usage, OAuthError, Overlap};
use crate::rotation::limits::USE_REPORT_LAG_MS;
use crate::state::Core;
use crate::store::AsEx;

/// Which of rekey's own secrets a connection holds.
pub struct RekeySecret(Which);

enum Which {
    /// An org access key (`Accesskey: rk_ak_…`), found by its value.
    AccessKey,
    /// A machine client's secret, found by the credential's `client_id`.
    M2m,
}

pub static ACCESS_KEY: RekeySecret = RekeySecret(Which::AccessKey);
pub static M2M_SECRET: RekeySecret = RekeySecret(Which::M2m);

/// The key or client a credential names, in the connection's org.
enum Owner {
    Key(AccessKey),
    Client(Client),
}

impl Owner {
    fn id(&self) -> &str {
        match self {
            Owner::Key(k) => &k.id,
            Owner::Client(c) => &c.id,
        }
    }

    fn name(&self) -> &str {
        match self {
            Owner::Key(k) => &k.name,
            Owner::Client(c) => &c.name,
        }
    }

    fn digest(&self) -> &str {
        match self {
            Owner::Key(k) => &k.digest,
            Owner::Client(c) => &c.secret_digest,
        }
    }

    fn previous(&self) -> (Option<&str>, Option<i64>) {
        match self {
            Owner::Key(k) => (k.prev_digest.as_deref(), k.prev_expires_at),
            Owner::Client(c) => (c.prev_secret_digest.as_deref(), c.prev_secret_expires_at),
        }
    }

    /// It may take a new value: a key neither revoked nor expired, a
    /// client active.
    fn usable(&self, now: i64) -> bool {
        match self {
            Owner::Key(k) => k.status(now) == "active",
            Owner::Client(c) => c.active,
        }
    }
}

fn actor(t: &Target<'_>) -> Actor {
    Actor::new(format!("rotation of connection {}", t.conn.name), None)
}

fn failed(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl RekeySecret {
    /// The credential field holding the secret.
    fn field(&self) -> &'static str {
        match self.0 {
            Which::AccessKey => "access_key",
            Which::M2m => "client_secret",
        }
    }

    fn what(&self) -> &'static str {
        match self.0 {
            Which::AccessKey => "access key",
            Which::M2m => "machine client secret",
        }
    }

    fn digest_of(&self, core: &Core, cred: &Map<String, Value>) -> String {
        core.pepper.digest(text(cred, self.field()).trim())
    }

    /// The key or client of `org_id` that credential `cred` names: the key
    /// whose current or previous value it is; the machine client of its
    /// `client_id`.
    async fn owner<C: AsEx>(
        &self,
        c: &mut C,
        core: &Core,
        org_id: &str,
        cred: &Map<String, Value>,
    ) -> Result<Option<Owner>, OAuthError> {
        Ok(match self.0 {
            Which::AccessKey => access_keys::by_digest(c, org_id, &self.digest_of(core, cred))
                .await?
                .map(Owner::Key),
            Which::M2m => clients::by_client_id(c, &text(cred, "client_id"))
                .await?
                .filter(|cl| cl.org_id == org_id && cl.kind() == ClientKind::M2m)
                .map(Owner::Client),
        })
    }

    fn not_ours(&self) -> String {
        format!(
            "the {} this connection holds is not a live {} of this org on this rekey (revoked, expired, or issued elsewhere): rotate it where it was issued and `rekey connection set-credential`",
            self.what(),
            self.what()
        )
    }

    /// Whether `o`, found for the connection's current value `old`, may
    /// take a new one: `old` is its value, it is live, and no previous
    /// value that still works would be overwritten.
    async fn may_replace<C: AsEx>(
        &self,
        c: &mut C,
        core: &Core,
        o: &Owner,
        old: &str,
    ) -> Result<(), String> {
        let now = core.now();
        if o.digest() != old {
            return Err(if o.previous().0 == Some(old) {
                format!(
                    "{} {} has a newer value than the one this connection holds (reset or regenerated since): store it with `rekey connection set-credential`; it is rotated from there",
                    self.what(),
                    o.name()
                )
            } else {
                self.not_ours()
            });
        }
        if !o.usable(now) {
            return Err(self.not_ours());
        }
        let (noun, command) = match self.0 {
            Which::AccessKey => ("access key", "key"),
            Which::M2m => ("machine client", "m2m"),
        };
        crate::oauth::refuse_live_previous(c, noun, o.name(), o.id(), command, o.previous(), now)
            .await
            .map_err(failed)
    }
}

impl Driver for RekeySecret {
    fn dual(&self) -> bool {
        true
    }

    fn plan(&self, _settings: &Map<String, Value>) -> Vec<String> {
        vec![
            format!("find the {} this connection holds among this org's, on this rekey", self.what()),
            format!("issue a new {} value (sealed here as pending first); the current one keeps working beside it", self.what()),
            "call the platform with the new value   (verify)".to_string(),
            "wait until nobody reads or presents the old value for the cut-over window; then it stops working   (retire)".to_string(),
        ]
    }

    fn check<'a>(&'a self, t: &'a Target<'a>) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let core = t.core;
            let mut c = core.db.read().await.map_err(failed)?;
            let o = self
                .owner(&mut c, core, &t.conn.org_id, t.current)
                .await
                .map_err(failed)?
                .ok_or_else(|| self.not_ours())?;
            self.may_replace(&mut c, core, &o, &self.digest_of(core, t.current))
                .await
        })
    }

    fn create(&self, current: &Map<String, Value>) -> Map<String, Value> {
        let mint = match self.0 {
            Which::AccessKey => TokenKind::AccessKey,
            Which::M2m => TokenKind::ClientSecret,
        };
        let mut m = current.clone();
        m.insert(self.field().into(), Value::String(token::mint(mint)));
        m
    }

    fn apply<'a>(
        &'a self,
        t: &'a Target<'a>,
        new: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<Applied, String>> {
        Box::pin(async move {
            let core = t.core;
            let (old_d, new_d) = (self.digest_of(core, t.current), self.digest_of(core, new));
            let applied = |detail: String| Applied {
                detail,
                credential: None,
                dual: Some(true),
                mark: None,
            };
            let now = core.now();
            let mut tx = core.db.begin_write().await.map_err(failed)?;
            // After a crash the new value may be in place already.
            let o = match self.owner(&mut tx, core, &t.conn.org_id, new).await {
                Ok(Some(o)) if o.digest() == new_d => {
                    return Ok(applied(format!(
                        "the new value of {} {} was already in place",
                        self.what(),
                        o.name()
                    )))
                }
                Ok(_) => self
                    .owner(&mut tx, core, &t.conn.org_id, t.current)
                    .await
                    .map_err(failed)?
                    .ok_or_else(|| self.not_ours())?,
                Err(e) => return Err(failed(e)),
            };
            self.may_replace(&mut tx, core, &o, &old_d).await?;
            let name = o.name().to_string();
            let held = Overlap::UntilRetired;
            match o {
                Owner::Key(k) => {
                    access_keys::set_value_in(&mut tx, &actor(t), k, new_d, held, now)
                        .await
                        .map_err(failed)?;
                }
                Owner::Client(c) => {
                    clients::set_secret_in(&mut tx, &actor(t), c, new_d, held, now)
                        .await
                        .map_err(failed)?;
                }
            }
            tx.commit().await.map_err(failed)?;
            Ok(applied(format!(
                "{} {name} has the new value; the previous one works until the rotation retires it",
                self.what()
            )))
        })
    }

    fn still_on_old<'a>(
        &'a self,
        t: &'a Target<'a>,
        old: &'a Map<String, Value>,
        since: &'a Since<'a>,
    ) -> BoxFut<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            let core = t.core;
            // This instance's uses are written first: one a moment ago counts.
            core.usage.flush(&core.db).await.map_err(failed)?;
            let mut c = core.db.read().await.map_err(failed)?;
            let Some(o) = self
                .owner(&mut c, core, &t.conn.org_id, old)
                .await
                .map_err(failed)?
            else {
                return Ok(Vec::new());
            };
            let last = usage::last_use(&mut c, o.id(), &self.digest_of(core, old))
                .await
                .map_err(failed)?;
            // Still on it: used since the promotion, and not yet unused for
            // the window (plus the time a use takes to be reported by every
            // instance) — as `rotate --key` counts it.
            let quiet_at = |used_at: i64| {
                used_at
                    .saturating_add(since.window_ms)
                    .saturating_add(USE_REPORT_LAG_MS)
            };
            Ok(last
                .filter(|u| u.used_at >= since.promoted_at && core.now() < quiet_at(u.used_at))
                .map(|u| format!("{} of {} {}", u.who(), self.what(), o.name()))
                .into_iter()
                .collect())
        })
    }

    fn retire<'a>(
        &'a self,
        t: &'a Target<'a>,
        old: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<String, String>> {
        Box::pin(async move {
            let core = t.core;
            let old_d = self.digest_of(core, old);
            let now = core.now();
            let mut tx = core.db.begin_write().await.map_err(failed)?;
            let o = self
                .owner(&mut tx, core, &t.conn.org_id, old)
                .await
                .map_err(failed)?;
            let ended = match &o {
                Some(Owner::Key(k)) => {
                    access_keys::retire_previous_in(&mut tx, &actor(t), k, &old_d, now).await
                }
                Some(Owner::Client(c)) => {
                    clients::retire_previous_in(&mut tx, &actor(t), c, &old_d, now).await
                }
                None => Ok(false),
            }
            .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            Ok(match o.filter(|_| ended) {
                Some(o) => format!(
                    "the previous value of {} {} stopped working",
                    self.what(),
                    o.name()
                ),
                None => "nothing to retire: the previous value no longer works".to_string(),
            })
        })
    }

    fn rollback<'a>(
        &'a self,
        t: &'a Target<'a>,
        old: &'a Map<String, Value>,
        new: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<String, String>> {
        Box::pin(async move {
            let core = t.core;
            let (old_d, new_d) = (self.digest_of(core, old), self.digest_of(core, new));
            let mut tx = core.db.begin_write().await.map_err(failed)?;
            let o = self
                .owner(&mut tx, core, &t.conn.org_id, new)
                .await
                .map_err(failed)?;
            // As it was before `apply`: the old value current, no previous
            // one (`apply` replaces only a key or client without a live
            // previous value).
            let restored = match o {
                Some(Owner::Key(k)) if k.digest == new_d => {
                    let before = AccessKey {
                        digest: old_d,
                        prev_digest: None,
                        prev_expires_at: None,
                        ..k
                    };
                    access_keys::restore_in(&mut tx, &before, &new_d).await
                }
                Some(Owner::Client(c)) if c.secret_digest == new_d => {
                    let before = Client {
                        secret_digest: old_d,
                        prev_secret_digest: None,
                        prev_secret_expires_at: None,
                        ..c
                    };
                    clients::restore_in(&mut tx, &before, &new_d).await
                }
                _ => Ok(false),
            }
            .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            Ok(if restored {
                format!(
                    "the {} has its previous value again; the new one opens nothing",
                    self.what()
                )
            } else {
                "nothing to undo: the new value was not in place".to_string()
            })
        })
    }
}

/// The own secrets of this rekey (access key and machine client ids) that
/// `conns` hold and rotate through a `rekey_*` driver. A campaign rotates
/// those through the connection — which then holds the new value — and
/// does not regenerate them apart as well: that would leave the
/// connection with a value that stops at the end of the overlap.
pub async fn held_by(core: &Core, conns: &[Connection]) -> Result<HashSet<String>, ConnectorError> {
    let mut out = HashSet::new();
    for conn in conns {
        let own: &RekeySecret = match super::driver_name(&conn.kind, &conn.auth) {
            Some("rekey_access_key") => &ACCESS_KEY,
            Some("rekey_m2m") => &M2M_SECRET,
            _ => continue,
        };
        let mut c = core.db.read().await?;
        let cred = connections::credentials(&mut c, core, &conn.id).await?;
        let found = own
            .owner(&mut c, core, &conn.org_id, &cred)
            .await
            .map_err(|e| ConnectorError::Invalid(e.to_string()))?;
        if let Some(o) = found.filter(|o| o.digest() == own.digest_of(core, &cred)) {
            out.insert(o.id().to_string());
        }
    }
    Ok(out)
}
