//! `test-relay`: the relay as its own process for the fault tests (`tests/tests/faults.rs`), which
//! must SIGKILL it. Same command line as `parley-relay` (built from the same library, so a test
//! run always exercises the current relay code), without logging set-up; SIGTERM shuts it down
//! gracefully (sockets get close 1001) exactly as `parley-relay` does.

use clap::Parser as _;
use relay_server::config::{Cli, Config};
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_cli(&cli)?;
    let mut term = signal(SignalKind::terminate())?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cli.listen))?;
    let relay = relay_server::Relay::start(config, listener).await?;
    println!("test-relay on {}", relay.addr());
    term.recv().await;
    relay.shutdown().await;
    Ok(())
}
