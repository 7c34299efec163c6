//! Relay settings: the command line (clap) and the TOML config file it may name.
//!
//! Everything has a default so that `parley-relay` with no flags serves the demo site on
//! 127.0.0.1:8080 from an SQLite file under `./data`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;

/// Command line of `parley-relay`.
#[derive(Debug, Parser)]
#[command(
    name = "parley-relay",
    version,
    about = "Parley relay: live chat between site visitors and agents",
    long_about = "Parley relay: serves the widget, the agents' console and the visitor and agent \
                  WebSockets, and stores every message before acknowledging it.\n\n\
                  With no flags it listens on 127.0.0.1:8080, stores data in ./data/parley.db \
                  and serves the demo site from ./demo-site. On first start without agents it \
                  creates the agent `admin` and prints a one-time password."
)]
pub struct Cli {
    /// Address to listen on.
    #[arg(long, env = "PARLEY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Database URL: `sqlite://PATH` (created if missing) or `postgres://USER@HOST/DB` (the
    /// database must exist; several relays may share it).
    #[arg(
        long,
        env = "PARLEY_DATABASE",
        default_value = "sqlite://data/parley.db"
    )]
    pub database: String,

    /// TOML config file with sites and agents (see README). Without it the demo site is used.
    #[arg(long, short, env = "PARLEY_CONFIG")]
    pub config: Option<PathBuf>,

    /// Directory with the built widget and console bundles (`cargo xtask build` writes it).
    #[arg(long, env = "PARLEY_ASSETS", default_value = "dist")]
    pub assets: PathBuf,

    /// Directory of a static site to serve at `/` (the demo shop).
    #[arg(long, env = "PARLEY_DEMO_SITE", default_value = "demo-site")]
    pub demo_site: PathBuf,

    /// Serve no site at `/` (production: the relay only serves the widget, console and sockets).
    #[arg(long)]
    pub no_demo_site: bool,

    /// Redis URL of the cross-node bus (`redis://127.0.0.1:6379/`; with a password
    /// `redis://:PASSWORD@host/` or `redis://USER:PASSWORD@host/`; over TLS `rediss://…`).
    /// Needed when several relays share one PostgreSQL database behind one address; without it
    /// the relay is one node.
    #[arg(long, env = "PARLEY_BUS")]
    pub bus: Option<String>,

    /// PEM file of the certificate authority that signed the bus's TLS certificate (a private
    /// CA); without it a `rediss://` bus is checked against the system's trusted roots.
    #[arg(long, env = "PARLEY_BUS_CA_FILE")]
    pub bus_ca_file: Option<PathBuf>,

    /// Prefix of the bus's Redis keys and channel, so deployments sharing a Redis stay apart.
    #[arg(long, env = "PARLEY_BUS_PREFIX", default_value = "parley")]
    pub bus_prefix: String,

    /// Seconds an agent may be gone (every console closed, on every node) before their open
    /// conversations go back to the queue.
    #[arg(long, env = "PARLEY_AGENT_GRACE_SECS", default_value_t = 120)]
    pub agent_grace_secs: u64,

    /// Log filter, e.g. `info` or `parley_relay=debug,tower_http=info`.
    #[arg(long, env = "PARLEY_LOG", default_value = "info")]
    pub log: String,

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "PARLEY_LOG_JSON")]
    pub log_json: bool,

    /// SMTP server for offline messages (`smtp://HOST:PORT`, `smtp://USER:PASS@HOST:PORT`; plain
    /// SMTP, meant for a local mail relay). With it, agents' replies to a message left while
    /// nobody was available are emailed to the visitor with the transcript.
    #[arg(long, env = "PARLEY_SMTP_URL", requires = "smtp_from")]
    pub smtp_url: Option<String>,

    /// Sender address of those emails (`Parley <chat@shop.example>`).
    #[arg(long, env = "PARLEY_SMTP_FROM")]
    pub smtp_from: Option<String>,

    /// Where browsers reach the relay (`https://chat.example.com`), when it is behind a proxy or
    /// on a public host. With `https://` the session cookie is `__Host-parley_session` and
    /// `Secure`; agents' requests and sockets must come from exactly this origin.
    #[arg(long, env = "PARLEY_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Proxies in front of the relay whose `X-Forwarded-For` names the client (IP addresses or
    /// CIDR blocks, comma-separated): the per-address limits then apply to visitors, not to the
    /// proxy. Never list addresses that clients could connect from directly.
    #[arg(long, env = "PARLEY_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxy: Vec<String>,

    /// Open TCP connections at most, all clients together.
    #[arg(long, env = "PARLEY_MAX_CONNECTIONS", default_value_t = Limits::default().max_connections)]
    pub max_connections: usize,

    /// Open TCP connections at most from one IP address (raise it behind a proxy or a large NAT).
    #[arg(long, env = "PARLEY_MAX_CONNECTIONS_PER_IP", default_value_t = Limits::default().max_connections_per_ip)]
    pub max_connections_per_ip: usize,

    /// HTTP requests handled at once, all clients together; past it `503 busy` at once
    /// (WebSocket upgrades hold a place only until the socket opens).
    #[arg(long, env = "PARLEY_MAX_REQUESTS_IN_FLIGHT", default_value_t = Limits::default().max_requests_in_flight)]
    pub max_requests_in_flight: usize,

    /// New visitors a minute from one IP address (each is a stored row).
    #[arg(long, env = "PARLEY_NEW_VISITORS_PER_IP_PER_MINUTE", default_value_t = Limits::default().new_visitors_per_ip_per_minute)]
    pub new_visitors_per_ip_per_minute: u32,

    /// New conversations a minute from one IP address.
    #[arg(long, env = "PARLEY_NEW_CONVERSATIONS_PER_IP_PER_MINUTE", default_value_t = Limits::default().new_conversations_per_ip_per_minute)]
    pub new_conversations_per_ip_per_minute: u32,

    /// Seconds a client has to send a whole HTTP request head.
    #[arg(long, env = "PARLEY_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
}

