//! Signed webhooks: an org's receivers, the events each subscribes to, and
//! one delivery row per event and receiver. [`emit`] writes the deliveries
//! and their jobs in the transaction of the change that raised the event,
//! so an event is sent exactly when its change committed; the sending,
//! retrying and giving up is [`super::sender`]'s, on the jobs primitive.

use serde::Serialize;
use serde_json::{json, Value};

use crate::audit::{self, Actor, Event};
use crate::clock::rfc3339;
use crate::crypto::keyring::Place;
use crate::crypto::sealed::{self, SealedError};
use crate::crypto::token::{self, TokenKind};
use crate::jobs::queue::{self, NewJob};
use crate::state::Core;
use crate::store::keyset::{self, Cursor, Page};
use crate::store::{new_id, AsEx, Db, StoreError, Tx};
use crate::{exec, fetch_all, fetch_optional, scalar_optional};

/// The events a person must act on, by the names receivers see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum WebhookEvent {
    #[serde(rename = "connection.needs_reauth")]
    ConnectionNeedsReauth,
    #[serde(rename = "connection.recovered")]
    ConnectionRecovered,
    #[serde(rename = "delivery.paused")]
    DeliveryPaused,
    #[serde(rename = "delivery.caught_up")]
    DeliveryCaughtUp,
    #[serde(rename = "rotation.due")]
    RotationDue,
    #[serde(rename = "rotation.failed")]
    RotationFailed,
    #[serde(rename = "rotation.stalled")]
    RotationStalled,
    #[serde(rename = "incident.item_waiting")]
    IncidentItemWaiting,
    #[serde(rename = "credential.expiring")]
    CredentialExpiring,
}

/// The event `webhook test` sends: no receiver subscribes to it.
pub const PING: &str = "ping";

