//! Delivery targets at real receivers: the `postgres` target against the
//! password-checking PostgreSQL cluster (`strict_pg`), `mysql` against the
//! machine's MariaDB with a user of its own, and `custom_rest` against a
//! local axum receiver that checks `X-Rekey-Signature`. Each target is
//! opened and sent batches in process, on a Core with its own store, with
//! the org and connection made by the domain functions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rekey::audit::Actor;
use rekey::config::Config;
use rekey::connectors::connections::{self, Connection, NewConnection};
use rekey::crypto::signature;
use rekey::state::Core;
use rekey::sync::target::{self, Batch, Op, Open, Record, SendError};
use serde_json::{json, Map, Value};
use sqlx::Row;

use crate::harness::{mariadb_up, require};
use crate::maria::maria_user;
use crate::strict_pg::strict_pg;

const SIGNING: &str = "rk_whsec_delivery_test";

/// A Core on a fresh SQLite store with one org.
struct World {
    core: Core,
    org_id: String,
    _dir: tempfile::TempDir,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            master_key: Some(rekey::crypto::keyring::generate_key()),
            argon2_memory_kib: 1024,
            argon2_iterations: 1,
            ..Config::default()
        };
        let (core, _) = Core::open(config, true).await.unwrap();
        let org = rekey::identity::orgs::create(&core.db, &Actor::cli(), "acme", None, core.now())
            .await
            .unwrap();
        World {
            core,
            org_id: org.id,
            _dir: dir,
        }
    }

    async fn connection(&self, kind: &str, auth: &str, settings: &[(&str, &str)]) -> Connection {
        let settings: BTreeMap<String, String> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        connections::create(
            &self.core,
            &Actor::cli(),
            NewConnection {
                org_id: &self.org_id,
                kind,
                name: &format!("to-{kind}-{}", ulid::Ulid::new().to_string().to_lowercase()),
                auth: Some(auth),
                settings: &settings,
                endpoints: &BTreeMap::new(),
            },
        )
        .await
        .unwrap()
    }

    /// Opens `conn`'s target with `creds`, sends each batch in turn, closes.
    async fn send(
        &self,
        conn: &Connection,
        creds: &Map<String, Value>,
        batches: &[&[Record]],
    ) -> Result<(), SendError> {
        let settings = conn.settings();
        let mut t = target::open(Open {
            core: &self.core,
            conn,
            settings: &settings,
            credentials: creds,
            signing_secret: SIGNING,
        })
        .await?;
        for records in batches {
            let batch = Batch {
                org_id: &self.org_id,
                records,
            };
            if let Err(e) = t.send(&batch).await {
                t.close().await;
                return Err(e);
            }
        }
        t.close().await;
        Ok(())
    }
}

fn password(p: &str) -> Map<String, Value> {
    json!({ "password": p }).as_object().unwrap().clone()
}

fn upsert(seq: i64, email: &str, name: &str) -> Record {
    Record {
        seq,
        email: email.into(),
        op: Op::Upsert,
        fields: Some(
            json!({ "email": email, "name": name })
                .as_object()
                .unwrap()
                .clone(),
        ),
        at: 1_800_000_000_000 + seq,
    }
}

fn delete(seq: i64, email: &str) -> Record {
    Record {
        seq,
        email: email.into(),
        op: Op::Delete,
        fields: None,
        at: 1_800_000_000_000 + seq,
    }
}

/// A row as a test reads it back: (email, name in record, deleted, seq).
type Got = (String, Option<String>, bool, i64);

enum Reader {
    Pg(sqlx::PgPool),
    My(sqlx::MySqlPool),
}

