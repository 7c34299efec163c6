//! `test-relay`: the relay as its own process for the fault tests (`tests/tests/faults.rs`), which
//! must SIGKILL it. Built from the same library and started through the same `run` as
//! `parley-relay`, so a test run exercises exactly the real process, SIGTERM handling included.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    relay_server::run::run(relay_server::config::Cli::parse()).await
}
