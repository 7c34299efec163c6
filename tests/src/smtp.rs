//! A real SMTP server for one test: Python's aiosmtpd (installed by `cargo xtask setup` into the
//! venv `~/.cache/parley/venv`), listening on a free loopback port and delivering every mail
//! it accepts into a Maildir in a temporary directory, which [`SmtpServer::wait_for`] reads.
//!
//! `$PARLEY_AIOSMTPD_PYTHON` names another Python that has aiosmtpd. Without one, tests that
//! need the server FAIL saying how to install it (never skip silently).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::process::{Child, Command};

use crate::TIMEOUT;

/// A running aiosmtpd; killed when dropped.
pub struct SmtpServer {
    /// The Python process (killed on drop).
    _child: Child,
    /// `127.0.0.1:PORT`.
    port: u16,
    /// The Maildir mails are delivered to (gone with the test).
    maildir: tempfile::TempDir,
}

/// One mail as the server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The whole message as stored (headers and body, plus aiosmtpd's `X-RcptTo` etc.).
    pub raw: String,
}

impl Mail {
    /// The envelope recipient (`X-RcptTo`).
    pub fn rcpt_to(&self) -> Option<&str> {
        self.raw
            .lines()
            .find_map(|l| l.strip_prefix("X-RcptTo: "))
            .map(str::trim)
    }

    /// The body with quoted-printable soft line breaks and `=XX` escapes undone (lettre
    /// encodes long or non-ASCII lines), so tests can search it for text.
    pub fn body(&self) -> String {
        let body = self
            .raw
            .split_once("\n\n")
            .map(|(_, b)| b)
            .unwrap_or(&self.raw);
        let joined = body.replace("=\r\n", "").replace("=\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' && i + 2 < bytes.len() {
                if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).replace("\r\n", "\n")
    }
}

/// The Python to run aiosmtpd with.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("PARLEY_AIOSMTPD_PYTHON") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("parley/venv/bin/python")
}

impl SmtpServer {
    /// Starts aiosmtpd on a free port and waits until it accepts connections.
    pub async fn start() -> anyhow::Result<Self> {
        let python = python();
        if !python.exists() {
            bail!(
                "{} not found: run `cargo xtask setup` (it installs aiosmtpd in a venv) or set \
                 PARLEY_AIOSMTPD_PYTHON",
                python.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let maildir = tempfile::tempdir()?;
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting aiosmtpd with {}", python.display()))?;
        let server = Self {
            _child: child,
            port,
            maildir,
        };
        let deadline = Instant::now() + TIMEOUT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("aiosmtpd did not listen on 127.0.0.1:{port} within {TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    /// `smtp://127.0.0.1:PORT`, for `--smtp-url`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every mail received so far.
    pub fn mails(&self) -> Vec<Mail> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let dir = self.maildir.path().join("mail").join(sub);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for p in paths {
                if let Ok(raw) = std::fs::read_to_string(&p) {
                    out.push(Mail { raw });
                }
            }
        }
        out
    }

    /// Waits until a mail satisfying `pred` arrives; fails listing what did arrive.
    pub async fn wait_for(&self, pred: impl Fn(&Mail) -> bool) -> anyhow::Result<Mail> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let mails = self.mails();
            if let Some(m) = mails.iter().find(|m| pred(m)) {
                return Ok(m.clone());
            }
            if Instant::now() > deadline {
                bail!(
                    "no matching mail within {TIMEOUT:?}; received {}: {:#?}",
                    mails.len(),
                    mails
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
