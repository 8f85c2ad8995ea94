//! The `rekey` command line: noun-verb, one file per noun. Every verb has
//! `--json` (exactly one JSON document on stdout; progress on stderr). Errors
//! print one line on stderr and exit 1; usage errors exit 2 (clap).

mod app;
pub mod args;
mod audit;
mod connection;
mod delivery;
mod incident;
mod key;
mod keyring;
mod m2m;
mod org;
mod output;
mod rotate;
mod serve;
mod user;
mod webhook;

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use crate::config::{Config, Overrides};
use crate::state::Core;
use args::{Cli, Command};
pub use output::Out;

pub fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, started)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    let mut s = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
    }
    s.replace('\n', " ")
}

/// The settings, and warnings (unknown `REKEY_*` variables) to report once
/// logging is set up: a warning logged before it would go nowhere.
fn load_config(
    cli: &Cli,
    listen: Option<String>,
    public_url: Option<String>,
) -> anyhow::Result<(Config, Vec<String>)> {
    Ok(Config::load(
        cli.config.as_deref(),
        Overrides {
            listen,
            database_url: cli.database.clone(),
            public_url,
            data_dir: cli.data_dir.clone(),
        },
    )?)
}

fn report(warnings: &[String]) {
    for w in warnings {
        tracing::warn!("{w}");
    }
}

fn init_logging(config: &Config, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("REKEY_LOG")
        .ok()
        .map(|_| config.log.clone())
        .unwrap_or_else(|| default.to_string());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if config.log_format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn run(cli: Cli, started: Instant) -> anyhow::Result<ExitCode> {
    let out = Out::new(cli.json);
    if let Command::Serve(a) = &cli.command {
        let (config, warnings) = load_config(&cli, a.listen.clone(), a.public_url.clone())?;
        init_logging(&config, &config.log.clone());
        report(&warnings);
        return serve::run(config, started).await.map(|_| ExitCode::SUCCESS);
    }
    let (config, warnings) = load_config(&cli, None, None)?;
    init_logging(&config, "warn");
    report(&warnings);
    if let Command::Keyring(args::KeyringCmd::Generate) = &cli.command {
        return keyring::generate(&out).map(|_| ExitCode::SUCCESS);
    }
    let (core, source) = Core::open(config, true).await?;
    core.adopt_server_url().await?;
    if let crate::crypto::keyring::KeySource::Generated(p) = &source {
        eprintln!(
            "warning: no master key was configured; generated one into {} (mode 0600). Back it up: without it, secrets are lost.",
            p.display()
        );
    }
    let code = match cli.command {
        Command::Serve(_) => ExitCode::SUCCESS,
        Command::Migrate => {
            // Core::open has applied every migration.
            out.emit(
                &serde_json::json!({"migrated": true, "database": core.db.backend()}),
                |_| "migrations applied".to_string(),
            );
            ExitCode::SUCCESS
        }
        Command::Org(c) => org::run(&core, &out, c).await?,
        Command::User(c) => user::run(&core, &out, c).await?,
        Command::Operator(c) => user::run_operator(&core, &out, c).await?,
        Command::Keyring(c) => keyring::run(&core, &out, source, c).await?,
        Command::Audit(c) => audit::run(&core, &out, c).await?,
        Command::App(c) => app::run(&core, &out, c).await?,
        Command::Key(c) => key::run(&core, &out, c).await?,
        Command::M2m(c) => m2m::run(&core, &out, c).await?,
        Command::Connector(c) => connection::connector(&core, &out, c).await?,
        Command::Connection(c) => connection::run(&core, &out, c).await?,
        Command::Webhook(c) => webhook::run(&core, &out, c).await?,
        Command::ServiceKey(c) => connection::service_key(&core, &out, c).await?,
        Command::Rotate(a) => rotate::rotate(&core, &out, a).await?,
        Command::Rotation(c) => rotate::run(&core, &out, c).await?,
        Command::Credentials(c) => rotate::credentials(&core, &out, c).await?,
        Command::Incident(c) => incident::run(&core, &out, c).await?,
        Command::Delivery(c) => delivery::run(&core, &out, c).await?,
        Command::Outbox(c) => delivery::outbox(&core, &out, c).await?,
    };
    core.db.close().await;
    Ok(code)
}

/// Reads all of standard input (a PEM or JSON key), trailing newline removed.
pub(crate) fn read_stdin_all(what: &str) -> anyhow::Result<String> {
    use std::io::Read;
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s)?;
    let s = s.trim_end_matches(['\r', '\n']).to_string();
    if s.is_empty() {
        anyhow::bail!("no {what} on standard input");
    }
    Ok(s)
}

/// Reads one line (a password or secret) from standard input.
pub(crate) fn read_stdin_line(what: &str) -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin().read_line(&mut s)?;
    let s = s.trim_end_matches(['\r', '\n']).to_string();
    if s.is_empty() {
        anyhow::bail!("no {what} on standard input");
    }
    Ok(s)
}
