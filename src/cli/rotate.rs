//! `rekey rotate …` and `rekey rotation …`.

use std::process::ExitCode;
use std::time::Duration;

use super::args::{RotateArgs, RotationCmd};
use super::output::table;
use super::Out;
use crate::audit::Actor;
use crate::connectors::credentials::instance_id;
use crate::identity::orgs;
use crate::rotation::{self, RotationError, RotationView, StartRequest, Started, TargetRef};
use crate::state::Core;

pub async fn rotate(core: &Core, out: &Out, a: RotateArgs) -> anyhow::Result<ExitCode> {
    let actor = Actor::cli();
    let o = orgs::find_in(&core.db, &a.org).await?;
    let target = match (a.connection, a.key, a.m2m, a.app) {
        (Some(c), ..) => TargetRef::Connection(c),
        (None, Some(k), ..) => TargetRef::Key(k),
        (None, None, Some(m), _) => TargetRef::M2m(m),
        (None, None, None, Some(p)) => TargetRef::App(p),
        // clap requires exactly one
        (None, None, None, None) => anyhow::bail!("name one target"),
    };
    let req = StartRequest {
        target,
        dry_run: a.dry_run,
        preflight: a.preflight,
        cutover_window_ms: a.cutover_window.ms(),
        deadline_ms: a.deadline.ms(),
        rotate_with: a.rotate_with,
        force_at_deadline: false,
        end_sessions: false,
    };
    let started = match rotation::start(core, &actor, &o.id, &req).await {
        Ok(s) => s,
        Err(RotationError::InProgress(v)) => {
            // The answer is the rotation in progress.
            out.emit(&*v, describe);
            // In its cut-over the change is made: what ends it is `finish`.
            let hint = if v.status == "waiting_cutover" {
                format!(
                    "; it waits for its cut-over: `rekey rotation finish {}` ends it (with `--now` to retire the previous credential at once)",
                    v.id
                )
            } else {
                String::new()
            };
            anyhow::bail!(
                "a rotation of {} is already in progress ({}){hint}",
                v.target.name,
                v.id
            );
        }
        Err(e) => return Err(e.into()),
    };
    let view = match started {
        Started::Plan(p) if p["preflight"] == true => {
            out.emit(&p, describe_preflight);
            return Ok(ExitCode::SUCCESS);
        }
        Started::Plan(p) => {
            out.emit(&p, |p| {
                let steps = p["statements"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str())
                            .map(|s| format!("  {s}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                format!("dry run: nothing was changed. The rotation would run:\n{steps}")
            });
            return Ok(ExitCode::SUCCESS);
        }
        Started::Rotation(v) => *v,
    };
    if !a.wait || view.secret.is_some() {
        // A key or secret rotation answers at once: the new secret is in
        // this answer only; the job retires the old one after the window.
        out.emit(&view, |v| {
            let mut s = format!(
                "rotation {} started ({}); the server runs it, or run `rekey rotation show {}`",
                v.id, v.status, v.id
            );
            if let Some(secret) = &v.secret {
                s.push_str(&format!("\n  new secret (shown once): {secret}"));
            }
            s
        });
        return Ok(exit_for(&view));
    }
    let view = wait(core, &view.id).await?;
    out.emit(&view, describe);
    Ok(exit_for(&view))
}

/// Runs the rotation from here until it settles, with a progress bar on
/// stderr (hidden when stderr is not a terminal).
async fn wait(core: &Core, id: &str) -> anyhow::Result<RotationView> {
    let bar = indicatif::ProgressBar::new(100);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos:>3}% {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        rotation::drive(core, id, instance_id()).await?;
        let row = rotation::get_any(core, id).await?;
        let v = row.view();
        bar.set_position(u64::from(v.progress));
        bar.set_message(v.status.clone());
        if rotation::SETTLED.contains(&v.status.as_str()) {
            bar.finish_and_clear();
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn exit_for(v: &RotationView) -> ExitCode {
    match v.status.as_str() {
        "failed" | "stalled" | "cancelled" => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

fn describe(v: &RotationView) -> String {
    let mut s = format!(
        "rotation {} of {} {}: {}{}",
        v.id,
        v.target.kind,
        v.target.name,
        v.status,
        v.reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    if let Some(u) = &v.authorize_url {
        s.push_str(&format!("\n  authorize at: {u}"));
    }
    if let Some(serde_json::Value::Array(book)) = &v.runbook {
        for b in book {
            s.push_str(&format!(
                "\n  [{}] {}. {}",
                if b["done"] == true { "x" } else { " " },
                b["n"],
                b["text"].as_str().unwrap_or("")
            ));
        }
    }
    for st in &v.steps {
        s.push_str(&format!(
            "\n  {:<12} {:<9} {}",
            st["name"].as_str().unwrap_or(""),
            st["status"].as_str().unwrap_or(""),
            st["detail"].as_str().unwrap_or("")
        ));
    }
    s
}

pub async fn run(core: &Core, out: &Out, cmd: RotationCmd) -> anyhow::Result<ExitCode> {
    let actor = Actor::cli();
    match cmd {
        RotationCmd::List { org, status } => {
            let o = orgs::find_in(&core.db, &org).await?;
            let rows = rotation::list(core, &o.id, status.as_deref()).await?;
            let views: Vec<RotationView> = rows.iter().map(|r| r.view()).collect();
            out.emit(&views, |vs| {
                table(
                    &["id", "target", "status", "progress", "started", "finished"],
                    vs.iter()
                        .map(|v| {
                            vec![
                                v.id.clone(),
                                format!("{} {}", v.target.kind, v.target.name),
                                v.status.clone(),
                                format!("{}%", v.progress),
                                v.started_at.clone(),
                                v.finished_at.clone().unwrap_or_default(),
                            ]
                        })
                        .collect(),
                )
            });
        }
        RotationCmd::Show { id } => {
            let row = rotation::get_any(core, &id).await?;
            let detailed = rotation::detailed_view(core, &row).await?;
            let v = row.view();
            out.emit(&detailed, |d| describe(&v) + &describe_consumers(d));
        }
        RotationCmd::Cancel { id } => {
            let row = rotation::get_any(core, &id).await?;
            let v = rotation::cancel(core, &actor, &row.org_id, &id)
                .await?
                .view();
            out.emit(&v, describe);
        }
        RotationCmd::Step { id, done } => {
            let row = rotation::get_any(core, &id).await?;
            let v = rotation::runbook_step(core, &actor, &row.org_id, &id, done).await?;
            out.emit(&v, describe);
        }
        RotationCmd::Finish { id, now } => {
            let row = rotation::get_any(core, &id).await?;
            let f = rotation::finish_cutover(core, &actor, &row.org_id, &id, now).await?;
            let v = f.json();
            out.emit(&v, |_| {
                let mut s = describe(&f.rotation);
                if !f.breaks.is_empty() {
                    let verb = if f.now {
                        "broken"
                    } else {
                        "still on the previous credential"
                    };
                    s.push_str(&format!("\n{verb}: {}", f.breaks.join(", ")));
                }
                s
            });
            return Ok(
                if rotation::SETTLED.contains(&f.rotation.status.as_str())
                    && f.rotation.status != "completed"
                {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                },
            );
        }
        RotationCmd::Retry { id } => {
            let row = rotation::get_any(core, &id).await?;
            match rotation::retry(core, &actor, &row.org_id, &id).await? {
                Started::Rotation(v) => out.emit(&*v, describe),
                Started::Plan(p) => out.emit(&p, |p| p.to_string()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `key|m2m update --rotation-interval` (0 turns the schedule off).
pub(super) async fn schedule_own(
    core: &Core,
    out: &Out,
    org: &str,
    what: crate::rotation::age::Own,
    name: &str,
    interval: crate::config::Dur,
) -> anyhow::Result<()> {
    let o = orgs::find_in(&core.db, org).await?;
    let ms = Some(interval.ms()).filter(|ms| *ms > 0);
    let row =
        crate::rotation::age::set_interval(core, &Actor::cli(), &o.id, what, name, ms).await?;
    out.emit(&row, describe_schedule);
    Ok(())
}

/// One line for a credential's schedule (`key|m2m update`).
pub(super) fn describe_schedule(r: &crate::rotation::age::AgeRow) -> String {
    match &r.next_due_at {
        Some(due) => format!(
            "{} {}: rotation due {due}{}",
            r.kind,
            r.name,
            if r.due { " (due now)" } else { "" }
        ),
        None => format!("{} {}: no rotation schedule", r.kind, r.name),
    }
}

/// `rekey credentials age`.
pub async fn credentials(
    core: &Core,
    out: &Out,
    cmd: super::args::CredentialsCmd,
) -> anyhow::Result<ExitCode> {
    let super::args::CredentialsCmd::Age { org, older_than } = cmd;
    let org_id = match &org {
        Some(slug) => Some(crate::identity::orgs::find_in(&core.db, slug).await?.id),
        None => None,
    };
    let rows =
        crate::rotation::age::list(core, org_id.as_deref(), older_than.map(|d| d.ms())).await?;
    out.emit(&rows, |rs| {
        super::output::table(
            &[
                "type",
                "org",
                "name",
                "age",
                "last used",
                "last verified",
                "rotation",
                "next due",
            ],
            rs.iter()
                .map(|r| {
                    vec![
                        r.kind.clone(),
                        r.org.clone().unwrap_or_else(|| "(platform)".into()),
                        r.name.clone(),
                        super::output::age(r.age_s),
                        r.last_used_at.clone().unwrap_or_else(|| "never".into()),
                        r.last_verified_at.clone().unwrap_or_else(|| "never".into()),
                        r.rotation.clone(),
                        match (&r.next_due_at, r.due) {
                            (Some(d), true) if r.waiting.is_some() => {
                                format!("{d} (DUE, waits for a person)")
                            }
                            (Some(d), true) => format!("{d} (DUE)"),
                            (Some(d), false) => d.clone(),
                            (None, _) => "-".into(),
                        },
                    ]
                })
                .collect(),
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// One reader of a credential, as `rotate --preflight` and `rotation show`
/// print it: who, from where, which version, when, until when it may cache
/// it, and whether it is on the current version.
fn reader_line(r: &serde_json::Value) -> String {
    format!(
        "\n  reader {}{}{} — version {}, last read {}{}{}",
        r["reader"].as_str().unwrap_or_default(),
        r["consumer"]
            .as_str()
            .map(|c| format!(" (consumer {c})"))
            .unwrap_or_default(),
        r["ip"]
            .as_str()
            .map(|ip| format!(" from {ip}"))
            .unwrap_or_default(),
        r["version"],
        r["last_read_at"].as_str().unwrap_or_default(),
        r["cached_until_at"]
            .as_str()
            .map(|u| format!(", may cache it until {u}"))
            .unwrap_or_default(),
        if r["on_current"] == true {
            ""
        } else {
            " (not on the current version yet)"
        }
    )
}

/// Who reads the rotated credential, which version, and until when it
/// may keep it from its cache (`rotation show`).
fn describe_consumers(d: &serde_json::Value) -> String {
    let mut s = String::new();
    for r in d["consumers"].as_array().into_iter().flatten() {
        s.push_str(&reader_line(r));
    }
    for h in d["cached"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "\n  {}{} may use its cached copy of version {} until {}: the previous credential stays until then",
            h["reader"].as_str().unwrap_or_default(),
            h["consumer"]
                .as_str()
                .map(|c| format!(" (consumer {c})"))
                .unwrap_or_default(),
            h["version"],
            h["until_at"].as_str().unwrap_or_default(),
        ));
    }
    s
}

/// `rotate --preflight` for a person: who reads the credential, which
/// version each has, and who would have to move.
fn describe_preflight(p: &serde_json::Value) -> String {
    let mut s = format!(
        "{} (current version {}): ",
        p["target"]["name"].as_str().unwrap_or_default(),
        p["current_version"]
    );
    let readers = p["readers"].as_array().cloned().unwrap_or_default();
    if readers.is_empty() {
        s.push_str("nobody has read it through rekey; nothing to wait for");
        return s;
    }
    s.push_str(&format!("{} reader(s)", readers.len()));
    for r in &readers {
        s.push_str(&reader_line(r));
    }
    s
}
