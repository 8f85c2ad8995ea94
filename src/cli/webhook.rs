//! `rekey webhook create|list|delete|deliveries|replay|test`.

use std::process::ExitCode;

use serde_json::json;

use super::args::WebhookCmd;
use super::output::table;
use super::Out;
use crate::audit::Actor;
use crate::events::webhooks::{self, Delivery};
use crate::identity::orgs;
use crate::state::Core;

fn delivery_rows(items: &[Delivery]) -> String {
    table(
        &[
            "id",
            "event",
            "state",
            "attempts",
            "last status",
            "last error",
        ],
        items
            .iter()
            .map(|d| {
                vec![
                    d.id.clone(),
                    d.event.clone(),
                    d.state.clone(),
                    d.attempts.to_string(),
                    d.last_status.map(|s| s.to_string()).unwrap_or_default(),
                    d.last_error.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    )
}

pub async fn run(core: &Core, out: &Out, cmd: WebhookCmd) -> anyhow::Result<ExitCode> {
    let actor = Actor::cli();
    match cmd {
        WebhookCmd::Create { org, url, events } => {
            let o = orgs::find_in(&core.db, &org).await?;
            let w = webhooks::create(core, &actor, &o.id, &url, &events).await?;
            out.emit(&w, |w| {
                format!(
                    "webhook {} → {} ({})\nsigning secret (shown once): {}",
                    w.id,
                    w.url,
                    w.events.join(", "),
                    w.signing_secret
                )
            });
        }
        WebhookCmd::List { org } => {
            let o = orgs::find_in(&core.db, &org).await?;
            let hooks = webhooks::list(&core.db, &o.id).await?;
            let v: Vec<_> = hooks.iter().map(|w| w.view()).collect();
            out.emit(&v, |v| {
                table(
                    &["id", "url", "events", "created"],
                    v.iter()
                        .map(|w| {
                            vec![
                                w.id.clone(),
                                w.url.clone(),
                                w.events.join(","),
                                w.created_at.clone(),
                            ]
                        })
                        .collect(),
                )
            });
        }
        WebhookCmd::Delete { org, id } => {
            let o = orgs::find_in(&core.db, &org).await?;
            let w = webhooks::delete(core, &actor, &o.id, &id).await?;
            out.emit(&json!({"id": w.id, "deleted": true}), |_| {
                format!("webhook {} deleted", w.id)
            });
        }
        WebhookCmd::Deliveries {
            org,
            webhook,
            state,
            limit,
        } => {
            let o = orgs::find_in(&core.db, &org).await?;
            let items =
                webhooks::deliveries(&core.db, &o.id, webhook.as_deref(), state.as_deref(), limit)
                    .await?;
            let v: Vec<_> = items.iter().map(Delivery::view).collect();
            out.emit(&json!({"items": v}), |_| delivery_rows(&items));
        }
        WebhookCmd::Replay { org, delivery } => {
            let o = orgs::find_in(&core.db, &org).await?;
            let d = webhooks::replay(core, &actor, &o.id, &delivery).await?;
            out.emit(&d.view(), |d| {
                format!("delivery {} queued again ({})", d.id, d.event)
            });
        }
        WebhookCmd::Test { org, id } => {
            let o = orgs::find_in(&core.db, &org).await?;
            let d = webhooks::test(core, &actor, &o.id, &id).await?;
            let delivered = d.state == "delivered";
            out.emit(&d.view(), |_| delivery_rows(std::slice::from_ref(&d)));
            if !delivered {
                if !out.json {
                    eprintln!(
                        "error: the receiver did not accept the ping: {}",
                        d.last_error.as_deref().unwrap_or("no answer")
                    );
                }
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
