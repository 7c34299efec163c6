//! A real relay for one test: bound to 127.0.0.1 on a free port, storing into SQLite in a
//! temporary directory that disappears with it, serving the built bundles and the demo site, and
//! seeded with the agents of [`crate::AGENTS`].

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use relay_server::config::{AgentSeed, Config, Limits, Routing};

use crate::{dist_dir, repo_root, AGENTS};

/// A running relay. Shut it down with [`TestRelay::shutdown`]; dropping it also ends the test's
/// runtime, which stops the server tasks.
pub struct TestRelay {
    /// The server; `None` once shut down.
    relay: Option<relay_server::Relay>,
    /// Where it listens.
    addr: SocketAddr,
    /// Holds the SQLite file; removed when the test ends so runs never share state.
    data: tempfile::TempDir,
}

/// Starts a relay with the default test settings.
pub async fn start_server() -> anyhow::Result<TestRelay> {
    TestRelay::builder().start().await
}

/// One change to the config, applied once its paths and origin are known.
type Tweak = Box<dyn FnOnce(&mut Config) + Send>;

/// Adjusts the test relay's settings before it starts.
pub struct TestRelayBuilder {
    /// Changes to apply, in order, after the defaults.
    tweaks: Vec<Tweak>,
}

impl TestRelayBuilder {
    /// Changes the limits (rate, sizes, timeouts).
    pub fn limits(mut self, f: impl FnOnce(&mut Limits) + Send + 'static) -> Self {
        self.tweaks
            .push(Box::new(move |c: &mut Config| f(&mut c.limits)));
        self
    }

    /// Changes anything else in the config (sites, agents...).
    pub fn config(mut self, f: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.tweaks.push(Box::new(f));
        self
    }

    /// Lifts the visitor and agent frame rates, for tests that drive many conversations from
    /// one socket quickly (what they check is not the rate limit).
    pub fn unthrottled_sockets(self) -> Self {
        self.limits(|l| {
            l.visitor_per_second = 1000;
            l.visitor_burst = 1000;
            l.agent_per_second = 1000;
            l.agent_burst = 1000;
        })
    }

    /// Makes the `demo` site bot-first, answering from the demo shop's knowledge base
    /// (`demo-site/kb`), like the relay's no-config default.
    pub fn bot_first(self) -> Self {
        self.config(|c| {
            for site in &mut c.sites {
                site.routing = Routing::BotFirst;
                site.kb = Some(repo_root().join("demo-site").join("kb"));
            }
        })
    }

    /// Makes the `demo` site bot-first, answered by the external bot at `url` (Rasa REST
    /// channel shape) with this per-message timeout.
    pub fn external_bot(self, url: String, timeout_ms: u64) -> Self {
        self.config(move |c| {
            for site in &mut c.sites {
                site.routing = Routing::BotFirst;
                site.bot_url = Some(url.clone());
                site.bot_timeout_ms = Some(timeout_ms);
            }
        })
    }

    /// Lets `username` (one of [`crate::AGENTS`]) use the admin pages.
    pub fn admin(self, username: &'static str) -> Self {
        self.config(move |c| {
            for a in &mut c.agents {
                if a.username == username {
                    a.admin = true;
                }
            }
        })
    }

    /// Turns on automatic assignment from the queue on every site, with at most `max_chats`
    /// conversations per agent and `grace` before a gone agent's conversations are requeued.
    pub fn auto_assign(self, max_chats: u32, grace: std::time::Duration) -> Self {
        self.config(move |c| {
            for site in &mut c.sites {
                site.auto_assign = true;
                site.max_chats_per_agent = max_chats;
            }
            c.agent_grace = grace;
        })
    }

    /// Emails offline replies through this SMTP server (`smtp://127.0.0.1:PORT`).
    pub fn smtp(self, url: String) -> Self {
        self.config(move |c| {
            c.smtp = Some(relay_server::mail::SmtpSettings {
                url,
                from: "Demo Shop <chat@shop.example>".into(),
            })
        })
    }

    /// Binds a free port and starts the relay.
    pub async fn start(self) -> anyhow::Result<TestRelay> {
        let data = tempfile::tempdir().context("temp dir for the database")?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind 127.0.0.1:0")?;
        let local = listener.local_addr()?;
        let origin = format!("http://{local}");
        let db = data.path().join("parley.db");
        let mut config = Config::for_tests(
            format!("sqlite://{}", db.display()),
            dist_dir(),
            vec![origin],
        );
        config.demo_dir = Some(repo_root().join("demo-site"));
        for (username, display_name, password) in AGENTS {
            config.agents.push(AgentSeed {
                username: username.into(),
                display_name: display_name.into(),
                password: password.into(),
                max_chats: None,
                admin: false,
                sites: None,
            });
        }
        for tweak in self.tweaks {
            tweak(&mut config);
        }
        let relay = relay_server::Relay::start(config, listener)
            .await
            .context("Relay::start")?;
        let addr = relay.addr();
        Ok(TestRelay {
            relay: Some(relay),
            addr,
            data,
        })
    }
}

impl TestRelay {
    /// Settings to customise before starting.
    pub fn builder() -> TestRelayBuilder {
        TestRelayBuilder { tweaks: Vec::new() }
    }

    /// Where the relay listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` — also the only origin allowed for the `demo` site.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The relay's own origin (same as [`TestRelay::base_url`]).
    pub fn origin(&self) -> String {
        self.base_url()
    }

    /// An absolute `http://` URL for `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// An absolute `ws://` URL for `path` (which starts with `/`).
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// The SQLite database file (its `-wal` sibling holds recent writes).
    pub fn database_path(&self) -> PathBuf {
        self.data.path().join("parley.db")
    }

    /// The demo site's directory (for tests that check a page exists).
    pub fn demo_dir(&self) -> PathBuf {
        repo_root().join("demo-site")
    }

    /// Stops the relay gracefully (sockets get close 1001).
    pub async fn shutdown(mut self) {
        if let Some(relay) = self.relay.take() {
            relay.shutdown().await;
        }
    }
}
