//! A connection's delivery: its cursor into the org's outbox, its state and
//! settings, and what people do with it (enable, pause, resume, disable,
//! status). The sending itself is `sync::run`.
//!
//! Every state change goes through [`transition`] (the one `state::next`),
//! in the transaction of what caused it, with the delivery's job woken or
//! left asleep to match.

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::state::{next, Event, State};
use super::{outbox, target, SyncError, DEFAULT_BATCH, MAX_BATCH};
use crate::audit::Actor;
use crate::connectors::connections::{self, Connection};
use crate::crypto::keyring::Place;
use crate::crypto::sealed;
use crate::crypto::token::{self, TokenKind};
use crate::events::activity::{self, ActivityType};
use crate::events::webhooks::{self, WebhookEvent};
use crate::jobs::queue::{self, Standing};
use crate::state::Core;
use crate::store::{new_id, AsEx, Tx};
use crate::{exec, fetch_optional};

pub use super::statuses::{list, page, status_of};

/// The job kinds of deliveries and backfills.
pub const KIND: &str = "delivery";

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub org_id: String,
    pub connection_id: String,
    pub state: String,
    pub filter_domains: String,
    pub batch: i64,
    pub cursor_seq: i64,
    pub delivered: i64,
    pub last_delivered_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub parked_from: Option<i64>,
    pub parked_to: Option<i64>,
    pub failures: i64,
    pub paused_at: Option<i64>,
    pub paused_delivered: Option<i64>,
    pub resumed_at: Option<i64>,
    pub caught_up_records: Option<i64>,
    pub caught_up_paused_ms: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub const COLS: &str = "id, org_id, connection_id, state, filter_domains, batch, cursor_seq, delivered, \
    last_delivered_at, last_error, last_error_at, parked_from, parked_to, failures, paused_at, paused_delivered, resumed_at, \
    caught_up_records, caught_up_paused_ms, created_at, updated_at";

impl Delivery {
    pub fn state(&self) -> State {
        // Only `transition` writes the column, always a `State`'s name.
        State::parse(&self.state).unwrap_or(State::PausedError)
    }

    pub fn filter(&self) -> Vec<String> {
        serde_json::from_str(&self.filter_domains).unwrap_or_default()
    }

    pub fn job_id(&self) -> String {
        job_id(&self.id)
    }
}

pub fn job_id(delivery_id: &str) -> String {
    format!("delivery:{delivery_id}")
}

fn secret_place(id: &str) -> Place<'_> {
    Place {
        table: "deliveries",
        column: "signing_secret",
        row: id,
    }
}

/// The secret the delivery signs with (`custom_rest`).
pub async fn signing_secret<C: AsEx>(
    c: &mut C,
    core: &Core,
    d: &Delivery,
) -> Result<String, SyncError> {
    let raw = sealed::get(c, &core.keyring, secret_place(&d.id))
        .await
        .map_err(crate::connectors::ConnectorError::from)?;
    Ok(raw
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default())
}

pub async fn by_connection<C: AsEx>(
    c: &mut C,
    connection_id: &str,
) -> Result<Option<Delivery>, SyncError> {
    Ok(fetch_optional!(
        c,
        Delivery,
        &format!("SELECT {COLS} FROM deliveries WHERE connection_id = $1"),
        connection_id
    )?)
}

pub async fn get<C: AsEx>(c: &mut C, id: &str) -> Result<Option<Delivery>, SyncError> {
    Ok(fetch_optional!(
        c,
        Delivery,
        &format!("SELECT {COLS} FROM deliveries WHERE id = $1"),
        id
    )?)
}

/// The connection `name` of `org_id` and its delivery.
pub async fn find(
    core: &Core,
    org_id: &str,
    name: &str,
) -> Result<(Connection, Delivery), SyncError> {
    let mut c = core.db.read().await?;
    let conn = connections::find(&mut c, org_id, name).await?;
    let d = by_connection(&mut c, &conn.id).await?.ok_or_else(|| {
        SyncError::NotFound(format!(
            "a delivery on connection {:?} (enable one with `rekey delivery enable`)",
            conn.name
        ))
    })?;
    Ok((conn, d))
}

