//! `rekey connector …`, `rekey connection …` and `rekey service-key …`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde_json::json;

use super::args::{ConnectionCmd, ConnectorCmd, ServiceKeyCmd};
use super::output::table;
use super::{read_stdin_all, read_stdin_line, Out};
use crate::audit::Actor;
use crate::connectors::connections::{self, NewConnection};
use crate::connectors::probe::Verdict;
use crate::connectors::{
    actions, catalog, credentials, oauth_client, provider_clients, service_keys,
};
use crate::events::activity;
use crate::identity::orgs;
use crate::state::Core;

pub async fn connector(core: &Core, out: &Out, cmd: ConnectorCmd) -> anyhow::Result<ExitCode> {
    let cat = catalog::catalog()?;
    match cmd {
        ConnectorCmd::List => {
            let v: Vec<_> = cat.values().map(|k| k.view()).collect();
            out.emit(&v, |_| {
                table(
                    &["kind", "name", "auth methods (rotation)"],
                    cat.values()
                        .map(|k| {
                            let m: Vec<String> = k
                                .auth
                                .iter()
                                .map(|a| {
                                    format!(
                                        "{} ({:?}{})",
                                        a.method.as_str(),
                                        a.rotation,
                                        if a.deprecated { ", deprecated" } else { "" }
                                    )
                                    .to_lowercase()
                                })
                                .collect();
                            vec![k.kind.clone(), k.name.clone(), m.join(", ")]
                        })
                        .collect(),
                )
            });
        }
        ConnectorCmd::Show { kind } => {
            let k = cat.get(&kind).ok_or_else(|| {
                anyhow::anyhow!("unknown connector kind {kind:?} (see rekey connector list)")
            })?;
            out.emit(&k.view(), |_| {
                let mut s = format!("{} ({})\n", k.name, k.kind);
                if let Some(d) = &k.docs {
                    s.push_str(&format!("docs: {d}\n"));
                }
                s.push_str("settings:\n");
                for f in &k.settings {
                    s.push_str(&format!(
                        "  {}{} — {}\n",
                        f.key,
                        if f.optional { " (optional)" } else { "" },
                        f.label
                    ));
                }
                for a in &k.auth {
                    s.push_str(&format!(
                        "auth {} — rotation {:?}{}\n",
                        a.method.as_str(),
                        a.rotation,
                        if a.deprecated { " — DEPRECATED" } else { "" }
                    ));
                    if let Some(n) = &a.deprecation_note {
                        s.push_str(&format!("  {n}\n"));
                    }
                    for f in &a.fields {
                        s.push_str(&format!(
                            "  field {}{}\n",
                            f.key,
                            if f.secret { " (secret)" } else { "" }
                        ));
                    }
                    for (i, step) in a.runbook.iter().enumerate() {
                        s.push_str(&format!("  {}. {step}\n", i + 1));
                    }
                }
                s
            });
        }
        ConnectorCmd::Configure {
            kind, client_id, ..
        } => {
            let secret = read_stdin_line("client secret")?;
            provider_clients::configure(core, &Actor::cli(), &kind, &client_id, &secret).await?;
            out.emit(
                &json!({"kind": kind, "client_id": client_id, "configured": true}),
                |_| format!("OAuth client for {kind} configured"),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn map(pairs: Vec<(String, String)>) -> BTreeMap<String, String> {
    pairs.into_iter().collect()
}

pub async fn run(core: &Core, out: &Out, cmd: ConnectionCmd) -> anyhow::Result<ExitCode> {
    let actor = Actor::cli();
    match cmd {
        ConnectionCmd::Create {
            org,
            kind,
            name,
            auth,
            settings,
            endpoints,
        } => {
            let o = orgs::find_in(&core.db, &org).await?;
            let (s, e) = (map(settings), map(endpoints));
            let c = connections::create(
                core,
                &actor,
                NewConnection {
                    org_id: &o.id,
                    kind: &kind,
                    name: &name,
                    auth: auth.as_deref(),
                    settings: &s,
                    endpoints: &e,
                },
            )
            .await?;
            out.emit(&c.view(), |v| {
                format!(
                    "created connection {} ({} via {}), status {}",
                    v.name, v.kind, v.auth, v.status
                )
            });
        }
        ConnectionCmd::List {
            org,
            status,
            rotation_due,
        } => {
            let o = orgs::find_in(&core.db, &org).await?;
            let list = connections::list(&core.db, &o.id, status.as_deref()).await?;
            let now = core.now();
            let views: Vec<_> = list
                .iter()
                .map(|c| c.view_at(now))
                .filter(|v| !rotation_due || v.rotation_due)
                .collect();
            out.emit(&views, |vs| {
                table(
                    &["name", "kind", "auth", "status", "reason", "last test"],
                    vs.iter()
                        .map(|v| {
                            vec![
                                v.name.clone(),
                                v.kind.clone(),
                                v.auth.clone(),
                                v.status.clone(),
                                v.status_reason.clone().unwrap_or_default(),
                                v.last_test
                                    .as_ref()
                                    .map(|t| format!("{} {}", t.outcome.as_str(), t.time))
                                    .unwrap_or_default(),
                            ]
                        })
                        .collect(),
                )
            });
        }
        ConnectionCmd::Show(r) => {
            let o = orgs::find_in(&core.db, &r.org).await?;
            let c = connections::find_in(&core.db, &o.id, &r.name).await?;
            out.emit(&connections::detailed_view(core, &c).await?, |v| {
                describe_detail(&serde_json::to_value(v).unwrap_or_default())
            });
        }
        ConnectionCmd::Update {
            conn,
            settings,
            endpoints,
            rotation_interval,
            refresh_after,
        } => {
            let o = orgs::find_in(&core.db, &conn.org).await?;
            let mut c = connections::find_in(&core.db, &o.id, &conn.name).await?;
            let only_timing = rotation_interval.is_some() || refresh_after.is_some();
            if !settings.is_empty() || !endpoints.is_empty() || !only_timing {
                c = connections::update(
                    core,
                    &actor,
                    &o.id,
                    &conn.name,
                    &map(settings),
                    &map(endpoints),
                )
                .await?;
            }
            if let Some(d) = rotation_interval {
                let ms = Some(d.ms()).filter(|ms| *ms > 0);
                c = connections::set_rotation_interval(core, &actor, &o.id, &c.id, ms).await?;
            }
            if let Some(d) = refresh_after {
                c = connections::set_refresh_after(core, &actor, &o.id, &c.id, Some(d.ms()))
                    .await?;
            }
            out.emit(&c.view_at(core.now()), |v| format!("updated {}", v.name));
        }
        ConnectionCmd::Delete(r) => {
            let o = orgs::find_in(&core.db, &r.org).await?;
            let c = connections::delete(core, &actor, &o.id, &r.name).await?;
            out.emit(
                &json!({"deleted": true, "id": c.id, "name": c.name}),
                |_| format!("deleted {}", c.name),
            );
        }
        ConnectionCmd::Test(r) => {
            let o = orgs::find_in(&core.db, &r.org).await?;
            let (c, outcome) = actions::test(core, &actor, &o.id, &r.name).await?;
            out.emit(&c.view(), |_| {
                format!("{}: {}", outcome.verdict.as_str(), outcome.message)
            });
            // 1: the credential failed; 3: nothing could verify it (the
            // Nagios "unknown"), so a script never reads it as a pass.
            match outcome.verdict {
                Verdict::Ok => {}
                Verdict::Failed => return Ok(ExitCode::FAILURE),
                Verdict::Unverified => return Ok(ExitCode::from(3)),
            }
        }
        ConnectionCmd::Authorize(r) | ConnectionCmd::Reauthenticate(r) => {
            let o = orgs::find_in(&core.db, &r.org).await?;
            let public_url = core.public_url();
            let begun =
                oauth_client::start(core, &actor, &o.id, &r.name, &public_url, None).await?;
            // A link to rekey, not the provider's URL: opened in a browser
            // signed in as the org's admin, it binds the flow to that
            // browser and goes on to the provider.
            let url = begun.link(&public_url);
            out.emit(
                &json!({
                    "authorize_url": url,
                    "client_id": begun.client_id,
                    "expires_at": crate::clock::rfc3339(begun.expires_at),
                }),
                |_| {
                    format!(
                        "open this link in a browser, signed in as an admin of {} (valid for 10 minutes):\n{url}",
                        o.slug
                    )
                },
            );
        }
        ConnectionCmd::RevokeAuthorization(r) => {
            let o = orgs::find_in(&core.db, &r.org).await?;
            let (c, note) = oauth_client::revoke(core, &actor, &o.id, &r.name).await?;
            let mut v = serde_json::to_value(c.view())?;
            v["provider"] = json!(note);
            out.emit(&v, |_| {
                format!(
                    "{} is disconnected{}",
                    c.name,
                    note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
                )
            });
        }
        ConnectionCmd::SetCredential {
            conn,
            fields,
            force,
            ..
        } => {
            let values: Vec<String> = if fields.len() == 1 {
                vec![read_stdin_all("value")?]
            } else {
                let all = read_stdin_all("values")?;
                let lines: Vec<String> = all.lines().map(str::to_string).collect();
                if lines.len() != fields.len() {
                    anyhow::bail!(
                        "expected {} lines on standard input, one per --field",
                        fields.len()
                    );
                }
                lines
            };
            let o = orgs::find_in(&core.db, &conn.org).await?;
            let given: BTreeMap<String, String> = fields.into_iter().zip(values).collect();
            let (c, outcome) =
                actions::set_credential(core, &actor, &o.id, &conn.name, &given, force).await?;
            out.emit(&c.view(), |_| {
                format!(
                    "stored; test {}: {}",
                    outcome.verdict.as_str(),
                    outcome.message
                )
            });
        }
        ConnectionCmd::SetClient {
            conn, client_id, ..
        } => {
            let secret = read_stdin_line("client secret")?;
            let o = orgs::find_in(&core.db, &conn.org).await?;
            let c = provider_clients::set_for_connection(
                core, &actor, &o.id, &conn.name, &client_id, &secret,
            )
            .await?;
            out.emit(&c.view(), |_| {
                format!("{} will use OAuth client {client_id}", c.name)
            });
        }
        ConnectionCmd::Refresh(r) => {
            let o = orgs::find_in(&core.db, &r.org).await?;
            let c = connections::find_in(&core.db, &o.id, &r.name).await?;
            let owner = credentials::instance_id();
            if !credentials::acquire_lease(core, &c.id, owner).await? {
                anyhow::bail!("the connection is being refreshed right now; try again");
            }
            let res = credentials::refresh_locked(core, &c.id, owner, true).await;
            credentials::release_lease(core, &c.id, owner).await?;
            let res = res?;
            let c = connections::find_in(&core.db, &o.id, &r.name).await?;
            out.emit(&c.view(), |v| {
                format!("{:?}: status {}", res, v.status).to_lowercase()
            });
        }
        ConnectionCmd::Activity {
            conn,
            since,
            types,
            limit,
            after,
        } => {
            let o = orgs::find_in(&core.db, &conn.org).await?;
            let c = connections::find_in(&core.db, &o.id, &conn.name).await?;
            let since = since
                .map(|s| activity::parse_since(&s, core.now()))
                .transpose()?;
            let types = activity::parse_types(&types)?;
            let page = activity::page(
                &core.db,
                &o.id,
                &c.id,
                since,
                &types,
                after.as_deref(),
                limit,
            )
            .await?;
            out.emit(&page, |p| {
                let mut s = table(
                    &["at", "type", "message"],
                    p.items
                        .iter()
                        .map(|e| vec![e.at.clone(), e.kind.clone(), e.message.clone()])
                        .collect(),
                );
                s.push_str(&format!("\n{} in all", p.total));
                if let Some(n) = &p.next {
                    s.push_str(&format!("; more: --after {n}"));
                }
                s
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn service_key(core: &Core, out: &Out, cmd: ServiceKeyCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ServiceKeyCmd::Create { name } => {
            let (k, key) = service_keys::create(core, &Actor::cli(), &name).await?;
            out.emit(&json!({"id": k.id, "name": k.name, "key": key}), |_| {
                format!("service key {} (shown once): {key}", k.name)
            });
        }
        ServiceKeyCmd::List => {
            let v: Vec<_> = service_keys::list(core)
                .await?
                .iter()
                .map(|k| k.view())
                .collect();
            out.emit(&v, |vs| {
                table(
                    &["name", "status", "created"],
                    vs.iter()
                        .map(|k| vec![k.name.clone(), k.status.to_string(), k.created.clone()])
                        .collect(),
                )
            });
        }
        ServiceKeyCmd::Revoke { name } => {
            service_keys::revoke(core, &Actor::cli(), &name).await?;
            out.emit(&json!({"name": name, "revoked": true}), |_| {
                format!("revoked service key {name}")
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `connection show` for a person: what it is, where it points, its
/// status, the credential it holds (versions and times, never a value),
/// its last test and its rotation.
fn describe_detail(v: &serde_json::Value) -> String {
    let t = |x: &serde_json::Value| x.as_str().unwrap_or("-").to_string();
    let mut s = format!(
        "{} ({} {}): {}",
        t(&v["name"]),
        t(&v["kind"]),
        t(&v["auth"]),
        t(&v["status"])
    );
    if let Some(r) = v["status_reason"].as_str() {
        s.push_str(&format!(" — {r}"));
    }
    if let Some(m) = v["settings"].as_object() {
        for (k, val) in m {
            s.push_str(&format!(
                "\n  {k} = {}",
                val.as_str().map_or(val.to_string(), str::to_string)
            ));
        }
    }
    if let Some(m) = v["endpoints"].as_object() {
        for (k, val) in m {
            s.push_str(&format!(
                "\n  endpoint {k} = {}",
                val.as_str().unwrap_or_default()
            ));
        }
    }
    for slot in ["current", "pending", "previous"] {
        let x = &v["slots"][slot];
        if x.is_object() {
            s.push_str(&format!(
                "\n  credential {slot}: version {}, set {}, verified {}",
                x["version"],
                t(&x["created_at"]),
                t(&x["verified_at"])
            ));
        }
    }
    if v["last_test"].is_object() {
        s.push_str(&format!(
            "\n  last test: {} at {} ({})",
            t(&v["last_test"]["outcome"]),
            t(&v["last_test"]["at"]),
            t(&v["last_test"]["message"])
        ));
    }
    if let Some(age) = v["credential_age_s"].as_i64() {
        s.push_str(&format!(
            "\n  credential age: {}",
            crate::cli::output::age(age)
        ));
    }
    if let Some(due) = v["rotation_due_at"].as_str() {
        let now = if v["rotation_due"] == true {
            " (due now)"
        } else {
            ""
        };
        s.push_str(&format!("\n  rotation due: {due}{now}"));
    }
    if let Some(why) = v["rotation_waiting"].as_str() {
        s.push_str(&format!(
            "\n  rotation waits for a person since {}: {why}",
            t(&v["rotation_waiting_since"])
        ));
    }
    s
}
