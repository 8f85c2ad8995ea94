//! `rekey incident …`: campaigns, their status and report.

use std::process::ExitCode;
use std::time::Duration;

use super::args::IncidentCmd;
use super::output::table;
use super::Out;
use crate::audit::Actor;
use crate::connectors::credentials::instance_id;
use crate::incident::{self, Asker, IncidentError, IncidentView, StartRequest, Started};
use crate::state::Core;

pub async fn run(core: &Core, out: &Out, cmd: IncidentCmd) -> anyhow::Result<ExitCode> {
    let actor = Actor::cli();
    // The CLI acts as the platform operator (it holds the database).
    let asker = Asker::Operator;
    let mut failed = false;
    match cmd {
        IncidentCmd::Start {
            reason,
            scope,
            kinds,
            include_own,
            overlap,
            force_cutover,
            end_sessions,
            dry_run,
            wait,
        } => {
            let req = StartRequest {
                reason,
                scope,
                kinds,
                include_own,
                overlap_ms: overlap.map(|d| d.ms()).unwrap_or(0),
                force_cutover,
                end_sessions,
                dry_run,
            };
            let started = match incident::start(core, &actor, &asker, &req).await {
                Ok(s) => s,
                Err(IncidentError::Running(o)) => {
                    match &o {
                        incident::Overlap::Visible(v) => out.emit(&**v, describe),
                        other => out.emit(&other.campaign(), |_| other.message()),
                    }
                    anyhow::bail!("{}", o.message());
                }
                Err(e) => return Err(e.into()),
            };
            match started {
                Started::Plan(p) => out.emit(&p, |p| {
                    let mut s = format!(
                        "dry run: nothing was changed. A campaign over {} would act on {} items:\n",
                        p["scope"].as_str().unwrap_or_default(),
                        p["total"]
                    );
                    for i in p["items"].as_array().into_iter().flatten() {
                        s.push_str(&format!(
                            "  {:>3}. {:<11} {} {}{}\n",
                            i["n"],
                            i["action"].as_str().unwrap_or_default(),
                            i["target"]["type"].as_str().unwrap_or_default(),
                            i["target"]["name"].as_str().unwrap_or_default(),
                            i["org"]
                                .as_str()
                                .map(|o| format!(" (org {o})"))
                                .unwrap_or_default(),
                        ));
                    }
                    s
                }),
                Started::Campaign(v, secrets) => {
                    let v = if wait { follow(core, &v.id).await? } else { *v };
                    failed = wait && failed_items(&v);
                    let mut j = serde_json::to_value(&v)?;
                    j["secrets"] = serde_json::json!(secrets);
                    out.emit(&j, |_| {
                        let mut s = describe(&v);
                        for sec in &secrets {
                            let value = sec["secret"]
                                .as_str()
                                .or(sec["key"].as_str())
                                .unwrap_or_default();
                            s.push_str(&format!(
                                "\n  new {} {} (shown once): {value}",
                                sec["type"].as_str().unwrap_or_default(),
                                sec["name"].as_str().unwrap_or_default()
                            ));
                        }
                        if !wait {
                            s.push_str(&format!(
                                "\nthe server runs it; follow with `rekey incident status {}`",
                                v.id
                            ));
                        }
                        s
                    });
                }
            }
        }
        IncidentCmd::Status {
            id,
            limit: None,
            after: None,
            item_status: None,
        } => {
            let v = incident::get(core, &asker, &id).await?;
            out.emit(&v, describe);
            failed = failed_items(&v);
        }
        IncidentCmd::Status {
            id,
            limit,
            after,
            item_status,
        } => {
            let n = limit.unwrap_or(crate::store::keyset::PAGE);
            let p = incident::items::shown(
                core,
                &asker,
                &id,
                item_status.as_deref(),
                after.as_deref(),
                n,
            )
            .await?;
            out.emit(&p, |p| {
                // The page's items listed once: a failed one with its
                // retry, not again under the campaign's head.
                let mut s = describe(&IncidentView {
                    items: Vec::new(),
                    ..p.campaign.clone()
                });
                for i in &p.campaign.items {
                    s.push_str(&format!(
                        "  item {:>4} {:<14} {} {}{}{}\n",
                        i.n,
                        i.status,
                        i.target["type"].as_str().unwrap_or_default(),
                        i.target["name"].as_str().unwrap_or_default(),
                        i.org
                            .as_deref()
                            .map(|o| format!(" (org {o})"))
                            .unwrap_or_default(),
                        if i.status == "failed" {
                            retry_hint(&p.campaign.id, i.n)
                        } else {
                            String::new()
                        },
                    ));
                }
                s.push_str(&format!(
                    "{} of {} items shown",
                    p.campaign.items.len(),
                    p.items_total
                ));
                if let Some(n) = &p.next_after {
                    s.push_str(&format!("\nmore: --after {n}"));
                }
                s
            });
            failed = failed_items(&p.campaign);
        }
        IncidentCmd::List {
            limit: None,
            after: None,
        } => {
            let vs = incident::list(core, &asker).await?;
            out.emit(&vs, |vs| campaigns(vs));
        }
        IncidentCmd::List { limit, after } => {
            let n = limit.unwrap_or(crate::store::keyset::PAGE);
            let after = after.as_deref().filter(|a| !a.is_empty());
            let p = incident::page(core, &asker, after, n).await?;
            out.emit(&p.answer(), |_| {
                let mut s = campaigns(&p.items);
                s.push_str(&format!(
                    "\n{} of {} campaigns shown",
                    p.items.len(),
                    p.total
                ));
                if let Some(n) = &p.next {
                    s.push_str(&format!("\nmore: --after {n}"));
                }
                s
            });
        }
        IncidentCmd::Cancel { id, item } => {
            let v = match item {
                Some(n) => incident::cancel_item(core, &actor, &asker, &id, n).await?,
                None => incident::cancel(core, &actor, &asker, &id).await?,
            };
            out.emit(&v, describe);
        }
        IncidentCmd::Retry { id, item } => {
            let v = incident::retry(core, &actor, &asker, &id, item).await?;
            out.emit(&v, describe);
        }
        IncidentCmd::BlastRadius(a) => return blast_radius(core, out, &actor, a).await,
        IncidentCmd::Report { id, format } => {
            let f: incident::Format = format.parse()?;
            let text = incident::report(core, &asker, &id, f).await?;
            if out.json && f != incident::Format::Json {
                // --json is one JSON document on stdout, whatever the format.
                out.emit(
                    &serde_json::json!({"id": id, "format": format, "report": text}),
                    |_| String::new(),
                );
            } else {
                // The report is a document of its own: printed as it is.
                super::output::print_raw(&text);
            }
        }
    }
    // Failed items end the command with exit 1, as a rotation that ends
    // `failed` does (the answer is on stdout all the same).
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Whether any item of the campaign failed.
fn failed_items(v: &IncidentView) -> bool {
    v.counts["failed"].as_u64().unwrap_or(0) > 0
}

/// Runs the campaign (and its rotations) from here until every item is
/// settled or waits on a person, with a progress bar on stderr.
async fn follow(core: &Core, id: &str) -> anyhow::Result<IncidentView> {
    let bar = indicatif::ProgressBar::new(100);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos:>3}% {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        incident::run_due(core, instance_id()).await?;
        crate::rotation::run_due(core, instance_id()).await?;
        // Counted, not read: a campaign over every org holds thousands
        // of items, and this looks five times a second.
        let v = incident::items::summary(core, &Asker::Operator, id)
            .await?
            .view;
        bar.set_position(u64::from(v.progress));
        bar.set_message(format!("{} of {} verified", v.counts["verified"], v.total));
        let moving = ["pending", "acting", "done"]
            .iter()
            .any(|s| v.counts[*s].as_u64().unwrap_or(0) > 0);
        if v.finished_at.is_some() || !moving {
            bar.finish_and_clear();
            return Ok(incident::get(core, &Asker::Operator, id).await?);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Campaigns as a table, a line each.
fn campaigns(vs: &[IncidentView]) -> String {
    table(
        &[
            "id", "scope", "status", "items", "verified", "started", "reason",
        ],
        vs.iter()
            .map(|v| {
                vec![
                    v.id.clone(),
                    v.scope.clone(),
                    v.status.clone(),
                    v.total.to_string(),
                    format!("{}%", v.verified_pct),
                    v.started_at.clone(),
                    v.reason.clone(),
                ]
            })
            .collect(),
    )
}

fn bar(pct: u8) -> String {
    let filled = usize::from(pct) * 30 / 100;
    format!(
        "[{}{}] {pct:>3}%",
        "#".repeat(filled),
        "-".repeat(30 - filled)
    )
}

fn describe(v: &IncidentView) -> String {
    let mut s = format!(
        "campaign {} over {} — {} ({})\n{} settled, {}% verified\n",
        v.id,
        v.scope,
        v.status,
        v.reason,
        bar(v.progress),
        v.verified_pct
    );
    let counts: Vec<String> = incident::ITEM_STATUSES
        .iter()
        .filter_map(|k| {
            let n = v.counts[*k].as_u64().unwrap_or(0);
            (n > 0).then(|| format!("{k} {n}"))
        })
        .collect();
    s.push_str(&format!("items: {} ({})\n", v.total, counts.join(", ")));
    if let Some(e) = &v.stopped {
        s.push_str(&format!(
            "STOPPED: the campaign's job failed again and again ({e}); nothing follows its items until `rekey incident retry {}`\n",
            v.id
        ));
    }
    if !v.waiting.is_empty() {
        s.push_str("waiting on a person:\n");
        for w in &v.waiting {
            s.push_str(&format!(
                "  item {} {} {}{}: {} — {}\n",
                w["n"],
                w["target"]["type"].as_str().unwrap_or_default(),
                w["target"]["name"].as_str().unwrap_or_default(),
                w["org"]
                    .as_str()
                    .map(|o| format!(" (org {o})"))
                    .unwrap_or_default(),
                w["who"].as_str().unwrap_or_default(),
                w["what"].as_str().unwrap_or_default()
            ));
        }
    }
    for i in v.items.iter().filter(|i| i.status == "failed") {
        s.push_str(&format!(
            "  item {} failed: {}{}\n",
            i.n,
            i.detail.clone().unwrap_or_default(),
            retry_hint(&v.id, i.n)
        ));
    }
    s
}

fn retry_hint(id: &str, n: i64) -> String {
    format!(" (retry: rekey incident retry {id} --item {n})")
}

async fn blast_radius(
    core: &Core,
    out: &Out,
    actor: &Actor,
    a: super::args::BlastArgs,
) -> anyhow::Result<ExitCode> {
    use crate::incident::blast::{self, Query};
    let org_id = match &a.org {
        Some(slug) => crate::identity::orgs::find_in(&core.db, slug).await?.id,
        None => String::new(),
    };
    let q = match (a.key, a.app, a.m2m, a.connection) {
        (Some(name), ..) => Query::Key { org_id, name },
        (None, Some(name), ..) => Query::App { org_id, name },
        (None, None, Some(name), _) => Query::M2m { org_id, name },
        (None, None, None, Some(name)) => Query::Connection { org_id, name },
        (None, None, None, None) => Query::Secret(super::read_stdin_all("the value")?),
    };
    let r = blast::look_up(core, actor, q).await?;
    let mut answer = r.answer.clone();
    if a.revoke {
        if let Some(kill) = &r.revoke {
            answer["revoke"] = blast::revoke(core, actor, kill).await?;
        }
    }
    out.emit(&answer, describe_radius);
    if r.found {
        Ok(ExitCode::SUCCESS)
    } else {
        // A refused request: one line on stderr and exit 1 (with --json the
        // answer is still the one document on stdout).
        eprintln!("error: not issued or held by this rekey");
        Ok(ExitCode::from(1))
    }
}

/// The blast radius for a person: every fact of the answer as words, never
/// a JSON fragment (that is what `--json` is for).
fn describe_radius(v: &serde_json::Value) -> String {
    use serde_json::Value;
    if v["found"] != true {
        return "not issued or held by this rekey".to_string();
    }
    let text = |v: &Value| -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        }
    };
    // "org acme, scope read, user ann@…": the fields that are set, in order.
    let phrase = |v: &Value, fields: &[&str]| -> String {
        fields
            .iter()
            .filter_map(|f| {
                let t = text(&v[*f]);
                (!t.is_empty()).then(|| format!("{f} {t}"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let kind = v["type"].as_str().unwrap_or_default().replace('_', " ");
    let name = v["name"]
        .as_str()
        .or(v["application"].as_str())
        .unwrap_or_default();
    let mut s = format!(
        "{kind} {name} — {}",
        if v["live"] == true {
            "LIVE"
        } else {
            "not live"
        }
    );
    if let Some(which) = v["which"].as_str().or(v["slot"].as_str()) {
        s.push_str(&format!(" ({which})"));
    }
    let speaks = &v["speaks_for"];
    s.push_str(&format!(
        "\n  speaks for: {}",
        phrase(
            speaks,
            &["org", "connection", "kind", "auth", "scope", "user"]
        )
    ));
    let u = &v["unlocks"];
    let unlocks = match (
        u["what"].as_str(),
        &u["authorizations"],
        &u["authorization"],
    ) {
        (Some(what), Value::Number(n), _) => format!("{what} (live now: {n})"),
        (Some(what), _, Value::String(id)) => format!("{what} (authorization {id})"),
        (Some(what), ..) => what.to_string(),
        (None, ..) => {
            let mut parts: Vec<String> = Vec::new();
            for f in ["api", "tokens"] {
                if let Some(t) = u[f].as_str() {
                    parts.push(t.to_string());
                }
            }
            if let Some(c) = u["connections"].as_array().filter(|c| !c.is_empty()) {
                parts.push(format!("connection {}", text(&Value::Array(c.clone()))));
            }
            if let Some(settings) = u["settings"].as_object().filter(|m| !m.is_empty()) {
                let list = settings
                    .iter()
                    .map(|(k, x)| format!("{k}={}", text(x)))
                    .collect::<Vec<_>>()
                    .join(", ");
                parts.push(format!("settings {list}"));
            }
            if let Some(d) = u["deliveries"].as_array().filter(|d| !d.is_empty()) {
                parts.push(format!("deliveries {}", text(&Value::Array(d.clone()))));
            }
            parts.join("; ")
        }
    };
    s.push_str(&format!("\n  unlocks: {unlocks}"));
    if let Some(t) = v["expires_at"].as_str() {
        s.push_str(&format!("\n  expires: {t}"));
    }
    let from = match &v["last_used_from"] {
        Value::Object(_) => phrase(&v["last_used_from"], &["reader", "ip"]),
        other => text(other),
    };
    s.push_str(&format!(
        "\n  last used: {}{}",
        v["last_used_at"].as_str().unwrap_or("never"),
        if from.is_empty() {
            String::new()
        } else {
            format!(" from {from}")
        }
    ));
    s.push_str(&format!(
        "\n  kill it: {}",
        v["kill"].as_str().unwrap_or_default()
    ));
    if let Some(done) = v["revoke"]["detail"].as_str() {
        s.push_str(&format!("\n  done: {done}"));
    }
    if let Some(secret) = v["revoke"]["new_secret"].as_str() {
        s.push_str(&format!("\n  new secret (shown once): {secret}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn blast_radius_text_holds_no_json() {
        let v = json!({
            "found": true, "type": "connection_credential", "live": true, "org": "acme",
            "name": "cache", "slot": "current",
            "speaks_for": {"org": "acme", "connection": "cache", "kind": "redis", "auth": "password"},
            "unlocks": {"connections": ["cache"], "settings": {"host": "127.0.0.1", "port": 1}, "deliveries": []},
            "last_used_at": "2026-01-01T00:00:00Z",
            "last_used_from": {"reader": "service:platform", "ip": "10.0.0.1"},
            "kill": "rekey rotate --org acme --connection cache",
        });
        let t = super::describe_radius(&v);
        assert!(!t.contains('{') && !t.contains('"'), "{t}");
        assert!(t.contains("settings host=127.0.0.1, port=1"), "{t}");
        assert!(
            t.contains("from reader service:platform, ip 10.0.0.1"),
            "{t}"
        );
    }
}
