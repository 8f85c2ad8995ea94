//! `rekey user …` and `rekey operator create`.

use std::process::ExitCode;

use serde_json::json;

use super::args::{OperatorCmd, UserCmd};
use super::output::table;
use super::{read_stdin_line, Out};
use crate::audit::Actor;
use crate::clock::rfc3339;
use crate::crypto::password;
use crate::identity::users::{self, NewUser};
use crate::identity::{operators, orgs, Permission};
use crate::state::Core;

/// The password from stdin, or a generated one (to print once).
fn password_from(stdin: bool) -> anyhow::Result<(String, bool)> {
    if stdin {
        Ok((read_stdin_line("password")?, false))
    } else {
        Ok((password::generate(), true))
    }
}

pub async fn run(core: &Core, out: &Out, cmd: UserCmd) -> anyhow::Result<ExitCode> {
    let actor = Actor::cli();
    match cmd {
        UserCmd::Create {
            org,
            email,
            permission,
            admin,
            password_stdin,
        } => {
            let org = orgs::find_in(&core.db, &org).await?;
            let permission: Permission = permission.parse()?;
            let (pw, generated) = password_from(password_stdin)?;
            let u = users::create(
                core,
                &actor,
                NewUser {
                    org_id: &org.id,
                    email: &email,
                    permission,
                    is_admin: admin,
                    password: &pw,
                },
            )
            .await?;
            let mut v = u.json(&org.slug);
            if generated {
                v["password"] = json!(pw);
            }
            out.emit(&v, |_| {
                let mut s = format!(
                    "created user {} in {} ({}{})",
                    u.email,
                    org.slug,
                    u.permission,
                    if u.is_admin { ", admin" } else { "" }
                );
                if generated {
                    s.push_str(&format!("\npassword (shown once): {pw}"));
                }
                s
            });
        }
        UserCmd::List { org } => {
            let org = orgs::find_in(&core.db, &org).await?;
            let list = users::list(&core.db, &org.id).await?;
            let v: Vec<_> = list.iter().map(|u| u.json(&org.slug)).collect();
            out.emit(&v, |_| {
                table(
                    &["email", "permission", "admin", "active", "created"],
                    list.iter()
                        .map(|u| {
                            vec![
                                u.email.clone(),
                                u.permission.clone(),
                                u.is_admin.to_string(),
                                u.active.to_string(),
                                rfc3339(u.created_at),
                            ]
                        })
                        .collect(),
                )
            });
        }
        UserCmd::Deactivate(r) => {
            let org = orgs::find_in(&core.db, &r.org).await?;
            let u = users::set_active(core, &actor, &org.id, &r.email, false).await?;
            out.emit(&u.json(&org.slug), |_| format!("deactivated {}", u.email));
        }
        UserCmd::Activate(r) => {
            let org = orgs::find_in(&core.db, &r.org).await?;
            let u = users::set_active(core, &actor, &org.id, &r.email, true).await?;
            out.emit(&u.json(&org.slug), |_| format!("activated {}", u.email));
        }
        UserCmd::SetPermission { user, permission } => {
            let org = orgs::find_in(&core.db, &user.org).await?;
            let u = users::set_permission(core, &actor, &org.id, &user.email, permission.parse()?)
                .await?;
            out.emit(&u.json(&org.slug), |_| {
                format!("{} now has {}", u.email, u.permission)
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_operator(core: &Core, out: &Out, cmd: OperatorCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        OperatorCmd::Create {
            email,
            password_stdin,
        } => {
            let (pw, generated) = password_from(password_stdin)?;
            let op = operators::create(core, &Actor::cli(), &email, &pw).await?;
            let mut v =
                json!({"id": op.id, "email": op.email, "created_at": rfc3339(op.created_at)});
            if generated {
                v["password"] = json!(pw);
            }
            out.emit(&v, |_| {
                let mut s = format!("created operator {}", op.email);
                if generated {
                    s.push_str(&format!("\npassword (shown once): {pw}"));
                }
                s
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
