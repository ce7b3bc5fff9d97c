//! `koppel serve`: the daemon. For now it serves the built-in directory as a SCIM 2.0
//! endpoint (`[serve.scim]` in the configuration) and `/healthz`, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::Common;

pub fn run(common: &Common, listen: SocketAddr) -> anyhow::Result<ExitCode> {
    let config = crate::run::read_config(&common.config)?;
    let store = crate::apply::store_path(&config, &common.config, common.store.as_deref());
    let Some(scim) = config.serve.as_ref().and_then(|s| s.get("scim")) else {
        bail!(
            "{} has no [serve.scim] section: koppel serve has nothing to serve",
            common.config.display()
        );
    };
    if let Some(other) = config
        .serve
        .as_ref()
        .and_then(|s| s.keys().find(|k| k.as_str() != "scim"))
    {
        bail!(
            "{}: [serve.{other}] is not a koppel serve setting (known: scim)",
            common.config.display()
        );
    }
    let scim: koppel_server::ScimConfig = scim
        .clone()
        .try_into()
        .with_context(|| format!("{}: [serve.scim]", common.config.display()))?;
    // The endpoint answers many connections at once: one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(koppel_server::serve(
        listen,
        koppel_server::ServeConfig { store, scim },
    ))?;
    Ok(ExitCode::SUCCESS)
}
