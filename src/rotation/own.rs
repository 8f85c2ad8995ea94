//! Rotating rekey's own secrets: an org access key, a machine client's
//! secret, an application's client secret.
//!
//! The new secret is issued (and shown once, in the answer) in the
//! transaction that records the rotation: a crash or a failure before the
//! commit leaves neither. The previous secret then keeps working with no
//! end of its own; the rotation's cut-over retires it once nobody has
//! presented it for the cut-over window — rekey sees every use of its own
//! secrets, noted per secret with the address and user agent
//! (`oauth::usage`). At the deadline, with the previous secret still in
//! use, the rotation stops `stalled` naming its last user, and the previous
//! secret goes on working until a person finishes the rotation
//! (`rotation finish --now`) — the connections' cut-over
//! ([`super::cutover`]), with "who presented the old secret" for "who read
//! the old version".

use serde_json::{json, Value};

use super::cutover::{self, Decision, Look};
use super::limits::{MAX_OVERLAP_MS, USE_REPORT_LAG_MS};
use super::run::Next;
use super::{
    by_id, finish, record_step, record_steps, NewRotation, RotationError, RotationRow,
    StartRequest, Started, TargetRef,
};
use crate::audit::Actor;
use crate::clock::rfc3339;
use crate::jobs::queue::{self, Job, DONE};
use crate::oauth::access_keys::{self, AccessKey};
use crate::oauth::client_auth::{self, Method, Presented};
use crate::oauth::clients::{self, Client, ClientKind};
use crate::oauth::usage::{self, LastUse};
use crate::oauth::{OAuthError, Overlap};
use crate::state::Core;
use crate::store::{AsEx, Tx};

/// One of rekey's own secrets, as a rotation sees its owner.
#[derive(Clone, Debug)]
enum Own {
    Key(AccessKey),
    Client(Client),
}

impl Own {
    /// The key or client `key` (name or id) of `org_id`, by the rotation's
    /// target type (`key`, `m2m`, `app`).
    async fn read<C: AsEx>(
        c: &mut C,
        org_id: &str,
        target_type: &str,
        key: &str,
    ) -> Result<Own, RotationError> {
        Ok(match target_type {
            "key" => Own::Key(access_keys::find(c, org_id, key).await?),
            "m2m" => Own::Client(clients::find(c, org_id, ClientKind::M2m, key).await?),
            "app" => Own::Client(clients::find(c, org_id, ClientKind::App, key).await?),
            other => {
                return Err(RotationError::Invalid(format!(
                    "{other} is not one of rekey's own secrets"
                )))
            }
        })
    }

    fn id(&self) -> &str {
        match self {
            Own::Key(k) => &k.id,
            Own::Client(c) => &c.id,
        }
    }

    fn name(&self) -> &str {
        match self {
            Own::Key(k) => &k.name,
            Own::Client(c) => &c.name,
        }
    }