/// One site that may embed the widget.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct SiteConfig {
    /// The key in `data-site="…"`.
    pub key: String,
    /// Name shown in the widget header and the console.
    pub name: String,
    /// Accent colour of the widget, CSS hex (`#2b6cb0`).
    #[serde(default = "default_color")]
    pub color: String,
    /// Origins allowed to open visitor sockets for this site (`https://shop.example`), or `*`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Who answers first. Agents-first by default, so a site only gets a bot when its owner
    /// asks for one (and has written a knowledge base for it).
    #[serde(default)]
    pub routing: Routing,
    /// Directory of the site's Markdown knowledge base (see the `parley-bot` crate); needed
    /// for `routing = "bot_first"`.
    #[serde(default)]
    pub kb: Option<PathBuf>,
    /// Name the bot signs its messages with; default "<site name> assistant".
    #[serde(default)]
    pub bot_name: Option<String>,
    /// An external bot (Rasa REST channel shape, see PROTOCOL.md "External bots") that answers
    /// a bot-first site instead of the knowledge base: `http://host:port/webhooks/rest/webhook`.
    /// Lets a site plug in Rasa, Botpress or an LLM service without changing the relay.
    #[serde(default)]
    pub bot_url: Option<String>,
    /// How long the external bot may take per message before the visitor is sent to the
    /// queue (`bot_failed`); default [`DEFAULT_BOT_TIMEOUT_MS`]. Bounds the visitor's wait.
    #[serde(default)]
    pub bot_timeout_ms: Option<u64>,
    /// Most conversations of this site the relay gives one agent automatically (an `[[agent]]`'s
    /// `max_chats` overrides it). Agents may still take more by hand.
    #[serde(default = "default_max_chats")]
    pub max_chats_per_agent: u32,
    /// Whether waiting conversations go to online agents by themselves (least busy, then round
    /// robin). Off: agents pick from the queue by hand.
    #[serde(default = "default_true")]
    pub auto_assign: bool,
    /// When people answer (`[site.hours]`); absent: always, as long as an agent is online.
    /// Outside hours the widget offers to leave a message instead of waiting for a reply.
    #[serde(default)]
    pub hours: Option<crate::hours::Hours>,
    /// Proactive greetings (`[[site.greeting]]`) the loader shows next to the launcher.
    #[serde(default, rename = "greeting")]
    pub greetings: Vec<Greeting>,
    /// `retention_days` and `keep_query_params` (see [`crate::rights::Privacy`]).
    #[serde(flatten)]
    pub privacy: crate::rights::Privacy,
    /// `identity_secret`, `require_identity`, … (see [`crate::identity::IdentityConfig`]).
    #[serde(flatten)]
    pub identity: crate::identity::IdentityConfig,
}

