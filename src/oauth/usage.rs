//! Who last used each secret rekey issued — an access key, a machine
//! client's or an application's client secret — per secret, not per key:
//! while a rotation keeps the previous secret working, a use of the old one
//! and a use of the new one are told apart, and the cut-over names who is
//! still on the old one (address and user agent).
//!
//! Uses are noted in memory on the validation path and written in batches
//! every [`FLUSH`] (and when the server stops), so a request is never a
//! write. A use is therefore seen by the database up to [`FLUSH`] late, per
//! instance: the cut-over allows for it (`rotation::limits::USE_REPORT_LAG_MS`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use crate::clock::rfc3339;
use crate::store::{AsEx, Db, StoreError, Tx};
use crate::{exec, fetch_optional};

/// How often each instance writes the uses it noted.
pub const FLUSH: Duration = Duration::from_secs(5);

/// The longest user agent kept: enough to name a program and its version.
const AGENT_MAX: usize = 120;

/// Which table the secret's owner is in (an access key's last use is also
/// kept on the key, for lists and the age report).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    AccessKey,
    Client,
}

/// Where a secret was presented from.
#[derive(Clone, Debug, Default)]
pub struct UsedBy<'a> {
    pub ip: Option<&'a str>,
    pub agent: Option<&'a str>,
}

/// Which of a target's secrets a digest is: its last 16 hex digits (the
/// MAC's end; a digest may start with the secret's issue time, which two
/// secrets can share). Never the secret, and not enough of the digest to
/// look a secret up by.
pub fn tag(digest: &str) -> &str {
    digest
        .get(digest.len().saturating_sub(16)..)
        .unwrap_or(digest)
}

/// A user agent as kept: printable ASCII, at most [`AGENT_MAX`] bytes.
fn clean_agent(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(AGENT_MAX)
        .collect()
}

#[derive(Debug)]
struct Noted {
    owner: Owner,
    secret: String,
    at: i64,
    ip: Option<String>,
    agent: Option<String>,
}

/// Uses noted since the last flush, by target id.
#[derive(Debug, Default)]
pub struct UsageTracker {
    pending: Mutex<HashMap<String, Vec<Noted>>>,
}

impl UsageTracker {
    /// Notes a use of `target_id`'s secret whose digest is `digest`. The
    /// common case — a secret already noted, from the same address and
    /// agent — allocates nothing.
    pub fn touch(&self, owner: Owner, target_id: &str, digest: &str, now: i64, by: &UsedBy<'_>) {
        let secret = tag(digest);
        let mut m = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let noted = match m.get_mut(target_id) {
            Some(v) => v,
            None => m.entry(target_id.to_string()).or_default(),
        };
        let n = match noted.iter().position(|n| n.secret == secret) {
            Some(i) => &mut noted[i],
            None => {
                noted.push(Noted {
                    owner,
                    secret: secret.to_string(),
                    at: now,
                    ip: None,
                    agent: None,
                });
                let last = noted.len() - 1;
                &mut noted[last]
            }
        };
        if now < n.at {
            return;
        }
        n.at = now;
        if n.ip.as_deref() != by.ip {
            n.ip = by.ip.map(str::to_string);
        }
        if n.agent.as_deref() != by.agent {
            n.agent = by.agent.map(clean_agent).filter(|a| !a.is_empty());
        }
    }

    /// Writes what was noted since the last flush, in one transaction;
    /// returns how many secrets.
    pub async fn flush(&self, db: &Db) -> Result<usize, StoreError> {
        let batch: Vec<(String, Vec<Noted>)> = {
            let mut m = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            m.drain().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        let mut tx = db.begin_write().await?;
        for (id, noted) in &batch {
            for u in noted {
                n += 1;
                exec!(
                    &mut tx,
                    "INSERT INTO secret_uses (target_id, secret, used_at, ip, agent) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (target_id, secret) DO UPDATE
                     SET used_at = excluded.used_at, ip = excluded.ip, agent = excluded.agent
                     WHERE secret_uses.used_at < excluded.used_at",
                    id,
                    &u.secret,
                    u.at,
                    &u.ip,
                    &u.agent
                )?;
                if u.owner == Owner::AccessKey {
                    exec!(
                        &mut tx,
                        "UPDATE access_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
                        u.at,
                        id
                    )?;
                }
            }
        }
        tx.commit().await?;
        Ok(n)
    }
}

/// The last use of one secret.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct LastUse {
    pub used_at: i64,
    pub ip: Option<String>,
    pub agent: Option<String>,
}

