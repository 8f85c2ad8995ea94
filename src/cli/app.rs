//! `rekey app …`: OAuth applications.

use std::process::ExitCode;

use serde_json::json;

use super::args::{AppCmd, AppRef, LifetimeArgs};
use super::output::table;
use super::Out;
use crate::audit::Actor;
use crate::clock::rfc3339;
use crate::config::Dur;
use crate::identity::orgs;
use crate::oauth::authorizations;
use crate::oauth::clients::{self, Client, ClientKind, Lifetimes, NewClient, Update};
use crate::state::Core;

fn lifetimes(l: &LifetimeArgs) -> Lifetimes {
    Lifetimes {
        access_ms: l.access_token_ttl.map(Dur::ms),
        refresh_ms: l.refresh_token_ttl.map(Dur::ms),
        grace_ms: l.refresh_grace.map(Dur::ms),
    }
}

fn describe(c: &Client, now: i64) -> String {
    let v = c.view(None, now);
    format!(
        "{} ({})\n  client id: {}\n  scope:     {}\n  callbacks: {}\n  lifetimes: access {}s, refresh {}s, grace {}s\n  created:   {}",
        v.name,
        v.status,
        v.client_id,
        v.scope,
        v.callbacks.unwrap_or_default().join(", "),
        v.access_token_ttl,
        v.refresh_token_ttl.unwrap_or(0),
        v.refresh_grace.unwrap_or(0),
        rfc3339(v.created_at)
    )
}

async fn org_id(core: &Core, org: &str) -> anyhow::Result<String> {
    Ok(orgs::find_in(&core.db, org).await?.id)
}