/// A proactive greeting rule: on a matching page, after some seconds, the loader shows `text`
/// in a bubble next to the launcher (once per visitor per rule); opening the chat from it
/// stores `text` as the bot's first message of the conversation.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Greeting {
    /// Stable name of the rule (1–32 of `[A-Za-z0-9_-]`): what the loader remembers as shown
    /// and what the panel's `greeting` frame names, so the text itself never comes from clients.
    pub id: String,
    /// Page path pattern matched against `location.pathname`; `*` matches any run of
    /// characters (`/products/*`). Default: every page.
    #[serde(default = "any_page")]
    pub url: String,
    /// Seconds the visitor must have spent on the page first.
    #[serde(default)]
    pub after_seconds: u32,
    /// `true`: only visitors who chatted before (the widget holds a visitor token); `false`:
    /// only first-timers; absent: everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returning: Option<bool>,
    /// What the bot says (plain text, at most 500 bytes).
    pub text: String,
}

fn any_page() -> String {
    "*".into()
}

impl Greeting {
    /// Why this rule cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 32
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(format!(
                "greeting id {:?} must be 1-32 of [A-Za-z0-9_-]",
                self.id
            ));
        }
        if self.text.trim().is_empty() || self.text.len() > 500 {
            return Err(format!("greeting {:?}: text must be 1-500 bytes", self.id));
        }
        Ok(())
    }
}

/// Conversations per agent when the site does not say.
pub const DEFAULT_MAX_CHATS: u32 = 3;

fn default_max_chats() -> u32 {
    DEFAULT_MAX_CHATS
}

fn default_true() -> bool {
    true
}

/// Default of [`SiteConfig::bot_timeout_ms`]: long enough for an LLM's short answer, short
/// enough that a visitor is not left staring at nothing.
pub const DEFAULT_BOT_TIMEOUT_MS: u64 = 8_000;

/// Who answers a new conversation first.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// New conversations wait for a person.
    #[default]
    AgentsFirst,
    /// The knowledge-base bot answers until it hands over (or an agent takes the conversation).
    BotFirst,
}

impl SiteConfig {
    /// Whether new conversations of this site start with the bot.
    pub fn bot_first(&self) -> bool {
        self.routing == Routing::BotFirst
    }

    /// The name the bot signs with.
    pub fn bot_name(&self) -> String {
        self.bot_name
            .clone()
            .unwrap_or_else(|| format!("{} assistant", self.name))
    }

    /// Whether a visitor socket from this `Origin` header value may be opened.
    pub fn allows_origin(&self, origin: Option<&str>) -> bool {
        if self.allowed_origins.iter().any(|o| o == "*") {
            return true;
        }
        match origin {
            Some(origin) => self
                .allowed_origins
                .iter()
                .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin)),
            None => false,
        }
    }
}

fn default_color() -> String {
    "#2b6cb0".into()
}

/// An agent account created (or whose password is reset) at start. Its `Debug` hides the
/// password (configs are logged).
#[derive(Clone, Deserialize, PartialEq)]
pub struct AgentSeed {
    /// Login name.
    pub username: String,
    /// Name shown to visitors.
    pub display_name: String,
    /// Password, hashed with argon2 before it is stored. Only in config files you protect.
    pub password: String,
    /// Most conversations given to this agent automatically, whatever the site's
    /// `max_chats_per_agent`.
    #[serde(default)]
    pub max_chats: Option<u32>,
    /// May change sites' routing, hours and capacity in the console (the admin pages). The
    /// agent `admin` the relay creates on a first start is one.
    #[serde(default)]
    pub admin: bool,
    /// The site keys this agent serves (a team); absent: every site.
    #[serde(default)]
    pub sites: Option<Vec<String>>,
}

impl std::fmt::Debug for AgentSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSeed")
            .field("username", &self.username)
            .field("display_name", &self.display_name)
            .field("password", &"(hidden)")
            .field("max_chats", &self.max_chats)
            .field("admin", &self.admin)
            .field("sites", &self.sites)
            .finish()
    }
}

/// The config file (TOML).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct FileConfig {
    /// Sites.
    #[serde(default, rename = "site")]
    pub sites: Vec<SiteConfig>,
    /// Agents.
    #[serde(default, rename = "agent")]
    pub agents: Vec<AgentSeed>,
}