impl LastUse {
    /// The user for a person: its agent and address, and when.
    pub fn who(&self) -> String {
        let agent = self
            .agent
            .as_deref()
            .unwrap_or("a caller without a user agent");
        let from = match &self.ip {
            Some(ip) => format!(" from {ip}"),
            None => String::new(),
        };
        format!("{agent}{from} (last used at {})", rfc3339(self.used_at))
    }

    pub fn view(&self) -> Value {
        json!({
            "user_agent": self.agent,
            "ip": self.ip,
            "last_used_at": rfc3339(self.used_at),
        })
    }
}

/// The last use (as written so far) of `target_id`'s secret with `digest`.
pub async fn last_use<C: AsEx>(
    c: &mut C,
    target_id: &str,
    digest: &str,
) -> Result<Option<LastUse>, StoreError> {
    Ok(fetch_optional!(
        c,
        LastUse,
        "SELECT used_at, ip, agent FROM secret_uses WHERE target_id = $1 AND secret = $2",
        target_id,
        tag(digest)
    )?)
}

#[derive(sqlx::FromRow)]
struct Latest {
    target_id: String,
    used_at: i64,
    ip: Option<String>,
    agent: Option<String>,
}

/// The newest use (as written so far) of any secret of each access key
/// and client of `org_id`, by the key's or client's row id: the lists'
/// "last used", with who.
pub async fn latest_in_org(db: &Db, org_id: &str) -> Result<HashMap<String, LastUse>, StoreError> {
    let mut c = db.read().await?;
    let rows = crate::fetch_all!(
        &mut c,
        Latest,
        "SELECT target_id, used_at, ip, agent FROM secret_uses
         WHERE target_id IN (SELECT id FROM oauth_clients WHERE org_id = $1
                             UNION ALL SELECT id FROM access_keys WHERE org_id = $1)",
        org_id
    )?;
    let mut out: HashMap<String, LastUse> = HashMap::new();
    for r in rows {
        if out.get(&r.target_id).is_none_or(|u| u.used_at < r.used_at) {
            out.insert(
                r.target_id,
                LastUse {
                    used_at: r.used_at,
                    ip: r.ip,
                    agent: r.agent,
                },
            );
        }
    }
    Ok(out)
}

/// Forgets the uses of `target_id`'s secrets other than `keep` (digests):
/// those secrets no longer work.
pub async fn forget_others(tx: &mut Tx, target_id: &str, keep: &[&str]) -> Result<(), StoreError> {
    let keep = |i: usize| keep.get(i).map(|d| tag(d)).unwrap_or("");
    exec!(
        tx,
        "DELETE FROM secret_uses WHERE target_id = $1 AND secret <> $2 AND secret <> $3",
        target_id,
        keep(0),
        keep(1)
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_the_digest_end_and_agents_are_kept_printable() {
        assert_eq!(tag("0011223344556677aabbccddeeff0011"), "aabbccddeeff0011");
        assert_eq!(tag("short"), "short");
        assert_eq!(clean_agent("etl/1.0\r\nX-Evil: 1"), "etl/1.0X-Evil: 1");
        assert_eq!(clean_agent(&"a".repeat(500)).len(), AGENT_MAX);
    }

    #[test]
    fn the_latest_use_of_each_secret_is_kept_apart() {
        let t = UsageTracker::default();
        let by = |ip| UsedBy {
            ip: Some(ip),
            agent: Some("job/1"),
        };
        t.touch(Owner::Client, "c1", "xxold", 10, &by("10.0.0.1"));
        t.touch(Owner::Client, "c1", "xxnew", 20, &by("10.0.0.2"));
        t.touch(Owner::Client, "c1", "xxold", 30, &by("10.0.0.3"));
        // a late note of an earlier use does not replace the latest
        t.touch(Owner::Client, "c1", "xxold", 25, &by("10.0.0.9"));
        let m = t.pending.lock().unwrap();
        let v = &m["c1"];
        assert_eq!(v.len(), 2);
        let old = v.iter().find(|n| n.secret == "xxold").unwrap();
        assert_eq!((old.at, old.ip.as_deref()), (30, Some("10.0.0.3")));
    }
}
