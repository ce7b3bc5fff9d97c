//! `koppel serve`: the daemon. Runs on the sources' schedules and on events (webhook, HR
//! push), serves the admin API, `/metrics`, `/healthz`, `/readyz` and, with `[serve.scim]`,
//! the built-in directory as a SCIM 2.0 endpoint, until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use koppel_server::ServeSettings;

use crate::Common;

/// Checks `[serve]` and the sources' schedules, as `koppel validate` and `koppel serve` do.
pub fn settings(
    config: &koppel_core::config::CompiledConfig,
    path: &std::path::Path,
) -> anyhow::Result<(ServeSettings, Vec<koppel_server::daemon::Schedule>)> {
    let settings = ServeSettings::from_table(config.serve.as_ref())
        .with_context(|| path.display().to_string())?;
    let schedules = koppel_server::daemon::schedule::from_sources(&config.sources)
        .with_context(|| path.display().to_string())?;
    Ok((settings, schedules))
}

pub fn run(common: &Common, listen: SocketAddr) -> anyhow::Result<ExitCode> {
    let config = crate::run::read_config(&common.config)?;
    let (settings, schedules) = settings(&config, &common.config)?;
    if settings.api.is_none() && settings.scim.is_none() && schedules.is_empty() {
        tracing::warn!(
            "{}: no [serve.api], no [serve.scim] and no source schedule: koppel serve only \
             answers /healthz, /readyz and /metrics",
            common.config.display()
        );
    }
    let path = crate::apply::store_path(&config, &common.config, common.store.as_deref());
    // The endpoint answers many connections at once: one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let store = koppel_store::SqliteStore::open(&path)
            .await
            .with_context(|| format!("opening the store {}", path.display()))?;
        let runner =
            crate::daemon::runner(config, &common.config, store.clone(), common.now).await?;
        #[allow(clippy::disallowed_methods)]
        let clock: koppel_server::daemon::Clock = Arc::new(chrono::Local::now);
        koppel_server::daemon::run(koppel_server::daemon::Daemon {
            listen,
            store,
            settings,
            schedules,
            runner: Arc::new(runner),
            clock,
        })
        .await?;
        anyhow::Ok(())
    });
    // A source still being read when the run was cut off must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result?;
    Ok(ExitCode::SUCCESS)
}
