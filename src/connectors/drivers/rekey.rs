//! rekey's own secrets, held by a connection: a platform access key
//! (`platform_access_key`, `bulk_api`) or a machine client's secret
//! (`platform_m2m`) that this rekey issued to the connection's org. rekey
//! is the target: the new value is minted here (and sealed as pending
//! before anything changes), `apply` makes it the key's or client's value
//! while the old one keeps working as the previous value, `verify` calls
//! the platform with the new one (the connection's probe), and `retire`
//! ends the old one once the cut-over lets it — the overlap `key reset`
//! and `regenerate-secret` have, ended by the rotation instead of a timer.
//!
//! Only a key or client of the connection's own org is ever touched: one
//! the connection's value opens. A value this rekey did not issue (another
//! platform's), or one revoked, fails the check and changes nothing.
//! Each step is one transaction with its audit event, and safe to run again
//! after a crash: `apply` finds the new value in place, `retire` and
//! `rollback` find nothing left to do.

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use super::{text, Applied, BoxFut, Driver, Target};
use crate::audit::{self, Actor, Event};
use crate::clock::rfc3339;
use crate::connectors::connections::{self, Connection};
use crate::connectors::ConnectorError;
use crate::crypto::token::{self, TokenKind};
use crate::rotation::limits::MAX_OVERLAP_MS;
use crate::state::Core;
use crate::store::sql::{exec_args, fetch_all_args, Arg};
use crate::store::StoreError;

/// Where one kind of rekey's own secrets is kept, and how a connection's
/// credential names one.
pub struct Own {
    /// The credential field holding the secret.
    field: &'static str,
    mint: TokenKind,
    table: &'static str,
    digest: &'static str,
    prev: &'static str,
    prev_until: &'static str,
    /// Narrows to live rows of the org (`$1`) that the credential names,
    /// with the parameters from `$first` ([`Own::which`]).
    live: &'static str,
    /// `secret_schedules.target_type` and the prefix of audit actions.
    noun: &'static str,
    /// For people.
    what: &'static str,
}

/// An org access key (`Accesskey: rk_ak_…`): found by its value.
pub static ACCESS_KEY: Own = Own {
    field: "access_key",
    mint: TokenKind::AccessKey,
    table: "access_keys",
    digest: "digest",
    prev: "prev_digest",
    prev_until: "prev_expires_at",
    live: "org_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $first)",
    noun: "key",
    what: "access key",
};

/// A machine client's secret: found by the credential's `client_id`.
pub static M2M_SECRET: Own = Own {
    field: "client_secret",
    mint: TokenKind::ClientSecret,
    table: "oauth_clients",
    digest: "secret_digest",
    prev: "prev_secret_digest",
    prev_until: "prev_secret_expires_at",
    live: "org_id = $1 AND kind = 'm2m' AND active = TRUE AND client_id = $first",
    noun: "m2m",
    what: "machine client secret",
};

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    name: String,
}

impl Own {
    /// The parameter of [`Own::live`] after the org, for credential `cred`.
    fn which(&self, core: &Core, cred: &Map<String, Value>) -> Arg {
        match self.mint {
            TokenKind::ClientSecret => Arg::Text(text(cred, "client_id")),
            _ => Arg::Int(core.now()),
        }
    }

    /// `live` with its parameter numbered `$n`.
    fn live_at(&self, n: usize) -> String {
        self.live.replace("$first", &format!("${n}"))
    }

    fn digest_of(&self, core: &Core, cred: &Map<String, Value>) -> String {
        core.pepper.digest(text(cred, self.field).trim())
    }

    /// The live row of `org_id` that credential `cred` names whose
    /// `column` is `digest`.
    async fn find(
        &self,
        core: &Core,
        org_id: &str,
        cred: &Map<String, Value>,
        column: &str,
        digest: &str,
    ) -> Result<Option<Row>, StoreError> {
        let sql = format!(
            "SELECT id, name FROM {} WHERE {} AND {column} = $2",
            self.table,
            self.live_at(3)
        );
        let args = vec![
            Arg::Text(org_id.to_string()),
            Arg::Text(digest.to_string()),
            self.which(core, cred),
        ];
        let rows: Vec<Row> = fetch_all_args(&mut core.db.read().await?, &sql, args).await?;
        Ok(rows.into_iter().next())
    }

