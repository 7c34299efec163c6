//! The Parley relay as a library: [`Relay::start`] runs it on a listener, which is how both the
//! binary (`main.rs`) and the integration tests start it.
//!
//! Codemap: `config` (CLI, TOML), `http` (routes, errors, static files), `auth` (agents, sessions),
//! `visitor` / `agent` (the two sockets, one handler per frame variant), `connection` (what every
//! socket does: limits, pings, ordered delivery), `hub` (in-process fan-out and presence),
//! `bus` (cross-node fan-out and presence through Redis), `cobrowse` (consent state, stream
//! routing and budget), `store` (durable state), `token` (bearer secrets), `bot` (bot-first
//! routing: the knowledge-base bot and its hand-off), `external_bot` (a site's own bot over
//! HTTP, Rasa REST shape), `gaps` (the knowledge-gap report for managers), `csat` (visitor
//! ratings: the numbers), `queue` (the people's queue: automatic assignment, positions,
//! requeue of gone agents), `hours` (business hours and availability), `mail` (offline replies
//! by SMTP), `admin` (the admin API: per-site routing settings saved in the store).

pub mod access;
pub mod admin;
pub mod agent;
pub mod agents;
pub mod auth;
pub mod bot;
pub mod bus;
pub mod canned;
pub mod cobrowse;
pub mod config;
pub mod connection;
pub mod csat;
pub mod external_bot;
pub mod gaps;
pub mod hasher;
pub mod history;
pub mod hours;
pub mod http;
pub mod hub;
pub mod identity;
pub mod login;
pub mod logsafe;
pub mod mail;
pub mod metrics;
pub mod per_source;
pub mod queue;
pub mod rights;
pub mod run;
pub mod serve;
pub mod store;
pub mod token;
pub mod visitor;
pub mod visitors;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use protocol::{AgentInfo, ConversationSummary};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Limits, SiteConfig};
use crate::hub::Hub;
use crate::store::{Appended, ConversationRecord, Store};

/// Shared state of a running relay.
pub struct App {
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Live fan-out.
    pub hub: Arc<Hub>,
    /// Prometheus metrics.
    pub metrics: metrics::Metrics,
    /// Sites by key.
    pub sites: HashMap<String, Arc<SiteConfig>>,
    /// Knowledge-base bots by site key (sites with a `kb`), loaded once at start.
    pub bots: HashMap<String, Arc<bot::SiteBot>>,
    /// External bots by site key (sites with a `bot_url`); they answer instead of `bots`.
    pub external_bots: HashMap<String, Arc<external_bot::ExternalBot>>,
    /// Client limits.
    pub limits: Limits,
    /// Built bundles.
    pub assets_dir: PathBuf,
    /// Demo site, if served.
    pub demo_dir: Option<PathBuf>,
    /// Cancelled on shutdown: every socket closes with 1001.
    pub shutdown: CancellationToken,
    /// Socket tasks, awaited on shutdown so their last frames are flushed.
    pub tasks: TaskTracker,
    /// The relay's public URL: the session cookie's name and flags, and the origin rule.
    pub public: auth::PublicUrl,
    /// Login attempts per address and per address and username (see `login`).
    pub login_throttle: login::Throttle,
    /// New visitors per address (each is a stored row): see `per_source`.
    pub new_visitors: per_source::PerSource,
    /// New conversations per address (each is a stored row and a queue entry).
    pub new_conversations: per_source::PerSource,
    /// Co-browse bandwidth, one budget per share whatever the number of the visitor's tabs.
    pub cobrowse_budgets: cobrowse::Budgets,
    /// Password checks, on a bounded pool of threads.
    pub hasher: hasher::Hasher,
    /// A real argon2 hash to verify unknown usernames against (equal timing).
    pub dummy_hash: String,
    /// The people's queue: capacity, grace period, what this node last told its clients.
    pub queue: queue::Queue,
    /// Agent names by id, for conversation summaries (agents are few and rarely change).
    agents: RwLock<HashMap<String, AgentInfo>>,
    /// Sites whose settings an admin saved: the config merged with the saved row, by key. Read
    /// from the store at start, replaced on every save on this node, and re-read when another
    /// node says it saved (`settings` nudge on the bus, [`admin::follow_saves`]).
    site_overrides: RwLock<HashMap<String, Arc<SiteConfig>>>,
    /// SMTP for replies to offline messages; `None` without `--smtp-url` (the agent is told).
    pub mailer: Option<mail::Mailer>,
}

impl App {
    /// Whether a bot answers this site first: its knowledge base or its external bot.
    pub fn has_bot(&self, site: &str) -> bool {
        self.bots.contains_key(site) || self.external_bots.contains_key(site)
    }

