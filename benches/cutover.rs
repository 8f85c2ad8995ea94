//! Verified cut-over under live load: an incident campaign rotates N Redis
//! ACL users (default 100, REKEY_BENCH_REDIS_USERS) while three classes of
//! consumers use every one of them, through the release binary:
//!
//! - **fresh**: reads the credential from rekey before each use, then logs
//!   in with a new Redis connection (AUTH);
//! - **caching**: reads it, keeps it for the `refresh_after_s` rekey
//!   answered (the connections are set to 2 s here), logging in with the
//!   cached copy for every use until then;
//! - **pooled**: logs in once before the campaign and keeps using that one
//!   session (PING), never reconnecting; it re-reads the credential when
//!   `refresh_after_s` says (for the sessions a pool would open next).
//!
//! Every consumer names itself (`X-Rekey-Consumer`) behind one service key.
//! Prints, per class, the logins (or PINGs) made and how many failed
//! (target 0), and the time from the campaign's start to 100 % verified
//! (target < 10 s). `cargo bench --bench cutover`; REKEY_BENCH_USE_MS sets
//! each consumer's pause between uses (default 100 ms).

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// Uses and failures of one class of consumers.
#[derive(Default)]
struct Tally {
    uses: AtomicU64,
    failed: AtomicU64,
    /// The first failure's words, to say what broke.
    first: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn used(&self, r: Result<(), String>) {
        self.uses.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = r {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert(e);
        }
    }

    fn line(&self, class: &str, what: &str) -> String {
        let first = self
            .first
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default();
        format!(
            "{class:>8}: {} {what}, {} failed (target 0){first}",
            self.uses.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed)
        )
    }
}