/// Checks a domain filter: host names with at least one dot, lower-cased,
/// without repeats.
pub fn parse_filter(domains: &[String]) -> Result<Vec<String>, SyncError> {
    let mut out: Vec<String> = Vec::with_capacity(domains.len());
    for d in domains {
        let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
        if !crate::connectors::hosts::is_host_name(&d) || !d.contains('.') {
            return Err(SyncError::Invalid(format!(
                "filter domain {d:?} is not a domain name (like example.com)"
            )));
        }
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

pub fn check_batch(batch: i64) -> Result<i64, SyncError> {
    if !(1..=MAX_BATCH).contains(&batch) {
        return Err(SyncError::Invalid(format!(
            "batch must be between 1 and {MAX_BATCH} records"
        )));
    }
    Ok(batch)
}

/// Holds delivery `id`'s row for the rest of `tx`. On PostgreSQL the
/// no-op write takes the row lock, so a decision read from other rows in
/// `tx` (a backfill still running, the connection still broken) cannot be
/// overtaken by another writer of this delivery committing meanwhile: that
/// writer waits, then sees what `tx` did. SQLite's writer is alone already.
pub async fn lock(tx: &mut Tx, id: &str) -> Result<(), SyncError> {
    exec!(
        tx,
        "UPDATE deliveries SET updated_at = updated_at WHERE id = $1",
        id
    )?;
    Ok(())
}

/// Moves delivery `id` by `event` in `tx`: writes the new state (with when
/// a pause began, and how many records had been delivered then) and returns
/// the row as it now stands, or `None` when it was disabled meanwhile. The
/// caller wakes the job when the new state should run.
///
/// The move is made from the state the row holds in `tx`, under its lock,
/// never from a copy the caller read earlier: a delivery's job reads its
/// row, sends for a while, then settles, and a person's pause (or a
/// backfill's start, or the connection's loss) committed in between must
/// not be overwritten by a move computed from the old state.
pub async fn transition(
    tx: &mut Tx,
    id: &str,
    event: Event,
    now: i64,
) -> Result<Option<Delivery>, SyncError> {
    lock(tx, id).await?;
    let Some(d) = get(&mut *tx, id).await? else {
        return Ok(None);
    };
    transition_row(tx, d, event, now).await.map(Some)
}

/// [`transition`] of a row the caller has already locked ([`lock`]) and
/// read in `tx`: no second lock or read on a hot path (a batch sent).
pub async fn transition_row(
    tx: &mut Tx,
    mut d: Delivery,
    event: Event,
    now: i64,
) -> Result<Delivery, SyncError> {
    let id = d.id.clone();
    let from = d.state();
    let to = next(from, event);
    if to == from {
        return Ok(d);
    }
    // A pause starts the clock of the catch-up; moving between pauses keeps
    // it; leaving for good stops it when the catch-up is done (`run`).
    let starts_pause = to.paused() && !from.paused();
    let ends_pause = from.paused() && !to.paused();
    exec!(
        tx,
        "UPDATE deliveries SET state = $1, updated_at = $2,
            paused_at = CASE WHEN $3 THEN $2 ELSE paused_at END,
            paused_delivered = CASE WHEN $3 THEN delivered ELSE paused_delivered END,
            resumed_at = CASE WHEN $4 THEN $2 WHEN $3 THEN NULL ELSE resumed_at END
         WHERE id = $5",
        to.as_str(),
        now,
        starts_pause,
        ends_pause,
        &id
    )?;
    if starts_pause || ends_pause {
        paused_or_resumed(tx, &d, from, to, now).await?;
    }
    d.state = to.as_str().to_string();
    d.updated_at = now;
    if starts_pause {
        d.paused_at = Some(now);
        d.paused_delivered = Some(d.delivered);
        d.resumed_at = None;
    } else if ends_pause {
        d.resumed_at = Some(now);
    }
    Ok(d)
}

/// A pause began or ended: the connection's activity log says so, and a
/// pause a person must act on (a lost credential, a failing receiver)
/// raises `delivery.paused`, once per pause.
async fn paused_or_resumed(
    tx: &mut Tx,
    d: &Delivery,
    from: State,
    to: State,
    now: i64,
) -> Result<(), SyncError> {
    let why = match to {
        State::PausedAuth => "waiting for the connection to be re-authorized".to_string(),
        State::PausedError => format!(
            "the receiver failed: {}",
            d.last_error.as_deref().unwrap_or("see last_error")
        ),
        State::PausedByUser => "paused by a person".to_string(),
        _ => format!("resumed (was {from})"),
    };
    let detail =
        json!({"from": from.as_str(), "to": to.as_str(), "last_delivered_seq": d.cursor_seq});
    let kind = if to.paused() {
        ActivityType::Pause
    } else {
        ActivityType::Resume
    };
    let message = if to.paused() {
        format!("delivery paused: {why}")
    } else {
        format!("delivery {why}")
    };
    activity::record(
        tx,
        &d.org_id,
        &d.connection_id,
        kind,
        &message,
        detail.clone(),
        now,
    )
    .await?;
    if matches!(to, State::PausedAuth | State::PausedError) {
        let data = json!({"delivery": d.id, "connection_id": d.connection_id, "state": to.as_str(),
            "reason": why, "last_delivered_seq": d.cursor_seq});
        webhooks::emit(tx, &d.org_id, WebhookEvent::DeliveryPaused, data, now).await?;
    }
    Ok(())
}

/// What `enable` answers: the delivery's status, whether it was created,
/// and (on creation, for a kind that verifies signatures) its signing
/// secret, shown this once.
#[derive(Debug, Serialize)]
pub struct Enabled {
    #[serde(flatten)]
    pub status: Status,
    pub created: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
}

/// Enables delivery on connection `name`, starting at the outbox's head
/// (history is a backfill). On a delivery that exists, changes its filter
/// and batch and keeps its cursor.
pub async fn enable(
    core: &Core,
    org_id: &str,
    name: &str,
    filter: &[String],
    batch: Option<i64>,
    actor: &Actor,
) -> Result<Enabled, SyncError> {
    let filter = parse_filter(filter)?;
    let batch = check_batch(batch.unwrap_or(DEFAULT_BATCH))?;
    let mut c = core.db.read().await?;
    let conn = connections::find(&mut c, org_id, name).await?;
    let creds = connections::credentials(&mut c, core, &conn.id).await?;
    drop(c);
    if !target::can_receive(&conn.kind) {
        return Err(SyncError::Invalid(format!(
            "connections of kind {} cannot receive records; kinds that can: {}",
            conn.kind,
            target::KINDS.join(", ")
        )));
    }
    target::check(&conn, &creds).map_err(SyncError::Refused)?;
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let existing = by_connection(&mut tx, &conn.id).await?;
    let filter_text = serde_json::to_string(&filter).unwrap_or_else(|_| "[]".into());
    let (id, created, secret) = match existing {
        Some(d) => {
            exec!(
                &mut tx,
                "UPDATE deliveries SET filter_domains = $1, batch = $2, updated_at = $3 WHERE id = $4",
                &filter_text,
                batch,
                now,
                &d.id
            )?;
            (d.id, false, None)
        }
        None => {
            let id = new_id();
            let head = outbox::head(&mut tx, org_id).await?;
            exec!(
                &mut tx,
                "INSERT INTO deliveries (id, org_id, connection_id, state, filter_domains, batch, cursor_seq,
                    created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                &id,
                org_id,
                &conn.id,
                State::CaughtUp.as_str(),
                &filter_text,
                batch,
                head,
                now
            )?;
            let secret = token::mint(TokenKind::SigningSecret);
            sealed::put(
                &mut tx,
                &core.keyring,
                secret_place(&id),
                secret.as_bytes(),
                now,
            )
            .await
            .map_err(crate::connectors::ConnectorError::from)?;
            let host = target::host(&conn);
            queue::schedule_standing(
                &mut tx,
                &Standing {
                    id: &job_id(&id),
                    kind: KIND,
                    subject: &id,
                    step: "deliver",
                    host: Some(&host),
                },
                now,
                now,
            )
            .await?;
            (id, true, (conn.kind == "custom_rest").then_some(secret))
        }
    };
    connections::record(
        &mut tx,
        now,
        actor,
        &conn,
        if created {
            "delivery.enable"
        } else {
            "delivery.update"
        },
        json!({"filter_domains": filter, "batch": batch}),
    )
    .await?;
    tx.commit().await?;
    core.delivery_due.notify_waiters();
    let status = status_of(core, &conn, &id).await?;
    Ok(Enabled {
        status,
        created,
        signing_secret: secret,
    })
}

/// Turns delivery off: the delivery, its cursor, backfills and job go.
pub async fn disable(
    core: &Core,
    org_id: &str,
    name: &str,
    actor: &Actor,
) -> Result<(), SyncError> {
    let (conn, d) = find(core, org_id, name).await?;
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    for b in super::backfill::ids_of(&mut tx, &d.id).await? {
        queue::delete(&mut tx, &super::backfill::job_id(&b)).await?;
    }
    queue::delete(&mut tx, &d.job_id()).await?;
    sealed::delete(&mut tx, secret_place(&d.id))
        .await
        .map_err(crate::connectors::ConnectorError::from)?;
    exec!(&mut tx, "DELETE FROM deliveries WHERE id = $1", &d.id)?;
    connections::record(
        &mut tx,
        now,
        actor,
        &conn,
        "delivery.disable",
        json!({"last_delivered_seq": d.cursor_seq}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A person pauses (`Event::Pause`) or resumes (`Event::Resume`: also
/// retries a parked batch and a failure's backoff at once).
pub async fn person(
    core: &Core,
    org_id: &str,
    name: &str,
    event: Event,
    actor: &Actor,
) -> Result<Status, SyncError> {
    let (conn, d) = find(core, org_id, name).await?;
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let Some(moved) = transition(&mut tx, &d.id, event, now).await? else {
        // Disabled between the read and this transaction.
        return Err(SyncError::NotFound(format!(
            "a delivery on connection {:?}",
            conn.name
        )));
    };
    let to = moved.state();
    if event == Event::Resume {
        exec!(
            &mut tx,
            "UPDATE deliveries SET parked_from = NULL, parked_to = NULL, failures = 0 WHERE id = $1",
            &d.id
        )?;
        queue::schedule_standing(
            &mut tx,
            &Standing {
                id: &d.job_id(),
                kind: KIND,
                subject: &d.id,
                step: "deliver",
                host: Some(&target::host(&conn)),
            },
            now,
            now,
        )
        .await?;
        // A job holding its lease keeps it through `schedule_standing`, and
        // may have read the pause: woken, it runs again when it gives the
        // lease back. A backfill paused with the delivery waits on its own
        // job, which this resume must wake too.
        queue::wake(&mut tx, &[d.job_id()], now).await?;
        super::backfill::wake_for(&mut tx, &d.id, now).await?;
    }
    connections::record(
        &mut tx,
        now,
        actor,
        &conn,
        if event == Event::Pause {
            "delivery.pause"
        } else {
            "delivery.resume"
        },
        json!({"from": d.state, "to": to.as_str()}),
    )
    .await?;
    tx.commit().await?;
    core.delivery_due.notify_waiters();
    status_of(core, &conn, &d.id).await
}

/// Called in the transaction that changes a connection's status: when it
/// is connected again, a delivery paused for its credential resumes (no one
/// presses a button); when it needs re-authorization or is disconnected, a
/// delivery stops sending until it is back.
pub async fn connection_changed(
    tx: &mut Tx,
    connection_id: &str,
    status: &str,
    now: i64,
) -> Result<(), SyncError> {
    let Some(d) = by_connection(&mut *tx, connection_id).await? else {
        return Ok(());
    };
    let event = match status {
        "connected" => Event::AuthBack,
        "needs_reauth" | "disconnected" => Event::AuthLost,
        _ => return Ok(()),
    };
    let to = transition(tx, &d.id, event, now).await?;
    if to.is_some_and(|d| d.state() == State::Running) {
        queue::wake(tx, &[d.job_id()], now).await?;
        super::backfill::wake_for(tx, &d.id, now).await?;
    }
    Ok(())
}

/// The backfill shown in a status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BackfillProgress {
    pub id: String,
    /// `running`, `done`, `failed` or `cancelled`.
    pub state: String,
    pub from_seq: i64,
    pub to_seq: i64,
    pub done: i64,
    pub total: i64,
    pub records_per_s: f64,
    /// Estimated seconds left at the rate so far; null until it has one.
    pub eta_s: Option<i64>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "crate::clock::as_rfc3339::serialize")]
    #[schema(value_type = String)]
    pub started_at: i64,
    #[serde(serialize_with = "crate::clock::as_rfc3339::opt")]
    #[schema(value_type = Option<String>)]
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Lag {
    /// Records written after the last one delivered that pass the filter.
    pub records: i64,
    /// How long the oldest of them has waited.
    pub seconds: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Parked {
    pub from_seq: i64,
    pub to_seq: i64,
    /// The receiver's own message.
    pub message: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CatchUp {
    /// Records delivered between the end of the pause and catching up.
    pub records: i64,
    pub paused_s: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Retention {
    pub retention_s: i64,
    /// The oldest record not yet delivered is older than the retention
    /// window: this delivery is what keeps the outbox from being compacted.
    pub behind: bool,
    /// What a full backfill (every record still in the outbox that passes
    /// the filter) would send.
    pub full_backfill_records: i64,
}

/// A delivery as people see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Status {
    pub id: String,
    pub connection: String,
    pub kind: String,
    pub state: State,
    /// The connection's own status (`needs_reauth` explains `paused_auth`).
    pub connection_status: String,
    pub last_delivered_seq: i64,
    /// The org's last outbox sequence.
    pub head_seq: i64,
    pub lag: Lag,
    pub lag_records: i64,
    pub lag_s: i64,
    pub delivered: i64,
    #[serde(serialize_with = "crate::clock::as_rfc3339::opt")]
    #[schema(value_type = Option<String>)]
    pub last_delivered_at: Option<i64>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "crate::clock::as_rfc3339::opt")]
    #[schema(value_type = Option<String>)]
    pub last_error_at: Option<i64>,
    pub parked: Option<Parked>,
    pub filter_domains: Vec<String>,
    pub batch: i64,
    #[serde(serialize_with = "crate::clock::as_rfc3339::opt")]
    #[schema(value_type = Option<String>)]
    pub paused_at: Option<i64>,
    pub last_catch_up: Option<CatchUp>,
    pub backfill: Option<BackfillProgress>,
    pub retention: Retention,
    #[serde(serialize_with = "crate::clock::as_rfc3339::serialize")]
    #[schema(value_type = String)]
    pub created_at: i64,
}

pub async fn status(core: &Core, org_id: &str, name: &str) -> Result<Status, SyncError> {
    let (conn, d) = find(core, org_id, name).await?;
    status_of(core, &conn, &d.id).await
}

/// The detail of an audit or activity event about a batch.
pub fn batch_detail(records: usize, from: i64, to: i64) -> Value {
    let mut m = Map::new();
    m.insert("records".into(), json!(records));
    m.insert("from_seq".into(), json!(from));
    m.insert("to_seq".into(), json!(to));
    Value::Object(m)
}