    /// The row whose current value is the connection's `cred`.
    async fn holding(
        &self,
        t: &Target<'_>,
        cred: &Map<String, Value>,
    ) -> Result<Option<Row>, String> {
        let digest = self.digest_of(t.core, cred);
        self.find(t.core, &t.conn.org_id, cred, self.digest, &digest)
            .await
            .map_err(|e| e.to_string())
    }

    fn not_ours(&self) -> String {
        format!(
            "the {} this connection holds is not a live {} of this org on this rekey (revoked, expired, or issued elsewhere): rotate it where it was issued and `rekey connection set-credential`",
            self.what, self.what
        )
    }

    /// One statement on the row (`set`, with `$2`, `$3` …; `cond` adds to
    /// the row's own condition) and its audit event, in one transaction;
    /// the row it changed, if any.
    async fn change(
        &self,
        t: &Target<'_>,
        set: &str,
        cond: &str,
        args: Vec<Arg>,
        action: &str,
        detail: Value,
    ) -> Result<Option<Row>, String> {
        let run = async {
            let n = args.len() + 2;
            let find = format!(
                "SELECT id, name FROM {} WHERE {} AND {cond}",
                self.table,
                self.live_at(n)
            );
            let update = format!(
                "UPDATE {} SET {set} WHERE {} AND {cond}",
                self.table,
                self.live_at(n)
            );
            let mut all = vec![Arg::Text(t.conn.org_id.clone())];
            all.extend(args);
            all.push(self.which(t.core, t.current));
            let now = t.core.now();
            let mut tx = t.core.db.begin_write().await?;
            let rows: Vec<Row> = fetch_all_args(&mut tx, &find, all.clone()).await?;
            let Some(row) = rows.into_iter().next() else {
                return Ok::<_, StoreError>(None);
            };
            // The update checks again what the read found (a compare-and-
            // set); nothing changed, nothing is recorded.
            if exec_args(&mut tx, &update, all).await? != 1 {
                return Ok(None);
            }
            if action.ends_with(".reset") || action.ends_with(".regenerate_secret") {
                crate::rotation::age::secret_rotated(&mut tx, self.noun, &row.id, now).await?;
            }
            audit::record(
                &mut tx,
                now,
                &Actor::new(format!("rotation of connection {}", t.conn.name), None),
                Event {
                    org_id: Some(&t.conn.org_id),
                    action,
                    target: Some(&row.name),
                    detail,
                },
            )
            .await?;
            tx.commit().await?;
            Ok(Some(row))
        };
        run.await.map_err(|e| e.to_string())
    }

    fn set_value_action(&self) -> String {
        match self.mint {
            TokenKind::ClientSecret => format!("{}.regenerate_secret", self.noun),
            _ => format!("{}.reset", self.noun),
        }
    }
}

impl Driver for Own {
    fn dual(&self) -> bool {
        true
    }

    fn plan(&self, _settings: &Map<String, Value>) -> Vec<String> {
        vec![
            format!("find the {} this connection holds among this org's, on this rekey", self.what),
            format!("issue a new {} value (sealed here as pending first); the current one keeps working beside it", self.what),
            "call the platform with the new value   (verify)".to_string(),
            "when the cut-over allows, the previous value stops working   (retire)".to_string(),
        ]
    }

