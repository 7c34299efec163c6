//! Cross-node fan-out: several relays sharing one PostgreSQL database tell each other about new
//! events, typing, conversation changes, presence and co-browse frames through Redis.
//!
//! The bus carries *nudges*, never the only copy of anything: every event is stored (and gets its
//! seq) before it is published, and each connection's `Cursor` drops duplicates and refills gaps
//! from the store. So a nudge lost while Redis is down, or delivered twice or late, costs at most
//! a store read; it never loses or reorders a message.
//!
//! Without `--bus` the relay uses [`Bus::InProcess`]: the hub alone, as on a single node. With
//! `--bus redis://…` ([`Bus::Redis`]):
//! - one pub/sub channel `{prefix}:signals` carries small JSON envelopes `{node, kind, payload}`;
//!   each node runs one subscriber that ignores its own node id and hands the rest to the hub's
//!   `deliver_*` calls, exactly as if they were local. A kind it does not know (from a newer
//!   node) is ignored with a debug log.
//! - the hash `{prefix}:agents` maps `{node}:{agent_id}` to `{info, node, expires_at}`. Each node
//!   rewrites its own entries every [`PRESENCE_REFRESH`] and on every local presence change, and
//!   reads the others' unexpired entries into the hub, whose `agents_online` is the union. The
//!   hash itself expires [`PRESENCE_FORGET`] after the last write, so a prefix whose nodes are
//!   all gone leaves nothing in Redis.
//! - `queue` nudges carry nothing: the receiving node's queue task re-reads the queue from the
//!   store, assigns what it can and tells its own visitors and agents. `settings` nudges (an
//!   admin saved a site's settings) make it re-read the saved settings.
//!
//! No node stays deaf to the bus, whichever side of it failed:
//! - **its own subscription**: the subscriber reconnects with backoff when the connection
//!   closes, and PINGs Redis every [`SUBSCRIBER_PING`] so a connection that silently stopped
//!   forwarding (half-open: no close, no reset) is dropped within [`REDIS_TIMEOUT`] too. After a
//!   reconnect the node *catches up*: every local connection resyncs from the store, and the
//!   queue, the site settings and presence are re-read.
//! - **another node's publishing**: a node whose nudge could not be published (Redis down, or
//!   its bus queue full) owes the others a `resync`; it retries every [`RESYNC_RETRY`],
//!   discarding its nudges meanwhile (the resync, sent after they were stored, covers them),
//!   and every node receiving it catches up as above. Without it, a node that lost only its
//!   command connection would leave the others behind with nothing telling them to look.
//! - **its command connection** (`ConnectionManager`) reconnects by itself once Redis closes or
//!   refuses; a command unanswered within [`REDIS_TIMEOUT`] replaces it, as a half-open
//!   connection would otherwise time out forever.
//!
//! Every failure is counted in `parley_bus_errors_total` and logged once per outage (then at
//! debug); the node keeps storing and serving its own connections throughout.
//!
//! A relay started with an unreachable Redis URL refuses to start (a clear error naming the URL):
//! a misconfigured bus would otherwise split the nodes silently.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use futures::StreamExt as _;
use prometheus_client::metrics::counter::Counter;
use protocol::{AgentInfo, ConversationSummary, Event};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::{Hub, Typing};
use crate::logsafe::Untrusted;

/// Something the hub hands to the bus to reach other nodes.
#[derive(Clone, Debug)]
pub enum Nudge {
    /// A stored event.
    Event(Arc<Event>),
    /// Someone typing.
    Typing(Arc<Typing>),
    /// A conversation changed.
    Summary(Arc<ConversationSummary>),
    /// This node's set of online agents changed.
    Presence,
    /// A co-browse frame (stream item, highlight, resync request).
    Cobrowse(Arc<crate::cobrowse::Relayed>),
    /// The people's queue may have changed: other nodes re-read it (and assign).
    Queue,
    /// An admin saved a site's settings: other nodes re-read them from the store.
    Settings,
    /// Agent sessions ended: other nodes close the sockets opened with them.
    Revoked(Arc<crate::access::Revocation>),
    /// A visitor row is gone (erased or merged): other nodes close that visitor's sockets.
    Erased(Arc<crate::hub::Gone>),
}

