//! `cargo xtask`: the one entry point for developers and CI. It installs the tools Parley needs,
//! builds the wasm bundles into `dist/`, runs the relay, and runs the lints and tests.
//!
//! | command | what |
//! |---|---|
//! | `cargo xtask setup [--no-browser]` | install the wasm target, wasm-bindgen, wasm-opt, chromium |
//! | `cargo xtask build [--debug]` | build `dist/` (widget loader + panel, console), precompressed |
//! | `cargo xtask run [-- ARGS]` | setup + build, then the relay with `ARGS` |
//! | `cargo xtask test` | setup + build + all tests |
//! | `cargo xtask lint` | rustfmt + clippy (native and wasm32) |
//! | `cargo xtask ci` | setup + lint + test: what `.ci/run` calls |
//! | `cargo xtask bench` | relay memory per idle connection, chat latency, a login storm (BENCHMARKS.md) |

mod bench;
mod bundle;
mod checks;
mod compress;
mod exec;
mod tools;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::checks::Outcome;

/// Parley's build helper.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about, long_about = None)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (quick when everything is present).
    Setup {
        /// Skip Chromium and chromedriver (only the browser tests need them).
        #[arg(long)]
        no_browser: bool,
    },
    /// Build the widget and console bundles into dist/, precompressed, and report their sizes.
    Build {
        /// Dev profile and no wasm-opt: faster, much larger.
        #[arg(long)]
        debug: bool,
    },
    /// Set up, build, then run the relay (arguments after `--` go to the relay).
    Run {
        /// Arguments for parley-relay, e.g. `-- --listen 0.0.0.0:8080`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        relay_args: Vec<String>,
    },
    /// Set up, build, then run every test (workspace tests and the wasm unit tests).
    Test,
    /// rustfmt check and clippy with warnings denied (native and wasm32).
    Lint,
    /// Everything CI checks: setup, lint, test.
    Ci,
    /// The relay figures of BENCHMARKS.md: idle-connection memory and chat latency (loopback).
    Bench {
        /// Idle visitor connections to hold (this machine allows 20k open files per process);
        /// 0 skips that scenario.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Visitors in the chat scenario (one conversation each).
        #[arg(long, default_value_t = 200)]
        visitors: usize,
        /// Total visitor messages per second in the chat scenario.
        #[arg(long, default_value_t = 1_000)]
        rate: u64,
        /// Seconds of chat traffic.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Two relays sharing a fresh PostgreSQL database and Redis; agents on the second node.
        #[arg(long)]
        two_nodes: bool,
        /// With `--two-nodes`: the agent on the visitors' node too, so nothing crosses Redis on
        /// the way (run both ways: the difference is the Redis hop).
        #[arg(long, requires = "two_nodes")]
        same_node: bool,
        /// Failed logins with made-up usernames from 50 addresses, sent during a third chat
        /// run (relay RSS around it, chat latency beside it); 0 skips that run.
        #[arg(long, default_value_t = 2_000)]
        login_storm: usize,
    },
}

/// The workspace root: xtask lives in `<root>/xtask`. Taken from the `CARGO_MANIFEST_DIR` that
/// `cargo run` sets at run time, not only the one compiled in: a binary built by another checkout
/// sharing the target directory (a clean clone, a worktree) would otherwise work on that one.
fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let started = Instant::now();
    let result = workspace_root().and_then(|root| dispatch(&root, cli.command));
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => {
            println!("\nxtask: done in {secs:.0}s");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nxtask: FAILED after {secs:.0}s: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(root: &Path, command: Cmd) -> Result<()> {
    match command {
        Cmd::Setup { no_browser } => tools::setup(root, !no_browser).map(|_| ()),
        Cmd::Build { debug } => {
            let tools = tools::setup(root, false)?;
            bundle::build(root, &tools, debug).map(|_| ())
        }
        Cmd::Run { relay_args } => {
            let tools = tools::setup(root, false)?;
            bundle::build(root, &tools, false)?;
            std::fs::create_dir_all(root.join("data")).context("creating ./data")?;
            exec::section("run: parley-relay");
            exec::run(
                exec::cargo(root)
                    .args(["run", "--release", "-p", "parley-relay", "--"])
                    .args(&relay_args),
            )
        }
        Cmd::Test => {
            let tools = tools::setup(root, true)?;
            let dist = bundle::build(root, &tools, false)?;
            let mut outcome = Outcome::default();
            checks::test(root, &tools, &dist, &mut outcome);
            outcome.finish("test")
        }
        Cmd::Lint => {
            let mut outcome = Outcome::default();
            checks::lint(root, &mut outcome);
            outcome.finish("lint")
        }
        Cmd::Bench {
            connections,
            visitors,
            rate,
            duration,
            two_nodes,
            same_node,
            login_storm,
        } => bench::bench(
            root,
            &bench::BenchArgs {
                connections,
                visitors,
                rate,
                duration,
                two_nodes,
                same_node,
                login_storm,
            },
        ),
        Cmd::Ci => {
            let tools = tools::setup(root, true)?;
            let mut outcome = Outcome::default();
            checks::lint(root, &mut outcome);
            exec::section("ci: build");
            match bundle::build(root, &tools, false) {
                Ok(dist) => checks::test(root, &tools, &dist, &mut outcome),
                Err(e) => outcome.record("build", Err(e)),
            }
            outcome.finish("ci")
        }
    }
}
