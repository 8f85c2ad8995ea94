//! The rotation engine under attack and failure (the engine's security
//! issue): a verify whose rollback fails too, an instance that stalls past
//! its lease and wakes, a revoked reader, a cut-over a person ends at once,
//! and a leaked previous credential or overlap killed by blast radius.
//! Each reproduces the defect through the real binary and a real target.

use std::time::Duration;

use serde_json::{json, Value};

use crate::dual;
use crate::harness::*;
use crate::maria::{maria_logs_in, maria_user};
use crate::proxy::{Mode, Proxy};
use crate::rotation::{logs_in, redis_world, stored_password};

/// Connection `maria` of org `acme`, reaching MariaDB through `port`.
fn maria_connection(env: &Env, user: &str, port: u16, password: &str) {
    maria_connection_named(env, "maria", user, port, password)
}

fn maria_connection_named(env: &Env, name: &str, user: &str, port: u16, password: &str) {
    connection(
        env,
        "mysql",
        name,
        &[
            "host=127.0.0.1",
            &format!("port={port}"),
            "database=information_schema",
            &format!("username={user}"),
        ],
    );
    env.json_stdin(
        &[
            "connection",
            "set-credential",
            "--org",
            "acme",
            "--name",
            name,
            "--field",
            "password",
            "--value-stdin",
        ],
        password,
    );
}

