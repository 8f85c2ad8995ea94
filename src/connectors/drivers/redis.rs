//! Redis ACL users. A user may hold several passwords, so rotation adds the
//! new one (`ACL SETUSER u >new`), is verified and cut over while both
//! work, then removes the old one (`ACL SETUSER u <old`). Both commands are
//! idempotent, so a step run again after a crash changes nothing more.
//! The user rotates itself, or is rotated through an admin connection
//! (`--rotate-with`); whoever acts needs the right to run `ACL SETUSER` on
//! it, which [`Driver::check`] asks Redis about (`ACL DRYRUN`) before
//! anything changes.

use serde_json::{Map, Value};

use super::{text, with_new_password, Applied, BoxFut, Driver, Since, Target};
use crate::connectors::session::{self, Redis};

pub struct RedisAcl;

fn user(settings: &Map<String, Value>) -> String {
    match text(settings, "username") {
        u if u.is_empty() => "default".into(),
        u => u,
    }
}

/// A session as whoever acts on the user (itself, or the admin of
/// `--rotate-with`), and that actor's user name.
async fn acting_session(t: &Target<'_>) -> Result<(Redis, String), String> {
    let (settings, creds) = t.acting(&[t.current]);
    let con = session::redis(t.egress, settings, creds[0]).await?;
    Ok((con, user(settings)))
}

/// `ACL SETUSER user >password` (add) or `<password` (remove). Redis's
/// error messages quote the modifier, password and all: it is masked
/// before the message goes anywhere (rotation steps, the audit log).
/// Returns the detail and, when `mark`, the acting session's client id:
/// Redis numbers sessions in the order they open, so one numbered below it
/// was opened before the change.
async fn setuser(
    t: &Target<'_>,
    op: char,
    password: &str,
    mark: bool,
) -> Result<(String, Option<i64>), String> {
    let u = user(t.settings);
    let mask = |m: String| {
        if password.is_empty() {
            m
        } else {
            m.replace(password, "********")
        }
    };
    let (mut s, _) = acting_session(t).await.map_err(mask)?;
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&u)
        .arg(format!("{op}{password}"))
        .query_async::<()>(&mut s.con)
        .await
        .map_err(|e| mask(s.error(&e)))?;
    let detail = format!("ACL SETUSER {u} {op}******** done");
    if !mark {
        return Ok((detail, None));
    }
    // HELLO needs no ACL permission (CLIENT ID does) and names the session.
    let hello: std::collections::HashMap<String, redis::Value> = redis::cmd("HELLO")
        .arg(2)
        .query_async(&mut s.con)
        .await
        .map_err(|e| s.error(&e))?;
    let id = match hello.get("id") {
        Some(redis::Value::Int(id)) => Some(*id),
        _ => None,
    };
    Ok((detail, id))
}

/// One line of `CLIENT LIST`, as `field=value` pairs.
fn client_fields(line: &str) -> std::collections::HashMap<&str, &str> {
    line.split(' ').filter_map(|f| f.split_once('=')).collect()
}

impl Driver for RedisAcl {
    fn dual(&self) -> bool {
        true
    }

    fn plan(&self, settings: &Map<String, Value>) -> Vec<String> {
        let u = user(settings);
        vec![
            format!("ACL DRYRUN {u} ACL SETUSER {u} >********"),
            format!("ACL SETUSER {u} >********   (the new password, beside the old)"),
            format!("AUTH {u} ********; PING     (verify the new password)"),
            format!("ACL SETUSER {u} <********   (remove the old password, after cut-over)"),
        ]
    }

