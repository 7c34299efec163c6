//! `parley-relay`: parses the command line and runs the relay until SIGTERM/Ctrl-C
//! (see `run.rs`).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    parley_relay::run::run(parley_relay::config::Cli::parse()).await
}
