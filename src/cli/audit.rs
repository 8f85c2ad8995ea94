//! `rekey audit list|verify`.

use std::process::ExitCode;

use super::args::AuditCmd;
use super::output::table;
use super::Out;
use crate::audit;
use crate::clock::{parse_instant, rfc3339};
use crate::identity::orgs;
use crate::state::Core;

pub async fn run(core: &Core, out: &Out, cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCmd::List {
            org,
            since,
            action,
            limit,
        } => {
            let org_id = match org {
                Some(o) => Some(orgs::find_in(&core.db, &o).await?.id),
                None => None,
            };
            let since = match since {
                Some(s) => Some(parse_instant(&s, core.now()).ok_or_else(|| {
                    anyhow::anyhow!("--since {s:?} is neither an RFC 3339 time nor a duration")
                })?),
                None => None,
            };
            let rows = audit::list(
                &core.db,
                org_id.as_deref(),
                since,
                action.as_deref(),
                limit.clamp(1, 10_000),
            )
            .await?;
            let v: Vec<_> = rows.iter().map(audit::AuditRow::json).collect();
            out.emit(&v, |_| {
                table(
                    &["seq", "at", "actor", "action", "target", "detail"],
                    rows.iter()
                        .map(|r| {
                            vec![
                                r.seq.to_string(),
                                rfc3339(r.at),
                                r.actor.clone(),
                                r.action.clone(),
                                r.target.clone().unwrap_or_default(),
                                r.detail.clone(),
                            ]
                        })
                        .collect(),
                )
            });
        }
        AuditCmd::Verify => {
            let v = audit::verify(&core.db).await?;
            let broken = v.broken_at;
            out.emit(&v, |v| match v.broken_at {
                None => format!("audit chain intact: {} events verified", v.checked),
                Some(seq) => format!(
                    "audit chain BROKEN at sequence {seq}: {}",
                    v.reason.clone().unwrap_or_default()
                ),
            });
            if let Some(seq) = broken {
                if !out.json {
                    eprintln!("error: audit chain broken at sequence {seq}");
                }
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
