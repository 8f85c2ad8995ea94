//! Connections: an org's configured link to an outside system. Settings are
//! plain JSON on the row; credentials are one sealed JSON object bound to
//! the row, replaced whole on re-authorization, never touching settings.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::catalog::{self, AuthMethod, Kind};
use super::probe::Verdict;
use super::shapes;
use super::ConnectorError;
use crate::audit::{self, Actor, Event};
use crate::clock::rfc3339;
use crate::crypto::keyring::Place;
use crate::crypto::sealed;
use crate::events::activity::{self, ActivityType};
use crate::events::webhooks::{self, WebhookEvent};
use crate::identity::validate_name;
use crate::state::Core;
use crate::store::keyset::{self, Cursor, Page};
use crate::store::{is_unique_violation, new_id, AsEx, Db, Tx};
use crate::{exec, fetch_all, fetch_optional};

pub const STATUSES: &[&str] = &[
    "connected",
    "needs_reauth",
    "error",
    "rotating",
    "disconnected",
];

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct Connection {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub kind: String,
    pub auth: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub status_changed_at: i64,
    pub settings: String,
    pub endpoints: String,
    pub client_id: Option<String>,
    pub has_credentials: bool,
    pub access_expires_at: Option<i64>,
    pub refresh_due_at: Option<i64>,
    pub failures: i64,
    pub next_attempt_at: Option<i64>,
    pub last_test_at: Option<i64>,
    pub last_test_ok: Option<bool>,
    pub last_test_message: Option<String>,
    pub last_test_outcome: Option<String>,
    pub rotation_interval_ms: Option<i64>,
    /// How long a credential read may be cached; `None`: the default.
    pub refresh_after_ms: Option<i64>,
    pub last_rotated_at: Option<i64>,
    /// Why a due scheduled rotation cannot start by itself, as the
    /// scheduler found it (`rotation::schedule`), and when.
    pub rotation_waiting: Option<String>,
    pub rotation_waiting_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub const COLS: &str = "id, org_id, name, kind, auth, status, status_reason, status_changed_at, settings, endpoints, client_id, \
    has_credentials, access_expires_at, refresh_due_at, failures, next_attempt_at, last_test_at, \
    last_test_ok, last_test_message, last_test_outcome, rotation_interval_ms, refresh_after_ms, last_rotated_at, rotation_waiting, rotation_waiting_at, \
    created_at, updated_at";

pub fn credentials_place(id: &str) -> Place<'_> {
    super::slots::Slot::Current.place(id)
}

/// The view with the credential's slots and age (`connection show`).
pub async fn detailed_view(core: &Core, c: &Connection) -> Result<ConnectionView, ConnectorError> {
    let rows = super::slots::list(&mut core.db.read().await?, &c.id).await?;
    let mut v = c.view_at(core.now());
    let slots = super::slots::view(&rows);
    v.credential_age_s = rows
        .iter()
        .find(|r| r.slot == "current")
        .map(|r| (core.now() - r.created_at).max(0) / 1000);
    v.slots = Some(slots);
    Ok(v)
}