pub async fn run(core: &Core, out: &Out, cmd: AppCmd) -> anyhow::Result<ExitCode> {
    let actor = Actor::cli();
    let now = core.now();
    match cmd {
        AppCmd::Create {
            org,
            name,
            scope,
            callbacks,
            lifetimes: l,
        } => {
            let oid = org_id(core, &org).await?;
            let (c, secret) = clients::create(
                core,
                &actor,
                NewClient {
                    org_id: &oid,
                    kind: ClientKind::App,
                    name: &name,
                    scope: &scope,
                    callbacks: &callbacks,
                    user_id: None,
                    lifetimes: lifetimes(&l),
                    may_introspect: false,
                },
            )
            .await?;
            let v = json!({"id": c.id, "client_id": c.client_id, "client_secret": secret, "name": c.name, "scope": c.scope, "callbacks": c.callbacks()});
            out.emit(&v, |_| {
                format!(
                    "{}\n  client secret (shown once): {secret}",
                    describe(&c, now)
                )
            });
        }
        AppCmd::List { org } => {
            let oid = org_id(core, &org).await?;
            let list = clients::list(&core.db, &oid, ClientKind::App).await?;
            let views: Vec<_> = list.iter().map(|c| c.view(None, now)).collect();
            out.emit(&views, |vs| {
                table(
                    &["name", "client id", "scope", "status", "callbacks"],
                    vs.iter()
                        .map(|v| {
                            vec![
                                v.name.clone(),
                                v.client_id.clone(),
                                v.scope.clone(),
                                v.status.to_string(),
                                v.callbacks.clone().unwrap_or_default().join(" "),
                            ]
                        })
                        .collect(),
                )
            });
        }
        AppCmd::Show(r) => {
            let c = find(core, &r).await?;
            out.emit(&c.view(None, now), |_| describe(&c, now));
        }
        AppCmd::Update {
            app,
            rename,
            scope,
            callbacks,
            lifetimes: l,
            rotation_interval,
        } => {
            let oid = org_id(core, &app.org).await?;
            let changes = Update {
                name: rename,
                scope,
                callbacks: (!callbacks.is_empty()).then_some(callbacks),
                lifetimes: lifetimes(&l),
            };
            // Only a schedule given: the application itself is unchanged.
            let only_schedule = rotation_interval.is_some()
                && changes.name.is_none()
                && changes.scope.is_none()
                && changes.callbacks.is_none()
                && l.access_token_ttl.is_none()
                && l.refresh_token_ttl.is_none()
                && l.refresh_grace.is_none();
            let c = if only_schedule {
                find(core, &app).await?
            } else {
                clients::update(core, &actor, &oid, ClientKind::App, &app.name, changes).await?
            };
            let mut v = serde_json::to_value(c.view(None, now))?;
            if let Some(d) = rotation_interval {
                let ms = Some(d.ms()).filter(|ms| *ms > 0);
                let row = crate::rotation::age::set_interval(
                    core,
                    &actor,
                    &oid,
                    crate::rotation::age::Own::App,
                    &c.name,
                    ms,
                )
                .await?;
                v["rotation_interval_s"] = serde_json::json!(row.rotation_interval_s);
                v["rotation_due_at"] = serde_json::json!(row.next_due_at);
            }
            out.emit(&v, |_| describe(&c, now));
        }
        AppCmd::Deactivate(r) => {
            let oid = org_id(core, &r.org).await?;
            let c =
                clients::set_active(core, &actor, &oid, ClientKind::App, &r.name, false).await?;
            out.emit(&c.view(None, now), |_| {
                format!(
                    "deactivated {}: its tokens are refused until it is activated",
                    c.name
                )
            });
        }
        AppCmd::Activate(r) => {
            let oid = org_id(core, &r.org).await?;
            let c = clients::set_active(core, &actor, &oid, ClientKind::App, &r.name, true).await?;
            out.emit(&c.view(None, now), |_| format!("activated {}", c.name));
        }
        AppCmd::Delete(r) => {
            let oid = org_id(core, &r.org).await?;
            let c = clients::delete(core, &actor, &oid, ClientKind::App, &r.name).await?;
            out.emit(
                &json!({"deleted": true, "id": c.id, "client_id": c.client_id, "name": c.name}),
                |_| {
                    format!(
                        "deleted {} with every code, token and authorization",
                        c.name
                    )
                },
            );
        }
        AppCmd::Authorizations(r) => {
            let c = find(core, &r).await?;
            let list = authorizations::list(&core.db, &c, now).await?;
            out.emit(&list, |l| {
                table(
                    &[
                        "id",
                        "user",
                        "scope",
                        "created",
                        "last used",
                        "status",
                        "reason",
                    ],
                    l.iter()
                        .map(|a| {
                            vec![
                                a.id.clone(),
                                a.user.clone(),
                                a.scope.clone(),
                                a.created.clone(),
                                a.last_used.clone().unwrap_or_default(),
                                a.status.to_string(),
                                a.reason.clone().unwrap_or_default(),
                            ]
                        })
                        .collect(),
                )
            });
        }
        AppCmd::RevokeAuthorization { app, id } => {
            let c = find(core, &app).await?;
            let a = authorizations::revoke(core, &actor, &c, &id).await?;
            out.emit(&a, |a| {
                format!("authorization {} of {} is {}", a.id, a.user, a.status)
            });
        }
        AppCmd::EndOverlap(app) => {
            let oid = org_id(core, &app.org).await?;
            let c = clients::end_overlap(core, &actor, &oid, ClientKind::App, &app.name).await?;
            out.emit(&c.view(None, core.now()), |v| {
                format!("{}: the previous secret no longer works", v.name)
            });
        }
        AppCmd::RegenerateSecret { app, overlap } => {
            let oid = org_id(core, &app.org).await?;
            let overlap_ms = overlap.map(Dur::ms).unwrap_or(0);
            let (c, secret) = clients::regenerate_secret(
                core,
                &actor,
                &oid,
                ClientKind::App,
                &app.name,
                overlap_ms,
                false,
            )
            .await?;
            let v = json!({"id": c.id, "client_id": c.client_id, "client_secret": secret, "previous_secret_valid_until": c.prev_secret_expires_at.map(rfc3339)});
            out.emit(&v, |_| {
                let old = match c.prev_secret_expires_at {
                    Some(t) => format!("the old secret stays valid until {}", rfc3339(t)),
                    None => "the old secret no longer works".to_string(),
                };
                format!("new client secret (shown once): {secret}\n{old}")
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn find(core: &Core, r: &AppRef) -> anyhow::Result<Client> {
    let oid = org_id(core, &r.org).await?;
    Ok(clients::find_in(&core.db, &oid, ClientKind::App, &r.name).await?)
}
