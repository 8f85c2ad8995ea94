//! Sends webhook deliveries: jobs of kind [`JOB_KIND`], claimed by lease
//! (so instances share them and none is sent by two at once), capped per
//! receiver host, through the one outbound client. A 2xx answer delivers;
//! any other answer (a redirect included: it is an answer, not a new
//! destination) or a network error is retried with backoff for days, then
//! the delivery is `dead`, listed and replayable.

use rand::Rng;

use super::webhooks::{self, Delivery, WebhookError, DELIVERY_COLS, JOB_KIND};
use crate::crypto::{sealed, signature};
use crate::jobs::queue::{self, Job, DONE};
use crate::state::Core;
use crate::store::Tx;
use crate::{exec, fetch_optional};

/// A send takes at most the egress timeout (15 s); the lease covers it
/// with room to record the outcome.
const LEASE_MS: i64 = 60_000;
/// Deliveries one pass sends at once.
const BATCH: i64 = 32;
/// Sends in flight to one receiver host, across instances: a slow
/// receiver is not flooded, and does not hold up the others.
const PER_HOST: i64 = 4;

/// The wait before retry number `attempt` (1 after the first failure):
/// 30 s doubling to at most 6 h, scaled by `jitter`.
pub fn retry_delay_ms(attempt: i64, jitter: f64) -> i64 {
    let base = 30_000i64
        .saturating_mul(1i64 << attempt.saturating_sub(1).clamp(0, 20))
        .min(6 * 3_600_000);
    (base as f64 * jitter) as i64
}

/// [`retry_delay_ms`] with ±20% jitter, so deliveries failing together do
/// not retry together.
fn retry_delay(attempt: i64) -> i64 {
    retry_delay_ms(attempt, rand::thread_rng().gen_range(0.8..1.2))
}