/// Everything the relay needs to start, however it was gathered (CLI, file, tests).
#[derive(Clone, Debug)]
pub struct Config {
    /// `sqlite://PATH` or `sqlite::memory:`.
    pub database_url: String,
    /// Built bundles (`widget.js`, `widget/`, `console/`).
    pub assets_dir: PathBuf,
    /// Static site served at `/`, if any.
    pub demo_dir: Option<PathBuf>,
    /// Sites that may embed the widget.
    pub sites: Vec<SiteConfig>,
    /// Agents to create at start.
    pub agents: Vec<AgentSeed>,
    /// Limits on clients.
    pub limits: Limits,
    /// `--public-url`: see [`Cli::public_url`].
    pub public_url: Option<String>,
    /// `--trusted-proxy`: see [`Cli::trusted_proxy`].
    pub trusted_proxies: Vec<String>,
    /// Redis URL of the cross-node bus; `None` runs one node (in-process fan-out only).
    pub bus_url: Option<String>,
    /// CA certificate (PEM) for a `rediss://` bus on a private CA.
    pub bus_ca_file: Option<PathBuf>,
    /// Prefix of the bus's Redis keys and channel: deployments (and test runs) sharing one
    /// Redis must use different prefixes or they would see each other's nodes.
    pub bus_prefix: String,
    /// How long an agent may be gone before their conversations are requeued.
    pub agent_grace: std::time::Duration,
    /// Where offline messages' replies are emailed from; `None`: not emailed (the agent sees why).
    pub smtp: Option<crate::mail::SmtpSettings>,
}

/// Limits on clients: per socket, per login, per HTTP connection. Defaults are the ones
/// PROTOCOL.md documents.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest WebSocket message read; bigger ones close the socket with 1009.
    pub max_frame_bytes: usize,
    /// Visitor frames per second, sustained.
    pub visitor_per_second: u32,
    /// Visitor burst.
    pub visitor_burst: u32,
    /// Agent frames per second, sustained.
    pub agent_per_second: u32,
    /// Agent burst.
    pub agent_burst: u32,
    /// Interval between pings the relay sends.
    pub ping_interval: std::time::Duration,
    /// A socket silent for this long is closed.
    pub idle_timeout: std::time::Duration,
    /// Login attempts per minute for one username from one address (`login`): stops a guesser,
    /// and a stranger elsewhere cannot use up an agent's own attempts.
    pub logins_per_minute: u32,
    /// Login attempts per minute from one address, whatever the usernames: made-up names must
    /// not buy more password checks.
    pub login_attempts_per_ip_per_minute: u32,
    /// New visitors (a `hello` without a known token) per minute from one address: each is a
    /// stored row. High enough for a carrier-grade NAT's share of a site's traffic.
    pub new_visitors_per_ip_per_minute: u32,
    /// New conversations per minute from one address (each is a row and a queue entry).
    pub new_conversations_per_ip_per_minute: u32,
    /// Threads checking passwords (each holds argon2's memory cost, 19 MiB, for good).
    pub hash_workers: usize,
    /// Password checks that may wait for a thread besides the running ones.
    pub hash_queue: usize,
    /// How long a login waits for a place before it is answered `503 busy`.
    pub hash_wait: std::time::Duration,
    /// Time a client has to send a whole HTTP request head (slowloris).
    pub header_read_timeout: std::time::Duration,
    /// Time a handler has to answer (408 after it); socket upgrades answer at once.
    pub request_timeout: std::time::Duration,
    /// Largest request body an endpoint reads (413 above it).
    pub max_body_bytes: usize,
    /// Open TCP connections, all clients together (each is a file; this host allows 20,000).
    pub max_connections: usize,
    /// Open TCP connections from one address (a visitor's page holds one WebSocket).
    pub max_connections_per_ip: usize,
    /// HTTP requests in handlers at once; more are answered `503 busy` without queueing, so a
    /// flood of slow requests cannot pile up memory behind the connection caps.
    pub max_requests_in_flight: usize,
    /// Co-browse stream frames per second a sharing visitor may send, sustained (they do not
    /// count against `visitor_per_second`: the widget batches and throttles them).
    pub cobrowse_frames_per_second: u32,
    /// Co-browse frame burst.
    pub cobrowse_frames_burst: u32,
    /// Co-browse stream bytes per second, sustained: bounds what one session costs the relay
    /// and the agent's link whatever the page does.
    pub cobrowse_bytes_per_second: u32,
    /// Co-browse byte burst: a page snapshot must fit in it.
    pub cobrowse_bytes_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: protocol::MAX_FRAME_BYTES,
            visitor_per_second: 10,
            visitor_burst: 20,
            agent_per_second: 30,
            agent_burst: 60,
            ping_interval: std::time::Duration::from_secs(20),
            idle_timeout: std::time::Duration::from_secs(60),
            logins_per_minute: 10,
            login_attempts_per_ip_per_minute: 30,
            new_visitors_per_ip_per_minute: 120,
            new_conversations_per_ip_per_minute: 120,
            hash_workers: default_hash_workers(),
            hash_queue: 16,
            hash_wait: std::time::Duration::from_secs(2),
            header_read_timeout: std::time::Duration::from_secs(10),
            request_timeout: std::time::Duration::from_secs(30),
            max_body_bytes: 1024 * 1024,
            max_connections: 16_000,
            max_connections_per_ip: 1_000,
            max_requests_in_flight: 1_024,
            cobrowse_frames_per_second: 50,
            cobrowse_frames_burst: 100,
            cobrowse_bytes_per_second: 64 * 1024,
            cobrowse_bytes_burst: 4 * 1024 * 1024,
        }
    }
}

