//! The relay as a separate OS process ([`RelayProcess`]), for the fault tests: it can be killed
//! with SIGKILL (a crash: nothing flushed, no close frames) or SIGTERM (a graceful shutdown) and
//! restarted on the same port against the same database and bus.
//!
//! The binary is `test-relay` of this crate (`tests/src/bin/test-relay.rs`), so it is always
//! built from the current relay code; only integration tests know its path
//! (`env!("CARGO_BIN_EXE_test-relay")`), so they pass it in. Each process runs in its own process group and the group is
//! killed on drop, so a failing test leaves no relay behind.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::{AGENTS, TIMEOUT};

/// A config file accepting visitor sockets from any origin for the `demo` site and seeding the
/// agents of [`AGENTS`]; kept in a temp dir that lives as long as the value.
pub struct RelayConfigFile {
    /// Holds the file.
    dir: tempfile::TempDir,
}

impl RelayConfigFile {
    /// Writes the file.
    pub fn write() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("temp dir for the relay config")?;
        // Agents in the fault scenarios take and answer conversations by hand, as the tests
        // script them: automatic assignment would hand some to the other agent mid-test.
        let mut text = String::from(
            "[[site]]\nkey = \"demo\"\nname = \"Demo Shop\"\nallowed_origins = [\"*\"]\nauto_assign = false\n",
        );
        for (username, display_name, password) in AGENTS {
            text.push_str(&format!(
                "\n[[agent]]\nusername = \"{username}\"\ndisplay_name = \"{display_name}\"\npassword = \"{password}\"\n"
            ));
        }
        std::fs::write(dir.path().join("relay.toml"), text).context("writing relay.toml")?;
        Ok(Self { dir })
    }

    /// The file's path, for `--config`.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("relay.toml")
    }

    /// An empty directory, for `--assets` (the fault tests use no bundles).
    pub fn assets(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// One relay process on a fixed port.
pub struct RelayProcess {
    /// The running process; `None` while killed.
    child: Option<Child>,
    /// Where it listens (kept across restarts).
    addr: SocketAddr,
    /// The `test-relay` executable.
    binary: PathBuf,
    /// The command-line arguments after `--listen ADDR`.
    args: Vec<String>,
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

impl RelayProcess {
    /// Starts `binary` (the `test-relay` executable) on a free port with `database` and, if
    /// given, the Redis `bus` with `prefix`; waits until `/healthz` answers.
    pub async fn start(
        binary: &Path,
        config: &RelayConfigFile,
        database: &str,
        bus: Option<(&str, &str)>,
    ) -> anyhow::Result<Self> {
        let mut args = vec![
            "--database".to_owned(),
            database.to_owned(),
            "--config".to_owned(),
            path_arg(&config.path()),
            "--assets".to_owned(),
            path_arg(&config.assets()),
            "--no-demo-site".to_owned(),
        ];
        if let Some((url, prefix)) = bus {
            args.extend([
                "--bus".to_owned(),
                url.to_owned(),
                "--bus-prefix".to_owned(),
                prefix.to_owned(),
            ]);
        }
        let mut process = Self {
            child: None,
            addr: free_addr()?,
            binary: binary.to_path_buf(),
            args,
        };
        process.restart().await?;
        Ok(process)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Whether the process is running (not killed by this value).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the process again on the same port (after [`RelayProcess::kill`]) and waits until
    /// `/healthz` answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("relay on {} is still running", self.addr);
        }
        let child = {
            use std::os::unix::process::CommandExt as _;
            Command::new(&self.binary)
                .arg("--listen")
                .arg(self.addr.to_string())
                .args(&self.args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .process_group(0)
                .spawn()
                .with_context(|| format!("starting {}", self.binary.display()))?
        };
        self.child = Some(child);
        let http = reqwest::Client::new();
        let health = format!("http://{}/healthz", self.addr);
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Ok(r) = http.get(&health).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    bail!("test-relay on {} exited at start: {status}", self.addr);
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("test-relay on {} not healthy within {TIMEOUT:?}", self.addr);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILLs the process group (a crash) and reaps it.
    pub async fn kill(&mut self) {
        self.signal("KILL");
        if let Some(mut child) = self.child.take() {
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
    }

    /// SIGTERMs the process (graceful shutdown) and waits up to `within` for it to exit; SIGKILL
    /// after that. Returns whether it exited by itself.
    pub async fn terminate(&mut self, within: Duration) -> bool {
        self.signal("TERM");
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let exited = match self.child.as_mut() {
                None => return true,
                Some(child) => matches!(child.try_wait(), Ok(Some(_))),
            };
            if exited {
                self.child = None;
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                self.kill().await;
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `SIG{name}` to the process group with the `kill` command (this crate has no
    /// `unsafe`, so no `libc::kill`).
    fn signal(&self, name: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([format!("-{name}"), "--".into(), format!("-{}", child.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.signal("KILL");
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A path as a command-line argument.
fn path_arg(path: &Path) -> String {
    path.display().to_string()
}
