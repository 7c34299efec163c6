//! Running the relay as a process: logging, the open-file limit, listening, and a graceful stop
//! on SIGTERM or Ctrl-C. Shared by `parley-relay` and the fault tests' `test-relay`, so the
//! process the crash tests kill is set up exactly like the real one.

use crate::config::{Cli, Config};
use crate::Relay;
use tracing_subscriber::EnvFilter;

/// Runs the relay the command line describes until SIGTERM or Ctrl-C.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("info"));
    // `try_init`: a host that already installed a subscriber keeps it.
    let _ = if cli.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .try_init()
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).try_init()
    };
    // Every socket is a file: lift the soft open-file limit to the hard one (20k here), or the
    // relay would stop accepting at the usual default of 1024.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let config = Config::from_cli(&cli)?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cli.listen))?;
    let relay = Relay::start(config, listener).await?;
    println!(
        "Parley relay on http://{0}/  (console: http://{0}/console)",
        relay.addr()
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    relay.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
