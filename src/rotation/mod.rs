//! Rotations: a persisted state machine per rotation, driven by a leased
//! job of kind `rotation` (`crate::jobs::queue`) whose step is the state.
//!
//! check → write_ahead → apply → verify → promote → cutover → retire
//!
//! - `write_ahead` seals the new credential as the `pending` slot before the
//!   target changes, so a crash between "changed there" and "stored here"
//!   loses nothing;
//! - `verify` runs the connection's probe with the pending credential; a
//!   failure removes the new credential at the target again (rollback) and
//!   the stored `current` is untouched;
//! - `promote` makes pending current and keeps the old one as `previous`;
//! - `cutover` waits `cutover_window` while both work (dual-credential
//!   drivers), then `retire` removes the old one at the target and here.
//!
//! rekey's own secrets (an access key, a client secret; `own.rs`) issue the
//! new secret in the transaction that records the rotation, then share the
//! cut-over's decision (`cutover.rs`) with "who presented the old secret"
//! for "who read the old version".
//!
//! Each step's effects commit with the step itself, so a process killed at
//! any point resumes (on the next start, or another instance once the
//! lease runs out) at the step it had reached; driver steps are idempotent.

pub mod age;
mod cutover;
mod finish;
mod guided;
pub mod limits;
mod own;
mod run;
mod schedule;

use serde::Serialize;
use serde_json::{json, Value};

use crate::audit::{self, Actor, Event};
use crate::clock::rfc3339;
use crate::connectors::catalog::Rotation as Mode;
use crate::connectors::{connections, drivers, ConnectorError};
use crate::events::activity::{self, ActivityType};
use crate::events::webhooks::{self, WebhookEvent};
use crate::jobs::queue::{self, NewJob};
use crate::state::Core;
use crate::store::keyset::{self, Cursor, Page};
use crate::store::sql::Arg;
use crate::store::{is_unique_violation, new_id, AsEx, StoreError, Tx};
use crate::{exec, fetch_all, fetch_optional};

pub use cutover::wake_on_read as wake_cutover;
pub use finish::{finish_cutover, Finished};
pub use guided::{credential_stored_in, runbook_step, waits_for_person};
pub use run::{drive, run_due, Completed};
pub use schedule::start_due;

pub const JOB_KIND: &str = "rotation";

/// Statuses after which nothing more happens without a person.
pub const SETTLED: [&str; 5] = [
    "completed",
    "failed",
    "stalled",
    "cancelled",
    "waiting_person",
];

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    /// A rotation of the same target is in progress: this is it.
    #[error("a rotation of {} is already in progress ({})", .0.target.name, .0.id)]
    InProgress(Box<RotationView>),
    /// Another instance took the job over: what this step wrote is rolled
    /// back (only ever seen inside a step's transaction).
    #[error("the rotation's lease was lost to another instance")]
    LeaseLost,
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<crate::store::writer::WriterError> for RotationError {
    fn from(e: crate::store::writer::WriterError) -> Self {
        RotationError::Store(e.into())
    }
}

