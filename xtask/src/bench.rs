//! `cargo xtask bench`: the relay figures in BENCHMARKS.md, reproduced with one command.
//!
//! Builds the release relay and `parley-load`, starts the relay on a free loopback port with a
//! fresh SQLite database, runs the idle-connections scenario, the chat-latency scenario and the
//! chat again beside a storm of failed logins (relay RSS around it), and stops it. With
//! `--two-nodes`, starts two relays sharing a fresh PostgreSQL database and one Redis (own
//! channel prefix) and measures visitors on one node talking to an agent on the other
//! (`--same-node`: on the same one, so the difference between the two runs is the Redis hop).
//! Bounded in count and time; loopback only.

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
    /// Two relays on PostgreSQL + Redis instead of one on SQLite.
    pub two_nodes: bool,
    /// With `two_nodes`: the agent on the visitors' node (the baseline for the Redis hop).
    pub same_node: bool,
    /// Failed logins sent beside a third chat run (0: no such run).
    pub login_storm: usize,
}

/// The PostgreSQL server the two-node run creates its database on (trust auth, as on CI).
const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432";
/// The Redis the two-node run uses, under its own channel prefix.
const REDIS: &str = "redis://127.0.0.1:6379/";

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
    let run_id = std::process::id();
    // Declared before the relays, so dropped after them: removed however the run ends (a
    // failed load run used to leave its database behind).
    let scratch = Scratch {
        dir: tempfile_dir()?,
        database: args.two_nodes.then(|| format!("parley_bench_{run_id}")),
    };
    let (database, bus) = match &scratch.database {
        Some(db) => {
            psql(&format!("CREATE DATABASE {db}"))?;
            (format!("{PG_ADMIN}/{db}"), Some(format!("--bus={REDIS}")))
        }
        None => (format!("sqlite://{}/bench.db", scratch.dir.display()), None),
    };
    let binary = target.join("parley-relay");
    let (node_a, pid, password) = start_relay(&binary, root, &database, bus.as_deref(), run_id)?;
    let url = node_a.url.clone();
    let node_b = if args.two_nodes {
        Some(start_relay(&binary, root, &database, bus.as_deref(), run_id)?.0)
    } else {
        None
    };
    let password = password.context("relay printed no admin password")?;
    let load = target.join("parley-load");

    if args.connections > 0 {
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
    }

    // The chat scenario; the login-storm run is the same with a storm beside it.
    let chat = |extra: &[String]| {
        let mut command = Command::new(&load);
        command
            .args(["--url", &url, "--relay-pid", &pid.to_string()])
            .args(
                node_b
                    .iter()
                    .filter(|_| !args.same_node)
                    .flat_map(|b| ["--agent-url".to_owned(), b.url.clone()]),
            )
            .args([
                "chat",
                "--visitors",
                &args.visitors.to_string(),
                "--agents",
                "1",
            ])
            .args(["--rate", &args.rate.to_string()])
            .args(["--duration", &args.duration.to_string()])
            .args(extra)
            .env("PARLEY_LOAD_PASSWORD", &password);
        command
    };
    section(&format!(
        "bench: chat latency, {} visitors -> 1 agent, {} msg/s for {} s",
        args.visitors, args.rate, args.duration
    ));
    run(&mut chat(&[]))?;

    if args.login_storm > 0 {
        section(&format!(
            "bench: chat beside a login storm, {} failed logins from 50 addresses",
            args.login_storm
        ));
        run(&mut chat(&[
            "--login-storm".into(),
            args.login_storm.to_string(),
            "--storm-clients".into(),
            "50".into(),
        ]))?;
    }
    Ok(())
}

/// Runs one SQL statement on the PostgreSQL server the two-node run uses.
fn psql(sql: &str) -> Result<()> {
    run(Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c"])
        .arg(sql))
}

/// What one run creates besides the relays: its directory (the SQLite database) and, with two
/// nodes, its PostgreSQL database. Both go on drop.
struct Scratch {
    dir: std::path::PathBuf,
    database: Option<String>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(db) = &self.database {
            let _ = psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A started relay: killed on drop.
struct Node {
    url: String,
    _process: Relay,
}

/// Starts one relay on a free port; returns it, its pid and the admin password if it printed one
/// (only the first node of a shared database creates the admin).
fn start_relay(
    binary: &Path,
    root: &Path,
    database: &str,
    bus: Option<&str>,
    run_id: u32,
) -> Result<(Node, u32, Option<String>)> {
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    section(&format!("bench: relay on {url}, database {database}"));
    let mut command = Command::new(binary);
    command
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--no-demo-site",
            "--log",
            "warn",
            // Every load client is on 127.0.0.1: the per-address cap would refuse the idle
            // scenario's sockets (that cap is exercised by the slowloris test instead).
            "--max-connections-per-ip",
            "19000",
            "--max-connections",
            "19000",
            // The same for the per-address limits on new visitors and conversations: the idle
            // scenario opens thousands of visitors a minute from four addresses.
            "--new-visitors-per-ip-per-minute",
            "1000000",
            "--new-conversations-per-ip-per-minute",
            "1000000",
        ])
        .arg("--database")
        .arg(database)
        .arg("--assets")
        .arg(root.join("dist"))
        .stdout(Stdio::piped())
        .stdin(Stdio::null());
    if let Some(bus) = bus {
        command.arg(bus).arg(format!("--bus-prefix=bench{run_id}"));
    }
    let mut child = command.spawn().context("starting parley-relay")?;
    let stdout = child.stdout.take().context("relay stdout")?;
    let pid = child.id();
    let process = Relay(child);
    let mut password = None;
    let started = Instant::now();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        // On a terminal the relay prints the first admin's password; piped, it writes it to a
        // private file and prints the path.
        if let Some(p) = line.trim().strip_prefix("password: ") {
            password = Some(p.to_owned());
        }
        if let Some(file) = line.trim().strip_prefix("password-file: ") {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading the admin password from {file}"))?;
            password = Some(text.trim().to_owned());
        }
        if line.starts_with("Parley relay on") {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("relay did not start within 30 s");
        }
    }
    Ok((
        Node {
            url,
            _process: process,
        },
        pid,
        password,
    ))
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("parley-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