pub fn client_secret_place(id: &str) -> Place<'_> {
    Place {
        table: "connections",
        column: "client_secret",
        row: id,
    }
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct LastTest {
    /// When the test ran (`at` is the same, kept for earlier clients).
    pub time: String,
    pub at: String,
    /// True only when the credential was proven to work (`outcome` = `ok`).
    pub ok: bool,
    /// `ok`, `unverified` (nothing can prove this kind's credential by a
    /// request) or `failed`.
    pub outcome: Verdict,
    pub message: String,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct ConnectionView {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub auth: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub settings: Value,
    pub endpoints: Value,
    pub has_credentials: bool,
    pub access_token_expires_at: Option<String>,
    pub last_test: Option<LastTest>,
    /// Each credential slot's version and times (never a value); in the
    /// detailed view only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<super::slots::SlotsView>,
    /// Seconds since the current credential was stored; detailed view only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_age_s: Option<i64>,
    /// The schedule: rotate every this many seconds (`null`: never by itself).
    pub rotation_interval_s: Option<i64>,
    /// How long a consumer may cache a credential it read (every
    /// credentials read answers it).
    pub refresh_after_s: i64,
    /// When the credential was last replaced by a rotation or a person.
    pub last_rotated_at: Option<String>,
    /// When the next rotation is due, with a schedule.
    pub rotation_due_at: Option<String>,
    /// The rotation is due now (automatic ones start within one
    /// `jobs_interval`; manual and re-authorize ones wait for a person).
    pub rotation_due: bool,
    /// While due: why the scheduler cannot start it, what a person must
    /// do (`null` when it starts by itself).
    pub rotation_waiting: Option<String>,
    /// Since when it has been waiting for a person.
    pub rotation_waiting_since: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Connection {
    pub fn settings(&self) -> Map<String, Value> {
        serde_json::from_str(&self.settings).unwrap_or_default()
    }
    pub fn endpoints(&self) -> Map<String, Value> {
        serde_json::from_str(&self.endpoints).unwrap_or_default()
    }
    pub fn kind(&self) -> Result<&'static Kind, ConnectorError> {
        catalog::kind(&self.kind).ok_or_else(|| {
            ConnectorError::Invalid(format!(
                "connector kind {:?} is not in the catalog",
                self.kind
            ))
        })
    }
    pub fn method(&self) -> Result<&'static AuthMethod, ConnectorError> {
        self.kind()?.method(&self.auth).ok_or_else(|| {
            ConnectorError::Invalid(format!("{} has no auth method {:?}", self.kind, self.auth))
        })
    }
    /// When the next scheduled rotation is due (unix ms).
    pub fn rotation_due_ms(&self) -> Option<i64> {
        let base = self.last_rotated_at.unwrap_or(self.created_at);
        self.rotation_interval_ms.map(|i| base.saturating_add(i))
    }

    /// The view, with `rotation_due` (and why it waits) as of `now`.
    /// How long a consumer may use a credential it read before reading
    /// again: the connection's setting, else the default.
    pub fn refresh_after_ms(&self) -> i64 {
        self.refresh_after_ms
            .unwrap_or(crate::rotation::limits::REFRESH_AFTER_MS)
    }

    pub fn view_at(&self, now: i64) -> ConnectionView {
        let mut v = self.view();
        v.rotation_due = self.has_credentials && self.rotation_due_ms().is_some_and(|d| d <= now);
        if let Some(why) = self.waiting(now) {
            v.rotation_waiting = Some(why.to_string());
            v.rotation_waiting_since = self.rotation_waiting_at.map(rfc3339);
        }
        v
    }

    /// Why the due scheduled rotation waits for a person, as the scheduler
    /// found it in the current due period; `None` when not due, or found
    /// before this period began (the credential was replaced since).
    pub fn waiting(&self, now: i64) -> Option<&str> {
        if !self.has_credentials {
            return None;
        }
        waiting_now(
            self.rotation_waiting.as_deref(),
            self.rotation_waiting_at,
            self.rotation_due_ms(),
            now,
        )
    }

    pub fn view(&self) -> ConnectionView {
        ConnectionView {
            id: self.id.clone(),
            name: self.name.clone(),
            kind: self.kind.clone(),
            auth: self.auth.clone(),
            status: self.status.clone(),
            status_reason: self.status_reason.clone(),
            settings: Value::Object(self.settings()),
            endpoints: Value::Object(self.endpoints()),
            has_credentials: self.has_credentials,
            access_token_expires_at: self.access_expires_at.map(rfc3339),
            last_test: self.last_test_at.map(|at| LastTest {
                time: rfc3339(at),
                at: rfc3339(at),
                ok: self.last_test_ok.unwrap_or(false),
                outcome: self
                    .last_test_outcome
                    .as_deref()
                    .and_then(Verdict::parse)
                    .unwrap_or(if self.last_test_ok.unwrap_or(false) {
                        Verdict::Ok
                    } else {
                        Verdict::Failed
                    }),
                message: self.last_test_message.clone().unwrap_or_default(),
            }),
            slots: None,
            credential_age_s: None,
            rotation_interval_s: self.rotation_interval_ms.map(|ms| ms / 1000),
            refresh_after_s: self.refresh_after_ms() / 1000,
            last_rotated_at: self.last_rotated_at.map(rfc3339),
            rotation_due_at: self.rotation_due_ms().map(rfc3339),
            rotation_due: false,
            rotation_waiting: None,
            rotation_waiting_since: None,
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
        }
    }
}