impl From<crate::oauth::OAuthError> for RotationError {
    fn from(e: crate::oauth::OAuthError) -> Self {
        use crate::oauth::OAuthError as O;
        match e {
            O::NotFound(m) => RotationError::NotFound(m),
            O::Store(s) => RotationError::Store(s),
            other => RotationError::Invalid(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for RotationError {
    fn from(e: sqlx::Error) -> Self {
        RotationError::Store(e.into())
    }
}

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct RotationRow {
    pub id: String,
    pub org_id: String,
    pub target_type: String,
    pub target_id: String,
    pub target_name: String,
    pub status: String,
    pub reason: Option<String>,
    pub steps: String,
    pub job_id: String,
    pub cutover_window_ms: i64,
    pub deadline_at: i64,
    pub started_by: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub rotate_with: Option<String>,
    /// What the retire did about sessions the target keeps after the old
    /// secret is removed (JSON: `{"kept": N}` or `{"ended": N}`).
    pub sessions: Option<String>,
}

const COLS: &str =
    "id, org_id, target_type, target_id, target_name, status, reason, steps, job_id, \
    cutover_window_ms, deadline_at, started_by, started_at, finished_at, rotate_with, sessions";

#[derive(Serialize, Debug, Clone, utoipa::ToSchema)]
pub struct TargetView {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
}

#[derive(Serialize, Debug, Clone, utoipa::ToSchema)]
pub struct RotationView {
    pub id: String,
    pub target: TargetView,
    pub status: String,
    pub reason: Option<String>,
    pub steps: Vec<Value>,
    /// Steps done of all the steps, 0–100.
    pub progress: u8,
    pub cutover_window_s: i64,
    /// The admin connection the change is made through (`--rotate-with`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotate_with: Option<String>,
    pub deadline_at: String,
    pub started_by: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// The new secret of a key, m2m or app rotation: in the answer that
    /// started it only (shown once, never stored in plaintext).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// While a person must re-authorize: where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<String>,
    /// A manual rotation's steps for the person, each with `n`, `text`, `done`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runbook: Option<Value>,
    /// Sessions opened with the previous credential that the target keeps
    /// working after it is retired (Redis): `{"kept": N}`, or `{"ended": N}`
    /// when an incident's rotation ended them. Set by the retire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Value>,
}

/// The steps of a rotation, in order.
pub const STEPS: [&str; 7] = [
    "check",
    "write_ahead",
    "apply",
    "verify",
    "promote",
    "cutover",
    "retire",
];

impl RotationRow {
    pub fn view(&self) -> RotationView {
        let steps: Vec<Value> = serde_json::from_str(&self.steps).unwrap_or_default();
        let done = steps.iter().filter(|s| s["status"] == "done").count();
        let authorize_url = steps
            .iter()
            .rev()
            .find_map(|s| s["authorize_url"].as_str())
            .map(str::to_string);
        let runbook = steps.iter().rev().find_map(|s| s.get("runbook")).cloned();
        let progress = if self.status == "completed" {
            100
        } else {
            u8::try_from(done * 100 / STEPS.len()).unwrap_or(100)
        };
        RotationView {
            id: self.id.clone(),
            target: TargetView {
                kind: self.target_type.clone(),
                name: self.target_name.clone(),
            },
            status: self.status.clone(),
            reason: self.reason.clone(),
            steps,
            progress,
            cutover_window_s: self.cutover_window_ms / 1000,
            rotate_with: self.rotate_with.clone(),
            deadline_at: rfc3339(self.deadline_at),
            started_by: self.started_by.clone(),
            started_at: rfc3339(self.started_at),
            finished_at: self.finished_at.map(rfc3339),
            secret: None,
            authorize_url,
            runbook,
            sessions: self
                .sessions
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
        }
    }
}

/// What to rotate.
#[derive(Debug, Clone)]
pub enum TargetRef {
    Connection(String),
    /// rekey's own credentials: an access key, a machine client's secret,
    /// an application's client secret.
    Key(String),
    M2m(String),
    App(String),
}

pub struct StartRequest {
    pub target: TargetRef,
    pub dry_run: bool,
    /// Who reads the credential and which version: who would have to move.
    pub preflight: bool,
    pub cutover_window_ms: i64,
    pub deadline_ms: i64,
    /// A connection of the same kind holding an admin credential: the
    /// change is made through it instead of as the rotated account.
    pub rotate_with: Option<String>,
    /// At the deadline, retire the previous credential even with readers
    /// still on it (naming them) instead of stopping `stalled`: an
    /// incident's rotations, where the old credential is presumed leaked.
    pub force_at_deadline: bool,
    /// After the retire, end the sessions the target keeps open with the
    /// previous credential (Redis): an incident's rotations that ask, where
    /// a session opened with a leaked credential must not outlive it.
    pub end_sessions: bool,
}

pub enum Started {
    /// `--dry-run`: what would happen; nothing changed.
    Plan(Value),
    Rotation(Box<RotationView>),
}

pub async fn get<C: AsEx>(c: &mut C, org_id: &str, id: &str) -> Result<RotationRow, RotationError> {
    fetch_optional!(
        c,
        RotationRow,
        &format!("SELECT {COLS} FROM rotations WHERE id = $1 AND org_id = $2"),
        id,
        org_id
    )?
    .ok_or_else(|| RotationError::NotFound(format!("rotation {id}")))
}

/// A rotation by id, whatever its org (the CLI, which acts as the operator).
pub async fn get_any(core: &Core, id: &str) -> Result<RotationRow, RotationError> {
    by_id(&mut core.db.read().await?, id)
        .await?
        .ok_or_else(|| RotationError::NotFound(format!("rotation {id}")))
}

pub(crate) async fn by_id<C: AsEx>(
    c: &mut C,
    id: &str,
) -> Result<Option<RotationRow>, RotationError> {
    Ok(fetch_optional!(
        c,
        RotationRow,
        &format!("SELECT {COLS} FROM rotations WHERE id = $1"),
        id
    )?)
}

pub async fn list(
    core: &Core,
    org_id: &str,
    status: Option<&str>,
) -> Result<Vec<RotationRow>, RotationError> {
    let mut c = core.db.read().await?;
    Ok(fetch_all!(
        &mut c,
        RotationRow,
        &format!(
            "SELECT {COLS} FROM rotations WHERE org_id = $1 AND ($2 IS NULL OR status = $2)
             ORDER BY started_at DESC LIMIT 1000"
        ),
        org_id,
        status
    )?)
}

/// One page of an org's rotations with `status` (all when `None`),
/// newest first by keyset (`STARTED_AT.ID` after `after`, the `next` of
/// the page before), with the exact total.
pub async fn page(
    core: &Core,
    org_id: &str,
    status: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<RotationRow>, RotationError> {
    let (at, id) = Cursor::opt_at(after)
        .map_err(|e| RotationError::Invalid(e.to_string()))?
        .unwrap_or((i64::MAX, String::new()));
    let limit = keyset::limit(limit);
    let mut c = core.db.read().await?;
    let total = crate::scalar_optional!(
        &mut c,
        i64,
        "SELECT COUNT(*) FROM rotations WHERE org_id = $1 AND ($2 IS NULL OR status = $2)",
        org_id,
        status
    )?
    .unwrap_or(0);
    let rows = fetch_all!(
        &mut c,
        RotationRow,
        &format!(
            "SELECT {COLS} FROM rotations WHERE org_id = $1 AND ($2 IS NULL OR status = $2)
               AND (started_at < $3 OR (started_at = $3 AND id < $4))
             ORDER BY started_at DESC, id DESC LIMIT $5"
        ),
        org_id,
        status,
        at,
        &id,
        limit + 1
    )?;
    Ok(Page::from_rows(rows, limit, total, |r| {
        Cursor::of(r.started_at, &r.id)
    }))
}

/// One page of the rotation queue across every org (the operator's):
/// unfinished rotations first, oldest first, then the finished ones,
/// newest first, with the exact total.
///
/// The two segments are one keyset over a computed sort key
/// `(seg, k, id)`: `seg` 0 for unfinished and 1 for finished, `k` the
/// start time for unfinished and its negation for finished (so one
/// ascending order gives "oldest first" and then "newest first"), the id
/// breaking ties. The cursor is `SEG:K.ID` of the page's last row. A
/// rotation that finishes during a walk moves to the second segment, like
/// any row whose sort key changes between pages.
pub async fn queue(
    core: &Core,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<RotationRow>, RotationError> {
    let bad = |e: keyset::BadCursor| RotationError::Invalid(e.to_string());
    let (seg, k, id) = match Cursor::opt(after).map_err(bad)? {
        None => (-1, i64::MIN, String::new()),
        Some(c) => {
            let parsed = c
                .key
                .split_once(':')
                .and_then(|(s, k)| Some((s.parse::<i64>().ok()?, k.parse::<i64>().ok()?)))
                .filter(|(s, _)| (0..=1).contains(s));
            match parsed {
                Some((s, k)) => (s, k, c.id),
                None => return Err(bad(keyset::BadCursor(after.unwrap_or_default().into()))),
            }
        }
    };
    let limit = keyset::limit(limit);
    let mut c = core.db.read().await?;
    let total =
        crate::scalar_optional!(&mut c, i64, "SELECT COUNT(*) FROM rotations")?.unwrap_or(0);
    let rows = fetch_all!(
        &mut c,
        RotationRow,
        &format!(
            "SELECT {COLS} FROM (
               SELECT r.*, CASE WHEN finished_at IS NULL THEN 0 ELSE 1 END AS q_seg,
                      CASE WHEN finished_at IS NULL THEN started_at ELSE -started_at END AS q_k
               FROM rotations r) q
             WHERE q_seg > $1 OR (q_seg = $1 AND (q_k > $2 OR (q_k = $2 AND id > $3)))
             ORDER BY q_seg, q_k, id LIMIT $4"
        ),
        seg,
        k,
        &id,
        limit + 1
    )?;
    Ok(Page::from_rows(rows, limit, total, |r| {
        let (seg, k) = match r.finished_at {
            None => (0, r.started_at),
            Some(_) => (1, r.started_at.saturating_neg()),
        };
        Cursor::of(format!("{seg}:{k}"), &r.id)
    }))
}

/// Rotations a person must act on, of one org or of every org (`None`):
/// `stalled` and `waiting_person` ones, and `failed` ones that no later
/// rotation of the same target has replaced. At most `limit`, stalled
/// first, then oldest first.
pub async fn needing_person(
    core: &Core,
    org_id: Option<&str>,
    limit: i64,
) -> Result<Vec<RotationRow>, RotationError> {
    let mut c = core.db.read().await?;
    Ok(fetch_all!(
        &mut c,
        RotationRow,
        &format!(
            "SELECT {COLS} FROM rotations r
             WHERE ($1 IS NULL OR r.org_id = $1)
               AND (r.status IN ('stalled', 'waiting_person')
                    OR (r.status = 'failed' AND NOT EXISTS (
                        SELECT 1 FROM rotations n WHERE n.target_id = r.target_id AND n.started_at > r.started_at)))
             ORDER BY CASE r.status WHEN 'stalled' THEN 0 WHEN 'failed' THEN 1 ELSE 2 END, r.started_at
             LIMIT $2"
        ),
        org_id,
        limit
    )?)
}

/// Starts a rotation (or, with `dry_run`, says what it would do).
pub async fn start(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    req: &StartRequest,
) -> Result<Started, RotationError> {
    let name = match &req.target {
        TargetRef::Connection(name) => name,
        _ if req.rotate_with.is_some() => {
            return Err(RotationError::Invalid(
                "--rotate-with applies to connections only".into(),
            ))
        }
        _ => return own::start(core, actor, org_id, req).await,
    };
    let conn = connections::find_in(&core.db, org_id, name).await?;
    let method = conn.method()?;
    if conn.status == "disconnected" || !conn.has_credentials {
        return Err(RotationError::Invalid(format!(
            "{} holds no credential to rotate (it is {}); set or authorize one first",
            conn.name, conn.status
        )));
    }
    let driver = match method.rotation {
        Mode::Automatic => drivers::for_kind(&conn.kind, &conn.auth).ok_or_else(|| {
            RotationError::Invalid(format!(
                "no driver of this rekey rotates {} ({}); rotate it by hand and `connection set-credential`",
                conn.kind, conn.auth
            ))
        })?,
        _ if req.rotate_with.is_some() => {
            return Err(RotationError::Invalid(format!(
                "--rotate-with applies to automatic rotations; {} ({}) is rotated by a person",
                conn.kind, conn.auth
            )))
        }
        _ => return guided::start(core, actor, org_id, &conn, req).await,
    };
    let via = match &req.rotate_with {
        None => None,
        Some(admin) => {
            let a = connections::find_in(&core.db, org_id, admin).await?;
            if a.id == conn.id {
                return Err(RotationError::Invalid(format!(
                    "--rotate-with names {} itself; name the admin connection to rotate through",
                    conn.name
                )));
            }
            if a.kind != conn.kind || a.auth != conn.auth {
                return Err(RotationError::Invalid(format!(
                    "--rotate-with {}: it is {} ({}), {} is {} ({}); the admin connection must be of the same kind",
                    a.name, a.kind, a.auth, conn.name, conn.kind, conn.auth
                )));
            }
            if !a.has_credentials {
                return Err(RotationError::Invalid(format!(
                    "--rotate-with {}: it holds no credential",
                    a.name
                )));
            }
            Some(a)
        }
    };
    // Who reads which version changes nothing, and is what one asks most
    // while a rotation's cut-over waits: answered whatever is in progress.
    if req.preflight {
        return Ok(Started::Plan(preflight(core, &conn.id, &conn.name).await?));
    }
    let held = crate::connectors::slots::list(&mut core.db.read().await?, &conn.id).await?;
    let pending = held.iter().find(|r| r.slot == "pending");
    let unretired = held
        .iter()
        .find(|r| r.slot == "previous" && r.retired_at.is_none());
    // A rotation in progress holds both while it runs: then it is the
    // answer, whatever step it has reached, and the refusals below are for
    // what a rotation that ended left behind. Looked up only here, so a
    // start that nothing holds up costs no statement more (the unique
    // index still decides a race between two starts: [`insert`]).
    if (pending.is_some() || unretired.is_some()) && !req.dry_run {
        if let Some(r) = unfinished(core, "connection", &conn.id).await? {
            return Err(RotationError::InProgress(Box::new(r.view())));
        }
    }
    // A pending credential a failed rotation kept (the target may hold
    // it) is never overwritten by a new write-ahead.
    if let Some(p) = pending {
        let by = last_of(&mut core.db.read().await?, &conn.id)
            .await?
            .unwrap_or_else(|| "ID".into());
        return Err(RotationError::Invalid(format!(
            "{} holds a pending credential (version {}) that the target may already use: `rekey rotation retry {by}` resolves it before a new rotation",
            conn.name, p.version
        )));
    }
    if let Some(p) = unretired {
        let by = last_of(&mut core.db.read().await?, &conn.id)
            .await?
            .unwrap_or_else(|| "ID".into());
        return Err(RotationError::Invalid(format!(
            "the previous credential of {} (version {}) still works: finish the rotation that left it \
             (`rekey rotation finish {by}`, with `--now` to retire it at once) before rotating again",
            conn.name, p.version
        )));
    }
    if req.cutover_window_ms < 0 || req.deadline_ms <= 0 {
        return Err(RotationError::Invalid(
            "the cut-over window and the deadline must be positive".into(),
        ));
    }
    if req.dry_run {
        return Ok(Started::Plan(json!({
            "dry_run": true,
            "target": {"type": "connection", "name": conn.name},
            "driver": format!("{} ({})", conn.kind, conn.auth),
            "steps": STEPS,
            "statements": driver.plan(&conn.settings()),
            "rotate_with": via.as_ref().map(|a| a.name.clone()),
            "dual_credentials": driver.dual(),
            "cutover_window_s": req.cutover_window_ms / 1000,
            // Who the cut-over would wait for, each consumer on its own,
            // and how long each may keep what it read.
            "refresh_after_s": conn.refresh_after_ms() / 1000,
            "readers": preflight(core, &conn.id, &conn.name).await?["readers"],
        })));
    }
    let row = insert(
        core,
        actor,
        NewRotation {
            org_id,
            target_type: "connection",
            target_id: &conn.id,
            target_name: &conn.name,
            step: STEPS[0],
            payload: {
                let mut p = serde_json::Map::new();
                if let Some(a) = &via {
                    p.insert("rotate_with".into(), json!(a.id));
                }
                if req.force_at_deadline {
                    p.insert("force_at_deadline".into(), json!(true));
                }
                if req.end_sessions {
                    p.insert("end_sessions".into(), json!(true));
                }
                Value::Object(p)
            },
            status: "planned",
            run_at: core.now(),
            cutover_window_ms: req.cutover_window_ms,
            deadline_ms: req.deadline_ms,
            rotate_with: via.as_ref().map(|a| a.name.as_str()),
            host: Some(crate::incident::plan::host_of(&conn)),
        },
    )
    .await?;
    core.work_due.notify_one();
    Ok(Started::Rotation(Box::new(row.view())))
}

/// The id of the newest rotation of a target (the one that keeps its
/// pending or previous credential). Target ids are unique across kinds.
pub(crate) async fn last_of<C: AsEx>(
    c: &mut C,
    target_id: &str,
) -> Result<Option<String>, StoreError> {
    let id: Option<(String,)> = fetch_optional!(
        c,
        (String,),
        "SELECT id FROM rotations WHERE target_id = $1 ORDER BY started_at DESC LIMIT 1",
        target_id
    )?;
    Ok(id.map(|(i,)| i))
}

pub(crate) struct NewRotation<'a> {
    pub org_id: &'a str,
    pub target_type: &'a str,
    pub target_id: &'a str,
    pub target_name: &'a str,
    /// The job's first step.
    pub step: &'a str,
    pub payload: Value,
    pub status: &'a str,
    /// When the job is first due.
    pub run_at: i64,
    pub cutover_window_ms: i64,
    pub deadline_ms: i64,
    pub rotate_with: Option<&'a str>,
    /// The target host (`kind:host`) the rotation acts on, capped per host.
    pub host: Option<String>,
}

/// [`NewRotation`] owned, for the group-commit writer.
struct OwnedRotation {
    org_id: String,
    target_type: String,
    target_id: String,
    target_name: String,
    step: String,
    payload: Value,
    status: String,
    run_at: i64,
    cutover_window_ms: i64,
    deadline_ms: i64,
    rotate_with: Option<String>,
    host: Option<String>,
}

impl OwnedRotation {
    fn of(n: &NewRotation<'_>) -> OwnedRotation {
        OwnedRotation {
            org_id: n.org_id.into(),
            target_type: n.target_type.into(),
            target_id: n.target_id.into(),
            target_name: n.target_name.into(),
            step: n.step.into(),
            payload: n.payload.clone(),
            status: n.status.into(),
            run_at: n.run_at,
            cutover_window_ms: n.cutover_window_ms,
            deadline_ms: n.deadline_ms,
            rotate_with: n.rotate_with.map(str::to_string),
            host: n.host.clone(),
        }
    }
}

/// Records a rotation and its job, with the audit event. The target is
/// reserved here: while it has an unfinished rotation, a second one is
/// refused with it ([`RotationError::InProgress`]).
pub(crate) async fn insert(
    core: &Core,
    actor: &Actor,
    n: NewRotation<'_>,
) -> Result<RotationRow, RotationError> {
    let now = core.now();
    let rid = new_id();
    let target = (n.target_type.to_string(), n.target_id.to_string());
    let n = OwnedRotation::of(&n);
    let actor = actor.clone();
    // Through the group-commit writer: a campaign starts many at once. A
    // target already reserved writes nothing (no savepoint to roll back).
    let inserted = core
        .writer
        .run_unguarded(move |tx| {
            Box::pin(
                async move { insert_in(tx, &actor, &rid, &n, now, Taken::WritesNothing).await },
            )
        })
        .await??;
    match inserted {
        // The row as written (no read back: a campaign starts hundreds).
        Some(row) => Ok(row),
        None => Err(taken(core, &target.0, &target.1).await),
    }
}

/// What [`insert_in`] does when the target has an unfinished rotation.
#[derive(Clone, Copy, PartialEq)]
enum Taken {
    /// Fails with the unique index's error (the caller's transaction, which
    /// wrote before, rolls back; [`refused`] maps the error).
    Fails,
    /// Writes nothing and answers `None`.
    WritesNothing,
}

/// [`insert`]'s writes in the caller's transaction: the rotation `id`, its
/// job and the audit event; returns the row as written, `None` when the
/// target is reserved and `taken` says to write nothing.
async fn insert_in(
    tx: &mut Tx,
    actor: &Actor,
    id: &str,
    n: &OwnedRotation,
    now: i64,
    taken: Taken,
) -> Result<Option<RotationRow>, StoreError> {
    // The unique index on unfinished rotations reserves the target: the
    // rotation goes in first, so a second start stops before it wrote
    // anything (its job is named ahead; nothing references it yet).
    let job_id = new_id();
    let conflict = match taken {
        Taken::Fails => "",
        Taken::WritesNothing => {
            " ON CONFLICT (target_type, target_id) WHERE finished_at IS NULL DO NOTHING"
        }
    };
    let reserved = exec!(
        tx,
        &format!(
            "INSERT INTO rotations (id, org_id, target_type, target_id, target_name, status, steps, job_id,
                cutover_window_ms, deadline_at, started_by, started_at, rotate_with)
             VALUES ($1, $2, $3, $4, $5, $6, '[]', $7, $8, $9, $10, $11, $12){conflict}"
        ),
        id,
        &n.org_id,
        &n.target_type,
        &n.target_id,
        &n.target_name,
        &n.status,
        &job_id,
        n.cutover_window_ms,
        now.saturating_add(n.deadline_ms),
        &actor.name,
        now,
        &n.rotate_with
    )?;
    if reserved == 0 {
        return Ok(None);
    }
    queue::enqueue_as(
        tx,
        &job_id,
        &NewJob {
            kind: JOB_KIND,
            subject: id,
            step: &n.step,
            payload: &n.payload,
            run_at: n.run_at,
            max_attempts: 3,
            host: n.host.as_deref(),
        },
        now,
    )
    .await?;
    audit::record(
        tx,
        now,
        actor,
        Event {
            org_id: Some(&n.org_id),
            action: "rotation.start",
            target: Some(id),
            detail: json!({"target": {"type": n.target_type, "name": n.target_name}}),
        },
    )
    .await?;
    Ok(Some(RotationRow {
        id: id.to_string(),
        org_id: n.org_id.clone(),
        target_type: n.target_type.clone(),
        target_id: n.target_id.clone(),
        target_name: n.target_name.clone(),
        status: n.status.clone(),
        reason: None,
        steps: "[]".into(),
        job_id,
        cutover_window_ms: n.cutover_window_ms,
        deadline_at: now.saturating_add(n.deadline_ms),
        started_by: actor.name.clone(),
        started_at: now,
        finished_at: None,
        rotate_with: n.rotate_with.clone(),
        sessions: None,
    }))
}

/// A rotation recorded with other writes in the caller's transaction (the
/// new secret of one of rekey's own): [`insert`] without its own commit;
/// returns its id. A target with an unfinished rotation fails the
/// transaction; the caller maps that error with [`refused`].
pub(crate) async fn insert_with(
    tx: &mut Tx,
    actor: &Actor,
    n: NewRotation<'_>,
    now: i64,
) -> Result<String, StoreError> {
    let id = new_id();
    insert_in(tx, actor, &id, &OwnedRotation::of(&n), now, Taken::Fails).await?;
    Ok(id)
}

/// The error of a start whose insert failed: [`RotationError::InProgress`]
/// with the unfinished rotation of the target when that was the cause.
pub(crate) async fn refused(
    core: &Core,
    target_type: &str,
    target_id: &str,
    e: StoreError,
) -> RotationError {
    let StoreError::Database(db) = &e else {
        return e.into();
    };
    if !is_unique_violation(db) {
        return e.into();
    }
    taken(core, target_type, target_id).await
}

/// The error of a start that found its target reserved.
async fn taken(core: &Core, target_type: &str, target_id: &str) -> RotationError {
    match unfinished(core, target_type, target_id).await {
        Ok(Some(r)) => RotationError::InProgress(Box::new(r.view())),
        Ok(None) => {
            RotationError::Invalid("a rotation of this target just ended; try again".into())
        }
        Err(e) => e,
    }
}

/// The unfinished rotation of a target, if any.
pub(crate) async fn unfinished(
    core: &Core,
    target_type: &str,
    target_id: &str,
) -> Result<Option<RotationRow>, RotationError> {
    Ok(fetch_optional!(
        &mut core.db.read().await?,
        RotationRow,
        &format!(
            "SELECT {COLS} FROM rotations WHERE target_type = $1 AND target_id = $2 AND finished_at IS NULL"
        ),
        target_type,
        target_id
    )?)
}

/// "If I rotate this now, who has not moved yet": every reader of the
/// credentials endpoint with the version it last read; `not_moved` are
/// those still on an older version than the current one (a rotation in
/// progress waits for them), `must_reread` everyone a new rotation would
/// wait for. Changes nothing.
async fn preflight(core: &Core, conn_id: &str, name: &str) -> Result<Value, RotationError> {
    preflight_in(&mut core.db.read().await?, conn_id, name).await
}

async fn preflight_in<C: AsEx>(
    c: &mut C,
    conn_id: &str,
    name: &str,
) -> Result<Value, RotationError> {
    let current = crate::connectors::slots::list(c, conn_id)
        .await?
        .into_iter()
        .find(|r| r.slot == "current")
        .map(|r| r.version);
    let readers = crate::connectors::slots::readers(c, conn_id).await?;
    let not_moved: Vec<Value> = readers
        .iter()
        .filter(|r| current.is_some_and(|v| r.version < v))
        .map(|r| r.view(current))
        .collect();
    Ok(json!({
        "preflight": true,
        "target": {"type": "connection", "name": name},
        "current_version": current,
        "readers": readers.iter().map(|r| r.view(current)).collect::<Vec<_>>(),
        "not_moved": not_moved,
        "must_reread": readers.iter().map(|r| r.name()).collect::<Vec<_>>(),
    }))
}

/// The view with who reads the target's credential and which version
/// (`rotation show`): who has not moved yet.
pub async fn detailed_view(core: &Core, row: &RotationRow) -> Result<Value, RotationError> {
    let mut v = serde_json::to_value(row.view()).unwrap_or(Value::Null);
    let p = if row.target_type == "connection" {
        // The slots, readers and holds are read on one pooled connection,
        // not one each.
        let mut c = core.db.read().await?;
        let mut p = preflight_in(&mut c, &row.target_id, &row.target_name).await?;
        // Until when each reader may keep using the version it has from
        // its cache (`refresh_after_s` at its last read): the previous
        // version is not retired before.
        let holds = crate::connectors::slots::holds(&mut c, &row.target_id, core.now()).await?;
        drop(c);
        if let Some(readers) = p["readers"].as_array_mut() {
            for r in readers {
                let held = holds.iter().find(|h| {
                    r["reader"].as_str() == Some(h.reader.as_str())
                        && r["consumer"].as_str().unwrap_or("") == h.consumer
                        && r["version"].as_i64() == Some(h.version)
                });
                let until = match held {
                    Some(h) => json!(rfc3339(h.until_at)),
                    None => Value::Null,
                };
                // `may_cache_until` is the name this field first shipped
                // under (times are named `…_at`): kept for one release.
                r["may_cache_until"] = until.clone();
                r["cached_until_at"] = until;
            }
        }
        // Copies of a version older than the current one that readers may
        // still use: what the cut-over waits for before it retires it.
        let current = p["current_version"].as_i64().unwrap_or(i64::MAX);
        let cached: Vec<Value> = holds
            .iter()
            .filter(|h| h.version < current)
            .map(|h| {
                json!({
                    "reader": h.reader,
                    "consumer": Some(h.consumer.as_str()).filter(|c| !c.is_empty()),
                    "version": h.version,
                    "until_at": rfc3339(h.until_at),
                })
            })
            .collect();
        json!({"consumers": p["readers"], "not_moved": p["not_moved"], "cached": cached})
    } else {
        own::consumers(core, row).await?
    };
    v["consumers"] = p["consumers"].clone();
    v["not_moved"] = p["not_moved"].clone();
    v["cached"] = match p.get("cached") {
        Some(c) => c.clone(),
        None => json!([]),
    };
    Ok(v)
}

/// Cancels a rotation that has not finished. Steps already taken stay
/// taken: a rotation cancelled after promotion keeps the new credential
/// current (and the old one, until retired by hand, working).
pub async fn cancel(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    id: &str,
) -> Result<RotationRow, RotationError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let row = get(&mut tx, org_id, id).await?;
    if row.finished_at.is_some() {
        return Err(RotationError::Invalid(format!(
            "rotation {id} has already ended ({})",
            row.status
        )));
    }
    // Between the write-ahead and the promotion the target may already
    // hold the new credential while `current` is still the old one: on a
    // one-password target (PostgreSQL, MariaDB) dropping the pending one
    // then would leave a credential that nothing stored opens. Those steps
    // run to their end — the verify promotes, or rolls back and fails.
    // After the promotion the change is made: a cancel would leave the
    // previous (perhaps leaked) credential working with nothing to retire
    // it, so the way out is `finish`.
    const BUSY: [&str; 6] = ["apply", "verify", "recover", "promote", "cutover", "retire"];
    const PROMOTED: [&str; 2] = ["cutover", "retire"];
    let busy: &[&str] = if row.target_type == "connection" {
        &BUSY
    } else {
        &PROMOTED
    };
    if !queue::cancel_unless_at(&mut tx, &row.job_id, busy, now).await? {
        if let Some(job) = queue::get(&mut tx, &row.job_id).await? {
            if busy.contains(&job.step.as_str())
                && [queue::QUEUED, queue::RUNNING].contains(&job.state.as_str())
            {
                if PROMOTED.contains(&job.step.as_str()) {
                    return Err(RotationError::Invalid(format!(
                        "rotation {id} has promoted the new credential: it cannot be cancelled; finish it with `rekey rotation finish {id}` (`--now` retires the previous credential at once, even with readers still on it)"
                    )));
                }
                return Err(RotationError::Invalid(format!(
                    "rotation {id} is changing the target (step {}): it cannot be cancelled until the new credential is verified and promoted, or rolled back; retry it if it fails",
                    job.step
                )));
            }
        }
    }
    // A pending credential that was never promoted is dropped (before the
    // apply step the target never saw it).
    let pending = crate::connectors::slots::list(&mut tx, &row.target_id)
        .await?
        .iter()
        .any(|s| s.slot == "pending");
    if pending {
        crate::connectors::slots::discard_pending(&mut tx, &row.target_id).await?;
    }
    finish(
        &mut tx,
        &row,
        "cancelled",
        Some("cancelled by a person"),
        now,
    )
    .await?;
    exec!(
        &mut tx,
        "UPDATE connections SET status = 'connected' WHERE id = $1 AND status = 'rotating'",
        &row.target_id
    )?;
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: Some(org_id),
            action: "rotation.cancel",
            target: Some(id),
            detail: json!({"step": current_step(&row), "pending_discarded": pending}),
        },
    )
    .await?;
    tx.commit().await?;
    get(&mut core.db.read().await?, org_id, id).await
}

