//! AWS IAM access keys (`s3` connections). IAM allows two keys per user,
//! so the old key keeps working beside the new one until cut-over:
//! `CreateAccessKey` → the new key stored → STS `GetCallerIdentity` polled
//! until IAM accepts it (eventually consistent; no fixed sleep) → the
//! connection's probe → cut-over → `UpdateAccessKey Inactive` and
//! `DeleteAccessKey`.
//!
//! Only AWS can make the key, so the write-ahead holds a placeholder and
//! `apply` returns the key to store in the same commit as its record. A
//! crash between `CreateAccessKey` and that commit leaves a key whose
//! secret nothing holds: `apply`, run again, deletes it first — only a key
//! IAM says was created since this rotation first attempted the change
//! (recorded before the attempt, `Target::apply_since_ms`); a key someone
//! made by hand before that is theirs and stays (IAM then refuses a third
//! key, and the error names both).

use serde_json::{Map, Value};

use super::{Applied, BoxFut, Driver, Since, Target};
use crate::connectors::aws::{self, AwsError, Client, Endpoints, Keys};

pub struct AwsAccessKeys;

/// How long the new key may take to be accepted everywhere.
const SETTLE_MS: u64 = 120_000;

fn keys(c: &Map<String, Value>) -> Result<Keys, String> {
    Keys::from_credential(c)
}

fn err(e: AwsError) -> String {
    e.to_string()
}

/// The IAM user the rotated connection's keys belong to, asked of STS with
/// `creds` (the current key before cut-over, the new one after).
async fn user_of(
    t: &Target<'_>,
    ep: &Endpoints,
    creds: &Map<String, Value>,
) -> Result<String, String> {
    let k = keys(creds)?;
    let arn = Client {
        egress: t.egress,
        endpoints: ep,
        keys: &k,
    }
    .caller_arn()
    .await
    .map_err(|e| format!("STS GetCallerIdentity: {e}"))?;
    aws::user_name(&arn).ok_or_else(|| {
        format!("the keys speak for {arn}, not an IAM user: only a user's access keys rotate")
    })
}

/// The keys IAM calls are made with: the admin connection's, or the
/// rotated connection's own.
fn acting_keys(t: &Target<'_>) -> Result<Keys, String> {
    let (_, creds) = t.acting(&[t.current]);
    keys(creds[0])
}

/// Where the rotated keys' IAM calls go, with what keys, for which user.
struct Iam {
    ep: Endpoints,
    keys: Keys,
    user: String,
}

impl Iam {
    /// The user from the rotated connection's current key; the calls made
    /// with the admin connection's keys, or the connection's own.
    async fn of(t: &Target<'_>) -> Result<Iam, String> {
        let ep = Endpoints::of(t.settings, t.endpoints);
        let user = user_of(t, &ep, t.current).await?;
        Ok(Iam {
            ep,
            keys: acting_keys(t)?,
            user,
        })
    }

    fn client<'a>(&'a self, t: &'a Target<'_>) -> Client<'a> {
        Client {
            egress: t.egress,
            endpoints: &self.ep,
            keys: &self.keys,
        }
    }
}

