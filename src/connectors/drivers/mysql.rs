//! MySQL and MariaDB users. The connection rotates itself: `ALTER USER
//! CURRENT_USER() IDENTIFIED BY …` on MySQL, `SET PASSWORD =
//! PASSWORD(…)` on MariaDB (any account may change its own password that
//! way). An account holds one password here — MariaDB has no dual
//! passwords, and MySQL's `RETAIN CURRENT PASSWORD` is not used yet — so
//! the old one stops working when the new one is set; write-ahead keeps
//! that safe, and a failed verification sets the old one back.

use serde_json::{Map, Value};
use sqlx::Connection;

use super::{login_first, nothing_to_retire, text, with_new_password, BoxFut, Driver, Target};
use crate::connectors::probe::{db_error, mysql_options};

pub struct MySqlUser;

/// A string literal for MySQL/MariaDB (statements that take no bind
/// parameters). Generated passwords are base64url; escaping is a backstop.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

async fn connect(
    t: &Target<'_>,
    creds: &[&Map<String, Value>],
) -> Result<sqlx::MySqlConnection, String> {
    let mut options = Vec::with_capacity(creds.len());
    for c in creds {
        options.push(mysql_options(t.egress, t.settings, c).await?);
    }
    login_first(options).await
}

async fn set_password(
    t: &Target<'_>,
    acting: &[&Map<String, Value>],
    password: &str,
) -> Result<String, String> {
    let mut c = connect(t, acting).await?;
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut c)
        .await
        .map_err(|e| db_error(&e))?;
    let (sql, shown) = if version.contains("MariaDB") {
        (
            format!("SET PASSWORD = PASSWORD({})", literal(password)),
            "SET PASSWORD = PASSWORD('********')",
        )
    } else {
        (
            format!(
                "ALTER USER CURRENT_USER() IDENTIFIED BY {}",
                literal(password)
            ),
            "ALTER USER CURRENT_USER() IDENTIFIED BY '********'",
        )
    };
    // A server error may quote the statement: the password never leaves here.
    sqlx::query(&sql)
        .persistent(false)
        .execute(&mut c)
        .await
        .map_err(|e| db_error(&e).replace(password, "********"))?;
    let _ = c.close().await;
    Ok(shown.to_string())
}

impl Driver for MySqlUser {
    fn dual(&self) -> bool {
        false
    }

    fn plan(&self, settings: &Map<String, Value>) -> Vec<String> {
        let u = text(settings, "username");
        vec![
            format!("SELECT CURRENT_USER()   ({u} rotates itself)"),
            "SET PASSWORD = PASSWORD('********')   (MariaDB) / ALTER USER CURRENT_USER() IDENTIFIED BY '********'   (MySQL)".to_string(),
            format!("connect as {u} with the new password   (verify)"),
        ]
    }

    fn check<'a>(&'a self, t: &'a Target<'a>) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let mut c = connect(t, &[t.acting]).await?;
            let who: String = sqlx::query_scalar("SELECT CURRENT_USER()")
                .fetch_one(&mut c)
                .await
                .map_err(|e| db_error(&e))?;
            let _ = c.close().await;
            let u = text(t.settings, "username");
            if who.split('@').next() != Some(u.as_str()) {
                return Err(format!(
                    "the credential logs in as {who}, not as the user {u} it would rotate"
                ));
            }
            Ok(())
        })
    }

    fn create(&self, current: &Map<String, Value>) -> Map<String, Value> {
        with_new_password(current)
    }

    fn apply<'a>(
        &'a self,
        t: &'a Target<'a>,
        new: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<String, String>> {
        Box::pin(async move { set_password(t, &[t.acting, new], &text(new, "password")).await })
    }

    fn retire<'a>(
        &'a self,
        _t: &'a Target<'a>,
        _old: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<String, String>> {
        nothing_to_retire()
    }

    fn rollback<'a>(
        &'a self,
        t: &'a Target<'a>,
        old: &'a Map<String, Value>,
        new: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<String, String>> {
        Box::pin(async move { set_password(t, &[new, old], &text(old, "password")).await })
    }
}