/// Runs a failed rotation again from the start (a fresh rotation of the
/// same target; the failed one stays as it was, for the record).
pub async fn retry(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    id: &str,
) -> Result<Started, RotationError> {
    let row = get(&mut core.db.read().await?, org_id, id).await?;
    if row.status == "stalled" {
        return reopen(core, actor, &row, "cutover", json!({})).await;
    }
    // A rotation that failed after the write-ahead resumes where it was:
    // with a pending credential the target may hold, at `recover`; after
    // the promotion, at its cut-over (a fresh rotation would be refused
    // while the previous credential still works).
    if row.status == "failed" {
        let job = queue::get(&mut core.db.read().await?, &row.job_id).await?;
        let (step, state) = job.map(|j| (j.step, j.state)).unwrap_or_default();
        if row.target_type == "connection" && run::CHANGING.contains(&step.as_str()) {
            return reopen(core, actor, &row, "recover", json!({})).await;
        }
        // Failed at its cut-over (its attempts spent): the previous
        // credential is still kept, so it goes on from there. (One of
        // rekey's own whose new secret failed its verify put the secrets
        // back and cancelled its job: it starts afresh.)
        if ["cutover", "retire"].contains(&step.as_str()) && state != queue::CANCELLED {
            return reopen(core, actor, &row, "cutover", json!({})).await;
        }
    }
    if !matches!(row.status.as_str(), "failed" | "stalled" | "cancelled") {
        return Err(RotationError::Invalid(format!(
            "rotation {id} is {}; only failed, stalled or cancelled rotations are retried",
            row.status
        )));
    }
    start(
        core,
        actor,
        org_id,
        &StartRequest {
            target: match row.target_type.as_str() {
                "key" => TargetRef::Key(row.target_name.clone()),
                "m2m" => TargetRef::M2m(row.target_name.clone()),
                "app" => TargetRef::App(row.target_name.clone()),
                _ => TargetRef::Connection(row.target_name.clone()),
            },
            dry_run: false,
            preflight: false,
            cutover_window_ms: row.cutover_window_ms,
            deadline_ms: (row.deadline_at - row.started_at).max(1),
            rotate_with: row.rotate_with.clone(),
            force_at_deadline: false,
            end_sessions: false,
        },
    )
    .await
}