/// Runs rotation `id` on servers that stop after each committed step, each
/// SIGKILLed there, until step `step` is recorded done; then waits out the
/// lease with the test clock. The job is left due at the step after it.
async fn run_until_done(env: &Env, id: &str, step: &str) {
    for _ in 0..6 {
        let before = steps(env, id).len();
        let srv = env.serve_with(&[
            ("REKEY_JOBS_INTERVAL", "1s"),
            ("REKEY_TEST_PAUSE_AFTER_STEP", "1"),
        ]);
        let mut moved = false;
        for _ in 0..600 {
            if steps(env, id).len() > before {
                moved = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(srv); // SIGKILL, paused between two steps
        env.advance(Duration::from_secs(61));
        assert!(moved, "rotation {id} did not move: {:?}", steps(env, id));
        if steps(env, id)
            .iter()
            .any(|s| s["name"] == step && s["status"] == "done")
        {
            return;
        }
    }
    panic!("rotation {id} never reached {step}");
}

fn steps(env: &Env, id: &str) -> Vec<Value> {
    env.json(&["rotation", "show", id])["steps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn poll_rotation(env: &Env, id: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..1200 {
        let v = env.json(&["rotation", "show", id]);
        if f(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("rotation {id}: {what} never happened");
}

dual!(
    a_failed_verify_whose_rollback_fails_keeps_the_credential,
    |env| {
        if !require(mariadb_up(), "MariaDB") {
            return;
        }
        env.ok(&["org", "create", "acme"]);
        let old = "the-old-password-2201";
        let user = maria_user(old).await;
        let proxy = Proxy::start("127.0.0.1:3306").await;
        maria_connection(&env, &user, proxy.port, old);
        let key = service_key(&env);
        let id = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "maria",
            "--cutover-window",
            "0s",
        ])["id"]
            .as_str()
            .unwrap()
            .to_string();
        run_until_done(&env, &id, "apply").await;
        assert!(
            !maria_logs_in(&user, old).await,
            "apply changed the one password MariaDB keeps"
        );

        // The connection drops: the verify fails, and so does the rollback.
        proxy.set(Mode::Drop);
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        let v = poll_rotation(&env, &id, "a failed verify", |v| {
            v["status"] == "failed"
                || v["steps"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["name"] == "verify"))
        })
        .await;
        // Nothing stored would open the account if the new password went now.
        let show = env.json(&["connection", "show", "--org", "acme", "--name", "maria"]);
        assert!(
            !show["slots"]["pending"].is_null(),
            "the pending credential was discarded while MariaDB holds it: {show}\n{v}"
        );
        assert_ne!(v["status"], "completed", "{v}");
        let text = v.to_string();
        assert!(
            !text.contains("the current credential is unchanged"),
            "an untrue record: {text}"
        );

        // The network comes back: the retry puts the target on a stored
        // credential, whichever it is.
        proxy.set(Mode::Pass);
        for _ in 0..40 {
            env.advance(Duration::from_secs(60));
            let v = env.json(&["rotation", "show", &id]);
            if v["status"] == "failed" || v["status"] == "completed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let v = env.json(&["rotation", "show", &id]);
        assert!(v["status"] == "failed" || v["status"] == "completed", "{v}");
        let current = stored_credential(&env, &srv, &key, "maria").await["password"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            maria_logs_in(&user, &current).await,
            "the stored current password is refused by MariaDB: {v}"
        );
        let show = env.json(&["connection", "show", "--org", "acme", "--name", "maria"]);
        assert!(show["slots"]["pending"].is_null(), "{show}");
    }
);

/// Instance A stalls (SIGSTOP) while it acts at the target — at the check,
/// the apply, the verify — past its lease; B takes the rotation over and
/// completes it; A wakes to the target's answer (refused, or let through).
/// A must act nowhere: MariaDB keeps one password, so a stale rollback or
/// apply would leave it on a password whose sealed copy B already retired,
/// and a stale status write would turn B's completed rotation back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_instance_does_not_act_after_losing_its_lease() {
    let Some(env) = Env::new(Engine::Postgres).await else {
        return;
    };
    if !require(mariadb_up(), "MariaDB") {
        return;
    }
    env.ok(&["org", "create", "acme"]);
    let key = service_key(&env);
    // (the step done before A takes the job, how A's held session ends)
    let points = [
        (None, Mode::Drop),
        (Some("write_ahead"), Mode::Pass),
        (Some("apply"), Mode::Drop),
        (Some("apply"), Mode::Pass),
    ];
    for (i, (done, fate)) in points.into_iter().enumerate() {
        let name = format!("maria{i}");
        let old = format!("the-old-password-22060{i}");
        let user = maria_user(&old).await;
        let proxy = Proxy::start("127.0.0.1:3306").await;
        maria_connection_named(&env, &name, &user, proxy.port, &old);
        let id = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            &name,
            "--cutover-window",
            "0s",
        ])["id"]
            .as_str()
            .unwrap()
            .to_string();
        if let Some(step) = done {
            run_until_done(&env, &id, step).await;
        }
        let at = format!("{name}: A held after {done:?}, released as {fate:?}");

        // A claims the next step; its session hangs in the network.
        proxy.set(Mode::Hold);
        let a = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        assert!(
            wait_until(|| proxy.held() > 0, Duration::from_secs(60)).await,
            "{at}: A never reached the target"
        );
        signal(&a, "STOP");
        env.advance(Duration::from_secs(61));

        // B takes the job over and completes the rotation.
        proxy.set(Mode::Pass);
        let b = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        wait_for_status(&env, &id, "completed").await;
        let current = stored_credential(&env, &b, &key, &name).await["password"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(maria_logs_in(&user, &current).await, "{at}");

        // A wakes to the target's answer.
        proxy.release_held(fate);
        signal(&a, "CONT");
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(a);
        let v = env.json(&["rotation", "show", &id]);
        assert_eq!(
            v["status"], "completed",
            "{at}: a stale instance rewrote it: {v}"
        );
        let now = stored_credential(&env, &b, &key, &name).await["password"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(now, current, "{at}: the stored credential changed");
        assert!(
            maria_logs_in(&user, &current).await,
            "{at}: the stale instance changed the target: the stored password is refused"
        );
        assert!(!maria_logs_in(&user, &old).await, "{at}");
        drop(b);
    }
}

fn signal(srv: &Server, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &srv.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig}");
}

dual!(a_revoked_service_key_is_no_longer_a_reader, |env| {
    let old = "the-old-password-2251";
    let Some(user) = redis_world(&env, old, true).await else {
        return;
    };
    let key = service_key(&env);
    let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "0")]);
    assert_eq!(stored_password(&env, &srv, &key).await, old);
    drop(srv);
    env.ok(&["service-key", "revoke", "--name", "platform"]);
    let out = env.run(&[
        "rotate",
        "--org",
        "acme",
        "--connection",
        "cache",
        "--cutover-window",
        "0s",
        "--deadline",
        "3s",
        "--wait",
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        v["status"], "completed",
        "a revoked key held the cut-over: {v}"
    );
    assert!(!logs_in(&user, old).await);
});

