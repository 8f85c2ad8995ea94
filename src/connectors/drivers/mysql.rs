//! MySQL and MariaDB users. The connection rotates itself (any account may
//! change its own password), or through an admin connection holding
//! `CREATE USER` (`--rotate-with`).
//!
//! - MySQL 8.0.14 and later keep two passwords: `ALTER USER … IDENTIFIED
//!   BY … RETAIN CURRENT PASSWORD` adds the new one beside the old, and
//!   `DISCARD OLD PASSWORD` retires the old one after cut-over.
//! - MariaDB (and older MySQL) hold one password: the old one stops working
//!   when the new one is set. The write-ahead order keeps that safe, and a
//!   failed verification sets the old one back.

use serde_json::{Map, Value};

use super::{text, with_new_password, Applied, BoxFut, Driver, Target};
use crate::connectors::session::{self, Sql};

pub struct MySqlUser;

/// A string literal for MySQL/MariaDB (statements that take no bind
/// parameters). Generated passwords are base64url; escaping is a backstop.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// What the server can do, from `VERSION()`.
#[derive(Debug, PartialEq, Eq)]
struct Server {
    mariadb: bool,
    /// Dual passwords (`RETAIN CURRENT PASSWORD`): MySQL 8.0.14 and later.
    dual: bool,
}

fn server(version: &str) -> Server {
    if version.contains("MariaDB") {
        return Server {
            mariadb: true,
            dual: false,
        };
    }
    let n: Vec<u32> = version
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    let v = (
        n.first().copied().unwrap_or(0),
        n.get(1).copied().unwrap_or(0),
        n.get(2).copied().unwrap_or(0),
    );
    Server {
        mariadb: false,
        dual: v >= (8, 0, 14),
    }
}

/// A session as whoever makes the change, the server it is, and the
/// account the statements name.
struct Session {
    c: Sql<sqlx::MySqlConnection>,
    server: Server,
    account: String,
}

impl Session {
    async fn open(t: &Target<'_>, own: &[&Map<String, Value>]) -> Result<Session, String> {
        let (settings, creds) = t.acting(own);
        let mut c = session::mysql(t.egress, settings, &creds).await?;
        let version: String = c
            .run(|c| sqlx::query_scalar("SELECT VERSION()").fetch_one(c))
            .await?;
        let account = match &t.admin {
            None => "CURRENT_USER()".to_string(),
            Some(a) => {
                let u = text(t.settings, "username");
                let found: Vec<String> = c
                    .run(|c| {
                        sqlx::query_scalar(
                            "SELECT CAST(CONCAT(QUOTE(User), '@', QUOTE(Host)) AS CHAR) FROM mysql.user WHERE User = ?",
                        )
                        .bind(&u)
                        .fetch_all(c)
                    })
                    .await
                    .map_err(|e| format!("{} cannot look up the account {u}: {e}", a.name))?;
                match found.as_slice() {
                    [one] => one.clone(),
                    [] => return Err(format!("no account {u} on the server {} connects to", a.name)),
                    many => {
                        return Err(format!(
                            "the user {u} has several accounts ({}); rekey will not guess which one the connection logs in as",
                            many.join(", ")
                        ))
                    }
                }
            }
        };
        Ok(Session {
            c,
            server: server(&version),
            account,
        })
    }

    /// Runs `sql`, which carries `password`: a server error may quote the
    /// statement, so the password is masked before the message goes on.
    async fn run(&mut self, sql: &str, password: &str) -> Result<(), String> {
        self.c
            .run(|c| sqlx::query(sql).persistent(false).execute(c))
            .await
            .map_err(|m| {
                if password.is_empty() {
                    m.message
                } else {
                    m.message.replace(password, "********")
                }
            })?;
        Ok(())
    }

    /// Sets `password`, keeping the current one beside it when `retain`
    /// and the server can; returns what was run, password masked.
    async fn set(&mut self, password: &str, retain: bool) -> Result<String, String> {
        let retain = retain && self.server.dual;
        let (sql, shown) = if self.server.mariadb && self.account == "CURRENT_USER()" {
            (
                format!("SET PASSWORD = PASSWORD({})", literal(password)),
                "SET PASSWORD = PASSWORD('********')".to_string(),
            )
        } else {
            let tail = if retain {
                " RETAIN CURRENT PASSWORD"
            } else {
                ""
            };
            (
                format!(
                    "ALTER USER {} IDENTIFIED BY {}{tail}",
                    self.account,
                    literal(password)
                ),
                format!("ALTER USER {} IDENTIFIED BY '********'{tail}", self.account),
            )
        };
        self.run(&sql, password).await?;
        Ok(shown)
    }