/// A rotation past its write-ahead goes on where it was instead of
/// starting over (which would only add a third credential): a stalled one
/// waits for its readers again, with a fresh deadline as long as the first
/// one; a failed one resumes its recovery or its cut-over. `patch` is set
/// on the job's payload (`finish_now`).
async fn reopen(
    core: &Core,
    actor: &Actor,
    row: &RotationRow,
    step: &str,
    patch: Value,
) -> Result<Started, RotationError> {
    let now = core.now();
    let span = (row.deadline_at - row.started_at).max(1);
    let status = if step == "cutover" {
        "waiting_cutover"
    } else {
        "running"
    };
    let mut tx = core.db.begin_write().await?;
    exec!(
        &mut tx,
        "UPDATE rotations SET status = $1, reason = NULL, finished_at = NULL, deadline_at = $2 WHERE id = $3",
        status,
        now.saturating_add(span),
        &row.id
    )?;
    queue::requeue(&mut tx, &row.job_id, step, now).await?;
    if patch.as_object().is_some_and(|m| !m.is_empty()) {
        queue::patch_payload(&mut tx, &row.job_id, &patch, now).await?;
    }
    let fresh = by_id(&mut tx, &row.id)
        .await?
        .unwrap_or_else(|| row.clone());
    let detail = match step {
        "cutover" => "retried: waiting again for readers to move",
        _ => "retried: putting the target on a stored credential again",
    };
    record_step(&mut tx, &fresh, step, "waiting", detail, status, now).await?;
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: Some(&row.org_id),
            action: "rotation.retry",
            target: Some(&row.id),
            detail: json!({"from": row.status, "step": step}),
        },
    )
    .await?;
    tx.commit().await?;
    core.work_due.notify_one();
    Ok(Started::Rotation(Box::new(
        get_any(core, &row.id).await?.view(),
    )))
}

