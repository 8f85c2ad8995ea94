//! `rekey delivery …`: a connection's delivery of the org's People changes.

use std::process::ExitCode;
use std::time::Duration;

use super::args::{DeliveryCmd, DeliveryOf};
use super::output::table;
use super::Out;
use crate::audit::Actor;
use crate::clock::{parse_instant, rfc3339};
use crate::connectors::credentials::instance_id;
use crate::identity::orgs;
use crate::state::Core;
use crate::sync::backfill::{self, Window};
use crate::sync::delivery::{self, BackfillProgress, Status};
use crate::sync::{run, Event};

async fn org_id(core: &Core, org: &str) -> anyhow::Result<String> {
    Ok(orgs::find_in(&core.db, org).await?.id)
}

pub async fn run(core: &Core, out: &Out, cmd: DeliveryCmd) -> anyhow::Result<ExitCode> {
    let actor = Actor::cli();
    match cmd {
        DeliveryCmd::Enable {
            of,
            filter_domain,
            batch,
        } => {
            let oid = org_id(core, &of.org).await?;
            let e =
                delivery::enable(core, &oid, &of.connection, &filter_domain, batch, &actor).await?;
            out.emit(&e, |e| {
                let mut s = format!(
                    "delivery {} on {} from sequence {}\n",
                    if e.created { "enabled" } else { "updated" },
                    e.status.connection,
                    e.status.last_delivered_seq
                );
                if let Some(secret) = &e.signing_secret {
                    s.push_str(&format!(
                        "signing secret (shown once; the receiver verifies X-Rekey-Signature with it):\n{secret}\n"
                    ));
                }
                s
            });
        }
        DeliveryCmd::Disable { of } => {
            let oid = org_id(core, &of.org).await?;
            delivery::disable(core, &oid, &of.connection, &actor).await?;
            out.emit(
                &serde_json::json!({"disabled": true, "connection": of.connection}),
                |_| format!("delivery to {} disabled", of.connection),
            );
        }
        DeliveryCmd::Pause { of } => person(core, out, &of, Event::Pause, &actor).await?,
        DeliveryCmd::Resume { of } => person(core, out, &of, Event::Resume, &actor).await?,
        DeliveryCmd::Status { of } => {
            let oid = org_id(core, &of.org).await?;
            let s = delivery::status(core, &oid, &of.connection).await?;
            out.emit(&s, describe);
        }
        DeliveryCmd::List { org } => {
            let oid = org_id(core, &org).await?;
            let all = delivery::list(core, &oid).await?;
            out.emit(&serde_json::json!({ "items": all }), |_| {
                table(
                    &[
                        "connection",
                        "kind",
                        "state",
                        "delivered",
                        "lag",
                        "last error",
                    ],
                    all.iter()
                        .map(|s| {
                            vec![
                                s.connection.clone(),
                                s.kind.clone(),
                                s.state.to_string(),
                                s.last_delivered_seq.to_string(),
                                format!("{} records, {} s", s.lag_records, s.lag_s),
                                s.last_error.clone().unwrap_or_default(),
                            ]
                        })
                        .collect(),
                )
            });
        }
        DeliveryCmd::Backfill {
            of,
            since,
            from_seq,
            dry_run,
            detach,
        } => {
            let oid = org_id(core, &of.org).await?;
            let from = match (since, from_seq) {
                (Some(s), _) => Window::Since(parse_instant(&s, core.now()).ok_or_else(|| {
                    anyhow::anyhow!("--since {s:?} is neither an RFC 3339 time nor a duration")
                })?),
                (None, Some(n)) => Window::Seq(n),
                (None, None) => Window::All,
            };
            let started =
                backfill::start(core, &oid, &of.connection, from, dry_run, &actor).await?;
            let Some(b) = started.backfill.clone().filter(|_| !detach) else {
                out.emit(&started, |s| {
                    if s.dry_run {
                        format!(
                            "would send {} records (sequences {} to {}); nothing changed",
                            s.total, s.from_seq, s.to_seq
                        )
                    } else {
                        format!(
                            "backfill started: {} records (sequences {} to {}); see `rekey delivery status`",
                            s.total, s.from_seq, s.to_seq
                        )
                    }
                });
                return Ok(ExitCode::SUCCESS);
            };
            let last = follow(core, &oid, &of, &b).await?;
            let failed = last.state != backfill::DONE;
            let mut answer = started;
            answer.backfill = Some(last);
            out.emit(&answer, |s| {
                let b = s.backfill.as_ref();
                format!(
                    "backfill {}: {} of {} records sent",
                    b.map(|b| b.state.as_str()).unwrap_or("?"),
                    b.map(|b| b.done).unwrap_or(0),
                    s.total
                )
            });
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        DeliveryCmd::CancelBackfill { of } => {
            let oid = org_id(core, &of.org).await?;
            let b = backfill::cancel(core, &oid, &of.connection, &actor).await?;
            out.emit(&b, |b| {
                format!("backfill cancelled after {} of {} records", b.done, b.total)
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn person(
    core: &Core,
    out: &Out,
    of: &DeliveryOf,
    event: Event,
    actor: &Actor,
) -> anyhow::Result<()> {
    let oid = org_id(core, &of.org).await?;
    let s = delivery::person(core, &oid, &of.connection, event, actor).await?;
    out.emit(&s, describe);
    Ok(())
}

/// Runs the delivery jobs from here until the backfill ends, with a
/// progress bar on stderr (a server running alongside shares the work by
/// lease). Ends when it is no longer running: done, cancelled, or waiting
/// for something a person must do (the connection broke).
async fn follow(
    core: &Core,
    org_id: &str,
    of: &DeliveryOf,
    b: &BackfillProgress,
) -> anyhow::Result<BackfillProgress> {
    let bar = indicatif::ProgressBar::new(b.total.max(0) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} records {msg} (eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        run::run_due(core, instance_id()).await?;
        let s = delivery::status(core, org_id, &of.connection).await?;
        let Some(now) = s.backfill.filter(|n| n.id == b.id) else {
            anyhow::bail!("the backfill is gone (the delivery was disabled)");
        };
        bar.set_position(now.done.max(0) as u64);
        bar.set_message(format!("{:.0}/s", now.records_per_s));
        if now.state != backfill::RUNNING {
            bar.finish_and_clear();
            return Ok(now);
        }
        if s.state == crate::sync::State::PausedAuth {
            bar.abandon_with_message(format!(
                "paused: the connection is {}; the backfill resumes by itself once it is re-authorized",
                s.connection_status
            ));
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn describe(s: &Status) -> String {
    let mut out = format!(
        "delivery to {} ({}): {}\n  delivered through sequence {} of {} — lag {} records, {} s\n  {} records delivered{}\n",
        s.connection,
        s.kind,
        s.state,
        s.last_delivered_seq,
        s.head_seq,
        s.lag_records,
        s.lag_s,
        s.delivered,
        s.last_delivered_at
            .map(|t| format!(", last at {}", rfc3339(t)))
            .unwrap_or_default()
    );
    if !s.filter_domains.is_empty() {
        out.push_str(&format!("  only {}\n", s.filter_domains.join(", ")));
    }
    if let Some(p) = &s.parked {
        out.push_str(&format!(
            "  PARKED sequences {}–{}: {} (fix the receiver, then `rekey delivery resume`)\n",
            p.from_seq, p.to_seq, p.message
        ));
    } else if let Some(e) = &s.last_error {
        out.push_str(&format!("  last error: {e}\n"));
    }
    if let Some(c) = &s.last_catch_up {
        out.push_str(&format!(
            "  last catch-up: {} records after {} s paused\n",
            c.records, c.paused_s
        ));
    }
    if let Some(b) = &s.backfill {
        out.push_str(&format!(
            "  backfill {}: {}/{} records, {:.0}/s{}\n",
            b.state,
            b.done,
            b.total,
            b.records_per_s,
            b.eta_s
                .map(|e| format!(", about {e} s left"))
                .unwrap_or_default()
        ));
    }
    if s.retention.behind {
        out.push_str(&format!(
            "  behind the outbox retention ({} s): a full backfill would send {} records\n",
            s.retention.retention_s, s.retention.full_backfill_records
        ));
    }
    out
}

pub async fn outbox(
    core: &Core,
    out: &Out,
    cmd: super::args::OutboxCmd,
) -> anyhow::Result<ExitCode> {
    match cmd {
        super::args::OutboxCmd::Compact => {
            let retention =
                i64::try_from(core.config.outbox_retention.0.as_millis()).unwrap_or(i64::MAX);
            let c = crate::sync::outbox::compact(&core.db, retention, core.now()).await?;
            out.emit(&c, |c| {
                format!(
                    "removed {} older states of records in {} orgs",
                    c.removed, c.orgs
                )
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
