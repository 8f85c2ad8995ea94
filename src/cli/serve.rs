//! `rekey serve`.

use std::time::Instant;

use crate::config::Config;
use crate::crypto::keyring::KeySource;
use crate::state::Core;

pub async fn run(config: Config, started: Instant) -> anyhow::Result<()> {
    let addr = config.listen_addr()?;
    let (core, source) = Core::open(config, true).await?;
    match &source {
        KeySource::Generated(p) => tracing::warn!(
            path = %p.display(),
            "NO MASTER KEY WAS CONFIGURED: generated a new one into {} (mode 0600). \
             Back this file up or set REKEY_MASTER_KEY: without it every stored secret is lost.",
            p.display()
        ),
        KeySource::File(p) => tracing::info!(path = %p.display(), "master key loaded from file"),
        KeySource::Environment => tracing::info!("master key loaded from REKEY_MASTER_KEY"),
    }
    tracing::info!(key_ids = ?core.keyring.key_ids(), "keyring ready");
    crate::server::serve(core, addr, started).await?;
    Ok(())
}
