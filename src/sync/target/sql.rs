//! The `postgres` and `mysql` targets: an upsert into the table the
//! connection's `table` setting names, keyed by email, created if missing.
//!
//! The table holds each email's latest state: `record` (its fields as
//! JSON), `deleted` (a delete is a tombstone, `record` NULL, so a replayed
//! older upsert cannot bring the row back), and the `rekey_org` and
//! `rekey_seq` of the change it holds. A row is written only when the
//! incoming sequence is above the stored one: sending a batch again writes
//! nothing, and an older state never overwrites a newer one.
//!
//! One statement per batch (PostgreSQL: one JSON parameter unpacked by
//! `jsonb_to_recordset`; MySQL: one multi-row insert), on one session opened
//! through [`crate::connectors::session`] for the whole run of batches.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Batch, Op, Open, Record, SendError, Target};
use crate::connectors::connections::Connection;
use crate::connectors::drivers::{text, BoxFut};
use crate::connectors::session::{self, Failure, SessionError, Sql};

/// The setting that names the table.
const SETTING: &str = "table";

/// A table name as the setting gives it: `table` or `schema.table`, each a
/// plain identifier, always quoted when used.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Table {
    schema: Option<String>,
    name: String,
}

/// A plain identifier: a letter or `_`, then letters, digits and `_`, at
/// most 63 characters (PostgreSQL's limit; MySQL's is 64). Quoting makes
/// any name safe, but a name a person cannot read in SQL without quotes is
/// almost always a mistake (a pasted URL, a stray space).
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 63
}

fn table_of(settings: &Map<String, Value>) -> Result<Table, String> {
    let raw = text(settings, SETTING);
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(format!(
            "the connection has no {SETTING} setting: set it to the table deliveries write to \
             (rekey connection update … --setting {SETTING}=people_sync); it is created if missing"
        ));
    }
    let (schema, name) = match raw.split_once('.') {
        Some((s, n)) => (Some(s), n),
        None => (None, raw),
    };
    if !is_identifier(name) || !schema.is_none_or(is_identifier) {
        return Err(format!(
            "the {SETTING} setting {raw:?} is not a table name: use letters, digits and _ \
             (starting with a letter or _), optionally as schema.table"
        ));
    }
    Ok(Table {
        schema: schema.map(str::to_string),
        name: name.to_string(),
    })
}

impl Table {
    /// The name quoted with `q` (`"` on PostgreSQL, `` ` `` on MySQL);
    /// identifiers hold no quote character, so none needs doubling.
    fn quoted(&self, q: char) -> String {
        match &self.schema {
            Some(s) => format!("{q}{s}{q}.{q}{}{q}", self.name),
            None => format!("{q}{}{q}", self.name),
        }
    }
}

/// A delivery needs the table to write to.
pub fn check(conn: &Connection, _credentials: &Map<String, Value>) -> Result<(), String> {
    table_of(&conn.settings()).map(|_| ())
}

/// How a session's failure decides what the delivery does.
fn send_error(e: SessionError) -> SendError {
    match e.failure {
        Failure::Login => SendError::Auth(e.message),
        Failure::Unreachable => SendError::Passing(e.message),
        Failure::Refused => SendError::Refused(e.message),
    }
}

enum Session {
    Postgres(Sql<sqlx::PgConnection>),
    Mysql(Sql<sqlx::MySqlConnection>),
}

struct SqlTarget {
    session: Session,
    /// The upsert, built once: the table name is fixed for the run.
    upsert: String,
    /// MySQL's multi-row upsert is built per number of rows.
    table: String,
}

pub async fn open(o: Open<'_>) -> Result<Box<dyn Target>, SendError> {
    let table = table_of(o.settings).map_err(SendError::Refused)?;
    let egress = &o.core.egress;
    let mut t = if o.conn.kind == "mysql" {
        let session = session::mysql(egress, o.settings, &[o.credentials])
            .await
            .map_err(send_error)?;
        SqlTarget {
            session: Session::Mysql(session),
            upsert: String::new(),
            table: table.quoted('`'),
        }
    } else {
        let session = session::postgres(egress, o.settings, &[o.credentials])
            .await
            .map_err(send_error)?;
        let quoted = table.quoted('"');
        SqlTarget {
            session: Session::Postgres(session),
            upsert: pg_upsert(&quoted),
            table: quoted,
        }
    };
    t.create().await?;
    Ok(Box::new(t))
}