/// Half the cores, at least one: password checks never take every core from the chats.
fn default_hash_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .max(1)
}

/// The demo shop, used when no config file names sites.
pub fn demo_site(origins: Vec<String>) -> SiteConfig {
    SiteConfig {
        key: "demo".into(),
        name: "Demo Shop".into(),
        color: default_color(),
        allowed_origins: origins,
        routing: Routing::AgentsFirst,
        kb: None,
        bot_name: None,
        bot_url: None,
        bot_timeout_ms: None,
        max_chats_per_agent: DEFAULT_MAX_CHATS,
        auto_assign: true,
        hours: None,
        greetings: Vec::new(),
        privacy: Default::default(),
        identity: Default::default(),
    }
}

impl Config {
    /// Settings for a relay on `listen` from the CLI and its config file.
    pub fn from_cli(cli: &Cli) -> anyhow::Result<Self> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| anyhow::anyhow!("bad config {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let mut sites = file.sites;
        if sites.is_empty() {
            let port = cli.listen.port();
            let mut demo = demo_site(vec![
                format!("http://127.0.0.1:{port}"),
                format!("http://localhost:{port}"),
                format!("http://{}", cli.listen),
            ]);
            // The demo shows the bot when its knowledge base ships alongside.
            let kb = cli.demo_site.join("kb");
            if kb.is_dir() {
                demo.routing = Routing::BotFirst;
                demo.kb = Some(kb);
            }
            sites.push(demo);
        }
        let demo_dir = (!cli.no_demo_site).then(|| cli.demo_site.clone());
        Ok(Self {
            database_url: cli.database.clone(),
            assets_dir: cli.assets.clone(),
            demo_dir,
            sites,
            agents: file.agents,
            limits: Limits {
                max_connections: cli.max_connections,
                max_connections_per_ip: cli.max_connections_per_ip,
                max_requests_in_flight: cli.max_requests_in_flight,
                header_read_timeout: std::time::Duration::from_secs(cli.header_read_timeout_secs),
                new_visitors_per_ip_per_minute: cli.new_visitors_per_ip_per_minute,
                new_conversations_per_ip_per_minute: cli.new_conversations_per_ip_per_minute,
                ..Limits::default()
            },
            public_url: cli.public_url.clone(),
            trusted_proxies: cli.trusted_proxy.clone(),
            bus_url: cli.bus.clone(),
            bus_ca_file: cli.bus_ca_file.clone(),
            bus_prefix: cli.bus_prefix.clone(),
            agent_grace: std::time::Duration::from_secs(cli.agent_grace_secs),
            smtp: match (&cli.smtp_url, &cli.smtp_from) {
                (Some(url), Some(from)) => Some(crate::mail::SmtpSettings {
                    url: url.clone(),
                    from: from.clone(),
                }),
                _ => None,
            },
        })
    }