impl WebhookEvent {
    pub const ALL: &'static [WebhookEvent] = &[
        WebhookEvent::ConnectionNeedsReauth,
        WebhookEvent::ConnectionRecovered,
        WebhookEvent::DeliveryPaused,
        WebhookEvent::DeliveryCaughtUp,
        WebhookEvent::RotationDue,
        WebhookEvent::RotationFailed,
        WebhookEvent::RotationStalled,
        WebhookEvent::IncidentItemWaiting,
        WebhookEvent::CredentialExpiring,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::ConnectionNeedsReauth => "connection.needs_reauth",
            WebhookEvent::ConnectionRecovered => "connection.recovered",
            WebhookEvent::DeliveryPaused => "delivery.paused",
            WebhookEvent::DeliveryCaughtUp => "delivery.caught_up",
            WebhookEvent::RotationDue => "rotation.due",
            WebhookEvent::RotationFailed => "rotation.failed",
            WebhookEvent::RotationStalled => "rotation.stalled",
            WebhookEvent::IncidentItemWaiting => "incident.item_waiting",
            WebhookEvent::CredentialExpiring => "credential.expiring",
        }
    }

    /// The event named `s`; the error lists the valid names.
    pub fn parse(s: &str) -> Result<WebhookEvent, WebhookError> {
        WebhookEvent::ALL
            .iter()
            .copied()
            .find(|e| e.as_str() == s.trim())
            .ok_or_else(|| {
                WebhookError::Invalid(format!(
                    "unknown event {s:?} (events: {})",
                    WebhookEvent::ALL
                        .iter()
                        .map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sealed(#[from] SealedError),
}

impl From<sqlx::Error> for WebhookError {
    fn from(e: sqlx::Error) -> Self {
        WebhookError::Store(e.into())
    }
}

/// Delivery states: waiting for its first try, waiting for a retry,
/// answered 2xx, or out of attempts (shown, replayable).
pub const STATES: &[&str] = &["queued", "retrying", "delivered", "dead"];

/// The job kind that sends a delivery.
pub const JOB_KIND: &str = "webhook";

/// Attempts before a delivery is `dead`. The waits between them
/// ([`super::sender::retry_delay_ms`]: 30 s doubling to 6 h, ±20%) add up
/// to at least 74 h over 25 attempts even with every jitter at its
/// lowest: a receiver down for three days still gets the event.
pub const MAX_ATTEMPTS: i64 = 25;

pub fn secret_place(id: &str) -> Place<'_> {
    Place {
        table: "webhooks",
        column: "signing_secret",
        row: id,
    }
}

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct Webhook {
    pub id: String,
    pub org_id: String,
    pub url: String,
    pub events: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

impl Webhook {
    pub fn events(&self) -> Vec<String> {
        serde_json::from_str(&self.events).unwrap_or_default()
    }
    pub fn view(&self) -> WebhookView {
        WebhookView {
            id: self.id.clone(),
            url: self.url.clone(),
            events: self.events(),
            created_at: rfc3339(self.created_at),
        }
    }
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[schema(example = json!({"id": "01j9z3q4w5e6r7t8y9u0i1o2p3", "url": "https://hooks.example.com/rekey", "events": ["connection.needs_reauth"], "created_at": "2026-01-02T03:04:05.000Z"}))]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: String,
}

/// A new webhook with its signing secret, shown this once.
#[derive(Serialize, Debug, utoipa::ToSchema)]
#[schema(example = json!({"id": "01j9z3q4w5e6r7t8y9u0i1o2p3", "url": "https://hooks.example.com/rekey", "events": ["connection.needs_reauth"], "signing_secret": "rk_whsec_…", "created_at": "2026-01-02T03:04:05.000Z"}))]
pub struct Created {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub signing_secret: String,
    pub created_at: String,
}

const HOOK_COLS: &str = "id, org_id, url, events, created_at, disabled_at";

/// Checks a receiver URL: http(s) with a host.
fn check_url(url: &str) -> Result<url::Url, WebhookError> {
    match url::Url::parse(url.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(u),
        _ => Err(WebhookError::Invalid(format!(
            "{url:?} is not an http(s) URL with a host"
        ))),
    }
}

/// Checks the event names: at least one, each known, no repeats.
fn check_events(events: &[String]) -> Result<Vec<String>, WebhookError> {
    if events.is_empty() {
        return Err(WebhookError::Invalid(format!(
            "name at least one event (events: {})",
            WebhookEvent::ALL
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for e in events {
        let name = WebhookEvent::parse(e)?.as_str().to_string();
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

/// Creates a webhook of `org_id`: checked first (nothing is written for a
/// bad URL or event), the secret sealed to the row, audited in the same
/// transaction.
pub async fn create(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    url: &str,
    events: &[String],
) -> Result<Created, WebhookError> {
    let u = check_url(url)?;
    let events = check_events(events)?;
    let id = new_id();
    let secret = token::mint(TokenKind::SigningSecret);
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    exec!(
        &mut tx,
        "INSERT INTO webhooks (id, org_id, url, events, created_at) VALUES ($1, $2, $3, $4, $5)",
        &id,
        org_id,
        u.as_str(),
        json!(events).to_string(),
        now
    )?;
    sealed::put(
        &mut tx,
        &core.keyring,
        secret_place(&id),
        secret.as_bytes(),
        now,
    )
    .await?;
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: Some(org_id),
            action: "webhook.create",
            target: Some(&id),
            detail: json!({"url": u.as_str(), "events": events}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Created {
        id,
        url: u.to_string(),
        events,
        signing_secret: secret,
        created_at: rfc3339(now),
    })
}

pub async fn list(db: &Db, org_id: &str) -> Result<Vec<Webhook>, WebhookError> {
    let mut c = db.read().await?;
    Ok(fetch_all!(
        &mut c,
        Webhook,
        &format!("SELECT {HOOK_COLS} FROM webhooks WHERE org_id = $1 ORDER BY created_at, id"),
        org_id
    )?)
}

/// One page of `org_id`'s webhooks, oldest first (keyset `CREATED_AT.ID`
/// after `after`, the `next` of the page before), with the exact total.
pub async fn page(
    db: &Db,
    org_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<Webhook>, WebhookError> {
    let (at, id) = Cursor::opt_at(after)
        .map_err(|e| WebhookError::Invalid(e.to_string()))?
        .unwrap_or((i64::MIN, String::new()));
    let limit = keyset::limit(limit);
    let mut c = db.read().await?;
    let total = scalar_optional!(
        &mut c,
        i64,
        "SELECT COUNT(*) FROM webhooks WHERE org_id = $1",
        org_id
    )?
    .unwrap_or(0);
    let rows = fetch_all!(
        &mut c,
        Webhook,
        &format!(
            "SELECT {HOOK_COLS} FROM webhooks WHERE org_id = $1
               AND (created_at > $2 OR (created_at = $2 AND id > $3))
             ORDER BY created_at, id LIMIT $4"
        ),
        org_id,
        at,
        &id,
        limit + 1
    )?;
    Ok(Page::from_rows(rows, limit, total, |w| {
        Cursor::of(w.created_at, &w.id)
    }))
}

/// `org_id`'s webhook `id`; another org's is not found.
pub async fn find<C: AsEx>(c: &mut C, org_id: &str, id: &str) -> Result<Webhook, WebhookError> {
    fetch_optional!(
        c,
        Webhook,
        &format!("SELECT {HOOK_COLS} FROM webhooks WHERE org_id = $1 AND id = $2"),
        org_id,
        id.trim()
    )?
    .ok_or_else(|| WebhookError::NotFound(format!("webhook {id:?}")))
}

/// Deletes a webhook, its secret and its deliveries; sends in flight are
/// cancelled (their jobs find nothing to send).
pub async fn delete(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    id: &str,
) -> Result<Webhook, WebhookError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let w = find(&mut tx, org_id, id).await?;
    let jobs = fetch_all!(
        &mut tx,
        (String,),
        "SELECT job_id FROM webhook_deliveries WHERE webhook_id = $1 AND job_id IS NOT NULL
           AND state IN ('queued', 'retrying')",
        &w.id
    )?;
    for (job,) in jobs {
        queue::cancel(&mut tx, &job, now).await?;
    }
    sealed::delete_owner(&mut tx, "webhooks", &w.id).await?;
    exec!(&mut tx, "DELETE FROM webhooks WHERE id = $1", &w.id)?;
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: Some(org_id),
            action: "webhook.delete",
            target: Some(&w.id),
            detail: json!({"url": w.url}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(w)
}

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub org_id: String,
    pub event: String,
    pub payload: String,
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub job_id: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
}

pub const DELIVERY_COLS: &str =
    "id, webhook_id, org_id, event, payload, state, attempts, last_status, last_error, \
    job_id, created_at, delivered_at, next_attempt_at";

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[schema(example = json!({"id": "01j9z3q4w5e6r7t8y9u0i1o2p3", "webhook_id": "01j9z3q4w5e6r7t8y9u0i1o2p4", "event": "connection.needs_reauth", "state": "retrying", "attempts": 1, "last_status": 500, "last_error": "internal error", "created_at": "2026-01-02T03:04:05.000Z", "delivered_at": null, "next_attempt_at": "2026-01-02T03:04:35.000Z"}))]
pub struct DeliveryView {
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    pub state: String,
    pub attempts: i64,
    /// The receiver's last HTTP status (`null`: none, e.g. a network error).
    pub last_status: Option<i64>,
    /// What the receiver answered (cut short) or why nothing was answered.
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub next_attempt_at: Option<String>,
}

impl Delivery {
    pub fn view(&self) -> DeliveryView {
        DeliveryView {
            id: self.id.clone(),
            webhook_id: self.webhook_id.clone(),
            event: self.event.clone(),
            state: self.state.clone(),
            attempts: self.attempts,
            last_status: self.last_status,
            last_error: self.last_error.clone(),
            created_at: rfc3339(self.created_at),
            delivered_at: self.delivered_at.map(rfc3339),
            next_attempt_at: self.next_attempt_at.map(rfc3339),
        }
    }
}

/// `org_id`'s deliveries, newest first: of one webhook, in one state.
pub async fn deliveries(
    db: &Db,
    org_id: &str,
    webhook_id: Option<&str>,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<Delivery>, WebhookError> {
    if let Some(s) = state {
        if !STATES.contains(&s) {
            return Err(WebhookError::Invalid(format!(
                "unknown delivery state {s:?} (states: {})",
                STATES.join(", ")
            )));
        }
    }
    let mut c = db.read().await?;
    if let Some(w) = webhook_id {
        find(&mut c, org_id, w).await?;
    }
    Ok(fetch_all!(
        &mut c,
        Delivery,
        &format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries
             WHERE org_id = $1 AND ($2 IS NULL OR webhook_id = $2) AND ($3 IS NULL OR state = $3)
             ORDER BY created_at DESC, id DESC LIMIT $4"
        ),
        org_id,
        webhook_id,
        state,
        limit.clamp(1, 1_000)
    )?)
}

/// One page of `org_id`'s deliveries, newest first (keyset
/// `CREATED_AT.ID` after `after`, the `next` of the page before), with the
/// exact total.
pub async fn deliveries_page(
    db: &Db,
    org_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<Delivery>, WebhookError> {
    let (at, id) = Cursor::opt_at(after)
        .map_err(|e| WebhookError::Invalid(e.to_string()))?
        .unwrap_or((i64::MAX, String::new()));
    let limit = keyset::limit(limit);
    let mut c = db.read().await?;
    let total = scalar_optional!(
        &mut c,
        i64,
        "SELECT COUNT(*) FROM webhook_deliveries WHERE org_id = $1",
        org_id
    )?
    .unwrap_or(0);
    let rows = fetch_all!(
        &mut c,
        Delivery,
        &format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE org_id = $1
               AND (created_at < $2 OR (created_at = $2 AND id < $3))
             ORDER BY created_at DESC, id DESC LIMIT $4"
        ),
        org_id,
        at,
        &id,
        limit + 1
    )?;
    Ok(Page::from_rows(rows, limit, total, |d| {
        Cursor::of(d.created_at, &d.id)
    }))
}

pub async fn delivery<C: AsEx>(
    c: &mut C,
    org_id: &str,
    id: &str,
) -> Result<Delivery, WebhookError> {
    fetch_optional!(
        c,
        Delivery,
        &format!("SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE org_id = $1 AND id = $2"),
        org_id,
        id.trim()
    )?
    .ok_or_else(|| WebhookError::NotFound(format!("webhook delivery {id:?}")))
}

/// The org's name in payloads: its slug, else its id.
async fn org_name(tx: &mut Tx, org_id: &str) -> Result<String, StoreError> {
    let slug = scalar_optional!(tx, String, "SELECT slug FROM orgs WHERE id = $1", org_id)?;
    Ok(slug.unwrap_or_else(|| org_id.to_string()))
}

/// The job host of a receiver (`webhook:host`), so sends to one receiver
/// are capped across the org's events and instances.
fn job_host(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| format!("webhook:{h}")))
}

/// Writes one delivery of `event` to `hook`, with its job, in `tx`.
async fn enqueue(
    tx: &mut Tx,
    hook: &Webhook,
    org: &str,
    event: &str,
    data: &Value,
    now: i64,
) -> Result<String, StoreError> {
    let id = new_id();
    // The body is fixed here and signed as stored: a retry or a replay
    // sends the same bytes, so the receiver can dedupe by `id`.
    let body = json!({
        "id": id,
        "type": event,
        "created_at": rfc3339(now),
        "org": org,
        "data": data,
    })
    .to_string();
    let host = job_host(&hook.url);
    let job = queue::enqueue(
        tx,
        &NewJob {
            kind: JOB_KIND,
            subject: &id,
            step: "send",
            payload: &json!({"delivery": id}),
            run_at: now,
            max_attempts: MAX_ATTEMPTS,
            host: host.as_deref(),
        },
        now,
    )
    .await?;
    exec!(
        tx,
        "INSERT INTO webhook_deliveries (id, webhook_id, org_id, event, payload, state, attempts, job_id, created_at, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $7, $7)",
        &id,
        &hook.id,
        &hook.org_id,
        event,
        body,
        job,
        now
    )?;
    Ok(id)
}

/// Raises `event` for `org_id` in the caller's transaction: one delivery
/// (and its sending job) per webhook of the org subscribed to it. Nothing
/// is sent unless the transaction commits.
pub async fn emit(
    tx: &mut Tx,
    org_id: &str,
    event: WebhookEvent,
    data: Value,
    now: i64,
) -> Result<(), StoreError> {
    let hooks = fetch_all!(
        tx,
        Webhook,
        &format!("SELECT {HOOK_COLS} FROM webhooks WHERE org_id = $1 AND disabled_at IS NULL"),
        org_id
    )?;
    let name = event.as_str();
    let subscribed: Vec<&Webhook> = hooks
        .iter()
        .filter(|h| h.events().iter().any(|e| e == name))
        .collect();
    if subscribed.is_empty() {
        return Ok(());
    }
    let org = org_name(tx, org_id).await?;
    for hook in subscribed {
        enqueue(tx, hook, &org, name, &data, now).await?;
    }
    Ok(())
}

/// [`emit`], once per `key` (on any instance): for events a periodic scan
/// finds again and again, such as a credential nearing its expiry. The
/// mark is kept until `until` (past it the scan can no longer find what
/// raised it, and the janitor deletes it), or for good when `None`.
/// Returns whether it was raised now.
pub async fn emit_once(
    tx: &mut Tx,
    key: &str,
    until: Option<i64>,
    org_id: &str,
    event: WebhookEvent,
    data: Value,
    now: i64,
) -> Result<bool, StoreError> {
    let n = exec!(
        tx,
        "INSERT INTO event_marks (key, at, until_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
        key,
        now,
        until
    )?;
    if n == 1 {
        emit(tx, org_id, event, data, now).await?;
    }
    Ok(n == 1)
}

/// Sends delivery `id` again as a new attempt, whatever its state (dead,
/// delivered, waiting for a retry), with a fresh budget; audited.
pub async fn replay(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    id: &str,
) -> Result<Delivery, WebhookError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let d = delivery(&mut tx, org_id, id).await?;
    let hook = find(&mut tx, org_id, &d.webhook_id).await?;
    let requeued = match &d.job_id {
        Some(job) => queue::requeue(&mut tx, job, "send", now).await?,
        None => false,
    };
    let job = if requeued {
        d.job_id.clone()
    } else {
        let host = job_host(&hook.url);
        Some(
            queue::enqueue(
                &mut tx,
                &NewJob {
                    kind: JOB_KIND,
                    subject: &d.id,
                    step: "send",
                    payload: &json!({"delivery": d.id}),
                    run_at: now,
                    max_attempts: MAX_ATTEMPTS,
                    host: host.as_deref(),
                },
                now,
            )
            .await?,
        )
    };
    exec!(
        &mut tx,
        "UPDATE webhook_deliveries SET state = 'queued', job_id = $1, next_attempt_at = $2 WHERE id = $3",
        job,
        now,
        &d.id
    )?;
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: Some(org_id),
            action: "webhook.replay",
            target: Some(&d.id),
            detail: json!({"webhook": d.webhook_id, "event": d.event, "was": d.state}),
        },
    )
    .await?;
    tx.commit().await?;
    delivery(&mut core.db.read().await?, org_id, id).await
}

/// Queues a `ping` to webhook `id` (whatever it subscribes to) and sends
/// it at once; returns the delivery as it ended.
pub async fn test(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    id: &str,
) -> Result<Delivery, WebhookError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let hook = find(&mut tx, org_id, id).await?;
    let org = org_name(&mut tx, org_id).await?;
    let delivery_id = enqueue(
        &mut tx,
        &hook,
        &org,
        PING,
        &json!({"webhook": hook.id}),
        now,
    )
    .await?;
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: Some(org_id),
            action: "webhook.test",
            target: Some(&hook.id),
            detail: json!({"delivery": delivery_id}),
        },
    )
    .await?;
    tx.commit().await?;
    super::sender::send_now(core, &delivery_id).await?;
    delivery(&mut core.db.read().await?, org_id, &delivery_id).await
}
