//! `rekey key …`: org access keys.

use std::process::ExitCode;

use serde_json::json;

use super::args::KeyCmd;
use super::output::table;
use super::Out;
use crate::audit::Actor;
use crate::config::Dur;
use crate::identity::orgs;
use crate::oauth::access_keys;
use crate::state::Core;

pub async fn run(core: &Core, out: &Out, cmd: KeyCmd) -> anyhow::Result<ExitCode> {
    let actor = Actor::cli();
    let now = core.now();
    match cmd {
        KeyCmd::Create {
            org,
            name,
            scope,
            expires,
        } => {
            let o = orgs::find_in(&core.db, &org).await?;
            let (k, key) =
                access_keys::create(core, &actor, &o.id, &name, &scope, expires.map(Dur::ms))
                    .await?;
            let v = json!({"id": k.id, "key": key, "name": k.name, "scope": k.scope, "expires": k.view(now).expires});
            out.emit(&v, |_| {
                format!(
                    "created access key {} ({})\n  key (shown once): {key}",
                    k.name, k.scope
                )
            });
        }
        KeyCmd::List { org } => {
            let o = orgs::find_in(&core.db, &org).await?;
            let views: Vec<_> = access_keys::list(&core.db, &o.id)
                .await?
                .iter()
                .map(|k| k.view(now))
                .collect();
            out.emit(&views, |vs| {
                table(
                    &["name", "scope", "status", "created", "last used", "expires"],
                    vs.iter()
                        .map(|v| {
                            vec![
                                v.name.clone(),
                                v.scope.clone(),
                                v.status.to_string(),
                                v.created.clone(),
                                v.last_used.clone().unwrap_or_else(|| "never".into()),
                                v.expires.clone().unwrap_or_else(|| "never".into()),
                            ]
                        })
                        .collect(),
                )
            });
        }
        KeyCmd::Update {
            key,
            rotation_interval,
        } => {
            use crate::rotation::age::Own;
            super::rotate::schedule_own(
                core,
                out,
                &key.org,
                Own::Key,
                &key.name,
                rotation_interval,
            )
            .await?;
        }
        KeyCmd::Reset { key, overlap } => {
            let o = orgs::find_in(&core.db, &key.org).await?;
            let (k, secret) = access_keys::reset(
                core,
                &actor,
                &o.id,
                &key.name,
                overlap.map(Dur::ms).unwrap_or(0),
                false,
            )
            .await?;
            let view = k.view(now);
            let v = json!({"id": k.id, "key": secret, "name": k.name, "previous_key_valid_until": view.previous_key_valid_until});
            out.emit(&v, |_| {
                let old = match &view.previous_key_valid_until {
                    Some(t) => format!("the old key stays valid until {t}"),
                    None => "the old key no longer works".into(),
                };
                format!("new key (shown once): {secret}\n{old}")
            });
        }
        KeyCmd::EndOverlap(r) => {
            let o = orgs::find_in(&core.db, &r.org).await?;
            let k = access_keys::end_overlap(core, &actor, &o.id, &r.name).await?;
            out.emit(&k.view(now), |v| {
                format!("access key {}: the previous key no longer works", v.name)
            });
        }
        KeyCmd::Revoke(r) => {
            let o = orgs::find_in(&core.db, &r.org).await?;
            let k = access_keys::revoke(core, &actor, &o.id, &r.name).await?;
            out.emit(&k.view(now), |v| format!("revoked access key {}", v.name));
        }
    }
    Ok(ExitCode::SUCCESS)
}