    fn check<'a>(&'a self, t: &'a Target<'a>) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            if self.holding(t, t.current).await?.is_some() {
                return Ok(());
            }
            // Its previous value: replaced since the connection stored it.
            let digest = self.digest_of(t.core, t.current);
            match self
                .find(t.core, &t.conn.org_id, t.current, self.prev, &digest)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(r) => Err(format!(
                    "{} {} has a newer value than the one this connection holds (reset or regenerated since): store it with `rekey connection set-credential`; it is rotated from there",
                    self.what, r.name
                )),
                None => Err(self.not_ours()),
            }
        })
    }

    fn create(&self, current: &Map<String, Value>) -> Map<String, Value> {
        let mut m = current.clone();
        m.insert(self.field.into(), Value::String(token::mint(self.mint)));
        m
    }

    fn apply<'a>(
        &'a self,
        t: &'a Target<'a>,
        new: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<Applied, String>> {
        Box::pin(async move {
            let dual = |detail: String| Applied {
                detail,
                credential: None,
                dual: Some(true),
                mark: None,
            };
            // After a crash the new value may be in place already.
            if let Some(r) = self.holding(t, new).await? {
                return Ok(dual(format!(
                    "the new value of {} {} was already in place",
                    self.what, r.name
                )));
            }
            let (old, new) = (
                self.digest_of(t.core, t.current),
                self.digest_of(t.core, new),
            );
            let until = t.core.now().saturating_add(MAX_OVERLAP_MS);
            let set = format!(
                "{d} = $2, {p} = $3, {u} = $4, updated_at = $5",
                d = self.digest,
                p = self.prev,
                u = self.prev_until
            );
            let cond = format!("{} = $3", self.digest);
            let changed = self
                .change(
                    t,
                    &set,
                    &cond,
                    vec![
                        Arg::Text(new),
                        Arg::Text(old),
                        Arg::Int(until),
                        Arg::Int(t.core.now()),
                    ],
                    &self.set_value_action(),
                    json!({"rotation_of": t.conn.name, "previous_valid_until": rfc3339(until)}),
                )
                .await?;
            match changed {
                Some(r) => Ok(dual(format!(
                    "{} {} has the new value; the previous one works until the rotation retires it",
                    self.what, r.name
                ))),
                None => Err(self.not_ours()),
            }
        })
    }

    fn retire<'a>(
        &'a self,
        t: &'a Target<'a>,
        old: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<String, String>> {
        Box::pin(async move {
            let set = format!("{} = NULL, {} = NULL", self.prev, self.prev_until);
            let cond = format!("{} = $2", self.prev);
            let ended = self
                .change(
                    t,
                    &set,
                    &cond,
                    vec![Arg::Text(self.digest_of(t.core, old))],
                    &format!("{}.end_overlap", self.noun),
                    json!({"rotation_of": t.conn.name}),
                )
                .await?;
            Ok(match ended {
                Some(r) => format!(
                    "the previous value of {} {} stopped working",
                    self.what, r.name
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
            let set = format!(
                "{d} = $2, {p} = NULL, {u} = NULL, updated_at = $4",
                d = self.digest,
                p = self.prev,
                u = self.prev_until
            );
            let cond = format!("{} = $3 AND {} = $2", self.digest, self.prev);
            let restored = self
                .change(
                    t,
                    &set,
                    &cond,
                    vec![
                        Arg::Text(self.digest_of(t.core, old)),
                        Arg::Text(self.digest_of(t.core, new)),
                        Arg::Int(t.core.now()),
                    ],
                    &format!("{}.rollback", self.noun),
                    json!({"rotation_of": t.conn.name}),
                )
                .await?;
            Ok(match restored {
                Some(r) => format!(
                    "{} {} has its previous value again; the new one opens nothing",
                    self.what, r.name
                ),
                None => "nothing to undo: the new value was not in place".to_string(),
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
        let own: &Own = match super::driver_name(&conn.kind, &conn.auth) {
            Some("rekey_access_key") => &ACCESS_KEY,
            Some("rekey_m2m") => &M2M_SECRET,
            _ => continue,
        };
        let cred = connections::credentials(&mut core.db.read().await?, core, &conn.id).await?;
        let digest = own.digest_of(core, &cred);
        if let Some(r) = own
            .find(core, &conn.org_id, &cred, own.digest, &digest)
            .await?
        {
            out.insert(r.id);
        }
    }
    Ok(out)
}