/// A due rotation's `rotation_waiting` reason, if the scheduler wrote it
/// in the current due period (`due_ms` ≤ `now`): one written before the
/// credential was last replaced no longer holds.
pub fn waiting_now(
    why: Option<&str>,
    at: Option<i64>,
    due_ms: Option<i64>,
    now: i64,
) -> Option<&str> {
    let due = due_ms.filter(|d| *d <= now)?;
    at.filter(|at| *at >= due).and(why)
}

/// Validates settings against the kind: known keys, required ones present
/// (defaults applied), formats right. URL settings lose a trailing slash.
pub fn validate_settings(
    kind: &Kind,
    given: &BTreeMap<String, String>,
    base: Option<Map<String, Value>>,
) -> Result<Map<String, Value>, ConnectorError> {
    let mut out = base.unwrap_or_default();
    for (k, v) in given {
        let Some(f) = kind.settings.iter().find(|f| &f.key == k) else {
            let known: Vec<&str> = kind.settings.iter().map(|f| f.key.as_str()).collect();
            return Err(ConnectorError::Invalid(format!(
                "{} has no setting {k:?} (settings: {})",
                kind.kind,
                known.join(", ")
            )));
        };
        shapes::check(f, v).map_err(ConnectorError::Invalid)?;
        let v = if f.format == catalog::Format::Url {
            v.trim().trim_end_matches('/').to_string()
        } else {
            v.trim().to_string()
        };
        out.insert(k.clone(), Value::String(v));
    }
    for f in &kind.settings {
        if !out.contains_key(&f.key) {
            match &f.default {
                Some(d) => {
                    out.insert(f.key.clone(), Value::String(d.clone()));
                }
                None if !f.optional => {
                    return Err(ConnectorError::Invalid(format!(
                        "setting {:?} is required for {}",
                        f.key, kind.kind
                    )));
                }
                None => {}
            }
        }
    }
    Ok(out)
}

/// Provider endpoints a connection may override: the OAuth ones, the
/// probe's URL, AWS's S3/IAM/STS endpoints (other partitions, VPC
/// endpoints, moto_server in tests) and Snowflake's SQL API base.
const ENDPOINT_KEYS: &[&str] = &[
    "authorize_url",
    "token_url",
    "revoke_url",
    "probe_url",
    "s3_url",
    "iam_url",
    "sts_url",
    "api_url",
];

pub fn validate_endpoints(
    given: &BTreeMap<String, String>,
    base: Option<Map<String, Value>>,
) -> Result<Map<String, Value>, ConnectorError> {
    let mut out = base.unwrap_or_default();
    for (k, v) in given {
        if !ENDPOINT_KEYS.contains(&k.as_str()) {
            return Err(ConnectorError::Invalid(format!(
                "unknown endpoint {k:?} (use {})",
                ENDPOINT_KEYS.join(", ")
            )));
        }
        match url::Url::parse(v) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {
                out.insert(k.clone(), Value::String(v.clone()));
            }
            _ => {
                return Err(ConnectorError::Invalid(format!(
                    "endpoint {k}: {v:?} is not an http(s) URL"
                )))
            }
        }
    }
    Ok(out)
}

pub struct NewConnection<'a> {
    pub org_id: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub auth: Option<&'a str>,
    pub settings: &'a BTreeMap<String, String>,
    pub endpoints: &'a BTreeMap<String, String>,
}

