//! `rekey org create|list`.

use std::process::ExitCode;

use super::args::OrgCmd;
use super::output::table;
use super::Out;
use crate::audit::Actor;
use crate::clock::rfc3339;
use crate::identity::orgs;
use crate::state::Core;

pub async fn run(core: &Core, out: &Out, cmd: OrgCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        OrgCmd::Create { slug, name } => {
            let org =
                orgs::create(&core.db, &Actor::cli(), &slug, name.as_deref(), core.now()).await?;
            out.emit(&org, |o| format!("created org {} ({})", o.slug, o.id));
        }
        OrgCmd::List => {
            let list = orgs::list(&core.db).await?;
            out.emit(&list, |l| {
                table(
                    &["slug", "name", "id", "created"],
                    l.iter()
                        .map(|o| {
                            vec![
                                o.slug.clone(),
                                o.name.clone(),
                                o.id.clone(),
                                rfc3339(o.created_at),
                            ]
                        })
                        .collect(),
                )
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