/// Nudges waiting to be published. Past it nudges are dropped and the node owes the others a
/// `resync` (they catch up from the store): a slow Redis must not grow the relay's memory.
pub const BUS_QUEUE: usize = 4096;

/// How often each node rewrites its presence entries and re-reads the others'.
pub const PRESENCE_REFRESH: Duration = Duration::from_secs(3);

/// How long a presence entry counts after it was written: a node that died without cleaning up
/// drops out of `agents_online` within this.
pub const PRESENCE_TTL: Duration = Duration::from_secs(15);

/// Entries expired for longer than this are deleted by whichever node sees them.
const PRESENCE_FORGET: Duration = Duration::from_secs(120);

/// Connecting and every command give up after this: a stuck Redis must not stall a publisher.
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest wait between two subscriber reconnects.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Most nudges published in one pipeline: what is waiting when the publisher is free goes out
/// together, in order.
const PUBLISH_BATCH: usize = 256;

/// How often the subscriber PINGs Redis on its own connection. A subscription that receives
/// nothing looks the same whether the channel is quiet or the path to Redis silently stopped
/// forwarding (a half-open connection): only an unanswered PING (within [`REDIS_TIMEOUT`]) tells
/// them apart, so a deaf subscriber is replaced within this plus [`REDIS_TIMEOUT`].
const SUBSCRIBER_PING: Duration = Duration::from_secs(3);

/// While this node owes the others a `resync` (a nudge of its own was lost), how often it tries
/// to publish it.
const RESYNC_RETRY: Duration = Duration::from_secs(1);

/// Which bus a relay runs with.
#[derive(Debug)]
pub enum Bus {
    /// One node: the hub delivers to local connections only.
    InProcess,
    /// Several nodes through Redis.
    Redis {
        /// This node's id on the bus (random per start).
        node_id: String,
    },
}

/// Settings of [`Bus::start`].
pub struct BusSettings<'a> {
    /// `redis://…` or `rediss://…` (TLS), or `None` for [`Bus::InProcess`].
    pub url: Option<&'a str>,
    /// For `rediss://` on a private CA: that CA's certificate (PEM); else the system's roots.
    pub ca_file: Option<&'a std::path::Path>,
    /// Prefix of the Redis keys and channel, so several deployments (or test runs) can share one
    /// Redis without seeing each other.
    pub prefix: &'a str,
    /// Counted on every failed Redis operation.
    pub errors: Counter,
}

