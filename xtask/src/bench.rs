//! `cargo xtask bench`: the relay figures in BENCHMARKS.md, reproduced with one command.
//!
//! Builds the release relay and `parley-load`, starts the relay on a free loopback port with a
//! fresh SQLite database, runs the idle-connections scenario and then the chat-latency scenario
//! against it, and stops it. Bounded in count and time; loopback only.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::exec::{self, run, section};

/// What to measure.
pub struct BenchArgs {
    /// Idle visitor connections to hold.
    pub connections: usize,
    /// Visitors in the chat scenario.
    pub visitors: usize,
    /// Total visitor messages per second in the chat scenario.
    pub rate: u64,
    /// Seconds of chat traffic.
    pub duration: u64,
}

/// Kills the relay when the benchmark ends, however it ends.
struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs both scenarios and prints their figures.
pub fn bench(root: &Path, args: &BenchArgs) -> Result<()> {
    section("bench: build release relay and load tool");
    run(exec::cargo(root).args([
        "build",
        "--release",
        "-p",
        "parley-relay",
        "-p",
        "parley-load",
    ]))?;
    let target = crate::bundle::target_dir(root)?.join("release");
    let data = tempfile_dir()?;
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");

    section(&format!(
        "bench: relay on {url}, database in {}",
        data.display()
    ));
    let mut child = Command::new(target.join("parley-relay"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--no-demo-site",
            "--log",
            "warn",
        ])
        .arg("--database")
        .arg(format!("sqlite://{}/bench.db", data.display()))
        .arg("--assets")
        .arg(root.join("dist"))
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .context("starting parley-relay")?;
    let stdout = child.stdout.take().context("relay stdout")?;
    let pid = child.id();
    let _relay = Relay(child);
    let mut password = None;
    let started = Instant::now();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(p) = line.trim().strip_prefix("password: ") {
            password = Some(p.to_owned());
        }
        if line.starts_with("Parley relay on") {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("relay did not start within 30 s");
        }
    }
    let password = password.context("relay printed no admin password")?;
    let load = target.join("parley-load");

    section(&format!(
        "bench: {} idle visitor connections",
        args.connections
    ));
    run(Command::new(&load)
        .args(["--url", &url, "--relay-pid", &pid.to_string()])
        .args([
            "idle",
            "--connections",
            &args.connections.to_string(),
            "--hold",
            "5",
        ]))?;

    section(&format!(
        "bench: chat latency, {} visitors -> 1 agent, {} msg/s for {} s",
        args.visitors, args.rate, args.duration
    ));
    run(Command::new(&load)
        .args(["--url", &url, "--relay-pid", &pid.to_string()])
        .args([
            "chat",
            "--visitors",
            &args.visitors.to_string(),
            "--agents",
            "1",
        ])
        .args([
            "--rate",
            &args.rate.to_string(),
            "--duration",
            &args.duration.to_string(),
        ])
        .env("PARLEY_LOAD_PASSWORD", password))?;
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("parley-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
