//! The validation cache across instances: two servers on one database each
//! serve a credential from their cache, then a change made through the
//! other server or the CLI must be in force on both the moment the changing
//! call returns (the invalidation epoch, `src/store/epoch.rs`).

use serde_json::{json, Value};

use crate::dual;
use crate::harness::*;
use crate::oauth_support::{self, USER};

async fn status(c: &reqwest::Client, url: String, header: (&str, &str)) -> u16 {
    c.get(url)
        .header(header.0, header.1)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

async fn put(c: &reqwest::Client, srv: &Server, header: (&str, &str)) -> u16 {
    c.put(srv.at("/v1/people"))
        .header(header.0, header.1)
        .json(&json!({"records": [{"Email": "ann@example.com"}]}))
        .send()
        .await
        .expect("put")
        .status()
        .as_u16()
}

/// Calls often enough that the answer comes from each server's cache.
async fn warm(c: &reqwest::Client, servers: &[&Server], path: &str, header: (&str, &str)) {
    for srv in servers {
        for _ in 0..5 {
            assert_eq!(
                status(c, srv.at(path), header).await,
                200,
                "{path} on {}",
                srv.url
            );
        }
    }
}

async fn cc_token(c: &reqwest::Client, srv: &Server, id: &str, secret: &str) -> (u16, Value) {
    let r = c
        .post(srv.at("/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Creates the machine client `sync` in org `acme` (with `args`); returns
/// its client id and secret.
fn machine_client(env: &Env, args: &[&str]) -> (String, String) {
    let mut all = vec!["m2m", "create", "--org", "acme", "--name", "sync"];
    all.extend_from_slice(args);
    let m2m = env.json(&all);
    let field = |k: &str| m2m[k].as_str().expect(k).to_string();
    (field("client_id"), field("client_secret"))
}

/// Mints client-credentials tokens on `srv` until `stop`; returns the ones
/// it got.
fn mint_until(
    c: &reqwest::Client,
    srv: &Server,
    id: &str,
    secret: &str,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    let (c, url, id, secret, stop) = (
        c.clone(),
        srv.at("/oauth2/token"),
        id.to_string(),
        secret.to_string(),
        stop.clone(),
    );
    tokio::spawn(async move {
        let mut got = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let r = c
                .post(&url)
                .basic_auth(&id, Some(&secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .expect("token");
            if r.status() == 200 {
                let v: Value = r.json().await.expect("json");
                got.push(v["access_token"].as_str().expect("token").to_string());
            }
        }
        got
    })
}

dual!(access_key_changes_reach_every_instance, |env| {
    env.ok(&["org", "create", "acme"]);
    let make = |name: &str| {
        env.json(&[
            "key",
            "create",
            "--org",
            "acme",
            "--name",
            name,
            "--scope",
            "read_write",
        ])["key"]
            .as_str()
            .expect("key")
            .to_string()
    };
    let (revoked, reset) = (make("one"), make("two"));
    let (a, b) = (env.serve(), env.serve());
    let c = client();
    let path = "/v1/people?limit=1";
    warm(&c, &[&a, &b], path, ("Accesskey", &revoked)).await;
    warm(&c, &[&a, &b], path, ("Accesskey", &reset)).await;

    env.ok(&["key", "revoke", "--org", "acme", "--name", "one"]);
    for srv in [&a, &b] {
        assert_eq!(status(&c, srv.at(path), ("Accesskey", &revoked)).await, 401);
    }
    let new = env.json(&["key", "reset", "--org", "acme", "--name", "two"])["key"]
        .as_str()
        .expect("key")
        .to_string();
    for srv in [&a, &b] {
        assert_eq!(status(&c, srv.at(path), ("Accesskey", &reset)).await, 401);
        assert_eq!(status(&c, srv.at(path), ("Accesskey", &new)).await, 200);
    }
});

dual!(token_and_client_changes_reach_every_instance, |env| {
    env.ok(&["org", "create", "acme"]);
    let (id, secret) = machine_client(&env, &["--scope", "read_write"]);
    let (a, b) = (env.serve(), env.serve());
    let c = client();
    let (s, t) = cc_token(&c, &a, &id, &secret).await;
    assert_eq!(s, 200, "{t}");
    let token = t["access_token"].as_str().expect("token").to_string();
    let bearer = format!("Bearer {token}");
    warm(&c, &[&a, &b], "/v1/me", ("Authorization", &bearer)).await;

    // Revoked through server A's RFC 7009 endpoint: refused on B at once.
    let r = c
        .post(a.at("/oauth2/revoke"))
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("token", token.as_str()),
            ("token_type_hint", "access_token"),
        ])
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 200);
    assert_eq!(
        status(&c, b.at("/v1/me"), ("Authorization", &bearer)).await,
        401
    );

    // Deactivated by the CLI: its tokens and its secret refused everywhere.
    let (_, t) = cc_token(&c, &b, &id, &secret).await;
    let bearer = format!("Bearer {}", t["access_token"].as_str().expect("token"));
    warm(&c, &[&a, &b], "/v1/me", ("Authorization", &bearer)).await;
    env.ok(&["m2m", "deactivate", "--org", "acme", "--name", "sync"]);
    for srv in [&a, &b] {
        assert_eq!(
            status(&c, srv.at("/v1/me"), ("Authorization", &bearer)).await,
            401
        );
        assert_eq!(cc_token(&c, srv, &id, &secret).await.0, 401);
    }
    env.ok(&["m2m", "activate", "--org", "acme", "--name", "sync"]);
    for srv in [&a, &b] {
        assert_eq!(
            status(&c, srv.at("/v1/me"), ("Authorization", &bearer)).await,
            200
        );
        assert_eq!(cc_token(&c, srv, &id, &secret).await.0, 200);
    }

    // A new secret: the old one is refused on both at once.
    let new = env.json(&[
        "m2m",
        "regenerate-secret",
        "--org",
        "acme",
        "--name",
        "sync",
    ]);
    let new = new["client_secret"].as_str().expect("secret");
    for srv in [&a, &b] {
        assert_eq!(cc_token(&c, srv, &id, &secret).await.0, 401);
        assert_eq!(cc_token(&c, srv, &id, new).await.0, 200);
    }
});

dual!(user_changes_reach_every_instance, |env| {
    let w = oauth_support::world(env, &[], &[]).await;
    let other = w.env.serve();
    let (access, _) = oauth_support::tokens(&w, "read_write").await;
    let bearer = format!("Bearer {access}");
    let c = client();
    warm(&c, &[&w.srv, &other], "/v1/me", ("Authorization", &bearer)).await;
    for srv in [&w.srv, &other] {
        assert_eq!(put(&c, srv, ("Authorization", &bearer)).await, 200);
    }
    w.env.ok(&[
        "user",
        "set-permission",
        "--org",
        "acme",
        "--email",
        USER,
        "--permission",
        "read",
    ]);
    for srv in [&w.srv, &other] {
        assert_eq!(put(&c, srv, ("Authorization", &bearer)).await, 403);
        assert_eq!(
            status(&c, srv.at("/v1/me"), ("Authorization", &bearer)).await,
            200
        );
    }
    w.env
        .ok(&["user", "deactivate", "--org", "acme", "--email", USER]);
    for srv in [&w.srv, &other] {
        assert_eq!(
            status(&c, srv.at("/v1/me"), ("Authorization", &bearer)).await,
            401
        );
    }
});

dual!(
    no_request_after_a_revocation_is_served_from_a_cache,
    |env| {
        // Readers hammer two instances while the token is revoked: every request
        // sent after the revoke call returned must be refused, on both.
        env.ok(&["org", "create", "acme"]);
        let (id, secret) = machine_client(&env, &["--scope", "read"]);
        let (a, b) = (env.serve(), env.serve());
        let c = client();
        let (_, t) = cc_token(&c, &a, &id, &secret).await;
        let token = t["access_token"].as_str().expect("token").to_string();
        let bearer = format!("Bearer {token}");
        warm(&c, &[&a, &b], "/v1/me", ("Authorization", &bearer)).await;

        let revoked_at = std::sync::Arc::new(std::sync::OnceLock::<std::time::Instant>::new());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = Vec::new();
        for i in 0..16 {
            let url = if i % 2 == 0 {
                a.at("/v1/me")
            } else {
                b.at("/v1/me")
            };
            let (c, bearer, revoked_at, stop) =
                (c.clone(), bearer.clone(), revoked_at.clone(), stop.clone());
            readers.push(tokio::spawn(async move {
                let (mut served_late, mut seen) = (0u32, 0u32);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let sent = std::time::Instant::now();
                    let s = status(&c, url.clone(), ("Authorization", &bearer)).await;
                    seen += 1;
                    if s == 200 && revoked_at.get().is_some_and(|r| sent > *r) {
                        served_late += 1;
                    }
                }
                (served_late, seen)
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let r = c
            .post(b.at("/oauth2/revoke"))
            .basic_auth(&id, Some(&secret))
            .form(&[
                ("token", token.as_str()),
                ("token_type_hint", "access_token"),
            ])
            .send()
            .await
            .expect("revoke");
        assert_eq!(r.status(), 200);
        let _ = revoked_at.set(std::time::Instant::now());
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut late, mut seen) = (0, 0);
        for r in readers {
            let (l, s) = r.await.expect("reader");
            late += l;
            seen += s;
        }
        assert!(seen > 100, "the readers made {seen} requests");
        assert_eq!(
            late, 0,
            "{late} requests sent after the revocation returned were served"
        );
    }
);

dual!(
    tokens_minted_while_a_secret_is_revoked_do_not_outlive_it,
    |env| {
        // A leaked secret keeps minting on another instance while the admin
        // regenerates with --revoke-tokens: whatever it got, issued before the
        // call returned, is dead when it returns; a token from the new secret,
        // minted right after, works.
        env.ok(&["org", "create", "acme"]);
        let (id, old) = machine_client(&env, &["--scope", "read"]);
        let (a, b) = (env.serve(), env.serve());
        let c = client();
        for _ in 0..5 {
            assert_eq!(cc_token(&c, &b, &id, &old).await.0, 200);
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let minter = mint_until(&c, &b, &id, &old, &stop);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let new = env.json(&[
            "m2m",
            "regenerate-secret",
            "--org",
            "acme",
            "--name",
            "sync",
            "--revoke-tokens",
        ]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let got = minter.await.expect("minter");
        assert!(
            !got.is_empty(),
            "the old secret minted nothing before the change"
        );
        for t in &got {
            let bearer = format!("Bearer {t}");
            assert_eq!(
                status(&c, a.at("/v1/me"), ("Authorization", &bearer)).await,
                401
            );
        }
        let (s, v) = cc_token(&c, &a, &id, new["client_secret"].as_str().expect("secret")).await;
        assert_eq!(s, 200, "{v}");
        let bearer = format!("Bearer {}", v["access_token"].as_str().expect("token"));
        assert_eq!(
            status(&c, b.at("/v1/me"), ("Authorization", &bearer)).await,
            200
        );
    }
);

/// Org `acme` with user `svc@acme.test` and machine client `sync` acting
/// for it; its client id and secret.
fn client_for_a_user(env: &Env) -> (String, String) {
    env.ok(&["org", "create", "acme"]);
    env.json_stdin(
        &[
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            "svc@acme.test",
            "--permission",
            "read",
            "--password-stdin",
        ],
        PASSWORD,
    );
    machine_client(env, &["--scope", "read", "--user", "svc@acme.test"])
}

/// The user's `activate` or `deactivate` through the CLI.
fn set_user(env: &Env, verb: &str) -> std::process::Command {
    let mut cmd = env.cmd();
    cmd.args(["user", verb, "--org", "acme", "--email", "svc@acme.test"]);
    cmd
}

/// Activates the user again: none of the tokens in `got` works on `a`,
/// and one minted on `b` after that does.
async fn activated_only_new_tokens_work(
    env: &Env,
    c: &reqwest::Client,
    (a, b): (&Server, &Server),
    (id, secret): (&str, &str),
    got: &[String],
) {
    let out = set_user(env, "activate").output().expect("activate");
    assert!(out.status.success(), "{out:?}");
    assert!(!got.is_empty());
    let mut alive = 0;
    for t in got {
        let bearer = format!("Bearer {t}");
        if status(c, a.at("/v1/me"), ("Authorization", &bearer)).await != 401 {
            alive += 1;
        }
    }
    assert_eq!(
        alive,
        0,
        "{alive} of {} tokens minted before the deactivation answered work after the activation",
        got.len()
    );
    let (s, v) = cc_token(c, b, id, secret).await;
    assert_eq!(s, 200, "{v}");
    let bearer = format!("Bearer {}", v["access_token"].as_str().expect("token"));
    assert_eq!(
        status(c, a.at("/v1/me"), ("Authorization", &bearer)).await,
        200
    );
}

dual!(tokens_minted_while_a_user_is_deactivated_stay_dead, |env| {
    // A machine client acting for a user keeps minting on another instance
    // while the user is deactivated: nothing it got survives the user's
    // reactivation, and tokens minted after that work.
    let (id, secret) = client_for_a_user(&env);
    let (a, b) = (env.serve(), env.serve());
    let c = client();
    for _ in 0..5 {
        assert_eq!(cc_token(&c, &b, &id, &secret).await.0, 200);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let minter = mint_until(&c, &b, &id, &secret, &stop);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let out = set_user(&env, "deactivate").output().expect("deactivate");
    assert!(out.status.success(), "{out:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let got = minter.await.expect("minter");
    activated_only_new_tokens_work(&env, &c, (&a, &b), (&id, &secret), &got).await;
});

dual!(
    a_deactivation_held_up_by_a_lock_kills_what_was_minted_meanwhile,
    |env| {
        // The deactivation's transaction waits on a row lock (another
        // writer, a slow disk) far longer than the cut-off margin after the
        // moment it read the clock, while another instance keeps minting
        // for the user. Whatever was minted before the deactivation
        // answered stays dead once the user is activated again; a token
        // minted after that works.
        let (id, secret) = client_for_a_user(&env);
        let (a, b) = (env.serve(), env.serve());
        let c = client();
        for _ in 0..5 {
            assert_eq!(cc_token(&c, &b, &id, &secret).await.0, 200);
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let minter = mint_until(&c, &b, &id, &secret, &stop);
        // The lock: the user's row on PostgreSQL; the whole file on SQLite
        // (the mints' inserts wait behind it too, with the times they took).
        let lock = hold_user_lock(&env, "svc@acme.test").await;
        let deactivate = set_user(&env, "deactivate").spawn().expect("deactivate");
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        lock.release().await;
        let out = tokio::task::spawn_blocking(move || deactivate.wait_with_output())
            .await
            .expect("join")
            .expect("deactivate");
        assert!(out.status.success(), "{out:?}");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let got = minter.await.expect("minter");
        activated_only_new_tokens_work(&env, &c, (&a, &b), (&id, &secret), &got).await;
    }
);

/// A write lock held from the test's own connection until released.
struct Lock(
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
);

impl Lock {
    async fn release(self) {
        let _ = self.0.send(());
        self.1.await.expect("lock holder");
    }
}

async fn hold_user_lock(env: &Env, email: &str) -> Lock {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
    let (url, engine, email) = (env.db_url.clone(), env.engine, email.to_string());
    let task = tokio::spawn(async move {
        match engine {
            Engine::Sqlite => {
                use sqlx::Connection;
                let mut c = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut c)
                    .await
                    .expect("begin");
                let _ = held_tx.send(());
                let _ = rx.await;
                sqlx::query("COMMIT").execute(&mut c).await.expect("commit");
            }
            Engine::Postgres => {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&url).await.expect("pg");
                let mut t = c.begin().await.expect("begin");
                sqlx::query("SELECT 1 FROM users WHERE email = $1 FOR UPDATE")
                    .bind(&email)
                    .execute(&mut *t)
                    .await
                    .expect("lock");
                let _ = held_tx.send(());
                let _ = rx.await;
                t.commit().await.expect("commit");
            }
        }
    });
    held_rx.await.expect("lock taken");
    Lock(tx, task)
}