impl Bus {
    /// Starts the bus for `hub`. With Redis: connects (failing clearly if it cannot), attaches
    /// the hub's outbox and spawns the publisher, subscriber and presence tasks on `tasks`; they
    /// stop when `shutdown` is cancelled.
    pub async fn start(
        settings: BusSettings<'_>,
        hub: Arc<Hub>,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> anyhow::Result<Self> {
        let Some(url) = settings.url else {
            return Ok(Self::InProcess);
        };
        let shown = redact(url);
        let client =
            client(url, settings.ca_file).with_context(|| format!("bad bus URL {shown}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(
            REDIS_TIMEOUT * 2,
            ConnectionManager::new_with_config(client.clone(), config.clone()),
        )
        .await
        .map_err(|_| anyhow!("Redis bus not reachable at {shown}: timed out"))?
        .map_err(|e| anyhow!("Redis bus not reachable at {shown}: {e}"))?;
        let node_id = crate::store::new_id();
        let redis = Arc::new(RedisBus {
            client,
            conn: Mutex::new(conn),
            conn_config: config,
            node: node_id.clone(),
            channel: format!("{}:signals", settings.prefix),
            agents_key: format!("{}:agents", settings.prefix),
            hub: hub.clone(),
            errors: settings.errors,
            failing: AtomicBool::new(false),
            presence_read_at: Mutex::new(Instant::now()),
        });
        let (tx, rx) = mpsc::channel(BUS_QUEUE);
        let (ready_tx, ready_rx) = oneshot::channel();
        tasks.spawn(redis.clone().subscriber(shutdown.clone(), ready_tx));
        // Ready only once subscribed: a nudge published by another node from now on reaches us.
        match tokio::time::timeout(REDIS_TIMEOUT * 2, ready_rx).await {
            Ok(Ok(())) => {}
            _ => {
                shutdown.cancel();
                return Err(anyhow!(
                    "Redis bus at {shown}: could not subscribe to {}",
                    redis.channel
                ));
            }
        }
        hub.attach_bus(tx);
        tasks.spawn(redis.clone().publisher(rx, shutdown.clone()));
        tasks.spawn(redis.presence_loop(shutdown));
        tracing::info!(node = %node_id, bus = %shown, "cross-node bus connected");
        Ok(Self::Redis { node_id })
    }
}

/// `redis://user:secret@host` → `redis://***@host`: URLs are logged and shown in errors.
/// The Redis client for `url`: over TLS (rustls, ring) for `rediss://`, checked against
/// `ca_file` when given, else the system's trusted roots; the password, if any, in the URL.
fn client(url: &str, ca_file: Option<&std::path::Path>) -> anyhow::Result<redis::Client> {
    // rustls picks its provider from its crate features: `ring` is the only one compiled in
    // (see Cargo.toml), so nothing is installed here.
    if ca_file.is_some() && !url.starts_with("rediss://") {
        anyhow::bail!("a bus CA file is for rediss:// URLs only");
    }
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the bus CA file {}", path.display()))?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            Ok(redis::Client::build_with_tls(url, certs)?)
        }
        None => Ok(redis::Client::open(url)?),
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// One message on the signals channel.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// Sender's node id: a node ignores its own messages (it delivered them locally already).
    node: String,
    #[serde(flatten)]
    body: Body,
}

/// What an [`Envelope`] carries.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload", rename_all = "snake_case")]
enum Body {
    Event(Event),
    Typing(Typing),
    Summary(Box<ConversationSummary>),
    Presence,
    Cobrowse(Box<crate::cobrowse::Relayed>),
    Queue,
    /// Site settings changed: re-read them from the store.
    Settings,
    /// Agent sessions ended.
    Revoked(crate::access::Revocation),
    /// A visitor row is gone (erased or merged).
    Erased(crate::hub::Gone),
    /// The sender lost nudges (Redis down, or its bus queue full): re-read everything from the
    /// store, as after a reconnect of one's own subscriber.
    Resync,
}

/// Every `kind` of [`Body`]. A message of another kind comes from a newer node and is ignored
/// with a debug log: a nudge only ever saves a store read, and a rolling upgrade must not flood
/// the logs with warnings.
const KINDS: [&str; 10] = [
    "event", "typing", "summary", "presence", "cobrowse", "queue", "settings", "resync", "revoked",
    "erased",
];

/// Just the head of an [`Envelope`], to tell an unknown kind from a malformed message.
#[derive(Deserialize)]
struct Head {
    node: String,
    kind: String,
}

/// One agent online on one node, as stored in the presence hash.
#[derive(Debug, Serialize, Deserialize)]
struct PresenceEntry {
    info: AgentInfo,
    node: String,
    /// Unix milliseconds after which the entry no longer counts.
    expires_at: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The Redis side of one node.
struct RedisBus {
    /// For the subscriber, which needs its own connection, and for replacing `conn`.
    client: redis::Client,
    /// Commands (publish, presence). It reconnects by itself when its connection is closed or
    /// reset (Redis stopped or restarted), but not after a mere timeout: a connection that
    /// silently stopped answering is replaced by [`RedisBus::command`].
    conn: Mutex<ConnectionManager>,
    /// How `conn` was made, for its replacements.
    conn_config: ConnectionManagerConfig,
    node: String,
    channel: String,
    agents_key: String,
    hub: Arc<Hub>,
    errors: Counter,
    /// Whether the last operation failed, so an outage is logged once, not per nudge.
    failing: AtomicBool,
    /// When presence was last read from Redis: past [`PRESENCE_TTL`] without a read (Redis
    /// down) the other nodes' agents are no longer counted, as they could have left.
    presence_read_at: Mutex<Instant>,
}

impl RedisBus {
    /// Records the outcome of a Redis operation: counts and logs failures (once per outage).
    fn outcome<T>(&self, what: &str, result: anyhow::Result<T>) -> Option<T> {
        match result {
            Ok(v) => {
                if self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!("Redis bus reachable again");
                }
                Some(v)
            }
            Err(e) => {
                self.errors.inc();
                if !self.failing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(error = %e, "Redis bus {what} failed; serving local connections only until it returns");
                } else {
                    tracing::debug!(error = %e, "Redis bus {what} failed");
                }
                None
            }
        }
    }