fn pg_create(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (\
           email TEXT PRIMARY KEY, \
           record JSONB, \
           deleted BOOLEAN NOT NULL DEFAULT FALSE, \
           rekey_org TEXT NOT NULL, \
           rekey_seq BIGINT NOT NULL, \
           updated_at BIGINT NOT NULL)"
    )
}

/// One parameter, a JSON array of rows: the statement text is the same for
/// every batch (prepared once) and carries any number of rows.
fn pg_upsert(table: &str) -> String {
    format!(
        "INSERT INTO {table} AS t (email, record, deleted, rekey_org, rekey_seq, updated_at) \
         SELECT r.email, r.record, r.deleted, r.rekey_org, r.rekey_seq, r.updated_at \
         FROM jsonb_to_recordset($1::jsonb) AS r(email TEXT, record JSONB, deleted BOOLEAN, \
           rekey_org TEXT, rekey_seq BIGINT, updated_at BIGINT) \
         ON CONFLICT (email) DO UPDATE SET record = excluded.record, deleted = excluded.deleted, \
           rekey_org = excluded.rekey_org, rekey_seq = excluded.rekey_seq, \
           updated_at = excluded.updated_at \
         WHERE t.rekey_seq < excluded.rekey_seq"
    )
}

fn mysql_create(table: &str) -> String {
    // VARCHAR(320): the longest address RFC 3696 allows, and short enough
    // for an InnoDB key in utf8mb4.
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (\
           email VARCHAR(320) NOT NULL PRIMARY KEY, \
           record JSON NULL, \
           deleted BOOLEAN NOT NULL DEFAULT FALSE, \
           rekey_org VARCHAR(64) NOT NULL, \
           rekey_seq BIGINT NOT NULL, \
           updated_at BIGINT NOT NULL)"
    )
}

/// A multi-row insert of `rows` rows. Each column keeps its value unless
/// the incoming sequence is higher; `rekey_seq` is assigned last, because
/// MySQL evaluates the assignments in order and the others compare
/// against the stored one.
fn mysql_upsert(table: &str, rows: usize) -> String {
    let newer = "rekey_seq < VALUES(rekey_seq)";
    let keep = |c: &str| format!("{c} = IF({newer}, VALUES({c}), {c})");
    let values = vec!["(?, ?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        "INSERT INTO {table} (email, record, deleted, rekey_org, rekey_seq, updated_at) \
         VALUES {values} ON DUPLICATE KEY UPDATE {}, {}, {}, {}, {}",
        keep("record"),
        keep("deleted"),
        keep("rekey_org"),
        keep("updated_at"),
        keep("rekey_seq"),
    )
}

/// A row as the table holds it.
#[derive(Serialize)]
struct Row<'a> {
    email: &'a str,
    record: Option<&'a Map<String, Value>>,
    deleted: bool,
    rekey_org: &'a str,
    rekey_seq: i64,
    updated_at: i64,
}

/// The batch's rows, one per email: its highest sequence wins (a batch may
/// hold several changes of one email, and one statement cannot write a
/// row twice). Sorted by email, so concurrent writers lock in one order.
fn rows<'a>(batch: &'a Batch<'a>) -> Vec<Row<'a>> {
    let mut latest: BTreeMap<&str, &Record> = BTreeMap::new();
    for r in batch.records {
        let e = latest.entry(r.email.as_str()).or_insert(r);
        if r.seq > e.seq {
            *e = r;
        }
    }
    latest
        .into_values()
        .map(|r| {
            let deleted = r.op == Op::Delete;
            Row {
                email: &r.email,
                record: if deleted { None } else { r.fields.as_ref() },
                deleted,
                rekey_org: batch.org_id,
                rekey_seq: r.seq,
                updated_at: r.at,
            }
        })
        .collect()
}