    /// A site's effective settings: the config file's, replaced by what an admin saved.
    pub fn site(&self, key: &str) -> Option<Arc<SiteConfig>> {
        if let Some(site) = self
            .site_overrides
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Some(site.clone());
        }
        self.sites.get(key).cloned()
    }

    /// Replaces a site's effective settings (after an admin saved them).
    pub fn set_site(&self, site: SiteConfig) {
        // The queue's limits follow at once (the next assignment uses them).
        self.queue.set_site_max(&site.key, site.max_chats_per_agent);
        self.site_overrides
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(site.key.clone(), Arc::new(site));
    }

    /// Whether people can answer this site's visitors now (hours and agents online).
    pub fn availability(&self, site: &SiteConfig) -> hours::Availability {
        hours::availability(
            site.hours.as_ref(),
            self.hub.agents_online().len(),
            jiff::Timestamp::now(),
        )
    }

    /// The console's view of a conversation.
    pub async fn summary(&self, c: &ConversationRecord) -> ConversationSummary {
        let assignee = match &c.assignee_id {
            Some(id) => self.agent_info(id).await,
            None => None,
        };
        ConversationSummary {
            id: c.id.clone(),
            site: c.site.clone(),
            site_name: self
                .sites
                .get(&c.site)
                .map(|s| s.name.clone())
                .unwrap_or_else(|| c.site.clone()),
            visitor_id: c.visitor_id.clone(),
            status: c.status,
            assignee,
            last_seq: c.last_seq,
            preview: c.preview.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            context: c.context.clone(),
            rating: c.rating,
            queued_at: c
                .queued_at
                .filter(|_| c.status == protocol::ConversationStatus::Open),
            offline_email: c.offline_email.clone(),
            labels: c.labels.clone(),
        }
    }

    /// An agent's public info by id (cached), `None` for an unknown id.
    pub async fn agent_public(&self, id: &str) -> Option<AgentInfo> {
        self.agent_info(id).await
    }

    /// An agent's public info by id (cached).
    pub async fn agent_info(&self, id: &str) -> Option<AgentInfo> {
        if let Some(a) = self
            .agents
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            return Some(a.clone());
        }
        let record = self.store.agent_by_id(id).await.ok()??;
        let info = auth::info(&record);
        self.agents
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), info.clone());
        Some(info)
    }

    /// Stores an event (see [`Store::append`]), timing it for `/metrics`.
    pub async fn append(
        &self,
        id: &protocol::ConversationId,
        new: store::NewEvent,
    ) -> store::StoreResult<Appended> {
        let role = new.author.role;
        let started = std::time::Instant::now();
        let result = self.store.append(id, new).await;
        self.metrics
            .append_seconds
            .observe(started.elapsed().as_secs_f64());
        if matches!(&result, Ok(a) if !a.duplicate) {
            self.metrics.stored(role);
        }
        result
    }

    /// Tells listeners about a stored event and every agent about its conversation.
    pub async fn publish(&self, appended: &Appended) {
        self.hub.publish_event(Arc::new(appended.event.clone()));
        self.publish_summary(&appended.conversation).await;
        if queue::changes_queue(appended) {
            self.hub.publish_queue_changed();
        }
    }

    /// Tells every agent a conversation changed.
    pub async fn publish_summary(&self, c: &ConversationRecord) {
        let summary = self.summary(c).await;
        self.hub.publish_summary(Arc::new(summary));
    }
}