pub async fn create(
    core: &Core,
    actor: &Actor,
    n: NewConnection<'_>,
) -> Result<Connection, ConnectorError> {
    let kind = catalog::kind(n.kind).ok_or_else(|| {
        ConnectorError::Invalid(format!(
            "unknown connector kind {:?} (see rekey connector list)",
            n.kind
        ))
    })?;
    let method = match n.auth {
        Some(a) => kind.method(a).ok_or_else(|| {
            let m: Vec<&str> = kind.auth.iter().map(|a| a.method.as_str()).collect();
            ConnectorError::Invalid(format!(
                "{} has no auth method {a:?} (methods: {})",
                kind.kind,
                m.join(", ")
            ))
        })?,
        None => &kind.auth[0],
    };
    let name = validate_name("connection name", n.name)?;
    let settings = validate_settings(kind, n.settings, None)?;
    let endpoints = validate_endpoints(n.endpoints, None)?;
    let now = core.now();
    let c = Connection {
        id: new_id(),
        org_id: n.org_id.to_string(),
        name,
        kind: kind.kind.clone(),
        auth: method.method.as_str().to_string(),
        status: "disconnected".into(),
        status_reason: Some("no credentials yet".into()),
        status_changed_at: now,
        settings: Value::Object(settings).to_string(),
        endpoints: Value::Object(endpoints).to_string(),
        client_id: None,
        has_credentials: false,
        access_expires_at: None,
        refresh_due_at: None,
        failures: 0,
        next_attempt_at: None,
        last_test_at: None,
        last_test_ok: None,
        last_test_message: None,
        last_test_outcome: None,
        rotation_interval_ms: None,
        refresh_after_ms: None,
        last_rotated_at: None,
        rotation_waiting: None,
        rotation_waiting_at: None,
        created_at: now,
        updated_at: now,
    };
    let mut tx = core.db.begin_write().await?;
    let r = exec!(
        &mut tx,
        "INSERT INTO connections (id, org_id, name, kind, auth, status, status_reason, status_changed_at, settings, endpoints,
            has_credentials, failures, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, $13)",
        &c.id,
        &c.org_id,
        &c.name,
        &c.kind,
        &c.auth,
        &c.status,
        &c.status_reason,
        now,
        &c.settings,
        &c.endpoints,
        false,
        now,
        now
    );
    match r {
        Err(e) if is_unique_violation(&e) => {
            return Err(ConnectorError::Conflict(format!("connection {:?}", c.name)))
        }
        r => r?,
    };
    record(
        &mut tx,
        now,
        actor,
        &c,
        "connection.create",
        json!({"kind": c.kind, "auth": c.auth, "settings": c.settings()}),
    )
    .await?;
    tx.commit().await?;
    Ok(c)
}

pub async fn record(
    tx: &mut Tx,
    now: i64,
    actor: &Actor,
    c: &Connection,
    action: &str,
    detail: Value,
) -> Result<(), ConnectorError> {
    audit::record(
        tx,
        now,
        actor,
        Event {
            org_id: Some(&c.org_id),
            action,
            target: Some(&c.name),
            detail,
        },
    )
    .await?;
    Ok(())
}