    /// Runs one command on the command connection within [`REDIS_TIMEOUT`]. A timeout means the
    /// connection may be half-open, which `ConnectionManager` does not notice (it reconnects
    /// only on a closed connection): the manager is then replaced by a fresh one, which
    /// connects on its next use.
    async fn command<T, F, Fut>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let timed_out = match tokio::time::timeout(REDIS_TIMEOUT, f(conn)).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if !e.is_timeout() => return Err(e.into()),
            Ok(Err(e)) => anyhow!("Redis command timed out: {e}"),
            Err(_) => anyhow!("Redis command timed out"),
        };
        match ConnectionManager::new_lazy_with_config(self.client.clone(), self.conn_config.clone())
        {
            Ok(fresh) => {
                tracing::debug!("Redis bus command connection unresponsive: replaced");
                *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not replace the Redis bus command connection")
            }
        }
        Err(timed_out)
    }

    async fn publish(&self, body: Body) -> anyhow::Result<()> {
        self.publish_all(vec![body]).await
    }

    /// Publishes `bodies` in order, in one pipeline (one round trip).
    async fn publish_all(&self, bodies: Vec<Body>) -> anyhow::Result<()> {
        let mut pipe = redis::pipe();
        for body in bodies {
            let text = serde_json::to_string(&Envelope {
                node: self.node.clone(),
                body,
            })?;
            pipe.publish(&self.channel, text).ignore();
        }
        self.command(|mut conn| async move { pipe.query_async::<()>(&mut conn).await })
            .await
    }

    /// Writes this node's agents to the presence hash, deletes its stale and long-expired
    /// entries, and gives the hub the other nodes' live agents.
    async fn sync_presence(&self) -> anyhow::Result<()> {
        let now = now_ms();
        let local = self.hub.local_agents();
        let expires_at = now + PRESENCE_TTL.as_millis() as u64;
        let mut items = Vec::with_capacity(local.len());
        for a in &local {
            let entry = PresenceEntry {
                info: a.clone(),
                node: self.node.clone(),
                expires_at,
            };
            items.push((
                format!("{}:{}", self.node, a.id),
                serde_json::to_string(&entry)?,
            ));
        }
        if !items.is_empty() {
            // The hash itself expires once no node has written to it for a while, so the nodes
            // of a prefix that is gone for good (renamed, or every node killed) leave nothing
            // behind in Redis; a node with agents refreshes it every `PRESENCE_REFRESH`.
            let mut pipe = redis::pipe();
            pipe.atomic()
                .hset_multiple(&self.agents_key, &items)
                .ignore()
                .expire(&self.agents_key, PRESENCE_FORGET.as_secs() as i64)
                .ignore();
            self.command(|mut conn| async move { pipe.query_async::<()>(&mut conn).await })
                .await?;
        }
        let all: HashMap<String, String> = self
            .command(|mut conn| async move { conn.hgetall(&self.agents_key).await })
            .await?;
        let forget = PRESENCE_FORGET.as_millis() as u64;
        let mut remote = Vec::new();
        let mut stale = Vec::new();
        for (field, value) in all {
            match serde_json::from_str::<PresenceEntry>(&value) {
                Ok(e) if e.node == self.node => {
                    if !local.iter().any(|a| a.id == e.info.id) {
                        stale.push(field);
                    }
                }
                Ok(e) if e.expires_at > now => remote.push(e.info),
                Ok(e) if e.expires_at + forget < now => stale.push(field),
                Ok(_) => {}
                Err(_) => stale.push(field),
            }
        }
        if !stale.is_empty() {
            self.command(
                |mut conn| async move { conn.hdel::<_, _, ()>(&self.agents_key, stale).await },
            )
            .await?;
        }
        self.hub.set_remote_agents(remote);
        *self
            .presence_read_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(())
    }

    /// Deletes this node's presence entries (on shutdown) and tells the others.
    async fn withdraw_presence(&self) -> anyhow::Result<()> {
        let fields: Vec<String> = self
            .command(|mut conn| async move { conn.hkeys(&self.agents_key).await })
            .await?;
        let mine: Vec<String> = fields
            .into_iter()
            .filter(|f| f.starts_with(&format!("{}:", self.node)))
            .collect();
        if !mine.is_empty() {
            self.command(
                |mut conn| async move { conn.hdel::<_, _, ()>(&self.agents_key, mine).await },
            )
            .await?;
        }
        self.publish(Body::Presence).await
    }

    /// Publishes the hub's nudges in order until shutdown.
    ///
    /// A nudge that could not be published (Redis down, or dropped because the bus queue was
    /// full) leaves the other nodes behind, and nothing on their side would notice if only this
    /// node's command connection failed. So the node then owes them a [`Body::Resync`]: until it
    /// gets one through (tried every [`RESYNC_RETRY`]), later nudges are discarded rather than
    /// tried one by one, since the resync, published after they were stored, covers them all.
    async fn publisher(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Nudge>,
        shutdown: CancellationToken,
    ) {
        let mut owed = false;
        let mut retry_at = tokio::time::Instant::now();
        loop {
            let nudge = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(retry_at), if owed => None,
                n = rx.recv() => match n {
                    Some(n) => Some(n),
                    None => break,
                },
            };
            if self.hub.take_bus_dropped() {
                owed = true;
            }
            if owed {
                if nudge.is_some() {
                    continue;
                }
                let published = self.publish(Body::Resync).await;
                if self.outcome("publish", published).is_some() {
                    owed = false;
                    tracing::info!("Redis bus: published a resync for the nudges lost meanwhile");
                } else {
                    retry_at = tokio::time::Instant::now() + RESYNC_RETRY;
                }
                continue;
            }
            let Some(nudge) = nudge else { continue };
            // Everything already waiting goes out with it, in one pipeline: one round trip to
            // Redis per batch instead of per nudge (at 1,000 msg/s a node publishes 2,000
            // nudges a second, and one at a time they queued up behind each other's round trip).
            let mut batch = vec![nudge];
            while batch.len() < PUBLISH_BATCH {
                match rx.try_recv() {
                    Ok(n) => batch.push(n),
                    Err(_) => break,
                }
            }
            let mut bodies = Vec::with_capacity(batch.len());
            let mut presence_synced = false;
            for nudge in batch {
                bodies.push(match nudge {
                    Nudge::Event(e) => Body::Event((*e).clone()),
                    Nudge::Typing(t) => Body::Typing((*t).clone()),
                    Nudge::Summary(s) => Body::Summary(Box::new((*s).clone())),
                    Nudge::Cobrowse(c) => Body::Cobrowse(Box::new((*c).clone())),
                    Nudge::Queue => Body::Queue,
                    Nudge::Settings => Body::Settings,
                    Nudge::Revoked(r) => Body::Revoked((*r).clone()),
                    Nudge::Erased(gone) => Body::Erased((*gone).clone()),
                    Nudge::Presence => {
                        // Write the hash first (once per batch), so a node reading it on our
                        // nudge sees the change.
                        if !presence_synced {
                            let synced = self.sync_presence().await;
                            self.outcome("presence update", synced);
                            presence_synced = true;
                        }
                        Body::Presence
                    }
                });
            }
            let published = self.publish_all(bodies).await;
            if self.outcome("publish", published).is_none() {
                owed = true;
                retry_at = tokio::time::Instant::now() + RESYNC_RETRY;
            }
        }
    }

    /// Refreshes presence every [`PRESENCE_REFRESH`]; withdraws it on shutdown.
    async fn presence_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(PRESENCE_REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let synced = self.sync_presence().await;
                    if self.outcome("presence refresh", synced).is_none() {
                        let read_at = *self.presence_read_at.lock().unwrap_or_else(|p| p.into_inner());
                        if read_at.elapsed() > PRESENCE_TTL {
                            self.hub.set_remote_agents(Vec::new());
                        }
                    }
                }
            }
        }
        let withdrawn = tokio::time::timeout(REDIS_TIMEOUT, self.withdraw_presence()).await;
        if !matches!(withdrawn, Ok(Ok(()))) {
            tracing::debug!("could not withdraw presence from the Redis bus on shutdown");
        }
    }

    /// Listens to the signals channel, reconnecting with backoff, until shutdown. `ready` fires
    /// once the first subscription is in place.
    async fn subscriber(self: Arc<Self>, shutdown: CancellationToken, ready: oneshot::Sender<()>) {
        let mut ready = Some(ready);
        let mut backoff = Duration::from_millis(250);
        loop {
            let mut subscribed = false;
            let ended = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.listen(&mut ready, &mut subscribed) => r,
            };
            if subscribed {
                // The subscription had worked: start the backoff over.
                backoff = Duration::from_millis(250);
            }
            if self.outcome("subscription", ended).is_some() {
                self.errors.inc();
                tracing::warn!("Redis bus subscription lost; reconnecting");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One subscription: returns `Ok` when Redis closed the connection, `Err` when it could not
    /// be set up or stopped answering PINGs. Sets `subscribed` once it is in place.
    async fn listen(
        self: &Arc<Self>,
        ready: &mut Option<oneshot::Sender<()>>,
        subscribed: &mut bool,
    ) -> anyhow::Result<()> {
        let mut pubsub = tokio::time::timeout(REDIS_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| anyhow!("connect timed out"))??;
        tokio::time::timeout(REDIS_TIMEOUT, pubsub.subscribe(&self.channel))
            .await
            .map_err(|_| anyhow!("subscribe timed out"))??;
        *subscribed = true;
        match ready.take() {
            Some(ready) => {
                let _ = ready.send(());
                let this = self.clone();
                tokio::spawn(async move {
                    let synced = this.sync_presence().await;
                    this.outcome("presence refresh", synced);
                });
            }
            // A reconnect: nudges may have been lost meanwhile.
            None => {
                tracing::info!("Redis bus subscription restored; resyncing local connections");
                self.catch_up();
            }
        }
        let (mut sink, mut messages) = pubsub.split();
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + SUBSCRIBER_PING,
            SUBSCRIBER_PING,
        );
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = messages.next() => match msg {
                    Some(msg) => match msg.get_payload::<String>() {
                        Ok(text) => self.receive(&text),
                        Err(e) => tracing::warn!(error = %e, "unreadable message on the Redis bus"),
                    },
                    None => return Ok(()),
                },
                _ = ping.tick() => {
                    tokio::time::timeout(REDIS_TIMEOUT, sink.ping::<redis::Value>())
                        .await
                        .map_err(|_| anyhow!("no answer to PING on the subscription within {REDIS_TIMEOUT:?}"))??;
                }
            }
        }
    }

    /// Everything another node told us may have been lost (our subscription was down, or the
    /// sender could not publish): every local connection re-reads from the store, the queue and
    /// the site settings are re-read, presence is refreshed.
    fn catch_up(self: &Arc<Self>) {
        self.hub.resync_all();
        self.hub.queue_changed.notify_one();
        self.hub.settings_changed.notify_one();
        let this = self.clone();
        tokio::spawn(async move {
            let synced = this.sync_presence().await;
            this.outcome("presence refresh", synced);
        });
    }

    /// Delivers another node's nudge to local listeners.
    fn receive(self: &Arc<Self>, text: &str) {
        let envelope = match serde_json::from_str::<Envelope>(text) {
            Ok(e) => e,
            Err(e) => {
                match serde_json::from_str::<Head>(text) {
                    Ok(head) if !KINDS.contains(&head.kind.as_str()) => tracing::debug!(
                        from = %Untrusted(&head.node), kind = %Untrusted(&head.kind),
                        "bus nudge of a kind this node does not know ignored"
                    ),
                    _ => tracing::warn!(error = %e, "malformed message on the Redis bus ignored"),
                }
                return;
            }
        };
        if envelope.node == self.node {
            return;
        }
        match envelope.body {
            Body::Event(e) => self.hub.deliver_event(Arc::new(e)),
            Body::Typing(t) => self.hub.deliver_typing(None, Arc::new(t)),
            Body::Summary(s) => self.hub.deliver_summary(Arc::new(*s)),
            Body::Cobrowse(c) => self.hub.deliver_cobrowse(Arc::new(*c)),
            Body::Queue => self.hub.queue_changed.notify_one(),
            Body::Settings => self.hub.settings_changed.notify_one(),
            Body::Revoked(r) => self.hub.deliver_revoked(Arc::new(r)),
            Body::Erased(gone) => self.hub.deliver_gone(Arc::new(gone)),
            Body::Resync => {
                tracing::info!(from = %envelope.node, "another node lost bus nudges; resyncing local connections");
                self.catch_up();
            }
            Body::Presence => {
                let this = self.clone();
                tokio::spawn(async move {
                    let synced = this.sync_presence().await;
                    this.outcome("presence refresh", synced);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Author, ConversationId, Role};

    #[test]
    fn envelopes_round_trip() {
        let typing = Typing {
            conversation_id: ConversationId::from("c1"),
            author: Author {
                role: Role::Agent,
                id: Some("a1".into()),
                name: Some("Mina".into()),
            },
            active: true,
        };
        let text = serde_json::to_string(&Envelope {
            node: "n1".into(),
            body: Body::Typing(typing),
        })
        .expect("serializes");
        assert!(text.contains(r#""kind":"typing""#), "{text}");
        let back: Envelope = serde_json::from_str(&text).expect("parses");
        assert_eq!(back.node, "n1");
        assert!(matches!(back.body, Body::Typing(t) if t.active && t.conversation_id.0 == "c1"));
        let presence = serde_json::to_string(&Envelope {
            node: "n2".into(),
            body: Body::Presence,
        })
        .expect("serializes");
        let back: Envelope = serde_json::from_str(&presence).expect("parses");
        assert!(matches!(back.body, Body::Presence));
    }

    #[test]
    fn new_kinds_round_trip_and_unknown_kinds_are_ignored() {
        for (body, kind) in [(Body::Resync, "resync"), (Body::Settings, "settings")] {
            let text = serde_json::to_string(&Envelope {
                node: "n1".into(),
                body,
            })
            .expect("serializes");
            assert!(text.contains(&format!(r#""kind":"{kind}""#)), "{text}");
            assert!(KINDS.contains(&kind));
            let back: Envelope = serde_json::from_str(&text).expect("parses");
            assert_eq!(
                serde_json::to_string(&back.body).expect("serializes"),
                format!(r#"{{"kind":"{kind}"}}"#)
            );
        }
        // What a newer node might send, with or without a payload: not a `Body`, but its head
        // names a kind outside `KINDS`, so the subscriber ignores it quietly.
        for text in [
            r#"{"node":"n9","kind":"shiny_new_thing","payload":{"x":[1,2]}}"#,
            r#"{"node":"n9","kind":"shiny_new_thing"}"#,
        ] {
            assert!(serde_json::from_str::<Envelope>(text).is_err(), "{text}");
            let head: Head = serde_json::from_str(text).expect(text);
            assert!(!KINDS.contains(&head.kind.as_str()), "{text}");
        }
        // A known kind with a broken payload is malformed (and warned about).
        let broken = r#"{"node":"n9","kind":"typing","payload":1}"#;
        assert!(serde_json::from_str::<Envelope>(broken).is_err());
        let head: Head = serde_json::from_str(broken).expect("head");
        assert!(KINDS.contains(&head.kind.as_str()));
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact("redis://user:pw@10.0.0.1:6379/0"),
            "redis://***@10.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://127.0.0.1/"), "redis://127.0.0.1/");
    }
}