fn id(c: &Map<String, Value>) -> String {
    c.get("access_key_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Driver for AwsAccessKeys {
    fn dual(&self) -> bool {
        true
    }

    /// The keys made since the first attempt are this rotation's (above).
    fn marks_apply_start(&self) -> bool {
        true
    }

    fn plan(&self, _settings: &Map<String, Value>) -> Vec<String> {
        vec![
            "sts:GetCallerIdentity; iam:ListAccessKeys   (the user, and a free key slot: IAM allows two)".into(),
            "iam:CreateAccessKey   (AWS returns the new secret once; it is sealed before anything else)".into(),
            "sts:GetCallerIdentity with the new key, polled until IAM accepts it".into(),
            "s3:HeadBucket with the new key   (verify)".into(),
            "iam:GetAccessKeyLastUsed on the old key   (cut-over: nobody still uses it)".into(),
            "iam:UpdateAccessKey Status=Inactive; iam:DeleteAccessKey   (the old key, after cut-over)".into(),
        ]
    }

    fn check<'a>(&'a self, t: &'a Target<'a>) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let a = Iam::of(t).await?;
            let (iam, user) = (a.client(t), &a.user);
            let listed = iam
                .list_access_keys(user)
                .await
                .map_err(|e| format!("iam:ListAccessKeys on {user} ({}): {e}", t.actor()))?;
            if listed.len() >= 2 {
                let names: Vec<String> = listed
                    .iter()
                    .map(|k| format!("{} ({})", k.id, k.status))
                    .collect();
                return Err(format!(
                    "the IAM user {user} already holds two access keys ({}); IAM allows two, so there is no room for a new one. Delete the one nothing uses (not {}) and rotate again",
                    names.join(", "),
                    id(t.current)
                ));
            }
            Ok(())
        })
    }

    fn create(&self, current: &Map<String, Value>) -> Map<String, Value> {
        // A placeholder: AWS makes the key in `apply`.
        let mut m = current.clone();
        m.insert("access_key_id".into(), Value::String(String::new()));
        m.insert("secret_access_key".into(), Value::String(String::new()));
        m
    }

    fn apply<'a>(
        &'a self,
        t: &'a Target<'a>,
        new: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<Applied, String>> {
        Box::pin(async move {
            let a = Iam::of(t).await?;
            let (iam, user) = (a.client(t), &a.user);
            let current = id(t.current);
            // A key this rotation made before a crash (its secret never
            // stored) appeared after the attempt began; one made by anyone
            // else before that is theirs, and is never deleted here (IAM
            // then refuses a third key, and the error names it).
            let since_s = t.apply_since_ms.map(|ms| ms.div_euclid(1000));
            let mut cleaned = Vec::new();
            for stray in iam.list_access_keys(user).await.map_err(err)? {
                let ours = matches!((stray.created_s, since_s), (Some(c), Some(s)) if c >= s);
                if stray.id != current && ours {
                    iam.delete_access_key(user, &stray.id).await.map_err(err)?;
                    cleaned.push(stray.id);
                }
            }
            let (key_id, secret) = iam
                .create_access_key(user)
                .await
                .map_err(|e| format!("iam:CreateAccessKey for {user}: {e}"))?;
            let mut stored = new.clone();
            stored.insert("access_key_id".into(), Value::String(key_id.clone()));
            stored.insert("secret_access_key".into(), Value::String(secret));
            let mut detail = format!(
                "created access key {key_id} for the IAM user {user}, {}",
                t.actor()
            );
            if !cleaned.is_empty() {
                detail.push_str(&format!(
                    "; deleted {} left by an interrupted attempt (its secret was never stored)",
                    cleaned.join(", ")
                ));
            }
            Ok(Applied {
                mark: None,
                detail,
                credential: Some(stored),
                dual: None,
            })
        })
    }

    fn settle<'a>(
        &'a self,
        t: &'a Target<'a>,
        new: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let ep = Endpoints::of(t.settings, t.endpoints);
            let k = keys(new)?;
            let sts = Client {
                egress: t.egress,
                endpoints: &ep,
                keys: &k,
            };
            let started = std::time::Instant::now();
            let mut wait = 200u64;
            loop {
                match sts.caller_arn().await {
                    Ok(_) => return Ok(()),
                    // Not yet known everywhere: the only answer worth waiting on.
                    Err(e)
                        if matches!(
                            e.code(),
                            Some("InvalidClientTokenId" | "SignatureDoesNotMatch")
                        ) && (started.elapsed().as_millis() as u64) < SETTLE_MS =>
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                        wait = (wait * 2).min(5_000);
                    }
                    Err(e) => return Err(format!("STS GetCallerIdentity with the new key: {e}")),
                }
            }
        })
    }

    fn still_on_old<'a>(
        &'a self,
        t: &'a Target<'a>,
        old: &'a Map<String, Value>,
        since: &'a Since<'a>,
    ) -> BoxFut<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            let ep = Endpoints::of(t.settings, t.endpoints);
            let k = acting_keys(t)?;
            let iam = Client {
                egress: t.egress,
                endpoints: &ep,
                keys: &k,
            };
            let old_id = id(old);
            let used = iam.access_key_last_used(&old_id).await.map_err(err)?;
            // A use after the promotion is a consumer that has not moved.
            Ok(used
                .filter(|u| u.at > since.promoted_at)
                .map(|u| {
                    let or = |s: &str, none: &str| {
                        if s.is_empty() {
                            none.to_string()
                        } else {
                            s.to_string()
                        }
                    };
                    format!(
                        "AWS reports {old_id} used by {} in {} at {}",
                        or(&u.service, "a service"),
                        or(&u.region, "a region"),
                        crate::clock::rfc3339(u.at)
                    )
                })
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
            let a = Iam::of(t).await?;
            let (iam, user) = (a.client(t), &a.user);
            let old_id = id(old);
            if old_id.is_empty() || old_id == id(t.current) {
                return Ok("no previous key to remove".into());
            }
            // Deactivated first: were deleting to fail, the key is off.
            match iam.update_access_key(user, &old_id, "Inactive").await {
                Err(e) if e.code() == Some("NoSuchEntity") => {
                    return Ok(format!("the access key {old_id} was already deleted"))
                }
                other => other.map_err(err)?,
            }
            match iam.delete_access_key(user, &old_id).await {
                Err(e) if e.code() != Some("NoSuchEntity") => Err(err(e)),
                _ => Ok(format!(
                    "access key {old_id} of {user} deactivated and deleted"
                )),
            }
        })
    }

    fn rollback<'a>(
        &'a self,
        t: &'a Target<'a>,
        _old: &'a Map<String, Value>,
        new: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<String, String>> {
        Box::pin(async move {
            let a = Iam::of(t).await?;
            let (iam, user) = (a.client(t), &a.user);
            let new_id = id(new);
            match iam.delete_access_key(user, &new_id).await {
                Err(e) if e.code() != Some("NoSuchEntity") => Err(err(e)),
                _ => Ok(format!("access key {new_id} deleted")),
            }
        })
    }
}
