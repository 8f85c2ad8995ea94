//! Rotations per second, end to end through the release binary: N Redis
//! ACL users (created here) and M PostgreSQL roles, each a connection; all
//! rotations are started through the admin API and the server's jobs loop
//! runs them (check, write-ahead, apply, verify, promote, cut-over with a
//! zero window, retire). Prints the rate from the first start request to
//! the last completion. `cargo bench --bench rotation`
//! (REKEY_BENCH_REDIS_USERS, default 1000; REKEY_BENCH_PG_ROLES, default
//! 200). Target: >= 200 Redis rotations/s on SQLite.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let users = count("REKEY_BENCH_REDIS_USERS", 1000);
    let roles = count("REKEY_BENCH_PG_ROLES", 200);
    for backend in backends() {
        let Some(w) = World::new(backend).await else {
            continue;
        };
        let (mut child, api) = admin_world(&w).await;
        let run = ulid::Ulid::new().to_string().to_lowercase();
        if let Some(names) = redis_targets(&api, &run, users).await {
            measure(&api, backend, "Redis ACL users", &names).await;
            drop_redis_users(&run, users).await;
        }
        if let Some(names) = pg_targets(&api, &run, roles).await {
            measure(&api, backend, "PostgreSQL roles", &names).await;
            drop_pg_roles(&run, roles).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn pg_url() -> String {
    std::env::var("REKEY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn pg_targets(api: &Api, run: &str, n: usize) -> Option<Vec<String>> {
    let Ok(pool) = sqlx::PgPool::connect(&pg_url()).await else {
        eprintln!("SKIPPED PostgreSQL roles: unreachable");
        return None;
    };
    for i in 0..n {
        sqlx::query(&format!(
            "CREATE ROLE rkb_{run}_{i} LOGIN PASSWORD 'pw-{i}-0123456789'"
        ))
        .execute(&pool)
        .await
        .ok()?;
    }
    pool.close().await;
    let names: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    let made = each((0..n).collect(), |i| async move {
        api.connection(
            "postgres",
            &format!("p{i}"),
            json!({"host": "127.0.0.1", "database": "postgres", "username": format!("rkb_{run}_{i}")}),
            &format!("pw-{i}-0123456789"),
        )
        .await
    })
    .await;
    (made == n).then_some(names)
}

async fn drop_pg_roles(run: &str, n: usize) {
    if let Ok(pool) = sqlx::PgPool::connect(&pg_url()).await {
        for i in 0..n {
            let _ = sqlx::query(&format!("DROP ROLE IF EXISTS rkb_{run}_{i}"))
                .execute(&pool)
                .await;
        }
    }
}

/// Starts a rotation of every connection in `names` and waits until all
/// are completed; prints the rate.
async fn measure(api: &Api, backend: &str, what: &str, names: &[String]) {
    let started = Instant::now();
    let ok = each(names.to_vec(), |name| async move {
        api.post(
            "/api/v1/orgs/acme/rotations",
            json!({"connection": name, "cutover_window": "0s"}),
        )
        .await
            == reqwest::StatusCode::CREATED
    })
    .await;
    let requested = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut done = 0;
    let mut failed = 0;
    while Instant::now() < deadline {
        let list: Value = api
            .http
            .get(format!("{}/api/v1/orgs/acme/rotations", api.url))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        let rows = list.as_array().cloned().unwrap_or_default();
        let of = |s: &str| {
            rows.iter()
                .filter(|r| {
                    r["status"] == s && names.iter().any(|n| r["target"]["name"] == n.as_str())
                })
                .count()
        };
        done = of("completed");
        failed = of("failed") + of("stalled");
        if done + failed >= ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "[{backend}] {what}: {ok} rotations started in {:.2} s; {done} completed, {failed} failed in {secs:.2} s \
         = {:.0} rotations/s end to end",
        requested.as_secs_f64(),
        done as f64 / secs
    );
}
