//! Redis for the cross-node tests: the shared server's URL ([`redis_url`]), a TCP proxy that
//! can close or silently blackhole one node's path to it ([`CuttableProxy`]), and a private
//! `redis-server` process a test may kill and restart ([`RedisServer`]), and one that speaks
//! only TLS and wants a password ([`SecureRedis`]).
//!
//! The shared Redis (127.0.0.1:6379) is never stopped by a test: other tests run against it at
//! the same time. A test that needs Redis itself to die starts its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;

use crate::TIMEOUT;

/// The Redis the tests use unless `PARLEY_TEST_REDIS_URL` names another.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";

/// `$PARLEY_TEST_REDIS_URL` or [`DEFAULT_REDIS_URL`].
pub fn redis_url() -> String {
    std::env::var("PARLEY_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned())
}

/// `host:port` of a `redis://host:port/...` URL.
pub fn host_port(url: &str) -> anyhow::Result<String> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .context("redis URL without scheme")?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    Ok(rest.split('/').next().unwrap_or(rest).to_owned())
}

/// What the proxy does with connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Forwards both ways.
    Open,
    /// Closes every connection, and new ones at once: Redis "went away" visibly.
    Closed,
    /// Keeps every connection open but forwards nothing, on existing and new ones alike: a
    /// network or proxy that silently stopped, the case only a timeout can detect.
    Blackhole,
}

/// A TCP proxy in front of Redis that can cut or blackhole every connection, so one node can
/// lose its bus while the Redis server keeps running for everyone else.
pub struct CuttableProxy {
    /// `redis://127.0.0.1:PORT/` of the proxy.
    pub url: String,
    mode: watch::Sender<Mode>,
    /// The connections' tasks (forwarding, or holding a blackholed socket open), aborted by
    /// [`CuttableProxy::cut`] and on drop.
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    /// Listens on a free loopback port and forwards to `target` (`host:port`).
    pub async fn start(target: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("redis://{}/", listener.local_addr()?);
        let (mode, _) = watch::channel(Mode::Open);
        let links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let target = target.to_owned();
        let (mode2, links2) = (mode.clone(), links.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut watch = mode2.subscribe();
                let now = *watch.borrow_and_update();
                let link = match now {
                    Mode::Closed => continue, // dropped: the connection closes at once
                    // Accepted, then never answered.
                    Mode::Blackhole => tokio::spawn(async move {
                        let _held = inbound;
                        std::future::pending::<()>().await;
                    }),
                    Mode::Open => {
                        let target = target.clone();
                        tokio::spawn(async move {
                            let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await
                            else {
                                return;
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                                _ = async { drop(watch.wait_for(|m| *m == Mode::Blackhole).await) } => {
                                    // Both sockets stay open, unread and unwritten, until the
                                    // proxy cuts or drops this link: after a restore too, as
                                    // a proxy that lost a connection's state never revives it.
                                    std::future::pending::<()>().await;
                                }
                            }
                        })
                    }
                };
                links2.lock().unwrap_or_else(|p| p.into_inner()).push(link);
            }
        });
        Ok(Self {
            url,
            mode,
            links,
            accept,
        })
    }

    /// Redis "goes away" for whoever uses the proxy: every connection is closed, new ones too.
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Closed);
        self.abort_links();
    }

    /// The path to Redis silently stops: connections stay open but nothing passes, in either
    /// direction, on them or on new ones.
    pub fn blackhole(&self) {
        self.mode.send_replace(Mode::Blackhole);
    }

    /// Redis is back for new connections (blackholed ones stay silent).
    pub fn restore(&self) {
        self.mode.send_replace(Mode::Open);
    }

    fn abort_links(&self) {
        for link in self
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            link.abort();
        }
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.abort_links();
    }
}

/// A private `redis-server` on a free loopback port, without persistence, in its own process
/// group (killed on drop), which a test can SIGKILL and start again on the same port.
pub struct RedisServer {
    /// The running process; `None` while killed.
    child: Option<Child>,
    addr: SocketAddr,
    binary: PathBuf,
}

/// `$PARLEY_TEST_REDIS_SERVER`, else `/usr/bin/redis-server`, else `redis-server` on the PATH.
fn redis_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PARLEY_TEST_REDIS_SERVER") {
        return PathBuf::from(path);
    }
    let debian = PathBuf::from("/usr/bin/redis-server");
    if debian.is_file() {
        debian
    } else {
        PathBuf::from("redis-server")
    }
}