#[derive(Clone)]
struct Reader {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Reader {
    /// The password of connection `name` and how long it may be cached.
    async fn read(&self, name: &str, consumer: &str) -> Result<(String, u64), String> {
        let r = self
            .http
            .get(format!(
                "{}/api/v1/orgs/acme/connections/{name}/credentials",
                self.url
            ))
            .bearer_auth(&self.key)
            .header("X-Rekey-Consumer", consumer)
            .send()
            .await
            .map_err(|e| format!("read: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("read: {}", r.status()));
        }
        let v: Value = r.json().await.map_err(|e| format!("read: {e}"))?;
        let password = v["credentials"]["password"]
            .as_str()
            .ok_or("read: no password")?
            .to_string();
        Ok((password, v["refresh_after_s"].as_u64().unwrap_or(0)))
    }
}

/// A new session as `user` with `password`: the AUTH a consumer makes.
async fn login(user: &str, password: &str) -> Result<redis::aio::MultiplexedConnection, String> {
    let client = redis::Client::open(format!("redis://{user}:{password}@127.0.0.1:6379/"))
        .map_err(|e| e.to_string())?;
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    redis::cmd("PING")
        .query_async::<String>(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    Ok(con)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("REKEY_BENCH_REDIS_USERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let pause = Duration::from_millis(
        std::env::var("REKEY_BENCH_USE_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(100),
    );
    for backend in backends() {
        let Some(w) = World::new(backend).await else {
            continue;
        };
        let (mut child, api) = admin_world(&w).await;
        let run = ulid::Ulid::new().to_string().to_lowercase();
        if let Some(names) = redis_targets(&api, &run, n).await {
            bench(&w, &api, backend, &run, &names, pause).await;
            drop_redis_users(&run, n).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

async fn bench(w: &World, api: &Api, backend: &str, run: &str, names: &[String], pause: Duration) {
    for name in names {
        w.json(
            &[
                "connection",
                "update",
                "--org",
                "acme",
                "--name",
                name,
                "--refresh-after",
                "2s",
            ],
            None,
        );
    }
    let key = w.json(&["service-key", "create", "--name", "bench"], None)["key"]
        .as_str()
        .expect("service key")
        .to_string();
    let reader = Reader {
        http: reqwest::Client::new(),
        url: api.url.clone(),
        key,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (fresh, caching, pooled) = (
        Arc::new(Tally::default()),
        Arc::new(Tally::default()),
        Arc::new(Tally::default()),
    );
    let mut tasks = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let user = format!("rkb_{run}_{i}");
        // fresh: read, then log in at once.
        tasks.push(tokio::spawn({
            let (reader, name, user, stop, t) = (
                reader.clone(),
                name.clone(),
                user.clone(),
                stop.clone(),
                fresh.clone(),
            );
            async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = match reader.read(&name, "fresh").await {
                        Ok((p, _)) => login(&user, &p).await.map(|_| ()),
                        Err(e) => Err(e),
                    };
                    t.used(r);
                    tokio::time::sleep(pause).await;
                }
            }
        }));
        // caching: keeps what it read for refresh_after_s, as told.
        tasks.push(tokio::spawn({
            let (reader, name, user, stop, t) = (
                reader.clone(),
                name.clone(),
                user.clone(),
                stop.clone(),
                caching.clone(),
            );
            async move {
                let mut cached: Option<(String, Instant)> = None;
                while !stop.load(Ordering::Relaxed) {
                    if cached
                        .as_ref()
                        .is_none_or(|(_, until)| Instant::now() >= *until)
                    {
                        // The clock starts before the read: a copy is never
                        // kept longer than rekey said.
                        let asked = Instant::now();
                        match reader.read(&name, "caching").await {
                            Ok((p, s)) => cached = Some((p, asked + Duration::from_secs(s))),
                            Err(e) => {
                                t.used(Err(e));
                                tokio::time::sleep(pause).await;
                                continue;
                            }
                        }
                    }
                    if let Some((p, _)) = &cached {
                        t.used(login(&user, p).await.map(|_| ()));
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }));
        // pooled: one session opened before the campaign, used throughout;
        // the pool re-reads the credential when told (for sessions it
        // would open) but never reconnects the one it has.
        let (p, s) = reader.read(name, "pooled").await.expect("read");
        let mut con = login(&user, &p).await.expect("pooled login");
        tasks.push(tokio::spawn({
            let (reader, name, stop, t) =
                (reader.clone(), name.clone(), stop.clone(), pooled.clone());
            async move {
                let mut reread = Instant::now() + Duration::from_secs(s);
                while !stop.load(Ordering::Relaxed) {
                    if Instant::now() >= reread {
                        let asked = Instant::now();
                        match reader.read(&name, "pooled").await {
                            Ok((_, s)) => reread = asked + Duration::from_secs(s),
                            Err(e) => t.used(Err(e)),
                        }
                    }
                    let r = redis::cmd("PING")
                        .query_async::<String>(&mut con)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string());
                    t.used(r);
                    tokio::time::sleep(pause).await;
                }
            }
        }));
    }
    // Every consumer has read once before the campaign starts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let mut all = None;
    let v = api
        .campaign(
            "cut-over benchmark",
            "org:acme",
            Duration::from_secs(300),
            |v| {
                if all.is_none() && v["verified_pct"].as_u64().unwrap_or(0) >= 100 {
                    all = Some(started.elapsed());
                }
            },
        )
        .await;
    // The consumers go on a while after the last retire.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let verified = v["counts"]["verified"].as_u64().unwrap_or(0);
    let failed = v["counts"]["failed"].as_u64().unwrap_or(0);
    println!(
        "[{backend}] campaign over {} Redis ACL connections under live use ({} ms between uses): \
         {verified} verified, {failed} failed (campaign {}, counts {}); 100 % verified at {} (target < 10 s)\n  {}\n  {}\n  {}",
        names.len(),
        pause.as_millis(),
        v["status"],
        v["counts"],
        all.map(|d| format!("{:.2} s", d.as_secs_f64()))
            .unwrap_or_else(|| "never".into()),
        fresh.line("fresh", "logins"),
        caching.line("caching", "logins"),
        pooled.line("pooled", "PINGs on one session"),
    );
}