impl Reader {
    async fn rows(&self, table: &str) -> Vec<Got> {
        let sql = format!(
            "SELECT email, CAST(record AS CHAR(10000)) AS record, deleted, rekey_seq FROM {table} ORDER BY email"
        );
        let name = |r: Option<String>| {
            r.map(|t| {
                serde_json::from_str::<Value>(&t).unwrap()["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
        };
        match self {
            Reader::Pg(p) => sqlx::query(&sql.replace("CHAR(10000)", "TEXT"))
                .fetch_all(p)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), name(r.get(1)), r.get(2), r.get(3)))
                .collect(),
            Reader::My(p) => sqlx::query(&sql)
                .fetch_all(p)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), name(r.get(1)), r.get(2), r.get(3)))
                .collect(),
        }
    }

    async fn exec(&self, sql: &str) {
        match self {
            Reader::Pg(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
            Reader::My(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
        }
        .unwrap();
    }
}

/// A PostgreSQL role with a password and a database of its own on the
/// password-checking cluster: the connection's settings, and a superuser
/// reader of that database.
async fn pg_receiver(pw: &str, table: &str) -> Option<(Vec<(String, String)>, Reader)> {
    let pg = strict_pg().await?;
    let role = pg.role(pw).await;
    let mut admin = pg.admin().await;
    sqlx::query(&format!("CREATE DATABASE {role} OWNER {role}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let reader = sqlx::PgPool::connect(&format!(
        "postgres://postgres:{}@127.0.0.1:{}/{role}",
        pg.superuser_password(),
        pg.port
    ))
    .await
    .unwrap();
    let settings = vec![
        ("host".into(), "127.0.0.1".into()),
        ("port".into(), pg.port.to_string()),
        ("database".into(), role.clone()),
        ("username".into(), role),
        ("table".into(), table.into()),
    ];
    Some((settings, Reader::Pg(reader)))
}

/// A MariaDB user with a password and a database it owns.
async fn mysql_receiver(pw: &str, table: &str) -> Option<(Vec<(String, String)>, Reader)> {
    if !require(mariadb_up(), "MariaDB at 127.0.0.1:3306") {
        return None;
    }
    let user = maria_user(pw).await;
    let root = sqlx::MySqlPool::connect("mysql://root@127.0.0.1:3306/mysql")
        .await
        .unwrap();
    for sql in [
        format!("CREATE DATABASE {user}"),
        format!("GRANT ALL ON {user}.* TO '{user}'@'%'"),
    ] {
        sqlx::query(&sql).execute(&root).await.unwrap();
    }
    root.close().await;
    let reader = sqlx::MySqlPool::connect(&format!("mysql://root@127.0.0.1:3306/{user}"))
        .await
        .unwrap();
    let settings = vec![
        ("host".into(), "127.0.0.1".into()),
        ("port".into(), "3306".into()),
        ("database".into(), user.clone()),
        ("username".into(), user),
        ("table".into(), table.into()),
    ];
    Some((settings, Reader::My(reader)))
}

fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, s)| (k.as_str(), s.as_str())).collect()
}

/// `settings` with `key` set to `value`.
fn with<'a>(
    settings: &'a [(String, String)],
    key: &'a str,
    value: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut v: Vec<(&str, &str)> = pairs(settings)
        .into_iter()
        .filter(|(k, _)| *k != key)
        .collect();
    v.push((key, value));
    v
}

/// Everything a SQL target must do, at `kind`'s real server.
async fn sql_target_scenario(kind: &str, settings: Vec<(String, String)>, reader: Reader) {
    let w = World::new().await;
    let conn = w.connection(kind, "basic", &pairs(&settings)).await;
    let creds = password("right-pw");

    // Created if missing, upserted; within a batch the highest seq wins.
    let first = [
        upsert(1, "a@x.test", "Ann"),
        upsert(2, "b@x.test", "Bob"),
        upsert(3, "a@x.test", "Anna"),
    ];
    w.send(&conn, &creds, &[&first]).await.unwrap();
    let after_first = reader.rows("people_sync").await;
    assert_eq!(
        after_first,
        [
            ("a@x.test".into(), Some("Anna".into()), false, 3),
            ("b@x.test".into(), Some("Bob".into()), false, 2),
        ]
    );

    // The same batch again writes nothing (the table's unchanged), and the
    // target's own CREATE IF NOT EXISTS is harmless on a second open.
    w.send(&conn, &creds, &[&first]).await.unwrap();
    assert_eq!(reader.rows("people_sync").await, after_first);

    // A delete tombstones; an older upsert replayed after it changes
    // nothing; a newer one brings the row back.
    w.send(&conn, &creds, &[&[delete(4, "b@x.test")]])
        .await
        .unwrap();
    w.send(
        &conn,
        &creds,
        &[&[upsert(2, "b@x.test", "Bob"), upsert(1, "a@x.test", "Ann")]],
    )
    .await
    .unwrap();
    assert_eq!(
        reader.rows("people_sync").await,
        [
            ("a@x.test".into(), Some("Anna".into()), false, 3),
            ("b@x.test".into(), None, true, 4),
        ]
    );
    w.send(&conn, &creds, &[&[upsert(5, "b@x.test", "Bea")]])
        .await
        .unwrap();
    assert_eq!(
        reader.rows("people_sync").await[1],
        ("b@x.test".into(), Some("Bea".into()), false, 5)
    );

    // A wrong password is a refused login: the delivery pauses for auth.
    let e = w
        .send(&conn, &password("wrong-pw"), &[&first])
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Auth(_)), "{e:?}");

    // A table the rows cannot go into is refused with the server's words.
    reader
        .exec("CREATE TABLE odd (email INTEGER PRIMARY KEY, record INTEGER)")
        .await;
    let odd_conn = w
        .connection(kind, "basic", &with(&settings, "table", "odd"))
        .await;
    let e = w.send(&odd_conn, &creds, &[&first]).await.unwrap_err();
    match e {
        SendError::Refused(m) => assert!(m.contains("odd") && m.contains("refused:"), "{m}"),
        other => panic!("expected Refused, got {other:?}"),
    }

    // Nothing listening: passes by itself.
    let port = closed_port().to_string();
    let gone = w
        .connection(kind, "basic", &with(&settings, "port", &port))
        .await;
    let e = w.send(&gone, &creds, &[&first]).await.unwrap_err();
    assert!(matches!(e, SendError::Passing(_)), "{e:?}");
}