/// A running relay.
pub struct Relay {
    addr: SocketAddr,
    app: Arc<App>,
    server: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Opens the store, creates configured agents (or a first `admin`), and serves on `listener`.
    pub async fn start(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        // Before the store: a knowledge base that does not load is a config error to fix, and
        // a relay must not start with a bot that cannot answer.
        let bots = bot::load_all(&config.sites)?;
        let external_bots = external_bot::load_all(&config.sites)?;
        for site in &config.sites {
            for greeting in &site.greetings {
                greeting
                    .check()
                    .map_err(|e| anyhow::anyhow!("site {:?}: {e}", site.key))?;
            }
        }
        rights::check_sites(&config.sites)?;
        for site in &config.sites {
            site.identity
                .check()
                .map_err(|e| anyhow::anyhow!("site {:?}: {e}", site.key))?;
        }
        for seed in &config.agents {
            for key in seed.sites.iter().flatten() {
                if !config.sites.iter().any(|s| &s.key == key) {
                    anyhow::bail!("agent {:?}: unknown site {key:?} in `sites`", seed.username);
                }
            }
        }
        let mailer = config.smtp.as_ref().map(mail::Mailer::new).transpose()?;
        // SQLite for `sqlite:` URLs, PostgreSQL for `postgres://` / `postgresql://`.
        let store = store::connect(&config.database_url).await?;
        let mut capacity = store::Capacity {
            default: config::DEFAULT_MAX_CHATS,
            ..Default::default()
        };
        for site in &config.sites {
            capacity
                .sites
                .insert(site.key.clone(), site.max_chats_per_agent);
            // A site without automatic assignment: nobody is given its conversations.
            if !site.auto_assign {
                capacity.manual_sites.insert(site.key.clone());
            }
        }
        let seeded = access::seed_agents(store.as_ref(), &config.agents).await?;
        if store.agent_count().await? == 0 {
            let password = token::generate()[..16].to_owned();
            // The console's to manage: it can be reset, and demoted once another admin exists.
            let first = store::NewAgent {
                username: "admin".into(),
                display_name: "Admin".into(),
                password_hash: auth::hash_password(&password)?,
                admin: true,
                sites: None,
                max_chats: None,
            };
            let audit = store::AgentAudit {
                actor: "relay".into(),
                action: agents::CREATE,
                detail: "{\"first_admin\":true}".into(),
            };
            store.create_agent(&first, &audit).await?;
            auth::announce_first_admin(&password, &config.database_url)?;
        }
        if !config.assets_dir.join("widget.js").exists() {
            tracing::warn!(dir = %config.assets_dir.display(), "widget bundle missing: run `cargo xtask build`");
        }
        let metrics = metrics::Metrics::default();
        if let Some(wal) = store.wal() {
            metrics.register_wal(&wal);
        }
        metrics.register_group_commit(&store.group_commit());
        let app = Arc::new(App {
            store: store.clone(),
            hub: Hub::new(),
            metrics,
            sites: config
                .sites
                .iter()
                .map(|s| (s.key.clone(), Arc::new(s.clone())))
                .collect(),
            bots,
            external_bots,
            limits: config.limits.clone(),
            assets_dir: config.assets_dir.clone(),
            demo_dir: config.demo_dir.clone(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            public: auth::PublicUrl::parse(config.public_url.as_deref())?,
            login_throttle: login::Throttle::new(
                config.limits.login_attempts_per_ip_per_minute,
                config.limits.logins_per_minute,
            ),
            new_visitors: per_source::PerSource::per_minute(
                config.limits.new_visitors_per_ip_per_minute,
            ),
            new_conversations: per_source::PerSource::per_minute(
                config.limits.new_conversations_per_ip_per_minute,
            ),
            cobrowse_budgets: cobrowse::Budgets::default(),
            hasher: hasher::Hasher::start(
                config.limits.hash_workers,
                config.limits.hash_queue,
                config.limits.hash_wait,
            )?,
            dummy_hash: auth::hash_password(&token::generate())?,
            queue: queue::Queue::new(capacity, config.agent_grace),
            agents: RwLock::new(HashMap::new()),
            site_overrides: RwLock::new(HashMap::new()),
            mailer,
        });
        admin::load_overrides(&app).await?;
        // After the store, before serving: a node that cannot reach its bus must not serve.
        let bus = bus::Bus::start(
            bus::BusSettings {
                url: config.bus_url.as_deref(),
                ca_file: config.bus_ca_file.as_deref(),
                prefix: &config.bus_prefix,
                errors: app.metrics.bus_errors.clone(),
            },
            app.hub.clone(),
            app.shutdown.clone(),
            &app.tasks,
        )
        .await;
        if let Err(e) = bus {
            store.close().await;
            return Err(e);
        }
        // Sockets of revoked agents on nodes that kept running close now.
        for agent_id in seeded.revoked {
            access::revoke(&app, access::Revocation::all(&agent_id));
        }
        app.tasks.spawn(queue::run(app.clone()));
        app.tasks.spawn(access::purge_forever(app.clone()));
        app.tasks.spawn(admin::follow_saves(app.clone()));
        app.tasks.spawn(rights::run_retention(app.clone()));
        app.tasks.spawn(per_source::prune_forever(app.clone()));
        let addr = listener.local_addr()?;
        let router = http::router(app.clone());
        let shutdown = app.shutdown.clone();
        let serve_limits = serve::ServeLimits {
            header_read_timeout: config.limits.header_read_timeout,
            max_connections: config.limits.max_connections,
            max_connections_per_ip: config.limits.max_connections_per_ip,
            trusted_proxies: serve::TrustedProxies::parse(&config.trusted_proxies)?,
        };
        let server = tokio::spawn(serve::serve(
            listener,
            router,
            serve_limits,
            shutdown,
            app.metrics.connections_refused.clone(),
        ));
        tracing::info!(%addr, "relay listening");
        Ok(Self { addr, app, server })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Shared state (for tests and metrics).
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Graceful stop: every socket gets close 1001, their tasks finish, the store is flushed.
    pub async fn shutdown(self) {
        self.app.shutdown.cancel();
        self.app.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), self.app.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some sockets did not close within 10 s");
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
        self.app.store.close().await;
    }
}
