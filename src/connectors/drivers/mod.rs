//! What rekey can do to an outside system's credential itself: one driver
//! per system, one trait. The rotation engine (`crate::rotation`) runs the
//! steps in order — check, create, apply, (verify by the connection's
//! probe), retire — and persists each before the next, so a driver's steps
//! must be safe to run again after a crash (idempotent at the target).

pub mod aws_keys;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod redshift;
pub mod rekey;
pub mod snowflake;

use std::future::Future;
use std::pin::Pin;

use serde_json::{Map, Value};

use super::catalog::{self, Method, Rotation};
use super::connections::Connection;
use crate::egress::Egress;
use crate::state::Core;

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The system a driver acts on: the rotated connection's settings,
/// endpoints and current credential, and the admin connection the change
/// is made through (`--rotate-with`), if any.
pub struct Target<'a> {
    /// This rekey: where its own keys and clients are (the `rekey_*`
    /// drivers act on them), its clock and pepper.
    pub core: &'a Core,
    /// The rotated connection (its org scopes what the `rekey_*` drivers
    /// may touch).
    pub conn: &'a Connection,
    pub egress: &'a Egress,
    pub settings: &'a Map<String, Value>,
    pub endpoints: &'a Map<String, Value>,
    /// The rotated connection's current credential.
    pub current: &'a Map<String, Value>,
    pub admin: Option<Admin<'a>>,
    /// When this rotation first began to apply its change (wall clock,
    /// unix ms), recorded before the first attempt: on a resume, only what
    /// appeared at the target since is this rotation's own (AWS keys).
    pub apply_since_ms: Option<i64>,
}

/// A connection of the same kind holding an admin credential
/// (`--rotate-with`): the change is made as it, not as the rotated account.
pub struct Admin<'a> {
    pub name: &'a str,
    pub settings: &'a Map<String, Value>,
    pub credential: &'a Map<String, Value>,
}

impl Target<'_> {
    /// Where to log in to make a change, and the credentials to try in
    /// turn: the admin's, or the account's own (`own`, in order).
    pub fn acting<'b>(
        &'b self,
        own: &[&'b Map<String, Value>],
    ) -> (&'b Map<String, Value>, Vec<&'b Map<String, Value>>) {
        match &self.admin {
            Some(a) => (a.settings, vec![a.credential]),
            None => (self.settings, own.to_vec()),
        }
    }

    /// Who makes the change, for step details and errors.
    pub fn actor(&self) -> String {
        match &self.admin {
            Some(a) => format!("through {}", a.name),
            None => "as itself".to_string(),
        }
    }
}

/// What applying did: its detail for the rotation's record; the new
/// credential when only the target could make it (AWS returns the secret
/// of a key it created), which replaces the pending one in the same commit;
/// and whether the old credential keeps working beside it, when only the
/// target's version tells (MySQL 8.0.14+ keeps a retained password);
/// and a mark of the moment of the change in the target's own terms, kept
/// for [`Driver::still_on_old`] (Redis: the client id at the change).
pub struct Applied {
    pub detail: String,
    pub credential: Option<Map<String, Value>>,
    pub dual: Option<bool>,
    pub mark: Option<Value>,
}

impl From<String> for Applied {
    fn from(detail: String) -> Applied {
        Applied {
            detail,
            credential: None,
            dual: None,
            mark: None,
        }
    }
}

/// When the cut-over asks who is still on the old credential: the
/// promotion (rekey's clock) and the mark `apply` left (`Value::Null`
/// when it left none).
pub struct Since<'a> {
    pub promoted_at: i64,
    pub mark: &'a Value,
    /// The rotation's cut-over window: where the target reports each use
    /// (rekey's own secrets), a consumer counts as moved once it has not
    /// used the old credential for this long.
    pub window_ms: i64,
}

pub trait Driver: Send + Sync {
    /// Whether the old credential keeps working until [`Driver::retire`]
    /// (two passwords, two keys): then the rotation waits for cut-over.
    fn dual(&self) -> bool;

    /// The statements the rotation will run, secrets masked (`--dry-run`).
    fn plan(&self, settings: &Map<String, Value>) -> Vec<String>;

    /// Whether [`Driver::apply`] reads [`Target::apply_since_ms`]: then
    /// the time of the first attempt commits before the attempt (a resume
    /// tells what this rotation made at the target from what someone else
    /// made meanwhile). Others skip that commit.
    fn marks_apply_start(&self) -> bool {
        false
    }