/// A port on 127.0.0.1 nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn postgres_target_upserts_once_in_sequence_and_tombstones() {
    let Some((settings, reader)) = pg_receiver("right-pw", "people_sync").await else {
        return;
    };
    sql_target_scenario("postgres", settings, reader).await;
}

#[tokio::test]
async fn mysql_target_upserts_once_in_sequence_and_tombstones() {
    let Some((settings, reader)) = mysql_receiver("right-pw", "people_sync").await else {
        return;
    };
    sql_target_scenario("mysql", settings, reader).await;
}

#[tokio::test]
async fn a_sql_target_needs_a_plain_table_name() {
    let w = World::new().await;
    let base = [("host", "127.0.0.1"), ("database", "d"), ("username", "u")];
    let none = w.connection("postgres", "basic", &base).await;
    let e = target::check(&none, &Map::new()).unwrap_err();
    assert!(e.contains("no table setting"), "{e}");
    for bad in ["people; DROP TABLE x", "a.b.c", "\"people\"", "1st", "a b"] {
        let mut with_bad = base.to_vec();
        with_bad.push(("table", bad));
        let c = w.connection("mysql", "basic", &with_bad).await;
        let e = target::check(&c, &Map::new()).unwrap_err();
        assert!(e.contains("is not a table name"), "{bad}: {e}");
    }
    let mut good = base.to_vec();
    good.push(("table", "crm.people"));
    let c = w.connection("postgres", "basic", &good).await;
    assert_eq!(target::check(&c, &Map::new()), Ok(()));
}

/// What the receiver saw: headers and raw body of each request.
#[derive(Default)]
struct Seen {
    requests: Vec<(axum::http::HeaderMap, bytes::Bytes)>,
}

/// A local receiver answering `status` with `body` to every POST.
async fn receiver(status: u16, body: &'static str) -> (String, Arc<Mutex<Seen>>) {
    use axum::extract::State;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = axum::Router::new()
        .route(
            "/hooks/rekey",
            axum::routing::post(
                move |State(seen): State<Arc<Mutex<Seen>>>,
                      headers: axum::http::HeaderMap,
                      raw: bytes::Bytes| async move {
                    seen.lock().unwrap().requests.push((headers, raw));
                    (axum::http::StatusCode::from_u16(status).unwrap(), body)
                },
            ),
        )
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, seen)
}

async fn rest_connection(w: &World, base_url: &str) -> Connection {
    w.connection(
        "custom_rest",
        "api_key",
        &[("base_url", base_url), ("delivery_path", "/hooks/rekey")],
    )
    .await
}

