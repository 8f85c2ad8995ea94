//! `rekey m2m …`: machine-to-machine clients.

use std::process::ExitCode;

use serde_json::json;

use super::args::M2mCmd;
use super::output::table;
use super::Out;
use crate::audit::Actor;
use crate::clock::rfc3339;
use crate::config::Dur;
use crate::identity::{orgs, users};
use crate::oauth::clients::{self, ClientKind, Lifetimes, NewClient};
use crate::state::Core;

pub async fn run(core: &Core, out: &Out, cmd: M2mCmd) -> anyhow::Result<ExitCode> {
    let actor = Actor::cli();
    let now = core.now();
    let kind = ClientKind::M2m;
    match cmd {
        M2mCmd::Create {
            org,
            name,
            scope,
            user,
            access_token_ttl,
            introspect,
        } => {
            let o = orgs::find_in(&core.db, &org).await?;
            let user = match user {
                Some(e) => {
                    let mut c = core.db.read().await?;
                    Some(
                        users::find_by_email(&mut c, &o.id, &e)
                            .await?
                            .ok_or_else(|| anyhow::anyhow!("user {e:?} not found in {}", o.slug))?,
                    )
                }
                None => None,
            };
            let (c, secret) = clients::create(
                core,
                &actor,
                NewClient {
                    org_id: &o.id,
                    kind,
                    name: &name,
                    scope: &scope,
                    callbacks: &[],
                    user_id: user.as_ref().map(|u| u.id.as_str()),
                    lifetimes: Lifetimes {
                        access_ms: access_token_ttl.map(Dur::ms),
                        ..Default::default()
                    },
                    may_introspect: introspect,
                },
            )
            .await?;
            let v = json!({"id": c.id, "client_id": c.client_id, "client_secret": secret, "name": c.name, "scope": c.scope,
                           "user": user.as_ref().map(|u| u.email.clone()), "introspect": c.may_introspect});
            out.emit(&v, |_| format!("created machine client {}\n  client id: {}\n  client secret (shown once): {secret}", c.name, c.client_id));
        }
        M2mCmd::List { org } => {
            let o = orgs::find_in(&core.db, &org).await?;
            let list = clients::list(&core.db, &o.id, kind).await?;
            let users = users::list(&core.db, &o.id).await?;
            let email = |id: &Option<String>| {
                id.as_ref()
                    .and_then(|id| users.iter().find(|u| &u.id == id))
                    .map(|u| u.email.clone())
            };
            let views: Vec<_> = list
                .iter()
                .map(|c| c.view(email(&c.user_id), now))
                .collect();
            out.emit(&views, |vs| {
                table(
                    &["name", "client id", "scope", "user", "status", "created"],
                    vs.iter()
                        .map(|v| {
                            vec![
                                v.name.clone(),
                                v.client_id.clone(),
                                v.scope.clone(),
                                v.user.clone().unwrap_or_default(),
                                v.status.to_string(),
                                rfc3339(v.created_at),
                            ]
                        })
                        .collect(),
                )
            });
        }
        M2mCmd::EndOverlap(r) => {
            let o = orgs::find_in(&core.db, &r.org).await?;
            let c = clients::end_overlap(core, &actor, &o.id, kind, &r.name).await?;
            out.emit(&c.view(None, now), |v| {
                format!("{}: the previous secret no longer works", v.name)
            });
        }
        M2mCmd::RegenerateSecret {
            client,
            overlap,
            revoke_tokens,
        } => {
            let o = orgs::find_in(&core.db, &client.org).await?;
            let (c, secret) = clients::regenerate_secret(
                core,
                &actor,
                &o.id,
                kind,
                &client.name,
                overlap.map(Dur::ms).unwrap_or(0),
                false,
            )
            .await?;
            if revoke_tokens {
                clients::revoke_tokens_before(core, &actor, &c, now, None).await?;
            }
            let v = json!({"id": c.id, "client_id": c.client_id, "client_secret": secret,
                           "previous_secret_valid_until": c.prev_secret_expires_at.map(rfc3339), "tokens_revoked": revoke_tokens});
            out.emit(&v, |_| {
                let old = match c.prev_secret_expires_at {
                    Some(t) => format!("the old secret stays valid until {}", rfc3339(t)),
                    None => "the old secret no longer works".into(),
                };
                let tokens = if revoke_tokens {
                    "access tokens issued before now are revoked"
                } else {
                    "access tokens issued before now keep working until they expire (use --revoke-tokens after a leak)"
                };
                format!("new client secret (shown once): {secret}\n{old}\n{tokens}")
            });
        }
        M2mCmd::Delete(r) => {
            let o = orgs::find_in(&core.db, &r.org).await?;
            let c = clients::delete(core, &actor, &o.id, kind, &r.name).await?;
            out.emit(
                &json!({"deleted": true, "id": c.id, "client_id": c.client_id, "name": c.name}),
                |_| format!("deleted {}", c.name),
            );
        }
        M2mCmd::Deactivate(r) => {
            let o = orgs::find_in(&core.db, &r.org).await?;
            let c = clients::set_active(core, &actor, &o.id, kind, &r.name, false).await?;
            out.emit(&c.view(None, now), |_| format!("deactivated {}", c.name));
        }
        M2mCmd::Activate(r) => {
            let o = orgs::find_in(&core.db, &r.org).await?;
            let c = clients::set_active(core, &actor, &o.id, kind, &r.name, true).await?;
            out.emit(&c.view(None, now), |_| format!("activated {}", c.name));
        }
        M2mCmd::Update {
            client,
            rotation_interval,
        } => {
            use crate::rotation::age::Own;
            super::rotate::schedule_own(
                core,
                out,
                &client.org,
                Own::M2m,
                &client.name,
                rotation_interval,
            )
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