    fn noun(&self) -> &'static str {
        match self {
            Own::Key(_) => "access key",
            Own::Client(c) => c.kind().noun(),
        }
    }

    /// The `rekey` noun of its commands (`key`, `m2m`, `app`).
    fn command(&self) -> &'static str {
        match self {
            Own::Key(_) => "key",
            Own::Client(c) => c.kind().as_str(),
        }
    }

    fn digest(&self) -> &str {
        match self {
            Own::Key(k) => &k.digest,
            Own::Client(c) => &c.secret_digest,
        }
    }

    /// The previous secret's digest and end, if it has one.
    fn previous(&self) -> (Option<&str>, Option<i64>) {
        match self {
            Own::Key(k) => (k.prev_digest.as_deref(), k.prev_expires_at),
            Own::Client(c) => (c.prev_secret_digest.as_deref(), c.prev_secret_expires_at),
        }
    }

    /// A key that can take a new secret: not revoked, not expired.
    fn usable(&self, now: i64) -> Result<(), RotationError> {
        if let Own::Key(k) = self {
            if k.status(now) != "active" {
                return Err(RotationError::Invalid(format!(
                    "access key {:?} is {}; create a new one",
                    k.name,
                    k.status(now)
                )));
            }
        }
        Ok(())
    }

    /// A previous secret that still works is never overwritten
    /// ([`crate::oauth::refuse_live_previous`]).
    async fn refuse_live_previous(&self, tx: &mut Tx, now: i64) -> Result<(), RotationError> {
        let (noun, name, id, command) = (self.noun(), self.name(), self.id(), self.command());
        Ok(
            crate::oauth::refuse_live_previous(tx, noun, name, id, command, self.previous(), now)
                .await?,
        )
    }

    /// Issues the new secret in `tx`: returns the owner as it is then and
    /// the secret (to show once).
    async fn issue(
        self,
        tx: &mut Tx,
        core: &Core,
        actor: &Actor,
        overlap: Overlap,
        now: i64,
    ) -> Result<(Own, String), OAuthError> {
        Ok(match self {
            Own::Key(k) => {
                let (k, s) = access_keys::reset_in(tx, core, actor, k, overlap, now).await?;
                (Own::Key(k), s)
            }
            Own::Client(c) => {
                let (c, s) =
                    clients::regenerate_secret_in(tx, core, actor, c, overlap, now).await?;
                (Own::Client(c), s)
            }
        })
    }

    /// Puts the secrets back as they were in `self` (before the issue of
    /// `issued`).
    async fn restore(&self, tx: &mut Tx, issued: &str) -> Result<bool, OAuthError> {
        match self {
            Own::Key(k) => access_keys::restore_in(tx, k, issued).await,
            Own::Client(c) => clients::restore_in(tx, c, issued).await,
        }
    }

    /// The new secret authenticates as callers present it.
    async fn verify(&self, core: &Core, secret: &str) -> Result<(), String> {
        match self {
            Own::Key(_) => access_keys::authenticate(core, secret, None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Own::Client(c) => client_auth::authenticate(
                core,
                &Presented {
                    client_id: c.client_id.clone(),
                    secret: secret.to_string(),
                    method: Method::Basic,
                },
                None,
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        }
    }
}

pub(super) async fn start(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    req: &StartRequest,
) -> Result<Started, RotationError> {
    let (target_type, name) = match &req.target {
        TargetRef::Key(n) => ("key", n),
        TargetRef::M2m(n) => ("m2m", n),
        TargetRef::App(n) => ("app", n),
        TargetRef::Connection(_) => {
            return Err(RotationError::Invalid(
                "not one of rekey's own secrets".into(),
            ))
        }
    };
    let window = req.cutover_window_ms;
    if !(0..=MAX_OVERLAP_MS).contains(&window) {
        return Err(RotationError::Invalid(
            "the cut-over window of a key or secret must be between 0s and 30d".into(),
        ));
    }
    if req.deadline_ms <= 0 {
        return Err(RotationError::Invalid(
            "the deadline must be positive".into(),
        ));
    }
    let own = Own::read(&mut core.db.read().await?, org_id, target_type, name).await?;
    own.usable(core.now())?;
    if req.preflight {
        return Ok(Started::Plan(preflight(core, &own, target_type).await?));
    }
    if req.dry_run {
        return Ok(Started::Plan(json!({
            "dry_run": true,
            "target": {"type": target_type, "name": own.name()},
            "steps": ["check", "apply", "verify", "cutover", "retire"],
            "statements": [
                "issue a new secret (shown once), recorded with the rotation in one transaction; the current one keeps working",
                "authenticate with the new secret (verify)",
                "once the previous secret has not been used for the cut-over window, it stops working (retire); at the deadline, still in use, the rotation stops stalled naming its last user",
            ],
            "dual_credentials": true,
            "cutover_window_s": window / 1000,
        })));
    }
    if let Some(r) = super::unfinished(core, target_type, own.id()).await? {
        return Err(RotationError::InProgress(Box::new(r.view())));
    }
    // One transaction: the new secret, the rotation, its job, and their
    // audit events.
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let before = Own::read(&mut tx, org_id, target_type, own.id()).await?;
    before.usable(now)?;
    before.refuse_live_previous(&mut tx, now).await?;
    let overlap = if window > 0 {
        Overlap::UntilRetired
    } else {
        Overlap::For(0)
    };
    let (after, secret) = before
        .clone()
        .issue(&mut tx, core, actor, overlap, now)
        .await?;
    let until = now.saturating_add(window);
    let inserted = super::insert_with(
        &mut tx,
        actor,
        NewRotation {
            org_id,
            target_type,
            target_id: after.id(),
            target_name: after.name(),
            step: "cutover",
            // Which secret is the previous one and which the new one: the
            // cut-over looks for uses of the first.
            payload: json!({
                "old": usage::tag(before.digest()),
                "new": usage::tag(after.digest()),
            }),
            status: "running",
            run_at: until,
            cutover_window_ms: window,
            deadline_ms: req.deadline_ms,
            rotate_with: None,
            host: None,
        },
        now,
    )
    .await;
    let id = match inserted {
        Ok(id) => id,
        Err(e) => {
            drop(tx);
            return Err(super::refused(core, target_type, before.id(), e).await);
        }
    };
    let row = by_id(&mut tx, &id)
        .await?
        .ok_or_else(|| RotationError::NotFound(format!("rotation {id}")))?;
    let applied = if window > 0 {
        "a new secret was issued; the previous one works until nobody has used it for the cut-over window"
    } else {
        "a new secret was issued; the previous one stopped working"
    };
    let done = [
        (
            "check",
            format!("the {} exists and may take a new secret", after.noun()),
        ),
        ("apply", applied.to_string()),
    ];
    record_steps(&mut tx, &row, &done, "running", now).await?;
    if crate::test_hooks::fail_after_issue() {
        return Err(RotationError::Invalid(
            "REKEY_TEST_FAIL_AFTER_ISSUE: failed after issuing, before the commit".into(),
        ));
    }
    tx.commit().await?;
    // Verified as callers present it (the validation path, its cache and
    // cut-offs), which only a committed secret can be.
    let verified = after.verify(core, &secret).await;
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    match &verified {
        Ok(()) => {
            let status = if window > 0 {
                "waiting_cutover"
            } else {
                "running"
            };
            let detail = "the new secret authenticates";
            record_step(&mut tx, &row, "verify", "done", detail, status, now).await?;
        }
        Err(why) => {
            // Not expected: put the secrets back as they were, so that the
            // one callers hold goes on working and nothing is left to
            // retire.
            let restored = before.restore(&mut tx, after.digest()).await?;
            let detail = format!(
                "the new secret does not authenticate ({why}); {}",
                if restored {
                    "the previous secret is current again"
                } else {
                    "the secrets changed meanwhile and were left as they are"
                }
            );
            queue::cancel(&mut tx, &row.job_id, now).await?;
            record_step(&mut tx, &row, "verify", "failed", &detail, "failed", now).await?;
            finish(
                &mut tx,
                &row,
                "failed",
                Some(&format!("verify: {detail}")),
                now,
            )
            .await?;
        }
    }
    tx.commit().await?;
    core.work_due.notify_one();
    let mut view = super::get_any(core, &row.id).await?.view();
    if verified.is_ok() {
        view.secret = Some(secret);
    }
    Ok(Started::Rotation(Box::new(view)))
}

/// `rotate --preflight`: who uses the secret now (its last use), and what
/// a rotation would wait for. Changes nothing.
async fn preflight(core: &Core, own: &Own, target_type: &str) -> Result<Value, RotationError> {
    let mut c = core.db.read().await?;
    let last = usage::last_use(&mut c, own.id(), own.digest()).await?;
    Ok(json!({
        "preflight": true,
        "target": {"type": target_type, "name": own.name()},
        "readers": [],
        "consumers": last.iter().map(LastUse::view).collect::<Vec<_>>(),
        "not_moved": [],
        "note": "callers present this secret; after a rotation the previous one works until nobody has used it for the cut-over window, and at the deadline the rotation stops stalled naming its last user",
    }))
}

/// The previous secret the rotation keeps, if it still does: its digest.
/// It is gone when the window was 0, when `end-overlap` ended it, when a
/// later reset (a campaign's) replaced it, or with its owner.
fn kept(payload: &Value, own: Option<&Own>) -> Option<String> {
    let (digest, _) = own?.previous();
    match payload["old"].as_str() {
        Some(old) => digest.filter(|d| usage::tag(d) == old),
        // A rotation started before uses were told apart per secret: its
        // previous secret is whatever its reset kept.
        None => digest,
    }
    .map(str::to_string)
}

/// The last use of the kept previous secret since the rotation started.
async fn last_old_use(
    core: &Core,
    row: &RotationRow,
    previous: &str,
) -> Result<Option<LastUse>, RotationError> {
    Ok(
        usage::last_use(&mut core.db.read().await?, &row.target_id, previous)
            .await?
            .filter(|u| u.used_at >= row.started_at),
    )
}

async fn read_target(core: &Core, row: &RotationRow) -> Result<Option<Own>, RotationError> {
    let mut c = core.db.read().await?;
    match Own::read(&mut c, &row.org_id, &row.target_type, &row.target_id).await {
        Ok(o) => Ok(Some(o)),
        Err(RotationError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The job's part (`start` issued the new secret): the cut-over, looked at
/// when the previous secret would count as unused, and retire.
pub(super) async fn step(
    core: &Core,
    row: &RotationRow,
    job: &Job,
    owner: &str,
) -> Result<Next, RotationError> {
    if !["cutover", "retire"].contains(&job.step.as_str()) {
        return Ok(Next::Fail(format!("unknown step {:?}", job.step)));
    }
    // This instance's uses are written first: one a moment ago counts.
    core.usage.flush(&core.db).await?;
    let now = core.now();
    let own = read_target(core, row).await?;
    let Some(previous) = kept(&job.payload(), own.as_ref()) else {
        let detail = match &own {
            None => "the target no longer exists".to_string(),
            Some(_) if row.cutover_window_ms == 0 => {
                "no cut-over window: the previous secret stopped working when the new one was issued"
                    .to_string()
            }
            Some(_) => {
                "the previous secret had already stopped working (ended by end-overlap, or replaced by a later reset)"
                    .to_string()
            }
        };
        return retire(core, row, job, owner, None, detail).await;
    };
    let last = last_old_use(core, row, &previous).await?;
    // Unused means: no use reported for the window, counted from the last
    // use since the rotation started (or from its start), plus the time a
    // use takes to be reported by every instance.
    let quiet_from = last
        .as_ref()
        .map_or(row.started_at, |u| u.used_at.max(row.started_at));
    let due = quiet_from
        .saturating_add(row.cutover_window_ms)
        .saturating_add(USE_REPORT_LAG_MS);
    let unused = now >= due;
    let look = Look {
        clear: unused.then(|| match &last {
            Some(u) => format!(
                "the previous secret has not been used for the cut-over window since its last use, by {}",
                u.who()
            ),
            None => "the previous secret has not been used since the rotation started, for the cut-over window".to_string(),
        }),
        behind: match (&last, unused) {
            (Some(u), false) => vec![u.who()],
            _ => Vec::new(),
        },
        cached: Vec::new(),
        who: "users",
        waiting: format!(
            "both secrets work; the previous one has not been used since the rotation started and stops working at {} unless it is used",
            rfc3339(due)
        ),
        next: due,
        note: String::new(),
    };
    match cutover::decide(core, row, job, owner, look).await? {
        Decision::Retire(detail) => retire(core, row, job, owner, Some(&previous), detail).await,
        Decision::Done(next) => Ok(next),
    }
}

/// Ends the previous secret (the one the rotation kept, not a later
/// reset's) and completes the rotation, in one commit with the cut-over's
/// record.
async fn retire(
    core: &Core,
    row: &RotationRow,
    job: &Job,
    owner: &str,
    previous: Option<&str>,
    cutover: String,
) -> Result<Next, RotationError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    if !queue::finish(&mut tx, &job.id, owner, DONE, now).await? {
        return Ok(Next::Lost);
    }
    let ended = match previous {
        None => false,
        Some(d) if row.target_type == "key" => {
            access_keys::end_overlap_in(&mut tx, &row.target_id, Some(d), now).await?
        }
        Some(d) => clients::end_overlap_in(&mut tx, &row.target_id, Some(d), now).await?,
    };
    let retired = if ended {
        "the previous secret no longer works"
    } else {
        "nothing left to retire"
    };
    let done = [("cutover", cutover), ("retire", retired.to_string())];
    record_steps(&mut tx, row, &done, "completed", now).await?;
    finish(&mut tx, row, "completed", None, now).await?;
    tx.commit().await?;
    Ok(Next::Ended)
}

/// Who is still on the previous secret: its last user since the rotation
/// started, if the rotation still keeps it (`rotation finish`).
pub(super) async fn still_on_previous(
    core: &Core,
    row: &RotationRow,
    job: &Job,
) -> Result<Vec<String>, RotationError> {
    let own = read_target(core, row).await?;
    let Some(previous) = kept(&job.payload(), own.as_ref()) else {
        return Ok(Vec::new());
    };
    Ok(last_old_use(core, row, &previous)
        .await?
        .iter()
        .map(LastUse::who)
        .collect())
}

/// `rotation show`'s view of who presents which secret: the last use of
/// the current one and of the previous one (the latter since the rotation
/// started also in `not_moved`).
pub(super) async fn consumers(core: &Core, row: &RotationRow) -> Result<Value, RotationError> {
    let job = queue::get(&mut core.db.read().await?, &row.job_id).await?;
    let Some(own) = read_target(core, row).await? else {
        return Ok(json!({"consumers": [], "not_moved": []}));
    };
    let mut c = core.db.read().await?;
    let mut list = Vec::new();
    if let Some(u) = usage::last_use(&mut c, own.id(), own.digest()).await? {
        let mut v = u.view();
        v["secret"] = json!("current");
        list.push(v);
    }
    let mut not_moved = Vec::new();
    let kept = job.and_then(|j| kept(&j.payload(), Some(&own)));
    if let Some(previous) = kept {
        if let Some(u) = usage::last_use(&mut c, own.id(), &previous).await? {
            let mut v = u.view();
            v["secret"] = json!("previous");
            if u.used_at >= row.started_at
                && row.finished_at.is_none_or(|_| row.status == "stalled")
            {
                not_moved.push(v.clone());
            }
            list.push(v);
        }
    }
    Ok(json!({"consumers": list, "not_moved": not_moved}))
}