fn api_key() -> Map<String, Value> {
    json!({ "api_key": "rk-test-api-key-123" })
        .as_object()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn custom_rest_posts_a_signed_batch_the_receiver_can_verify() {
    let w = World::new().await;
    let (url, seen) = receiver(200, "ok").await;
    let conn = rest_connection(&w, &url).await;
    target::check(&conn, &api_key()).unwrap();
    let records = [upsert(7, "a@x.test", "Ann"), delete(9, "b@x.test")];
    w.send(&conn, &api_key(), &[&records]).await.unwrap();

    let seen = seen.lock().unwrap();
    let [(headers, raw)] = seen.requests.as_slice() else {
        panic!("one request expected, got {}", seen.requests.len());
    };
    let h = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_string();
    assert_eq!(
        h("x-api-key"),
        "rk-test-api-key-123",
        "as its probe sends it"
    );
    assert_eq!(h("content-type"), "application/json");
    assert_eq!(h("idempotency-key"), format!("{}:7-9", w.org_id));
    let now = w.core.now() / 1000;
    let sig = h("x-rekey-signature");
    assert_eq!(signature::verify(SIGNING, &sig, raw, now), Ok(()));
    let mut tampered = raw.to_vec();
    let at = tampered.iter().position(|b| *b == b'A').unwrap();
    tampered[at] = b'B';
    assert_eq!(
        signature::verify(SIGNING, &sig, &tampered, now),
        Err(signature::SignatureError::Mismatch)
    );
    let body: Value = serde_json::from_slice(raw).unwrap();
    assert_eq!(body["org"], json!(w.org_id));
    let r = &body["records"];
    assert_eq!(r[0]["idempotency_key"], json!(format!("{}:7", w.org_id)));
    assert_eq!(r[0]["seq"], json!(7));
    assert_eq!(r[0]["email"], json!("a@x.test"));
    assert_eq!(r[0]["op"], json!("upsert"));
    assert_eq!(r[0]["fields"]["name"], json!("Ann"));
    assert!(
        r[0]["at"].as_str().unwrap().ends_with('Z'),
        "{}",
        r[0]["at"]
    );
    assert_eq!(r[1]["op"], json!("delete"));
    assert_eq!(r[1]["fields"], Value::Null);
}

#[tokio::test]
async fn custom_rest_answers_decide_what_the_delivery_does() {
    let w = World::new().await;
    let records = [upsert(1, "a@x.test", "Ann")];
    for (status, body, want) in [
        (400, "field 'name' is required", "refused"),
        (403, "this key may not write", "refused"),
        (401, "bad key", "auth"),
        (429, "slow down", "passing"),
        (500, "oops", "passing"),
        (503, "", "passing"),
    ] {
        let (url, _) = receiver(status, body).await;
        let conn = rest_connection(&w, &url).await;
        let e = w.send(&conn, &api_key(), &[&records]).await.unwrap_err();
        let (got, m) = match &e {
            SendError::Refused(m) => ("refused", m),
            SendError::Auth(m) => ("auth", m),
            SendError::Passing(m) => ("passing", m),
        };
        assert_eq!(got, want, "HTTP {status}: {e:?}");
        assert!(m.contains(&format!("HTTP {status}")), "{m}");
        assert!(m.contains(body), "the receiver's own message: {m}");
    }

    // A long answer is cut, and a secret of ours it echoes is masked.
    let long: &'static str = Box::leak(
        format!(
            "{} rk-test-api-key-123 {}",
            "x".repeat(100),
            "y".repeat(2000)
        )
        .into_boxed_str(),
    );
    let (url, _) = receiver(422, long).await;
    let conn = rest_connection(&w, &url).await;
    match w.send(&conn, &api_key(), &[&records]).await.unwrap_err() {
        SendError::Refused(m) => {
            assert!(!m.contains("rk-test-api-key-123"), "{m}");
            assert!(m.contains("********"), "{m}");
            assert!(m.len() < 600, "{}", m.len());
        }
        other => panic!("{other:?}"),
    }

    // Nothing listening passes; a path that leaves base_url's host is
    // refused before anything is sent.
    let down = format!("http://127.0.0.1:{}", closed_port());
    let conn = w
        .connection("custom_rest", "bearer", &[("base_url", &down)])
        .await;
    let token = json!({"token": "t-123456"}).as_object().unwrap().clone();
    let e = w.send(&conn, &token, &[&records]).await.unwrap_err();
    assert!(matches!(e, SendError::Passing(_)), "{e:?}");
    let conn = w
        .connection(
            "custom_rest",
            "bearer",
            &[
                ("base_url", "https://api.example.com"),
                ("delivery_path", "@evil.example/x"),
            ],
        )
        .await;
    assert!(target::check(&conn, &token).is_err());
}
