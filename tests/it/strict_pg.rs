//! A PostgreSQL that checks passwords. The machine's PostgreSQL
//! (127.0.0.1:5432) trusts every login on loopback, so against it no probe,
//! verify or rollback can fail and "the old password is refused" cannot be
//! shown. This starts a private cluster once per test binary run: `initdb
//! --auth=scram-sha-256` with a superuser password, `pg_ctl start` on a free
//! port of 127.0.0.1 (its socket in its own temporary directory), as the
//! `postgres` OS user when the tests run as root (PostgreSQL refuses root).
//!
//! Stopping it: statics are never dropped, so a watchdog shell started with
//! the cluster polls this process (`kill -0`) every second; once the test
//! binary is gone (however it ended, SIGKILL included) it runs `pg_ctl stop
//! -m immediate` and removes the directory.
//!
//! Without `initdb`/`pg_ctl` (or without a `postgres` user to run them as
//! root) the tests that need it are SKIPPED off CI and fail in CI.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use sqlx::Connection;

use crate::harness::require;

pub struct StrictPg {
    pub port: u16,
    superuser_password: String,
}

static CLUSTER: OnceLock<Result<StrictPg, String>> = OnceLock::new();

/// The database whose logins check passwords by `md5` ([`StrictPg::md5_database`]).
const MD5_DATABASE: &str = "md5_logins";
static MD5_CREATED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// The private cluster, started on first use; `None` (SKIPPED) off CI when
/// it cannot be started here.
pub async fn strict_pg() -> Option<&'static StrictPg> {
    let c = tokio::task::spawn_blocking(|| CLUSTER.get_or_init(start))
        .await
        .expect("strict cluster start");
    match c {
        Ok(c) => Some(c),
        Err(why) => {
            require(false, &format!("a password-checking PostgreSQL ({why})"));
            None
        }
    }
}

impl StrictPg {
    /// The superuser's URL (database `postgres`).
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            self.superuser_password, self.port
        )
    }

    /// The superuser's password (for a `--rotate-with` connection).
    pub fn superuser_password(&self) -> &str {
        &self.superuser_password
    }

    pub async fn admin(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.admin_url())
            .await
            .expect("strict cluster: superuser login")
    }

    /// A database whose logins from 127.0.0.1 check passwords by `md5`
    /// (created on first use): a role stored with an MD5 verifier (the
    /// form Amazon Redshift takes) logs in to it with the right password
    /// only.
    pub async fn md5_database(&self) -> &'static str {
        MD5_CREATED
            .get_or_init(|| async {
                let mut admin = self.admin().await;
                sqlx::query(&format!("CREATE DATABASE {MD5_DATABASE}"))
                    .execute(&mut admin)
                    .await
                    .expect("create the md5 database");
            })
            .await;
        MD5_DATABASE
    }

    /// A fresh role that may log in with `password`.
    pub async fn role(&self, password: &str) -> String {
        let role = format!("rk_{}", ulid::Ulid::new().to_string().to_lowercase());
        let mut admin = self.admin().await;
        sqlx::query(&format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
            .execute(&mut admin)
            .await
            .expect("create role");
        role
    }

    /// Logs in as `role` with `password` to `database`; the server's answer.
    pub async fn login_to(&self, database: &str, role: &str, password: &str) -> Result<(), String> {
        let opts = sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(role)
            .password(password)
            .database(database);
        let mut c = sqlx::PgConnection::connect_with(&opts)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query("SELECT 1")
            .execute(&mut c)
            .await
            .map_err(|e| e.to_string())?;
        let _ = c.close().await;
        Ok(())
    }

    /// Logs in as `role` with `password` to database `postgres`.
    pub async fn login(&self, role: &str, password: &str) -> Result<(), String> {
        self.login_to("postgres", role, password).await
    }

    /// Does the cluster refuse `password` for `role` *as a password* (not
    /// for some other reason that would prove nothing)?
    pub async fn refuses(&self, role: &str, password: &str) -> bool {
        self.refuses_to("postgres", role, password).await
    }

    /// [`StrictPg::refuses`] on `database`.
    pub async fn refuses_to(&self, database: &str, role: &str, password: &str) -> bool {
        match self.login_to(database, role, password).await {
            Ok(()) => false,
            Err(e) => {
                assert!(
                    e.contains("password authentication failed"),
                    "the login failed, but not on the password: {e}"
                );
                true
            }
        }
    }
}

fn start() -> Result<StrictPg, String> {
    let initdb = which("initdb").ok_or("no initdb on PATH")?;
    let pg_ctl = which("pg_ctl").ok_or("no pg_ctl on PATH")?;
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if as_root
        && !Command::new("id")
            .arg("postgres")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    {
        return Err("running as root and there is no postgres OS user".into());
    }
    // From here on a failure is a broken machine, not a missing tool.
    let dir = tempfile::Builder::new()
        .prefix("rekey-strict-pg-")
        .tempdir()
        .expect("tempdir")
        .keep();
    let data = dir.join("data");
    let password = format!("su-{}", ulid::Ulid::new().to_string().to_lowercase());
    let pwfile = dir.join("pwfile");
    std::fs::write(&pwfile, &password).expect("pwfile");
    if as_root {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("chown")
            .success();
        assert!(ok, "chown {} to postgres", dir.display());
    }
    let run = |program: &Path, args: &[&str]| {
        let mut c = if as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        let out = c.args(args).output().expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{} {args:?}: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        &initdb,
        &[
            "-D",
            &data.to_string_lossy(),
            "--auth=scram-sha-256",
            "--username=postgres",
            &format!("--pwfile={}", pwfile.display()),
            "--encoding=UTF8",
            "--no-sync",
        ],
    );
    std::fs::remove_file(&pwfile).expect("remove pwfile");
    // One database checks passwords by `md5` instead (first match wins):
    // the method that accepts an MD5 verifier — Amazon Redshift's form —
    // as well as a SCRAM one, still refusing a wrong password.
    let hba = data.join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    std::fs::write(
        &hba,
        format!("host {MD5_DATABASE} all 127.0.0.1/32 md5\n{rules}"),
    )
    .expect("write pg_hba.conf");
    // A free port: bound and let go (a race with another binder is possible
    // but rare; pg_ctl then fails loudly).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let conf = format!(
        "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
         fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n",
        dir.display()
    );
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .expect("postgresql.conf");
    std::io::Write::write_all(&mut f, conf.as_bytes()).expect("write postgresql.conf");
    drop(f);
    let log = dir.join("server.log");
    run(
        &pg_ctl,
        &[
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            &data.to_string_lossy(),
            "-l",
            &log.to_string_lossy(),
        ],
    );
    // The watchdog: stops the cluster and removes its directory once this
    // process is gone.
    let stop = if as_root {
        format!(
            "runuser -u postgres -- '{}' stop -m immediate -D '{}'",
            pg_ctl.display(),
            data.display()
        )
    } else {
        format!(
            "'{}' stop -m immediate -D '{}'",
            pg_ctl.display(),
            data.display()
        )
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display()
    );
    let mut watchdog = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the strict cluster's watchdog");
    // Reaped if it ever ends early; otherwise it outlives this process.
    std::thread::spawn(move || watchdog.wait());
    eprintln!(
        "strict PostgreSQL (scram-sha-256) on 127.0.0.1:{port}, data in {}",
        dir.display()
    );
    Ok(StrictPg {
        port,
        superuser_password: password,
    })
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
}