    async fn discard_old(&mut self) -> Result<String, String> {
        if !self.server.dual {
            return Ok(
                "one password per account: the old one stopped working when the new one was set"
                    .into(),
            );
        }
        let sql = format!("ALTER USER {} DISCARD OLD PASSWORD", self.account);
        self.run(&sql, "").await?;
        Ok(sql)
    }

    async fn close(self) {
        self.c.close().await;
    }
}

/// Does `creds` log in as the rotated account (the change already made
/// before a crash)?
async fn logs_in(t: &Target<'_>, creds: &Map<String, Value>) -> bool {
    match session::mysql(t.egress, t.settings, &[creds]).await {
        Ok(s) => {
            s.close().await;
            true
        }
        Err(_) => false,
    }
}

impl Driver for MySqlUser {
    fn dual(&self) -> bool {
        // Known only from the server's version: `apply` says.
        false
    }

    fn plan(&self, settings: &Map<String, Value>) -> Vec<String> {
        let u = text(settings, "username");
        vec![
            format!("SELECT VERSION(), CURRENT_USER()   ({u} rotates itself, or the --rotate-with admin acts)"),
            "ALTER USER … IDENTIFIED BY '********' RETAIN CURRENT PASSWORD   (MySQL 8.0.14+: both passwords work until cut-over)".to_string(),
            "SET PASSWORD = PASSWORD('********')   (MariaDB: one password; write-ahead keeps the new one stored first)".to_string(),
            format!("connect as {u} with the new password   (verify)"),
            "ALTER USER … DISCARD OLD PASSWORD   (MySQL 8.0.14+, after cut-over)".to_string(),
        ]
    }

    fn check<'a>(&'a self, t: &'a Target<'a>) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let mut s = Session::open(t, &[t.current]).await?;
            let who: String =
                s.c.run(|c| sqlx::query_scalar("SELECT CURRENT_USER()").fetch_one(c))
                    .await?;
            let u = text(t.settings, "username");
            let r = match &t.admin {
                None if who.split('@').next() != Some(u.as_str()) => Err(format!(
                    "the credential logs in as {who}, not as the user {u} it would rotate"
                )),
                None => Ok(()),
                Some(a) => {
                    // CREATE USER (or UPDATE on the mysql schema) lets an
                    // account change another's password.
                    let grants: Vec<String> =
                        s.c.run(|c| sqlx::query_scalar("SHOW GRANTS").fetch_all(c))
                            .await?;
                    let may = grants.iter().any(|g| {
                        let g = g.to_ascii_uppercase();
                        g.contains("ALL PRIVILEGES ON *.*")
                            || g.contains("CREATE USER")
                            || g.contains("ON `MYSQL`.*") && g.contains("UPDATE")
                    });
                    if may {
                        Ok(())
                    } else {
                        Err(format!(
                            "{} logs in as {who}, which lacks CREATE USER and cannot change the password of {u}",
                            a.name
                        ))
                    }
                }
            };
            s.close().await;
            r
        })
    }

    fn create(&self, current: &Map<String, Value>) -> Map<String, Value> {
        with_new_password(current)
    }

    fn apply<'a>(
        &'a self,
        t: &'a Target<'a>,
        new: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<Applied, String>> {
        Box::pin(async move {
            let mut s = Session::open(t, &[t.current, new]).await?;
            let dual = s.server.dual;
            // Run again after a crash, RETAIN would keep the new password
            // as the "old" one and lose the real old one: skip instead.
            let detail = if logs_in(t, new).await {
                "the new password was already set (the step ran before a restart)".to_string()
            } else {
                format!(
                    "{}, {}",
                    s.set(&text(new, "password"), true).await?,
                    t.actor()
                )
            };
            s.close().await;
            Ok(Applied {
                mark: None,
                detail,
                credential: None,
                dual: Some(dual),
            })
        })
    }

    fn retire<'a>(
        &'a self,
        t: &'a Target<'a>,
        _old: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<String, String>> {
        Box::pin(async move {
            let mut s = Session::open(t, &[t.current]).await?;
            let r = s.discard_old().await;
            s.close().await;
            r
        })
    }

    fn rollback<'a>(
        &'a self,
        t: &'a Target<'a>,
        old: &'a Map<String, Value>,
        new: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<String, String>> {
        Box::pin(async move {
            let mut s = Session::open(t, &[new, old]).await?;
            let r = match s.set(&text(old, "password"), false).await {
                Ok(shown) => s.discard_old().await.map(|_| shown),
                Err(e) => Err(e),
            };
            s.close().await;
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_passwords_from_the_version() {
        assert_eq!(
            server("10.11.19-MariaDB-0+deb12u1"),
            Server {
                mariadb: true,
                dual: false
            }
        );
        assert!(server("8.0.14").dual);
        assert!(server("8.4.3-commercial").dual);
        assert!(!server("8.0.13-log").dual);
        assert!(!server("5.7.44").dual);
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal(r"a'b\c"), r"'a''b\\c'");
    }
}