    fn check<'a>(&'a self, t: &'a Target<'a>) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let u = user(t.settings);
            let (mut s, actor) = acting_session(t).await?;
            // Redis 7: would the acting user be allowed to change u's passwords?
            let r: Result<String, _> = redis::cmd("ACL")
                .arg("DRYRUN")
                .arg(&actor)
                .arg("ACL")
                .arg("SETUSER")
                .arg(&u)
                .arg(">probe")
                .query_async(&mut s.con)
                .await;
            match r {
                Ok(s) if s == "OK" => Ok(()),
                Ok(s) => Err(format!(
                    "the Redis user {actor} may not change the password of {u} ({s}); grant it +acl|setuser and +acl|dryrun, or rotate through an admin connection (--rotate-with)"
                )),
                // Not even allowed to ask: not allowed to change it either.
                Err(e) if e.code() == Some("NOPERM") => Err(format!(
                    "the Redis user {actor} may not change the password of {u} ({}); grant it +acl|setuser and +acl|dryrun, or rotate through an admin connection (--rotate-with)",
                    s.error(&e)
                )),
                Err(e) => Err(format!(
                    "cannot ask Redis whether {actor} may change the password of {u}: {}",
                    s.error(&e)
                )),
            }
        })
    }

    fn create(&self, current: &Map<String, Value>) -> Map<String, Value> {
        with_new_password(current)
    }

    fn apply<'a>(
        &'a self,
        t: &'a Target<'a>,
        new: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<Applied, String>> {
        Box::pin(async move {
            let (detail, id) = setuser(t, '>', &text(new, "password"), true).await?;
            Ok(Applied {
                mark: id.map(|id| serde_json::json!({ "client_id": id })),
                ..Applied::from(detail)
            })
        })
    }

    /// Sessions of the user still open that were opened before the new
    /// password existed, so with the old one (`CLIENT LIST`: Redis numbers
    /// sessions in order). Removing a password does not close them: they
    /// keep working, and hold no cut-over. Reading the list takes
    /// `+client|list` for whoever acts.
    fn sessions_on_old<'a>(
        &'a self,
        t: &'a Target<'a>,
        since: &'a Since<'a>,
    ) -> BoxFut<'a, Result<Option<u64>, String>> {
        Box::pin(async move {
            let Some(before) = since.mark["client_id"].as_i64().filter(|id| *id > 0) else {
                return Ok(None);
            };
            let u = user(t.settings);
            let (mut s, actor) = acting_session(t).await?;
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut s.con)
                .await
                .map_err(|e| {
                    format!(
                        "Redis's session list is not readable by {actor} ({}); grant it +client|list, or rotate through an admin connection",
                        s.error(&e)
                    )
                })?;
            let old = list
                .lines()
                .map(client_fields)
                .filter(|f| f.get("user") == Some(&u.as_str()))
                .filter(|f| {
                    f.get("id")
                        .and_then(|id| id.parse::<i64>().ok())
                        .is_some_and(|id| id < before)
                })
                .count();
            Ok(Some(old as u64))
        })
    }

    /// `CLIENT KILL USER u`: every session of the rotated user, whichever
    /// password opened it (one opened with the old password after the new
    /// one was added looks no different); its owners reconnect with the
    /// new password. Only this user's sessions, and never the acting one
    /// (`SKIPME`, Redis's default). Takes `+client|kill` for whoever acts.
    fn end_sessions<'a>(&'a self, t: &'a Target<'a>) -> BoxFut<'a, Result<Option<u64>, String>> {
        Box::pin(async move {
            let u = user(t.settings);
            let (mut s, actor) = acting_session(t).await?;
            let n: u64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("USER")
                .arg(&u)
                .query_async(&mut s.con)
                .await
                .map_err(|e| {
                    format!(
                        "Redis did not let {actor} end the sessions of {u} ({}); grant it +client|kill, or rotate through an admin connection",
                        s.error(&e)
                    )
                })?;
            Ok(Some(n))
        })
    }

    fn retire<'a>(
        &'a self,
        t: &'a Target<'a>,
        old: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<String, String>> {
        Box::pin(async move {
            match setuser(t, '<', &text(old, "password"), false)
                .await
                .map(|(d, _)| d)
            {
                // Already removed (the step ran before a crash): done.
                Err(e) if e.contains("does not exist") => Ok(format!(
                    "the old password of {} was already removed",
                    user(t.settings)
                )),
                other => other,
            }
        })
    }
}