fn current_step(row: &RotationRow) -> String {
    let steps: Vec<Value> = serde_json::from_str(&row.steps).unwrap_or_default();
    steps
        .last()
        .and_then(|s| s["name"].as_str())
        .unwrap_or("check")
        .to_string()
}

/// Appends a step record and sets the status, in the caller's transaction,
/// with its audit event.
pub(crate) async fn record_step(
    tx: &mut Tx,
    row: &RotationRow,
    step: &str,
    step_status: &str,
    detail: &str,
    status: &str,
    now: i64,
) -> Result<(), RotationError> {
    record_step_with(tx, row, step, step_status, detail, status, now, Value::Null).await
}

/// [`record_step`] with extra fields on the step (`authorize_url`, `runbook`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn record_step_with(
    tx: &mut Tx,
    row: &RotationRow,
    step: &str,
    step_status: &str,
    detail: &str,
    status: &str,
    now: i64,
    extra: Value,
) -> Result<(), RotationError> {
    let mut entry =
        json!({"name": step, "status": step_status, "at": rfc3339(now), "detail": detail});
    if let (Value::Object(e), Value::Object(x)) = (&mut entry, extra) {
        e.extend(x);
    }
    record_entries(tx, row, vec![entry], status, now).await
}

/// Records several steps `done` in one update of the rotation (steps that
/// share a commit), each audited.
pub(crate) async fn record_steps(
    tx: &mut Tx,
    row: &RotationRow,
    done: &[(&str, String)],
    status: &str,
    now: i64,
) -> Result<(), RotationError> {
    let entries = done
        .iter()
        .map(|(name, detail)| json!({"name": name, "status": "done", "at": rfc3339(now), "detail": detail}))
        .collect();
    record_entries(tx, row, entries, status, now).await
}