    /// Settings for tests: in-memory-free SQLite at `database_url`, one site with the given
    /// origins. Without automatic assignment (the tests that predate the queue take
    /// conversations by hand); queue tests turn it on.
    pub fn for_tests(database_url: String, assets_dir: PathBuf, origins: Vec<String>) -> Self {
        let mut site = demo_site(origins);
        site.auto_assign = false;
        Self {
            database_url,
            assets_dir,
            demo_dir: None,
            sites: vec![site],
            agents: Vec::new(),
            limits: Limits::default(),
            public_url: None,
            trusted_proxies: Vec::new(),
            bus_url: None,
            bus_ca_file: None,
            bus_prefix: "parley".into(),
            agent_grace: std::time::Duration::from_secs(120),
            smtp: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_config_file() {
        let file: FileConfig = toml::from_str(
            r##"
            [[site]]
            key = "shop"
            name = "Shop"
            color = "#ff0000"
            allowed_origins = ["https://shop.example"]

            [[agent]]
            username = "mina"
            display_name = "Mina"
            password = "correct horse"
            "##,
        )
        .expect("valid config");
        assert_eq!(file.sites[0].key, "shop");
        assert!(file.sites[0].allows_origin(Some("https://shop.example")));
        assert!(!file.sites[0].allows_origin(Some("https://evil.example")));
        assert!(!file.sites[0].allows_origin(None));
        assert_eq!(file.agents[0].display_name, "Mina");
        assert_eq!(file.sites[0].routing, Routing::AgentsFirst);
        assert_eq!(file.sites[0].bot_name(), "Shop assistant");
        assert_eq!(file.sites[0].max_chats_per_agent, DEFAULT_MAX_CHATS);
        assert!(file.sites[0].auto_assign);
        assert_eq!(file.agents[0].max_chats, None);
    }

    #[test]
    fn parses_routing_limits() {
        let file: FileConfig = toml::from_str(
            r##"
            [[site]]
            key = "shop"
            name = "Shop"
            max_chats_per_agent = 5

            [[agent]]
            username = "mina"
            display_name = "Mina"
            password = "correct horse"
            max_chats = 1
            "##,
        )
        .expect("valid config");
        assert_eq!(file.sites[0].max_chats_per_agent, 5);
        assert_eq!(file.agents[0].max_chats, Some(1));
    }

    #[test]
    fn parses_bot_first_routing() {
        let file: FileConfig = toml::from_str(
            r##"
            [[site]]
            key = "shop"
            name = "Shop"
            routing = "bot_first"
            kb = "kb/shop"
            bot_name = "Shopbot"
            "##,
        )
        .expect("valid config");
        assert!(file.sites[0].bot_first());
        assert_eq!(
            file.sites[0].kb.as_deref(),
            Some(std::path::Path::new("kb/shop"))
        );
        assert_eq!(file.sites[0].bot_name(), "Shopbot");
    }

    #[test]
    fn parses_an_external_bot() {
        let file: FileConfig = toml::from_str(
            r##"
            [[site]]
            key = "shop"
            name = "Shop"
            routing = "bot_first"
            bot_url = "http://127.0.0.1:5005/webhooks/rest/webhook"
            bot_timeout_ms = 3000
            "##,
        )
        .expect("valid config");
        assert_eq!(
            file.sites[0].bot_url.as_deref(),
            Some("http://127.0.0.1:5005/webhooks/rest/webhook")
        );
        assert_eq!(file.sites[0].bot_timeout_ms, Some(3000));
        assert!(file.sites[0].kb.is_none());
    }

    #[test]
    fn parses_hours_and_greetings() {
        let file: FileConfig = toml::from_str(
            r##"
            [[site]]
            key = "shop"
            name = "Shop"
            [site.hours]
            tz = "Asia/Seoul"
            mon = "09:00-18:00"
            sat = "10:00-12:00, 13:00-15:00"
            [[site.greeting]]
            id = "cart"
            url = "/cart*"
            after_seconds = 5
            returning = true
            text = "Questions about your cart?"
            "##,
        )
        .expect("valid config");
        let site = &file.sites[0];
        assert_eq!(site.hours.as_ref().map(|h| h.tz_name()), Some("Asia/Seoul"));
        assert_eq!(site.greetings[0].url, "/cart*");
        assert_eq!(site.greetings[0].returning, Some(true));
        assert!(site.greetings[0].check().is_ok());
        let bad = toml::from_str::<FileConfig>(
            r##"
            [[site]]
            key = "shop"
            name = "Shop"
            [site.hours]
            tz = "Asia/Seoul"
            mon = "18:00-09:00"
            "##,
        );
        assert!(bad.is_err(), "overnight ranges are refused at load");
    }
}