impl RedisServer {
    /// Starts one and waits until it answers `PING`. A missing binary is an error naming the
    /// fix, never a skip.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        drop(listener);
        let mut server = Self {
            child: None,
            addr,
            binary: redis_server_binary(),
        };
        server.restart().await?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// Starts the process again on the same port (after [`RedisServer::kill`]), empty, and waits
    /// until it answers `PING`.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("redis-server on {} is still running", self.addr);
        }
        let child = {
            use std::os::unix::process::CommandExt as _;
            Command::new(&self.binary)
                .args(["--bind", "127.0.0.1", "--port"])
                .arg(self.addr.port().to_string())
                .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .process_group(0)
                .spawn()
                .with_context(|| {
                    format!(
                        "starting {} (install Redis: `cargo xtask setup`, or set \
                         PARLEY_TEST_REDIS_SERVER)",
                        self.binary.display()
                    )
                })?
        };
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if self.pong().await {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    bail!("redis-server on {} exited at start: {status}", self.addr);
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "redis-server on {} not answering within {TIMEOUT:?}",
                    self.addr
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether it answers `PING` with `+PONG` now.
    async fn pong(&self) -> bool {
        let attempt = async {
            let mut tcp = tokio::net::TcpStream::connect(self.addr).await.ok()?;
            tcp.write_all(b"PING\r\n").await.ok()?;
            let mut answer = [0u8; 7];
            tcp.read_exact(&mut answer).await.ok()?;
            Some(&answer == b"+PONG\r\n")
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), attempt).await,
            Ok(Some(true))
        )
    }

    /// SIGKILLs it (nothing saved: it comes back empty) and reaps it.
    pub async fn kill(&mut self) {
        self.signal_kill();
        if let Some(mut child) = self.child.take() {
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
    }

    /// SIGKILL to the process group with the `kill` command (this crate has no `unsafe`).
    fn signal_kill(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-KILL".to_owned(), "--".into(), format!("-{}", child.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.signal_kill();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A private `redis-server` that takes clients only over TLS (a certificate for 127.0.0.1 from a
/// private CA, both made with `openssl`) and only with a password; killed on drop. Its plain port is
/// used only to see that it is up.
pub struct SecureRedis {
    child: Child,
    tls: SocketAddr,
    password: String,
    /// Holds the key and certificate.
    dir: tempfile::TempDir,
}

impl SecureRedis {
    /// Starts one and waits until it answers `AUTH` + `PING` on its plain port.
    pub async fn start(password: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        // A private CA, and the server's certificate for 127.0.0.1 signed by it (rustls, rightly,
        // refuses a CA certificate used as the server's own).
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )?;
        let steps: [&[&str]; 3] = [
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=parley-test-ca",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "key.pem",
                "-out",
                "server.csr",
            ],
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "server.ext",
                "-out",
                "cert.pem",
            ],
        ];
        for args in steps {
            let made = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .context("running openssl (Debian: apt install openssl)")?;
            if !made.success() {
                bail!(
                    "openssl {} failed making the test certificates: {made}",
                    args[0]
                );
            }
        }
        let free = || -> anyhow::Result<SocketAddr> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
        };
        let (plain, tls) = (free()?, free()?);
        let child = {
            use std::os::unix::process::CommandExt as _;
            Command::new(redis_server_binary())
                .args(["--bind", "127.0.0.1", "--port"])
                .arg(plain.port().to_string())
                .arg("--tls-port")
                .arg(tls.port().to_string())
                .arg("--tls-cert-file")
                .arg(dir.path().join("cert.pem"))
                .arg("--tls-key-file")
                .arg(dir.path().join("key.pem"))
                .args(["--tls-auth-clients", "no", "--requirepass", password])
                .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .process_group(0)
                .spawn()
                .context("starting redis-server with TLS")?
        };
        let server = Self {
            child,
            tls,
            password: password.to_owned(),
            dir,
        };
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while !server.answers(plain).await {
            if tokio::time::Instant::now() > deadline {
                bail!("redis-server with TLS not answering within {TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(server)
    }

    async fn answers(&self, plain: SocketAddr) -> bool {
        let attempt = async {
            let mut tcp = tokio::net::TcpStream::connect(plain).await.ok()?;
            tcp.write_all(format!("AUTH {}\r\nPING\r\n", self.password).as_bytes())
                .await
                .ok()?;
            let mut answer = [0u8; 12];
            tcp.read_exact(&mut answer).await.ok()?;
            Some(&answer == b"+OK\r\n+PONG\r\n")
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), attempt).await,
            Ok(Some(true))
        )
    }

    /// `rediss://:PASSWORD@127.0.0.1:TLS_PORT/`.
    pub fn url(&self) -> String {
        format!("rediss://:{}@{}/", self.password, self.tls)
    }

    /// The URL with another password.
    pub fn url_with_password(&self, password: &str) -> String {
        format!("rediss://:{password}@{}/", self.tls)
    }

    /// The CA certificate that signed the server's, for `--bus-ca-file`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

impl Drop for SecureRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