async fn record_entries(
    tx: &mut Tx,
    row: &RotationRow,
    entries: Vec<Value>,
    status: &str,
    now: i64,
) -> Result<(), RotationError> {
    // The common case costs one statement: none of these steps has a
    // record yet, so they are appended in SQL to whatever the row holds now
    // (an earlier step of the same commit may have written it). The
    // pattern only ever matches too much (`_` is any character; a step's
    // name inside a detail is escaped as `\"name\"`, which it does not
    // match), and then the row is read and merged below.
    let appended = entries
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut sql = String::from(
        "UPDATE rotations SET status = $1,
            steps = CASE WHEN steps = '[]' THEN '[' || $2 || ']'
                ELSE substr(steps, 1, length(steps) - 1) || ',' || $2 || ']' END
         WHERE id = $3 AND finished_at IS NULL",
    );
    let mut args = vec![
        Arg::Text(status.to_string()),
        Arg::Text(appended),
        Arg::Text(row.id.clone()),
    ];
    for (i, entry) in entries.iter().enumerate() {
        sql.push_str(&format!(" AND steps NOT LIKE ${}", i + 4));
        args.push(Arg::Text(format!("%\"name\":{}%", entry["name"])));
    }
    if crate::store::sql::exec_args(tx, &sql, args).await? == 0 {
        merge_entries(tx, row, &entries, status).await?;
    }
    audit_entries(tx, row, entries, now).await
}