/// Sends every due delivery it can claim; returns how many it tried.
pub async fn run_due(core: &Core, instance: &str) -> Result<usize, WebhookError> {
    let owner = queue::claim_token(instance);
    let jobs = queue::claim_capped(
        &core.db,
        JOB_KIND,
        &owner,
        LEASE_MS,
        BATCH,
        core.now(),
        &|_| PER_HOST,
    )
    .await?;
    let n = jobs.len();
    let mut set = tokio::task::JoinSet::new();
    for job in jobs {
        let (core, owner) = (core.clone(), owner.clone());
        set.spawn(async move {
            let r = send(&core, &job, &owner).await;
            if let Err(e) = &r {
                // Counted as a failed attempt, with the delivery's own
                // backoff: left running, the job would be claimed again at
                // its lease's end forever, first in line and holding one of
                // its receiver host's places.
                tracing::warn!(job = %job.id, error = %e, "webhook delivery could not be sent or recorded");
                let delay = retry_delay(job.attempts.saturating_add(1));
                let failed = async {
                    let mut tx = core.db.begin_write().await?;
                    queue::fail_in_after(&mut tx, &job.id, &owner, &e.to_string(), &|_| delay, core.now())
                        .await?;
                    tx.commit().await
                };
                if let Err(e) = failed.await {
                    tracing::warn!(job = %job.id, error = %e, "could not record the failed attempt");
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        if let Err(e) = r {
            tracing::warn!(error = %e, "webhook delivery task failed");
        }
    }
    Ok(n)
}

/// Sends delivery `id` now, if its job is due and nobody holds it (the
/// CLI's `webhook test`).
pub async fn send_now(core: &Core, id: &str) -> Result<(), WebhookError> {
    let mut c = core.db.read().await?;
    let job_id = crate::scalar_optional!(
        &mut c,
        Option<String>,
        "SELECT job_id FROM webhook_deliveries WHERE id = $1",
        id
    )?
    .flatten();
    drop(c);
    let Some(job_id) = job_id else {
        return Ok(());
    };
    let owner = queue::claim_token(crate::connectors::credentials::instance_id());
    if let Some(job) = queue::claim_id(&core.db, &job_id, &owner, LEASE_MS, core.now()).await? {
        send(core, &job, &owner).await?;
    }
    Ok(())
}

/// What the receiver did with one attempt.
struct Answer {
    status: Option<i64>,
    /// `None`: delivered; otherwise what it said, or why nothing was said.
    error: Option<String>,
}

async fn send(core: &Core, job: &Job, owner: &str) -> Result<(), WebhookError> {
    let mut c = core.db.read().await?;
    let d = fetch_optional!(
        &mut c,
        Delivery,
        &format!("SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE id = $1"),
        &job.subject
    )?;
    let hook = match &d {
        Some(d) => match webhooks::find(&mut c, &d.org_id, &d.webhook_id).await {
            Ok(h) => Some(h),
            Err(WebhookError::NotFound(_)) => None,
            // A read that failed says nothing about the webhook: the
            // attempt fails and is retried, the delivery is not dropped.
            Err(e) => return Err(e),
        },
        None => None,
    };
    // A secret that does not open (its key gone from the keyring) fails
    // the attempt visibly, like an unreachable receiver: retried, then
    // dead and replayable once the key is back.
    let secret = match &hook {
        Some(h) => match sealed::get(&mut c, &core.keyring, webhooks::secret_place(&h.id)).await {
            Ok(s) => s.map(Ok),
            Err(e) => Some(Err(format!(
                "the webhook's signing secret cannot be opened: {e}"
            ))),
        },
        None => None,
    };
    drop(c);
    let (Some(d), Some(hook), Some(secret)) = (d, hook, secret) else {
        // Its webhook was deleted: nothing left to send.
        let mut tx = core.db.begin_write().await?;
        queue::finish(&mut tx, &job.id, owner, queue::CANCELLED, core.now()).await?;
        tx.commit().await?;
        return Ok(());
    };
    let answer = match secret {
        Ok(secret) => post(core, &hook.url, &String::from_utf8_lossy(&secret), &d).await,
        Err(why) => Answer {
            status: None,
            error: Some(why),
        },
    };
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    record(&mut tx, job, owner, &d, &answer, now).await?;
    tx.commit().await?;
    Ok(())
}

async fn post(core: &Core, url: &str, secret: &str, d: &Delivery) -> Answer {
    let body = d.payload.as_bytes().to_vec();
    let t = core.now().div_euclid(1000);
    let req = match core.egress.post(url).await {
        Ok(r) => r,
        Err(e) => {
            return Answer {
                status: None,
                error: Some(e.to_string()),
            }
        }
    };
    let sent = req
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(signature::HEADER, signature::sign(secret, t, &body))
        .header("X-Rekey-Event", &d.event)
        .header("X-Rekey-Delivery", &d.id)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(resp) => {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            Answer {
                status: Some(i64::from(status.as_u16())),
                error: (!status.is_success()).then(|| {
                    let said = super::truncate(text.trim());
                    if said.is_empty() {
                        format!("the receiver answered {status}")
                    } else {
                        format!("the receiver answered {status}: {said}")
                    }
                }),
            }
        }
        Err(e) => Answer {
            status: None,
            error: Some(crate::egress::describe(&e)),
        },
    }
}

/// Records one attempt's outcome with the job's, only while `owner` still
/// holds the job (a replay or another instance may have taken it).
async fn record(
    tx: &mut Tx,
    job: &Job,
    owner: &str,
    d: &Delivery,
    a: &Answer,
    now: i64,
) -> Result<(), WebhookError> {
    let (state, delivered_at, next) = match &a.error {
        None => {
            if !queue::finish(tx, &job.id, owner, DONE, now).await? {
                return Ok(());
            }
            ("delivered", Some(now), None)
        }
        Some(err) => {
            let delay = retry_delay(job.attempts.saturating_add(1));
            match queue::fail_in_after(tx, &job.id, owner, err, &|_| delay, now).await? {
                None => return Ok(()),
                Some(queue::DEAD) => ("dead", None, None),
                Some(_) => ("retrying", None, Some(now.saturating_add(delay))),
            }
        }
    };
    exec!(
        tx,
        "UPDATE webhook_deliveries SET state = $1, attempts = attempts + 1, last_status = $2, last_error = $3,
            delivered_at = COALESCE($4, delivered_at), next_attempt_at = $5
         WHERE id = $6",
        state,
        a.status,
        &a.error,
        delivered_at,
        next,
        &d.id
    )?;
    if state == "dead" {
        tracing::warn!(delivery = %d.id, webhook = %d.webhook_id, event = %d.event, "webhook delivery gave up after its last attempt; `rekey webhook replay` sends it again");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The promise in `webhooks::MAX_ATTEMPTS`: even with every jitter at
    /// its lowest, the retries of one delivery span at least 72 hours.
    #[test]
    fn retries_span_three_days_at_the_least() {
        let waits: i64 = (1..webhooks::MAX_ATTEMPTS)
            .map(|a| retry_delay_ms(a, 0.8))
            .sum();
        assert!(waits >= 72 * 3_600_000, "{} h", waits / 3_600_000);
        assert_eq!(retry_delay_ms(1, 1.0), 30_000);
        assert_eq!(retry_delay_ms(40, 1.0), 6 * 3_600_000);
    }
}