fn check_status(status: Option<&str>) -> Result<(), ConnectorError> {
    match status {
        Some(s) if !STATUSES.contains(&s) => Err(ConnectorError::Invalid(format!(
            "status must be one of {}",
            STATUSES.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// One page of an org's connections by name (keyset `NAME.ID` after
/// `after`, the `next` of the page before), with the exact total of those
/// with `status` (all when `None`).
pub async fn page(
    db: &Db,
    org_id: &str,
    status: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<Connection>, ConnectorError> {
    check_status(status)?;
    let after = Cursor::opt(after).map_err(|e| ConnectorError::Invalid(e.to_string()))?;
    let (a_name, a_id) = after.map(|c| (c.key, c.id)).unwrap_or_default();
    let limit = keyset::limit(limit);
    let mut c = db.read().await?;
    let total = crate::scalar_optional!(
        &mut c,
        i64,
        "SELECT COUNT(*) FROM connections WHERE org_id = $1 AND ($2 IS NULL OR status = $2)",
        org_id,
        status
    )?
    .unwrap_or(0);
    let rows = fetch_all!(
        &mut c,
        Connection,
        &format!(
            "SELECT {COLS} FROM connections WHERE org_id = $1 AND ($2 IS NULL OR status = $2)
               AND (name > $3 OR (name = $3 AND id > $4))
             ORDER BY name, id LIMIT $5"
        ),
        org_id,
        status,
        &a_name,
        &a_id,
        limit + 1
    )?;
    Ok(Page::from_rows(rows, limit, total, |c| {
        Cursor::of(&c.name, &c.id)
    }))
}

pub async fn list(
    db: &Db,
    org_id: &str,
    status: Option<&str>,
) -> Result<Vec<Connection>, ConnectorError> {
    check_status(status)?;
    let mut c = db.read().await?;
    Ok(fetch_all!(
        &mut c,
        Connection,
        &format!("SELECT {COLS} FROM connections WHERE org_id = $1 AND ($2 IS NULL OR status = $2) ORDER BY name"),
        org_id,
        status
    )?)
}

pub async fn find<C: AsEx>(
    c: &mut C,
    org_id: &str,
    key: &str,
) -> Result<Connection, ConnectorError> {
    fetch_optional!(
        c,
        Connection,
        // By name, then by id: each half is one index probe, where `name =
        // $2 OR id = $2` read every row of the org (0.5 ms a lookup at a
        // thousand connections, growing with the org).
        &format!(
            "SELECT {COLS} FROM connections WHERE org_id = $1 AND name = $2
             UNION ALL SELECT {COLS} FROM connections WHERE id = $2 AND org_id = $1 LIMIT 1"
        ),
        org_id,
        key.trim()
    )?
    .ok_or_else(|| ConnectorError::NotFound(format!("connection {key:?}")))
}

pub async fn find_in(db: &Db, org_id: &str, key: &str) -> Result<Connection, ConnectorError> {
    let mut c = db.read().await?;
    find(&mut c, org_id, key).await
}

pub async fn get<C: AsEx>(c: &mut C, id: &str) -> Result<Connection, ConnectorError> {
    fetch_optional!(
        c,
        Connection,
        &format!("SELECT {COLS} FROM connections WHERE id = $1"),
        id
    )?
    .ok_or_else(|| ConnectorError::NotFound(format!("connection {id:?}")))
}

/// Changes settings (merged) and endpoint overrides; never credentials.
pub async fn update(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    key: &str,
    settings: &BTreeMap<String, String>,
    endpoints: &BTreeMap<String, String>,
) -> Result<Connection, ConnectorError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let mut c = find(&mut tx, org_id, key).await?;
    let kind = c.kind()?;
    let s = validate_settings(kind, settings, Some(c.settings()))?;
    let e = validate_endpoints(endpoints, Some(c.endpoints()))?;
    let was = c.clone();
    c.settings = Value::Object(s).to_string();
    c.endpoints = Value::Object(e).to_string();
    if was.has_credentials {
        if let Some(what) = moved_destination(kind, &was, &c) {
            return Err(frozen(&c.name, &what));
        }
    }
    c.updated_at = now;
    exec!(
        &mut tx,
        "UPDATE connections SET settings = $1, endpoints = $2, updated_at = $3 WHERE id = $4",
        &c.settings,
        &c.endpoints,
        now,
        &c.id
    )?;
    record(
        &mut tx,
        now,
        actor,
        &c,
        "connection.update",
        json!({"settings": settings.keys().collect::<Vec<_>>(), "endpoints": endpoints}),
    )
    .await?;
    let changed = json!({"settings": settings.keys().collect::<Vec<_>>(), "endpoints": endpoints.keys().collect::<Vec<_>>()});
    activity::record(
        &mut tx,
        &c.org_id,
        &c.id,
        ActivityType::Settings,
        "settings changed",
        changed,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(c)
}

/// What of a connection's settings and endpoint overrides, changed from
/// `was` to `now`, decides where its credential goes (named for the
/// error), if anything: a setting the catalog marks so
/// ([`Kind::decides_destination`]), any endpoint override, or — in case a
/// catalog entry missed one — a change of the origins its URL templates
/// render to.
fn moved_destination(kind: &Kind, was: &Connection, now: &Connection) -> Option<String> {
    let (before, after) = (was.settings(), now.settings());
    let changed = |a: &Map<String, Value>, b: &Map<String, Value>| -> Vec<String> {
        a.keys()
            .chain(b.keys())
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let settings = changed(&before, &after);
    if let Some(k) = settings.iter().find(|k| kind.decides_destination(k)) {
        return Some(format!("setting {k}"));
    }
    if let Some(k) = changed(&was.endpoints(), &now.endpoints()).first() {
        return Some(format!("endpoint {k}"));
    }
    (destinations(was) != destinations(now)).then(|| format!("setting {}", settings.join(", ")))
}

/// The error for a refused change of where a held credential goes.
fn frozen(name: &str, what: &str) -> ConnectorError {
    ConnectorError::Refused(format!(
        "{name} holds a credential, and its {what} decides where that credential is sent, so it \
         cannot change while one is held; nothing was changed. To change it: revoke the credential \
         (rekey connection revoke-authorization, or POST …/revoke-authorization), update the connection, \
         then set the credential again (rekey connection set-credential, or authorize)"
    ))
}

/// The origins a connection's credentials are sent to: its OAuth endpoints
/// and its probe, rendered from its settings with its overrides applied.
fn destinations(c: &Connection) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let Ok(method) = c.method() else {
        return out;
    };
    let settings = c.settings();
    let empty = Map::new();
    let vars = super::template::Vars {
        settings: &settings,
        credentials: &empty,
    };
    let overrides = c.endpoints();
    let mut templates: Vec<(&str, Option<&String>)> =
        vec![("probe_url", method.probe.url.as_ref())];
    if let Some(o) = &method.oauth {
        templates.push(("token_url", Some(&o.token_url)));
        templates.push(("revoke_url", o.revoke_url.as_ref()));
        templates.push(("authorize_url", o.authorize_url.as_ref()));
    }
    for (key, template) in templates {
        let url = match overrides.get(key).and_then(Value::as_str) {
            Some(u) => Some(u.to_string()),
            None => template.and_then(|t| super::template::render(t, &vars).ok()),
        };
        if let Some(o) = url.as_deref().and_then(super::hosts::origin) {
            out.insert(o);
        }
    }
    out
}

pub async fn delete(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    key: &str,
) -> Result<Connection, ConnectorError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let c = find(&mut tx, org_id, key).await?;
    sealed::delete_owner(&mut tx, "connections", &c.id).await?;
    // What acts on it ends with it, in this transaction: an unfinished
    // rotation is cancelled and its job deleted. Left, the job failed
    // against a connection that is gone until its attempts ran out, and a
    // campaign following the rotation waited on it all that while.
    let rotations: Vec<(String,)> = fetch_all!(
        &mut tx,
        (String,),
        "UPDATE rotations SET status = 'cancelled', reason = 'its connection was deleted', finished_at = $1
         WHERE target_type = 'connection' AND target_id = $2 AND finished_at IS NULL
         RETURNING job_id",
        now,
        &c.id
    )?;
    for (job,) in &rotations {
        crate::jobs::queue::delete(&mut tx, job).await?;
    }
    exec!(&mut tx, "DELETE FROM connections WHERE id = $1", &c.id)?;
    record(
        &mut tx,
        now,
        actor,
        &c,
        "connection.delete",
        json!({"kind": c.kind, "rotations_cancelled": rotations.len()}),
    )
    .await?;
    tx.commit().await?;
    Ok(c)
}

/// The stored credentials (empty when none).
pub async fn credentials<C: AsEx>(
    c: &mut C,
    core: &Core,
    id: &str,
) -> Result<Map<String, Value>, ConnectorError> {
    let raw = sealed::get(c, &core.keyring, credentials_place(id)).await?;
    Ok(raw
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

/// Replaces the credentials inside `tx`; `access_expires_at` and
/// `refresh_due_at` come from the token fields when there are any.
pub async fn put_credentials(
    tx: &mut Tx,
    core: &Core,
    c: &Connection,
    creds: &Map<String, Value>,
    refresh_due_at: Option<i64>,
    now: i64,
) -> Result<(), ConnectorError> {
    super::slots::write(tx, core, &c.id, super::slots::Slot::Current, creds, now).await?;
    let expires = creds.get("expires_at").and_then(Value::as_i64);
    exec!(
        tx,
        "UPDATE connections SET has_credentials = TRUE, access_expires_at = $1, refresh_due_at = $2, failures = 0,
            next_attempt_at = NULL, updated_at = $3 WHERE id = $4",
        expires,
        refresh_due_at,
        now,
        &c.id
    )?;
    if c.auth == "oauth2" {
        super::refresh_jobs::schedule(tx, &c.id, refresh_due_at, now).await?;
    }
    Ok(())
}

/// Sets the status; audits only a change (edge-triggered: one event when a
/// connection breaks, one when it recovers, never one per read).
pub async fn set_status(
    tx: &mut Tx,
    actor: &Actor,
    c: &Connection,
    status: &str,
    reason: Option<&str>,
    now: i64,
) -> Result<bool, ConnectorError> {
    // The status as it is in this transaction (`c` may be an older read):
    // what the change is from decides the webhook it raises.
    let from = crate::scalar_optional!(
        tx,
        String,
        "SELECT status FROM connections WHERE id = $1",
        &c.id
    )?
    .unwrap_or_else(|| c.status.clone());
    let n = exec!(
        tx,
        "UPDATE connections SET status = $1, status_reason = $2, status_changed_at = $3, updated_at = $3 WHERE id = $4 AND status <> $1",
        status,
        reason,
        now,
        &c.id
    )?;
    if n == 0 {
        exec!(
            tx,
            "UPDATE connections SET status_reason = $1 WHERE id = $2",
            reason,
            &c.id
        )?;
        return Ok(false);
    }
    let action = match status {
        "needs_reauth" => "connection.needs_reauth",
        "connected" => "connection.connected",
        "error" => "connection.error",
        "disconnected" => "connection.disconnected",
        _ => "connection.status",
    };
    // A delivery pauses with its credential and resumes with it, in this
    // transaction: nobody has to press a button.
    crate::sync::delivery::connection_changed(tx, &c.id, status, now).await?;
    if status == "needs_reauth" {
        tracing::warn!(connection = %c.name, kind = %c.kind, reason = reason.unwrap_or(""), "CONNECTION NEEDS RE-AUTHORIZATION");
    }
    record(
        tx,
        now,
        actor,
        c,
        action,
        json!({"from": from, "to": status, "reason": reason}),
    )
    .await?;
    let kind = match status {
        "needs_reauth" | "error" => ActivityType::Error,
        _ => ActivityType::Status,
    };
    let message = match reason {
        Some(r) => format!("{from} → {status}: {r}"),
        None => format!("{from} → {status}"),
    };
    let detail = json!({"from": from, "to": status, "reason": reason});
    activity::record(tx, &c.org_id, &c.id, kind, &message, detail.clone(), now).await?;
    // Edge-triggered: only a real change gets here, so one event per break
    // and one per recovery, never one per read.
    let event = match (from.as_str(), status) {
        (_, "needs_reauth") => Some(WebhookEvent::ConnectionNeedsReauth),
        // Recovery from a break only: a connection authorized for the
        // first time, or again after a person disconnected it, has not
        // "recovered" from anything anyone was told about.
        ("needs_reauth" | "error", "connected") => Some(WebhookEvent::ConnectionRecovered),
        _ => None,
    };
    if let Some(e) = event {
        let data = json!({"connection": {"id": c.id, "name": c.name, "kind": c.kind}, "from": from, "to": status, "reason": reason});
        webhooks::emit(tx, &c.org_id, e, data, now).await?;
    }
    Ok(true)
}

pub async fn record_test(
    tx: &mut Tx,
    c: &Connection,
    out: &super::probe::Outcome,
    now: i64,
) -> Result<(), ConnectorError> {
    exec!(
        tx,
        "UPDATE connections SET last_test_at = $1, last_test_ok = $2, last_test_message = $3, last_test_outcome = $4 WHERE id = $5",
        now,
        out.ok(),
        &out.message,
        out.verdict.as_str(),
        &c.id
    )?;
    if out.ok() {
        super::slots::mark_verified(tx, &c.id, super::slots::Slot::Current, now).await?;
    }
    let detail = json!({"outcome": out.verdict.as_str()});
    activity::record(
        tx,
        &c.org_id,
        &c.id,
        ActivityType::Probe,
        &out.message,
        detail,
        now,
    )
    .await?;
    Ok(())
}

/// Sets (or, with `None`, clears) a connection's rotation schedule.
pub async fn set_rotation_interval(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    key: &str,
    interval_ms: Option<i64>,
) -> Result<Connection, ConnectorError> {
    const DAY: i64 = 86_400_000;
    if let Some(ms) = interval_ms {
        if !(3_600_000..=3650 * DAY).contains(&ms) {
            return Err(ConnectorError::Invalid(
                "the rotation interval must be between 1h and 3650d (0 turns the schedule off)"
                    .into(),
            ));
        }
    }
    let c = find_in(&core.db, org_id, key).await?;
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    exec!(
        &mut tx,
        "UPDATE connections SET rotation_interval_ms = $1, updated_at = $2 WHERE id = $3",
        interval_ms,
        now,
        &c.id
    )?;
    record(
        &mut tx,
        now,
        actor,
        &c,
        "connection.rotation_schedule",
        json!({"interval_seconds": interval_ms.map(|ms| ms / 1000)}),
    )
    .await?;
    let message = match interval_ms {
        Some(ms) => format!("rotation schedule: every {}s", ms / 1000),
        None => "rotation schedule off".to_string(),
    };
    let detail = json!({"rotation_interval_s": interval_ms.map(|ms| ms / 1000)});
    activity::record(
        &mut tx,
        &c.org_id,
        &c.id,
        ActivityType::Settings,
        &message,
        detail,
        now,
    )
    .await?;
    tx.commit().await?;
    get(&mut core.db.read().await?, &c.id).await
}

/// Sets how long a credential read may be cached (`None`: the default).
/// Reads already answered keep what they were told: the cut-over honours
/// the time each was handed.
pub async fn set_refresh_after(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    key: &str,
    refresh_after_ms: Option<i64>,
) -> Result<Connection, ConnectorError> {
    use crate::rotation::limits::MAX_REFRESH_AFTER_MS;
    if let Some(ms) = refresh_after_ms {
        if !(0..=MAX_REFRESH_AFTER_MS).contains(&ms) {
            return Err(ConnectorError::Invalid(format!(
                "refresh-after must be between 0s and {}s: every cached copy keeps a rotated credential alive that long",
                MAX_REFRESH_AFTER_MS / 1000
            )));
        }
    }
    let c = find_in(&core.db, org_id, key).await?;
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    exec!(
        &mut tx,
        "UPDATE connections SET refresh_after_ms = $1, updated_at = $2 WHERE id = $3",
        refresh_after_ms,
        now,
        &c.id
    )?;
    record(
        &mut tx,
        now,
        actor,
        &c,
        "connection.refresh_after",
        json!({"refresh_after_s": refresh_after_ms.map(|ms| ms / 1000)}),
    )
    .await?;
    tx.commit().await?;
    get(&mut core.db.read().await?, &c.id).await
}

/// Records that the credential was just replaced by a rotation or a person.
pub async fn mark_rotated(tx: &mut Tx, id: &str, now: i64) -> Result<(), ConnectorError> {
    exec!(
        tx,
        "UPDATE connections SET last_rotated_at = $1 WHERE id = $2",
        now,
        id
    )?;
    Ok(())
}

/// Connections a person must act on — `needs_reauth` first, then `error`
/// and `disconnected` — of one org, or of every org (`None`, the
/// operator's view). At most `limit`, worst and longest-broken first.
pub async fn needing_person(
    db: &Db,
    org_id: Option<&str>,
    limit: i64,
) -> Result<Vec<Connection>, ConnectorError> {
    let mut c = db.read().await?;
    Ok(fetch_all!(
        &mut c,
        Connection,
        &format!(
            "SELECT {COLS} FROM connections
             WHERE status IN ('needs_reauth', 'error', 'disconnected') AND ($1 IS NULL OR org_id = $1)
             ORDER BY CASE status WHEN 'needs_reauth' THEN 0 WHEN 'error' THEN 1 ELSE 2 END, status_changed_at
             LIMIT $2"
        ),
        org_id,
        limit
    )?)
}

/// One connector kind's health for the public status page: how many
/// connections it has, how many work, how many a person must re-authorize,
/// and the outcomes of tests and refreshes since `since` (their last
/// outcome per connection). Counts only: no org, no name.
#[derive(sqlx::FromRow, Serialize, Debug)]
pub struct KindHealth {
    pub kind: String,
    pub connections: i64,
    pub connected: i64,
    pub needs_reauth: i64,
    pub error: i64,
    pub tested: i64,
    pub tested_ok: i64,
}

pub async fn health_by_kind(db: &Db, since: i64) -> Result<Vec<KindHealth>, ConnectorError> {
    let mut c = db.read().await?;
    Ok(fetch_all!(
        &mut c,
        KindHealth,
        "SELECT kind,
                COUNT(*) AS connections,
                SUM(CASE WHEN status IN ('connected', 'rotating') THEN 1 ELSE 0 END) AS connected,
                SUM(CASE WHEN status = 'needs_reauth' THEN 1 ELSE 0 END) AS needs_reauth,
                SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS error,
                SUM(CASE WHEN last_test_at >= $1 THEN 1 ELSE 0 END) AS tested,
                SUM(CASE WHEN last_test_at >= $1 AND last_test_outcome <> 'failed' THEN 1 ELSE 0 END) AS tested_ok
         FROM connections GROUP BY kind ORDER BY kind",
        since
    )?)
}