dual!(
    finish_now_retires_the_previous_credential_and_cancel_names_it,
    |env| {
        let old = "the-old-password-2252";
        let Some(user) = redis_world(&env, old, true).await else {
            return;
        };
        let email = "admin@acme.test";
        env.json_stdin(
            &[
                "user",
                "create",
                "--org",
                "acme",
                "--email",
                email,
                "--permission",
                "read_write",
                "--admin",
                "--password-stdin",
            ],
            PASSWORD,
        );
        let key = service_key(&env);
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        // A consumer that read the old password and never comes back.
        assert_eq!(stored_password(&env, &srv, &key).await, old);
        let id = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "cache",
            "--cutover-window",
            "0s",
        ])["id"]
            .as_str()
            .unwrap()
            .to_string();
        wait_for_status(&env, &id, "waiting_cutover").await;
        assert!(logs_in(&user, old).await, "both work during the cut-over");

        // After the promotion the change is made: no cancel.
        let out = env.run(&["rotation", "cancel", &id]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("rekey rotation finish {id}")),
            "{err}"
        );
        // Nor a new rotation while the previous credential works.
        let out = env.run(&["rotate", "--org", "acme", "--connection", "cache"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("rotation finish"));

        // `finish` without --now: the reader is named, nothing breaks.
        let f = env.json(&["rotation", "finish", &id]);
        assert_eq!(f["status"], "waiting_cutover", "{f}");
        let on = f["still_on_previous"][0].as_str().unwrap_or_default();
        assert!(on.starts_with("service:platform"), "{f}");
        assert_eq!(f["breaks"], json!([]));
        assert!(logs_in(&user, old).await);

        // The API twin with {"now": true}: retired at once, naming who breaks.
        let (c, csrf) = admin_login(&srv, email).await;
        let r = c
            .post(srv.at(&format!("/api/v1/orgs/acme/rotations/{id}/finish")))
            .header("X-CSRF-Token", &csrf)
            .json(&json!({"now": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let f: Value = r.json().await.unwrap();
        assert_eq!(f["status"], "completed", "{f}");
        // to an org admin the platform's service keys are not named (the
        // CLI, the operator's, named it above)
        assert_eq!(f["breaks"][0], "a platform service key", "{f}");
        assert!(!f.to_string().contains("service:platform"), "{f}");
        assert!(
            !logs_in(&user, old).await,
            "the previous password still works"
        );
        let new = stored_password(&env, &srv, &key).await;
        assert!(logs_in(&user, &new).await);
        let audit = env.json(&["audit", "list", "--action", "rotation.finish"]);
        assert_eq!(audit.as_array().map(Vec::len), Some(2), "{audit}");
        // A bad body changes nothing and says why.
        let r = c
            .post(srv.at(&format!("/api/v1/orgs/acme/rotations/{id}/finish")))
            .header("X-CSRF-Token", &csrf)
            .json(&json!({"now": "yes"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        // And rotating again is allowed.
        env.ok(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "cache",
            "--dry-run",
        ]);
    }
);

dual!(
    blast_radius_revoke_retires_a_leaked_previous_credential,
    |env| {
        let old = "the-old-password-2253";
        let Some(user) = redis_world(&env, old, true).await else {
            return;
        };
        let key = service_key(&env);
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        assert_eq!(stored_password(&env, &srv, &key).await, old);
        let id = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "cache",
            "--cutover-window",
            "0s",
        ])["id"]
            .as_str()
            .unwrap()
            .to_string();
        wait_for_status(&env, &id, "waiting_cutover").await;
        // The old password leaked: blast radius names the way to kill it and
        // --revoke does it.
        let out = env.run_stdin(
            &["incident", "blast-radius", "--secret-stdin", "--json"],
            Some(old),
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["slot"], "previous", "{v}");
        assert_eq!(
            v["kill"],
            format!("rekey rotation finish {id} --now"),
            "{v}"
        );
        let out = env.run_stdin(
            &[
                "incident",
                "blast-radius",
                "--secret-stdin",
                "--revoke",
                "--json",
            ],
            Some(old),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !logs_in(&user, old).await,
            "the leaked password still works"
        );
        let new = stored_password(&env, &srv, &key).await;
        assert!(logs_in(&user, &new).await, "the replacement was killed too");
        assert_eq!(env.json(&["rotation", "show", &id])["status"], "completed");
    }
);

dual!(
    blast_radius_revoke_of_an_overlap_keeps_the_new_value,
    |env| {
        env.ok(&["org", "create", "acme"]);
        let old = env.json(&[
            "key", "create", "--org", "acme", "--name", "ci", "--scope", "read",
        ])["key"]
            .as_str()
            .unwrap()
            .to_string();
        let new = env.json(&[
            "key",
            "reset",
            "--org",
            "acme",
            "--name",
            "ci",
            "--overlap",
            "1h",
        ])["key"]
            .as_str()
            .unwrap()
            .to_string();
        let srv = env.serve();
        let works = |k: String| {
            let url = srv.at("/v1/people");
            async move {
                client()
                    .get(url)
                    .header("Accesskey", k)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .is_success()
            }
        };
        assert!(works(old.clone()).await && works(new.clone()).await);
        let out = env.run_stdin(
            &["incident", "blast-radius", "--secret-stdin", "--json"],
            Some(&old),
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v["kill"], "rekey key end-overlap --org acme --name ci",
            "{v}"
        );
        let out = env.run_stdin(
            &[
                "incident",
                "blast-radius",
                "--secret-stdin",
                "--revoke",
                "--json",
            ],
            Some(&old),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!works(old).await, "the leaked previous key still works");
        assert!(works(new).await, "the replacement was revoked too");
    }
);

/// Org `acme` points a MySQL connection at a tarpit (accepts, never
/// answers) and rotates it; org `other`'s Redis rotation, started after,
/// completes while the first still hangs: one slow target holds its own
/// slot, never the jobs loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tarpit_cannot_stall_another_orgs_rotation() {
    let Some(env) = Env::new(Engine::Sqlite).await else {
        return;
    };
    if !require(redis_up(), "Redis") {
        return;
    }
    let tarpit = Proxy::start("127.0.0.1:3306").await;
    tarpit.set(Mode::Hold);
    env.ok(&["org", "create", "acme"]);
    connection(
        &env,
        "mysql",
        "maria",
        &[
            "host=127.0.0.1",
            &format!("port={}", tarpit.port),
            "database=information_schema",
            "username=nobody",
        ],
    );
    store_unprobed(&env, "maria", "password", "a-password-2204");
    let stuck = env.json(&["rotate", "--org", "acme", "--connection", "maria"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let _srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
    assert!(
        wait_until(|| tarpit.held() > 0, Duration::from_secs(60)).await,
        "the tarpit was never reached"
    );
    // Org `other`, its own Redis user and connection.
    env.ok(&["org", "create", "other"]);
    let old = "the-old-password-2204";
    let user = crate::rotation::acl_user(old, true).await;
    let u = format!("username={user}");
    env.json(&[
        "connection",
        "create",
        "--org",
        "other",
        "--kind",
        "redis",
        "--name",
        "cache",
        "--setting",
        "host=127.0.0.1",
        "--setting",
        &u,
    ]);
    env.json_stdin(
        &[
            "connection",
            "set-credential",
            "--org",
            "other",
            "--name",
            "cache",
            "--field",
            "password",
            "--value-stdin",
        ],
        old,
    );
    let id = env.json(&[
        "rotate",
        "--org",
        "other",
        "--connection",
        "cache",
        "--cutover-window",
        "0s",
    ])["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for_status(&env, &id, "completed").await;
    assert!(!logs_in(&user, old).await);
    let v = env.json(&["rotation", "show", &stuck]);
    assert_ne!(v["status"], "completed", "{v}");
}

/// A key someone made by hand after the rotation's write-ahead is not "a
/// key left by an interrupted attempt": the resumed apply leaves it alone
/// (IAM then refuses a third key, and the rotation says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_resume_deletes_only_keys_it_made() {
    let Some(env) = Env::new(Engine::Sqlite).await else {
        return;
    };
    let Some(moto) = crate::moto::Moto::start().await else {
        return;
    };
    env.ok(&["org", "create", "acme"]);
    let old = moto.user_with_key("svc").await;
    moto.create_bucket(&old, "rekey-bucket").await;
    moto.s3_connection(&env, &old);
    let id = env.json(&[
        "rotate",
        "--org",
        "acme",
        "--connection",
        "bucket",
        "--cutover-window",
        "0s",
    ])["id"]
        .as_str()
        .unwrap()
        .to_string();
    run_until_done(&env, &id, "write_ahead").await;
    // Another consumer makes a key of its own, by hand.
    let mine: Vec<String> = moto.key_ids(&old, "svc").await;
    let theirs = moto.create_key(&old, "svc").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let _srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
    let v = poll_rotation(&env, &id, "the apply", |v| {
        v["steps"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"] == "apply"))
    })
    .await;
    let keys = moto.key_ids(&old, "svc").await;
    assert!(
        keys.contains(&theirs),
        "the hand-made key {theirs} was deleted: {keys:?} (before: {mine:?})\n{v}"
    );
    assert!(keys.contains(&old.id), "{keys:?}");
}

// A campaign item whose rotation failed is retried with a fresh rotation,
// not the failed one adopted again: once the credential's privilege is
// fixed, the retry verifies.
dual!(an_item_retry_starts_a_fresh_rotation, |env| {
    let old = "the-old-password-2303";
    // May not change its own password: the rotation fails at its check.
    let Some(user) = redis_world(&env, old, false).await else {
        return;
    };
    let out = env.run(&[
        "incident",
        "start",
        "--reason",
        "retry test",
        "--scope",
        "org:acme",
        "--wait",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "failed items end with exit 1");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(env.run(&["incident", "status", &id]).status.code(), Some(1));
    let item = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["target"]["name"] == "cache")
        .cloned()
        .unwrap();
    assert_eq!(item["status"], "failed", "{v}");
    let num = item["n"].as_u64().unwrap();
    let n = num.to_string();
    let first = item["rotation_id"].as_str().unwrap_or_default().to_string();
    // The privilege is fixed; the item is retried.
    let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("+acl|setuser")
        .arg("+acl|dryrun")
        .query_async(&mut con)
        .await
        .unwrap();
    env.json(&["incident", "retry", &id, "--item", &n]);
    let _srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
    let v = poll(&env, &["incident", "status", &id], |v| {
        v["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["n"] == num && i["status"] == "verified"))
    })
    .await;
    let again = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["n"] == num)
        .unwrap();
    assert_eq!(again["status"], "verified", "{v}");
    assert_ne!(
        again["rotation_id"].as_str().unwrap_or_default(),
        first,
        "{v}"
    );
    assert!(!logs_in(&user, old).await);
});

// #23 item 10: to an org admin the platform's service keys are "a
// platform service key", and the addresses they read from are not shown —
// in a rotation, its preflight, and the campaign's items and report, whose
// details quote the rotation's steps (they named the key and its address).
dual!(an_org_admin_never_sees_the_platforms_service_keys, |env| {
    let old = "the-old-password-2305";
    let Some(_user) = redis_world(&env, old, true).await else {
        return;
    };
    let email = env.admin_of("acme");
    let key = service_key(&env);
    let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
    // A platform consumer reads the leaked password and never comes back:
    // the campaign's cut-over waits for it.
    assert_eq!(stored_password(&env, &srv, &key).await, old);
    let id = crate::incident::acme_campaign(&env, "0s");
    let v = poll(&env, &["incident", "status", &id], |v| {
        v["items"].as_array().is_some_and(|a| {
            a.iter().any(|i| {
                i["status"] == "done"
                    && i["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("waiting for readers"))
            })
        })
    })
    .await;
    let item = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["target"]["name"] == "cache")
        .unwrap();
    assert!(
        item["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("a platform service key"),
        "{v}"
    );
    let rid = item["rotation_id"].as_str().unwrap().to_string();
    // The operator's CLI still names the reader on the rotation itself.
    let r = env.json(&["rotation", "show", &rid]);
    assert!(r.to_string().contains("service:platform"), "{r}");

    let (c, csrf) = admin_login(&srv, &email).await;
    let leaks = |what: &str, text: &str| {
        assert!(
            !text.contains("service:platform"),
            "{what} names the key: {text}"
        );
        // (the target's own host, 127.0.0.1 too, may be named)
        assert!(
            !text.contains("from 127.0.0.1") && !text.contains(r#""ip":"127.0.0.1""#),
            "{what} shows its address: {text}"
        );
    };
    let show = get_json(&c, srv.at(&format!("/api/v1/orgs/acme/rotations/{rid}"))).await;
    assert_eq!(show["id"], rid.as_str(), "{show}");
    assert!(
        show.to_string().contains("a platform service key"),
        "{show}"
    );
    leaks("rotation show", &show.to_string());
    let r = c
        .post(srv.at("/api/v1/orgs/acme/rotations"))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({"connection": "cache", "preflight": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    leaks("preflight", &r.text().await.unwrap());
    let inc = get_json(&c, srv.at(&format!("/api/v1/incidents/{id}"))).await;
    assert_eq!(inc["id"], id.as_str(), "{inc}");
    leaks("incident show", &inc.to_string());
    for format in ["json", "csv", "md"] {
        let r = c
            .get(srv.at(&format!("/api/v1/incidents/{id}/report?format={format}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        leaks(&format!("the {format} report"), &r.text().await.unwrap());
    }
    let page = c
        .get(srv.at(&format!("/ui/incidents/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    leaks("the console's campaign page", &page.text().await.unwrap());
});

// #23 item 3: a campaign's item adopts only a rotation the campaign
// itself started. An admin's rotation of the same connection, started
// after the campaign and failed before its pass reached the item, used to
// be taken for the item's own (adoption went by start time), so the item
// failed with that rotation's error.
dual!(a_campaign_item_never_adopts_someone_elses_rotation, |env| {
    let old = "the-old-password-2304";
    // May not change its own password: the admin's rotation fails.
    let Some(user) = redis_world(&env, old, false).await else {
        return;
    };
    let v = env.json(&[
        "incident",
        "start",
        "--reason",
        "adoption test",
        "--scope",
        "org:acme",
    ]);
    let id = v["id"].as_str().unwrap().to_string();
    // No server yet: the campaign's item waits while the admin rotates.
    let out = env.run(&[
        "rotate",
        "--org",
        "acme",
        "--connection",
        "cache",
        "--wait",
        "--cutover-window",
        "0s",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(theirs["status"], "failed", "{theirs}");
    let theirs = theirs["id"].as_str().unwrap().to_string();
    // The privilege is fixed; then the campaign runs.
    let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("+acl|setuser")
        .arg("+acl|dryrun")
        .query_async(&mut con)
        .await
        .unwrap();
    let _srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
    let v = poll(&env, &["incident", "status", &id], |v| {
        v["items"].as_array().is_some_and(|a| {
            a.iter().any(|i| {
                i["target"]["name"] == "cache"
                    && ["verified", "failed"].contains(&i["status"].as_str().unwrap_or(""))
            })
        })
    })
    .await;
    let item = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["target"]["name"] == "cache")
        .unwrap();
    assert_eq!(item["status"], "verified", "{v}");
    assert_ne!(item["rotation_id"], theirs.as_str(), "{v}");
    let mine = item["rotation_id"].as_str().unwrap();
    let r = env.json(&["rotation", "show", mine]);
    assert_eq!(r["started_by"], format!("incident:{id}"), "{r}");
    assert!(!logs_in(&user, old).await);
});

// A PostgreSQL user name SASLprep refuses (a private-use character) is a
// clear error, never a panic (sqlx panics on it while logging in).
dual!(
    a_postgres_user_name_saslprep_refuses_is_an_error_not_a_panic,
    |env| {
        env.ok(&["org", "create", "acme"]);
        connection(
            &env,
            "postgres",
            "pg",
            &[
                "host=127.0.0.1",
                "database=postgres",
                "username=rk\u{E000}user",
            ],
        );
        store_unprobed(&env, "pg", "password", "a-password-2309");
        let out = env.run(&[
            "connection",
            "test",
            "--org",
            "acme",
            "--name",
            "pg",
            "--json",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert_ne!(out.status.code(), Some(101), "{err}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert!(v.to_string().contains("SASLprep"), "{v}\n{err}");
    }
);