/// [`record_entries`] when a step runs again (after a crash, a retry): its
/// earlier record is replaced. Nothing is written to an ended rotation.
async fn merge_entries(
    tx: &mut Tx,
    row: &RotationRow,
    entries: &[Value],
    status: &str,
) -> Result<(), RotationError> {
    let current = by_id(tx, &row.id).await?.unwrap_or_else(|| row.clone());
    let mut steps: Vec<Value> = serde_json::from_str(&current.steps).unwrap_or_default();
    for entry in entries {
        // A step run again after a crash replaces its earlier record.
        steps.retain(|s| s["name"] != entry["name"]);
        steps.push(entry.clone());
    }
    // An ended rotation's record is final: nothing (a stale instance that
    // wakes after another finished it) turns it back to running.
    exec!(
        tx,
        "UPDATE rotations SET steps = $1, status = $2 WHERE id = $3 AND finished_at IS NULL",
        Value::Array(steps).to_string(),
        status,
        &row.id
    )?;
    Ok(())
}

async fn audit_entries(
    tx: &mut Tx,
    row: &RotationRow,
    entries: Vec<Value>,
    now: i64,
) -> Result<(), RotationError> {
    let actor = Actor::new("rotation".to_string(), None);
    for entry in entries {
        audit::record(
            tx,
            now,
            &actor,
            Event {
                org_id: Some(&row.org_id),
                action: "rotation.step",
                target: Some(&row.id),
                detail: json!({"step": entry["name"], "status": entry["status"], "detail": entry["detail"]}),
            },
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn finish(
    tx: &mut Tx,
    row: &RotationRow,
    status: &str,
    reason: Option<&str>,
    now: i64,
) -> Result<(), RotationError> {
    exec!(
        tx,
        "UPDATE rotations SET status = $1, reason = $2, finished_at = $3 WHERE id = $4",
        status,
        reason,
        now,
        &row.id
    )?;
    if status == "completed" && row.target_type == "connection" {
        connections::mark_rotated(tx, &row.target_id, now).await?;
    }
    let detail = json!({"rotation": row.id, "status": status, "reason": reason});
    if row.target_type == "connection" {
        let message = match reason {
            Some(r) => format!("rotation {} {status}: {r}", row.id),
            None => format!("rotation {} {status}", row.id),
        };
        activity::record(
            tx,
            &row.org_id,
            &row.target_id,
            ActivityType::Rotation,
            &message,
            detail,
            now,
        )
        .await?;
    }
    let event = match status {
        "failed" => Some(WebhookEvent::RotationFailed),
        "stalled" => Some(WebhookEvent::RotationStalled),
        _ => None,
    };
    if let Some(e) = event {
        let data = json!({"rotation": {"id": row.id, "status": status, "reason": reason},
            "target": {"type": row.target_type, "id": row.target_id, "name": row.target_name}});
        webhooks::emit(tx, &row.org_id, e, data, now).await?;
    }
    Ok(())
}