impl SqlTarget {
    async fn create(&mut self) -> Result<(), SendError> {
        let r = match &mut self.session {
            Session::Postgres(s) => {
                let sql = pg_create(&self.table);
                s.run(|c| sqlx::query(&sql).persistent(false).execute(c))
                    .await
                    .map(|_| ())
            }
            Session::Mysql(s) => {
                let sql = mysql_create(&self.table);
                s.run(|c| sqlx::query(&sql).persistent(false).execute(c))
                    .await
                    .map(|_| ())
            }
        };
        r.map_err(|e| table_error(e, &self.table, "create"))
    }

    async fn upsert(&mut self, batch: &Batch<'_>) -> Result<(), SendError> {
        let rows = rows(batch);
        if rows.is_empty() {
            return Ok(());
        }
        let r = match &mut self.session {
            Session::Postgres(s) => {
                let json = serde_json::to_string(&rows)
                    .map_err(|e| SendError::Refused(format!("cannot encode the batch: {e}")))?;
                let sql = &self.upsert;
                s.run(|c| sqlx::query(sql).bind(json).execute(c))
                    .await
                    .map(|_| ())
            }
            Session::Mysql(s) => {
                let sql = mysql_upsert(&self.table, rows.len());
                let mut q = sqlx::query(&sql);
                for r in &rows {
                    let record = r.record.map(|m| Value::Object(m.clone()).to_string());
                    q = q
                        .bind(r.email)
                        .bind(record)
                        .bind(r.deleted)
                        .bind(r.rekey_org)
                        .bind(r.rekey_seq)
                        .bind(r.updated_at);
                }
                s.run(|c| q.execute(c)).await.map(|_| ())
            }
        };
        r.map_err(|e| table_error(e, &self.table, "write to"))
    }
}

/// A statement's failure, naming the table when the server refused it
/// (wrong column types in an existing table, no privilege).
fn table_error(e: SessionError, table: &str, what: &str) -> SendError {
    match e.failure {
        Failure::Refused => SendError::Refused(format!("cannot {what} {table}: {}", e.message)),
        _ => send_error(e),
    }
}

impl Target for SqlTarget {
    fn send<'a>(&'a mut self, batch: &'a Batch<'a>) -> BoxFut<'a, Result<(), SendError>> {
        Box::pin(self.upsert(batch))
    }

    fn close(self: Box<Self>) -> BoxFut<'static, ()> {
        Box::pin(async move {
            match self.session {
                Session::Postgres(s) => s.close().await,
                Session::Mysql(s) => s.close().await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(v: &str) -> Result<Table, String> {
        table_of(json!({ "table": v }).as_object().unwrap())
    }

    #[test]
    fn table_names_are_plain_identifiers() {
        assert_eq!(table("people").unwrap().quoted('"'), "\"people\"");
        assert_eq!(
            table("crm.people_2").unwrap().quoted('`'),
            "`crm`.`people_2`"
        );
        for bad in [
            "",
            "a b",
            "1abc",
            "x;DROP TABLE y",
            "a.b.c",
            "\"x\"",
            "a.",
            ".a",
            &"a".repeat(64),
        ] {
            assert!(table(bad).is_err(), "{bad:?}");
        }
        assert!(table_of(&Map::new())
            .unwrap_err()
            .contains("no table setting"));
    }

    #[test]
    fn the_highest_sequence_of_an_email_wins_within_a_batch() {
        let rec = |seq, email: &str, op| Record {
            seq,
            email: email.into(),
            op,
            fields: Some(json!({ "n": seq }).as_object().unwrap().clone()),
            at: seq * 10,
        };
        let records = [
            rec(3, "b@x.test", Op::Upsert),
            rec(5, "a@x.test", Op::Delete),
            rec(4, "a@x.test", Op::Upsert),
            rec(6, "b@x.test", Op::Upsert),
        ];
        let batch = Batch {
            org_id: "org",
            records: &records,
        };
        let rows = rows(&batch);
        let got: Vec<(&str, i64, bool, bool)> = rows
            .iter()
            .map(|r| (r.email, r.rekey_seq, r.deleted, r.record.is_some()))
            .collect();
        assert_eq!(
            got,
            [("a@x.test", 5, true, false), ("b@x.test", 6, false, true)]
        );
    }
}
