//! `rekey serve`: binds, serves the router, shuts down gracefully.

mod conn;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::state::Core;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves until SIGTERM or SIGINT. `started` is when the process began, for
/// the start-up figure in the log.
pub async fn serve(core: Core, addr: SocketAddr, started: Instant) -> Result<(), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener.local_addr()?;
    let public_url: Arc<str> = core.config.public_url_for(bound).into();
    // Jobs (a guided rotation's authorize URL) use it too.
    let _ = core.bound_url.set(public_url.to_string());
    // CLI commands without a public_url of their own hand out this one.
    if let Err(e) = core.record_server_url(&public_url).await {
        tracing::warn!(error = %e, "cannot record the server's public URL for the CLI");
    }
    let state = AppState {
        core: core.clone(),
        metrics: Arc::new(crate::api::metrics::Metrics::new(&core.passwords.metrics)),
        public_url: public_url.clone(),
        trusted_proxies: core
            .config
            .trusted_proxy_nets()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?
            .into(),
    };
    let app = api::router(state);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let jobs = crate::jobs::spawn_all(&core, stop_rx);
    if crate::clock::is_test_clock() {
        tracing::warn!(
            "the test clock is on ({}): time here is moved by a file; never use this in production",
            crate::clock::TEST_CLOCK_ENV
        );
    }
    tracing::info!(
        address = %bound,
        public_url = %public_url,
        database = core.db.backend(),
        startup_ms = started.elapsed().as_millis() as u64,
        "listening on http://{bound}"
    );
    let cfg = &core.config;
    let limits = conn::Limits {
        max_connections: cfg.max_connections,
        header_read_timeout: cfg.header_read_timeout.0,
        idle_timeout: cfg.idle_timeout.0,
    };
    conn::run(listener, app, limits, shutdown_signal()).await;
    let _ = stop_tx.send(true);
    for j in jobs {
        let _ = j.await;
    }
    tracing::info!("shut down");
    core.db.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