    /// Can the acting credential make the change? Asked before anything
    /// changes; an error names what is missing.
    fn check<'a>(&'a self, t: &'a Target<'a>) -> BoxFut<'a, Result<(), String>>;

    /// A new credential: the current one's fields with fresh secrets.
    fn create(&self, current: &Map<String, Value>) -> Map<String, Value>;

    /// Makes the target accept `new` (beside the old one when [`Driver::dual`]).
    fn apply<'a>(
        &'a self,
        t: &'a Target<'a>,
        new: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<Applied, String>>;

    /// Waits until the target accepts `new` everywhere (eventually
    /// consistent systems: IAM), by polling it, before it is verified.
    fn settle<'a>(
        &'a self,
        t: &'a Target<'a>,
        new: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<(), String>> {
        let _ = (t, new);
        Box::pin(async { Ok(()) })
    }

    /// Consumers the target itself reports still on `old` since the
    /// change, each named for a person (AWS: a use after the promotion;
    /// Redis: sessions opened before the new password existed); empty when
    /// none, or where the target reports nothing.
    fn still_on_old<'a>(
        &'a self,
        t: &'a Target<'a>,
        old: &'a Map<String, Value>,
        since: &'a Since<'a>,
    ) -> BoxFut<'a, Result<Vec<String>, String>> {
        let _ = (t, old, since);
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Sessions opened with the old credential that the target keeps
    /// working after it is retired (Redis keeps authenticated connections
    /// when a password is removed): they hold no cut-over, since their
    /// owner's next login is a read like any other. `None` where the
    /// target has no such sessions or does not say.
    fn sessions_on_old<'a>(
        &'a self,
        t: &'a Target<'a>,
        since: &'a Since<'a>,
    ) -> BoxFut<'a, Result<Option<u64>, String>> {
        let _ = (t, since);
        Box::pin(async { Ok(None) })
    }

    /// Ends the rotated account's sessions after [`Driver::retire`] (an
    /// incident asked: the old credential is presumed leaked, and a
    /// session opened with it must not outlive it); how many. `None` where
    /// the target keeps no sessions past a retire.
    fn end_sessions<'a>(&'a self, t: &'a Target<'a>) -> BoxFut<'a, Result<Option<u64>, String>> {
        let _ = t;
        Box::pin(async { Ok(None) })
    }

    /// Makes the target refuse `old`.
    fn retire<'a>(
        &'a self,
        t: &'a Target<'a>,
        old: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<String, String>>;

    /// Undoes [`Driver::apply`] after `new` failed verification, so the
    /// stored current credential (`old`) is again the one that works. By
    /// default, retiring `new` (dual-credential systems).
    fn rollback<'a>(
        &'a self,
        t: &'a Target<'a>,
        old: &'a Map<String, Value>,
        new: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<String, String>> {
        let _ = old;
        self.retire(t, new)
    }
}

/// A driver as catalog entries name it (`driver = "postgres"`), with the
/// auth method whose credentials it rotates.
pub struct Named {
    pub name: &'static str,
    pub method: Method,
    pub driver: &'static dyn Driver,
}

/// Every driver rekey has. A catalog entry with `rotation = "automatic"`
/// must name one of these, for its own auth method, or start-up fails.
static DRIVERS: [Named; 8] = [
    Named {
        name: "postgres",
        method: Method::Basic,
        driver: &postgres::PG_ROLE,
    },
    Named {
        name: "redshift",
        method: Method::Basic,
        driver: &redshift::REDSHIFT_USER,
    },
    Named {
        name: "mysql",
        method: Method::Basic,
        driver: &mysql::MySqlUser,
    },
    Named {
        name: "redis",
        method: Method::Basic,
        driver: &redis::RedisAcl,
    },
    Named {
        name: "aws_keys",
        method: Method::AwsKeys,
        driver: &aws_keys::AwsAccessKeys,
    },
    Named {
        name: "snowflake_key_pair",
        method: Method::RsaKeyPair,
        driver: &snowflake::SnowflakeKeyPair,
    },
    Named {
        name: "rekey_access_key",
        method: Method::ApiKey,
        driver: &rekey::ACCESS_KEY,
    },
    Named {
        name: "rekey_m2m",
        method: Method::ClientCredentials,
        driver: &rekey::M2M_SECRET,
    },
];

/// The driver the catalog calls `name`.
pub fn by_name(name: &str) -> Option<&'static Named> {
    DRIVERS.iter().find(|d| d.name == name)
}

/// The names of every driver, for errors that list them.
pub fn names() -> impl Iterator<Item = &'static str> {
    DRIVERS.iter().map(|d| d.name)
}

/// The driver that rotates a connector kind's auth method: the one its
/// catalog entry names, when its rotation is automatic.
pub fn for_kind(kind: &str, method: &str) -> Option<&'static dyn Driver> {
    by_name(driver_name(kind, method)?).map(|n| n.driver)
}

/// The name of [`for_kind`]'s driver.
pub fn driver_name(kind: &str, method: &str) -> Option<&'static str> {
    let m = catalog::kind(kind)?.method(method)?;
    if m.rotation != Rotation::Automatic {
        return None;
    }
    m.driver.as_deref()
}

/// Every (kind, method) of the catalog that a driver rotates.
pub fn automatic() -> Vec<(&'static str, &'static str)> {
    let Ok(c) = catalog::catalog() else {
        return Vec::new();
    };
    c.values()
        .flat_map(|k| {
            k.auth
                .iter()
                .filter(|a| for_kind(&k.kind, a.method.as_str()).is_some())
                .map(|a| (k.kind.as_str(), a.method.as_str()))
        })
        .collect()
}

/// The current credential's fields with a freshly generated password
/// (192 random bits, base64url: nothing any of these systems must escape).
pub(crate) fn with_new_password(current: &Map<String, Value>) -> Map<String, Value> {
    let mut m = current.clone();
    m.insert(
        "password".into(),
        Value::String(crate::crypto::password::generate()),
    );
    m
}

/// Retiring on a system that holds one password per account: the old one
/// stopped working when the new one was set.
pub(crate) fn nothing_to_retire<'a>() -> BoxFut<'a, Result<String, String>> {
    Box::pin(async {
        Ok(
            "one password per account: the old one stopped working when the new one was set"
                .to_string(),
        )
    })
}

pub(crate) fn text(m: &Map<String, Value>, k: &str) -> String {
    match m.get(k) {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}
