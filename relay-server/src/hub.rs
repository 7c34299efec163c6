//! In-process fan-out: who is listening to which conversation, and who is online.
//!
//! The hub never holds history. A connection that falls behind (its queue is full) is marked
//! *lagged* instead of losing signals silently; it then re-reads what it missed from the store,
//! which is always the source of truth.
//!
//! Cross-node fan-out: every `publish_*` call delivers locally and then hands the signal to the
//! bus (see [`crate::bus`]) if one is attached; signals from other nodes come back in through
//! the `deliver_*` calls, which only deliver locally. Agents online on other nodes are kept in
//! `remote_agents`, refreshed by the bus, and [`Hub::agents_online`] returns the union.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use protocol::{AgentInfo, Author, ConversationId, ConversationSummary, Event};
use tokio::sync::mpsc;

use crate::bus::Nudge;

/// Queue length per connection. Past it the connection is marked lagged and resyncs from the
/// store: memory stays bounded whatever a slow client does.
pub const QUEUE: usize = 256;

/// Queue length per agent connection. An agent socket hears every conversation it opened and
/// every conversation's list updates: thousands of signals a second on a busy site, where a
/// visitor's hears one conversation. Its resync re-reads every opened conversation, so a queue
/// that overflows whenever the socket's task is descheduled for a few milliseconds turns load
/// into more load. The channel allocates as it fills, so a quiet agent costs no more than a
/// visitor, and agents are few.
pub const AGENT_QUEUE: usize = 8192;

/// Bytes of co-browse stream and message text one connection may have waiting in its queue.
/// The queues are bounded in signals, but a co-browse piece is up to 64 KiB: 8,192 of them on an
/// agent's queue would be 512 MiB. Past this bound the connection is marked lagged, as for a
/// full queue (messages are re-read from the store; the console asks the visitor's page for a
/// fresh snapshot when its stream has a gap).
pub const QUEUE_BYTES: usize = 8 * 1024 * 1024;

/// Something a connection should tell its client.
#[derive(Clone, Debug)]
pub enum Signal {
    /// A stored event of a conversation the connection listens to.
    Event(Arc<Event>),
    /// Someone typing in a conversation the connection listens to.
    Typing(Arc<Typing>),
    /// A conversation changed (agents only).
    Summary(Arc<ConversationSummary>),
    /// The set of online agents changed.
    Presence,
    /// A co-browse frame for one side of a conversation (the session checks it is the addressee).
    Cobrowse(Arc<crate::cobrowse::Relayed>),
    /// A queue position (visitors) or the queue and agents' loads (agents) changed.
    Queue(Arc<QueueUpdate>),
    /// Sessions ended (agents only): a socket opened with one of them closes.
    Revoked(Arc<crate::access::Revocation>),
    /// A visitor row is gone (visitors only): that visitor's sockets close.
    Erased(Arc<Gone>),
}

/// A visitor row that no longer exists: erased by an admin, or merged into the identified
/// visitor of the same person (`Store::identify_visitor`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gone {
    /// The visitor id.
    pub visitor_id: String,
    /// Merged rather than erased: the socket closes with [`protocol::CLOSE_MOVED`] and the
    /// browser, reconnecting, finds its history under the person it now belongs to.
    #[serde(default)]
    pub merged: bool,
}

impl Signal {
    /// What the signal holds that can be large, in bytes: the co-browse data or the message
    /// text; the rest is small and counted as nothing.
    pub fn weight(&self) -> usize {
        match self {
            Signal::Cobrowse(relayed) => match &relayed.to {
                crate::cobrowse::Recipient::Agent {
                    frame: protocol::ToAgent::Cobrowse { data, .. },
                    ..
                } => data.len(),
                _ => 0,
            },
            Signal::Event(event) => event.message_text().map_or(0, str::len),
            _ => 0,
        }
    }
}

/// What [`Signal::Queue`] tells a connection (see [`crate::queue`]).
#[derive(Clone, Debug, PartialEq)]
pub enum QueueUpdate {
    /// A waiting conversation's place in line, for its visitor's tabs.
    Position {
        /// Which conversation.
        conversation_id: ConversationId,
        /// 1-based; 0: no longer waiting.
        position: u32,
        /// Estimated wait (ms), when there is history.
        wait_ms: Option<u64>,
    },
    /// The queue's length and every online agent's load, for consoles.
    Agents {
        /// Conversations waiting.
        waiting: u32,
        /// Loads of agents online.
        agents: Vec<protocol::AgentLoad>,
    },
}

/// Someone started or stopped typing. Behind an `Arc` so that [`Signal`] stays two words: every
/// connection's queue is sized in signals. Serializable because it crosses nodes on the bus.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Typing {
    /// Which conversation.
    pub conversation_id: ConversationId,
    /// Who.
    pub author: Author,
    /// Started or stopped.
    pub active: bool,
}

/// Identifies one connection in the hub.
pub type ConnId = u64;

/// A connection's inbox, as the hub holds it.
#[derive(Clone)]
pub struct Inbox {
    id: ConnId,
    tx: mpsc::Sender<Signal>,
    /// Set when a signal could not be queued; the connection resyncs from the store.
    lagged: Arc<AtomicBool>,
    /// [`Signal::weight`] of what is queued, bounded by [`QUEUE_BYTES`].
    bytes: Arc<AtomicUsize>,
}

impl Inbox {
    fn deliver(&self, signal: Signal) {
        let weight = signal.weight();
        if weight > 0 && self.bytes.fetch_add(weight, Ordering::AcqRel) + weight > QUEUE_BYTES {
            self.bytes.fetch_sub(weight, Ordering::AcqRel);
            self.lagged.store(true, Ordering::Release);
            return;
        }
        if self.tx.try_send(signal).is_err() {
            self.bytes.fetch_sub(weight, Ordering::AcqRel);
            self.lagged.store(true, Ordering::Release);
        }
    }
}

/// The receiving half a connection keeps.
pub struct Mailbox {
    /// Signals in order (read through [`Mailbox::recv`] and [`Mailbox::try_recv`], which keep
    /// the byte count).
    rx: mpsc::Receiver<Signal>,
    /// True when some signal was not queued; clear it and resync.
    pub lagged: Arc<AtomicBool>,
    /// The hub-side handle, to (un)subscribe.
    pub inbox: Inbox,
}

impl Mailbox {
    /// The next signal, waiting for one.
    pub async fn recv(&mut self) -> Option<Signal> {
        let signal = self.rx.recv().await?;
        self.inbox
            .bytes
            .fetch_sub(signal.weight(), Ordering::AcqRel);
        Some(signal)
    }

    /// The next signal if one is queued.
    pub fn try_recv(&mut self) -> Option<Signal> {
        let signal = self.rx.try_recv().ok()?;
        self.inbox
            .bytes
            .fetch_sub(signal.weight(), Ordering::AcqRel);
        Some(signal)
    }

    /// Bytes queued now (for tests).
    pub fn queued_bytes(&self) -> usize {
        self.inbox.bytes.load(Ordering::Acquire)
    }
}

#[derive(Default)]
struct Tables {
    /// Listeners per conversation: visitor tabs and agents who opened it.
    conversations: HashMap<ConversationId, Vec<Inbox>>,
    /// Every agent connection (conversation list updates, presence).
    agent_conns: HashMap<ConnId, (Inbox, AgentInfo)>,
    /// Every visitor connection (presence changes).
    visitor_conns: HashMap<ConnId, Inbox>,
}

/// The hub. Cheap to share (`Arc`).
#[derive(Default)]
pub struct Hub {
    tables: Mutex<Tables>,
    next_id: AtomicU64,
    /// Agents online on other nodes (from the bus), sorted; empty without a bus.
    remote_agents: Mutex<Vec<AgentInfo>>,
    /// Where signals go to reach other nodes, once a bus is attached. A full queue drops the
    /// nudge and sets `bus_dropped`: the bus then tells the other nodes to resync.
    outbox: OnceLock<mpsc::Sender<Nudge>>,
    /// Wakes this node's queue task ([`crate::queue::run`]) when the queue may have changed,
    /// here or on another node. A `Notify` coalesces bursts into one pass.
    pub queue_changed: tokio::sync::Notify,
    /// Wakes this node's settings reader ([`crate::admin::follow_saves`]) when an admin saved
    /// a site's settings on another node (or nudges may have been lost).
    pub settings_changed: tokio::sync::Notify,
    /// A nudge was dropped because the bus queue was full: the bus owes the other nodes a
    /// resync (see [`crate::bus`]). Also keeps the warning to one per episode.
    bus_dropped: AtomicBool,
}

impl Hub {
    /// A new, empty hub.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding this lock cannot leave the tables half-updated in a way that
        // matters (every operation is a single insert/remove), so poisoning is ignored.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends every later `publish_*` signal to other nodes too (see [`crate::bus`]).
    pub fn attach_bus(&self, outbox: mpsc::Sender<Nudge>) {
        let _ = self.outbox.set(outbox);
    }

    fn forward(&self, nudge: Nudge) {
        if let Some(outbox) = self.outbox.get() {
            if outbox.try_send(nudge).is_err() && !self.bus_dropped.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    "bus queue full or closed: cross-node nudges dropped; other nodes will be told to resync"
                );
            }
        }
    }

    /// Whether a nudge was dropped since the last call (the bus then publishes a resync).
    pub fn take_bus_dropped(&self) -> bool {
        self.bus_dropped.swap(false, Ordering::AcqRel)
    }

    /// A new mailbox for a visitor connection.
    pub fn mailbox(&self) -> Mailbox {
        self.mailbox_of(QUEUE)
    }

    /// A new mailbox for an agent connection (see [`AGENT_QUEUE`]).
    pub fn agent_mailbox(&self) -> Mailbox {
        self.mailbox_of(AGENT_QUEUE)
    }

    fn mailbox_of(&self, capacity: usize) -> Mailbox {
        let (tx, rx) = mpsc::channel(capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        let inbox = Inbox {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            tx,
            lagged: lagged.clone(),
            bytes: Arc::new(AtomicUsize::new(0)),
        };
        Mailbox { rx, lagged, inbox }
    }

    /// Listens to a conversation's events and typing.
    pub fn subscribe(&self, conversation: &ConversationId, inbox: &Inbox) {
        let mut t = self.lock();
        let list = t.conversations.entry(conversation.clone()).or_default();
        if !list.iter().any(|i| i.id == inbox.id) {
            list.push(inbox.clone());
        }
    }

    /// Registers a visitor connection (for presence).
    pub fn join_visitor(&self, inbox: &Inbox) {
        self.lock().visitor_conns.insert(inbox.id, inbox.clone());
    }

    /// Registers an agent connection. Returns true if this agent just came online.
    pub fn join_agent(&self, inbox: &Inbox, agent: AgentInfo) -> bool {
        let mut t = self.lock();
        let was_online = t.agent_conns.values().any(|(_, a)| a.id == agent.id);
        t.agent_conns.insert(inbox.id, (inbox.clone(), agent));
        if !was_online {
            Self::broadcast_presence(&t);
            drop(t);
            self.forward(Nudge::Presence);
        }
        !was_online
    }

    /// Removes a connection from everything. Tells others if an agent went offline.
    pub fn leave<'a>(
        &self,
        inbox: &Inbox,
        conversations: impl IntoIterator<Item = &'a ConversationId>,
    ) {
        let mut t = self.lock();
        t.visitor_conns.remove(&inbox.id);
        // Only the connection's own conversations: scanning every conversation here would make
        // each disconnect O(all listeners), and a relay restart's 15k reconnects quadratic.
        for conversation in conversations {
            if let Some(list) = t.conversations.get_mut(conversation) {
                list.retain(|i| i.id != inbox.id);
                if list.is_empty() {
                    t.conversations.remove(conversation);
                }
            }
        }
        if let Some((_, agent)) = t.agent_conns.remove(&inbox.id) {
            if !t.agent_conns.values().any(|(_, a)| a.id == agent.id) {
                Self::broadcast_presence(&t);
                drop(t);
                self.forward(Nudge::Presence);
            }
        }
    }

    /// Agents connected to this node, one entry per agent (what the bus advertises).
    pub fn local_agents(&self) -> Vec<AgentInfo> {
        let t = self.lock();
        let mut seen: HashMap<&str, &AgentInfo> = HashMap::new();
        for (_, a) in t.agent_conns.values() {
            seen.insert(a.id.as_str(), a);
        }
        seen.into_values().cloned().collect()
    }

    /// Replaces the agents online on other nodes; tells local connections if the set changed.
    pub fn set_remote_agents(&self, mut agents: Vec<AgentInfo>) {
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        agents.dedup_by(|a, b| a.id == b.id);
        let changed = {
            let mut remote = self.remote_agents.lock().unwrap_or_else(|p| p.into_inner());
            let changed = *remote != agents;
            *remote = agents;
            changed
        };
        if changed {
            Self::broadcast_presence(&self.lock());
        }
    }

    /// Marks every local connection lagged and wakes it, so it re-reads what it may have missed
    /// from the store (after the bus was disconnected, nudges from other nodes may be lost).
    pub fn resync_all(&self) {
        let t = self.lock();
        let all = t
            .visitor_conns
            .values()
            .chain(t.agent_conns.values().map(|(i, _)| i));
        for inbox in all {
            inbox.lagged.store(true, Ordering::Release);
            inbox.deliver(Signal::Presence);
        }
    }

    fn broadcast_presence(t: &Tables) {
        for inbox in t.visitor_conns.values() {
            inbox.deliver(Signal::Presence);
        }
        for (inbox, _) in t.agent_conns.values() {
            inbox.deliver(Signal::Presence);
        }
    }

    /// Agents online now on any node, one entry per agent, sorted by name.
    pub fn agents_online(&self) -> Vec<AgentInfo> {
        let mut list = self.local_agents();
        {
            let remote = self.remote_agents.lock().unwrap_or_else(|p| p.into_inner());
            for a in remote.iter() {
                if !list.iter().any(|l| l.id == a.id) {
                    list.push(a.clone());
                }
            }
        }
        list.sort_by(|a, b| a.display_name.cmp(&b.display_name).then(a.id.cmp(&b.id)));
        list
    }

    /// Delivers a stored event to the conversation's listeners, here and on other nodes.
    pub fn publish_event(&self, event: Arc<Event>) {
        self.deliver_event(event.clone());
        self.forward(Nudge::Event(event));
    }

    /// Delivers a stored event to this node's listeners only (events from the bus).
    pub fn deliver_event(&self, event: Arc<Event>) {
        let t = self.lock();
        if let Some(list) = t.conversations.get(&event.conversation_id) {
            for inbox in list {
                inbox.deliver(Signal::Event(event.clone()));
            }
        }
    }

    /// Delivers a typing signal to the conversation's listeners except `from`.
    pub fn publish_typing(
        &self,
        from: &Inbox,
        conversation_id: &ConversationId,
        author: Author,
        active: bool,
    ) {
        let typing = Arc::new(Typing {
            conversation_id: conversation_id.clone(),
            author,
            active,
        });
        self.deliver_typing(Some(from.id), typing.clone());
        self.forward(Nudge::Typing(typing));
    }

    /// Delivers a typing signal to this node's listeners of its conversation, except `except`.
    pub fn deliver_typing(&self, except: Option<ConnId>, typing: Arc<Typing>) {
        let t = self.lock();
        if let Some(list) = t.conversations.get(&typing.conversation_id) {
            for inbox in list.iter().filter(|i| Some(i.id) != except) {
                inbox.deliver(Signal::Typing(typing.clone()));
            }
        }
    }

    /// Delivers a co-browse frame to the conversation's listeners, here and on other nodes.
    /// Each listening session keeps only what is addressed to it (see [`crate::cobrowse`]).
    pub fn publish_cobrowse(&self, relayed: Arc<crate::cobrowse::Relayed>) {
        self.deliver_cobrowse(relayed.clone());
        self.forward(Nudge::Cobrowse(relayed));
    }

    /// Delivers a co-browse frame to this node's listeners of its conversation.
    pub fn deliver_cobrowse(&self, relayed: Arc<crate::cobrowse::Relayed>) {
        let t = self.lock();
        if let Some(list) = t.conversations.get(&relayed.conversation_id) {
            for inbox in list {
                inbox.deliver(Signal::Cobrowse(relayed.clone()));
            }
        }
    }

    /// Tells every agent connection, here and on other nodes, that a conversation changed.
    pub fn publish_summary(&self, summary: Arc<ConversationSummary>) {
        self.deliver_summary(summary.clone());
        self.forward(Nudge::Summary(summary));
    }

    /// Tells this node's agent connections that a conversation changed (summaries from the bus).
    pub fn deliver_summary(&self, summary: Arc<ConversationSummary>) {
        let t = self.lock();
        for (inbox, _) in t.agent_conns.values() {
            inbox.deliver(Signal::Summary(summary.clone()));
        }
    }

    /// Sessions ended: this node's and the other nodes' sockets opened with them close.
    pub fn publish_revoked(&self, revocation: Arc<crate::access::Revocation>) {
        self.deliver_revoked(revocation.clone());
        self.forward(Nudge::Revoked(revocation));
    }

    /// Tells this node's sockets of the agent that sessions ended (also from the bus).
    pub fn deliver_revoked(&self, revocation: Arc<crate::access::Revocation>) {
        let t = self.lock();
        for (inbox, agent) in t.agent_conns.values() {
            if agent.id == revocation.agent_id {
                inbox.deliver(Signal::Revoked(revocation.clone()));
            }
        }
    }

    /// A visitor row is gone (erased or merged): their sockets on this node and the other
    /// nodes close.
    pub fn publish_gone(&self, gone: Arc<Gone>) {
        self.deliver_gone(gone.clone());
        self.forward(Nudge::Erased(gone));
    }

    /// Tells this node's visitor sockets that a visitor row is gone (also from the bus); each
    /// checks whether it is theirs.
    pub fn deliver_gone(&self, gone: Arc<Gone>) {
        let t = self.lock();
        for inbox in t.visitor_conns.values() {
            inbox.deliver(Signal::Erased(gone.clone()));
        }
    }

    /// A site's settings were saved here (and already applied): the other nodes re-read them.
    pub fn publish_settings_changed(&self) {
        self.forward(Nudge::Settings);
    }

    /// The people's queue may have changed: wakes this node's queue task and the other nodes'.
    pub fn publish_queue_changed(&self) {
        self.queue_changed.notify_one();
        self.forward(Nudge::Queue);
    }

    /// Delivers a queue position to a conversation's listeners on this node.
    pub fn deliver_queue(&self, conversation_id: &ConversationId, update: Arc<QueueUpdate>) {
        let t = self.lock();
        if let Some(list) = t.conversations.get(conversation_id) {
            for inbox in list {
                inbox.deliver(Signal::Queue(update.clone()));
            }
        }
    }

    /// Delivers the queue's length and the agents' loads to this node's agent connections.
    pub fn deliver_agents_queue(&self, update: Arc<QueueUpdate>) {
        let t = self.lock();
        for (inbox, _) in t.agent_conns.values() {
            inbox.deliver(Signal::Queue(update.clone()));
        }
    }

    /// Live connections (visitor, agent), for metrics and tests.
    pub fn connection_counts(&self) -> (usize, usize) {
        let t = self.lock();
        (t.visitor_conns.len(), t.agent_conns.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{EventBody, Role};

    fn event(conv: &str, seq: u64) -> Arc<Event> {
        Arc::new(Event {
            conversation_id: ConversationId::from(conv),
            seq,
            at: 0,
            author: Author {
                role: Role::Visitor,
                id: None,
                name: None,
            },
            body: EventBody::Joined,
        })
    }

    #[tokio::test]
    async fn delivers_only_to_subscribers() {
        let hub = Hub::new();
        let mut a = hub.mailbox();
        let mut b = hub.mailbox();
        hub.subscribe(&ConversationId::from("c1"), &a.inbox);
        hub.subscribe(&ConversationId::from("c2"), &b.inbox);
        hub.publish_event(event("c1", 1));
        assert!(matches!(a.rx.try_recv(), Ok(Signal::Event(e)) if e.seq == 1));
        assert!(b.rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn leaving_unsubscribes_from_the_connections_conversations() {
        let hub = Hub::new();
        let mut gone = hub.mailbox();
        let mut stays = hub.mailbox();
        let c1 = ConversationId::from("c1");
        hub.subscribe(&c1, &gone.inbox);
        hub.subscribe(&c1, &stays.inbox);
        hub.leave(&gone.inbox, [&c1]);
        hub.publish_event(event("c1", 1));
        assert!(
            gone.rx.try_recv().is_err(),
            "a connection that left got an event"
        );
        assert!(matches!(stays.rx.try_recv(), Ok(Signal::Event(_))));
        hub.leave(&stays.inbox, [&c1]);
        assert!(
            hub.lock().conversations.is_empty(),
            "empty listener lists are dropped"
        );
    }

    #[tokio::test]
    async fn a_full_queue_marks_the_connection_lagged() {
        let hub = Hub::new();
        let m = hub.mailbox();
        hub.subscribe(&ConversationId::from("c1"), &m.inbox);
        for seq in 0..(QUEUE as u64 + 5) {
            hub.publish_event(event("c1", seq));
        }
        assert!(m.lagged.load(Ordering::Acquire));
    }

    fn piece(conversation: &str, kib: usize) -> Arc<crate::cobrowse::Relayed> {
        Arc::new(crate::cobrowse::Relayed {
            conversation_id: ConversationId::from(conversation),
            to: crate::cobrowse::Recipient::Agent {
                agent_id: "a1".into(),
                frame: protocol::ToAgent::Cobrowse {
                    conversation_id: ConversationId::from(conversation),
                    n: 1,
                    data: "x".repeat(kib * 1024),
                    index: 0,
                    count: 1,
                },
            },
        })
    }

    #[tokio::test]
    async fn a_queue_is_bounded_in_bytes_as_well_as_in_signals() {
        let hub = Hub::new();
        let mut m = hub.agent_mailbox();
        hub.subscribe(&ConversationId::from("c1"), &m.inbox);
        // 60 KiB pieces: far fewer than AGENT_QUEUE signals fill QUEUE_BYTES.
        let fits = QUEUE_BYTES / (60 * 1024);
        for _ in 0..fits {
            hub.deliver_cobrowse(piece("c1", 60));
        }
        assert!(!m.lagged.load(Ordering::Acquire), "within the bound");
        assert_eq!(m.queued_bytes(), fits * 60 * 1024);
        hub.deliver_cobrowse(piece("c1", 60));
        assert!(
            m.lagged.load(Ordering::Acquire),
            "one piece more is refused"
        );
        assert!(m.queued_bytes() <= QUEUE_BYTES);
        // Reading frees the bytes: after it the same piece fits again.
        m.lagged.store(false, Ordering::Release);
        while m.try_recv().is_some() {}
        assert_eq!(m.queued_bytes(), 0);
        hub.deliver_cobrowse(piece("c1", 60));
        assert!(!m.lagged.load(Ordering::Acquire));
        assert_eq!(m.recv().await.map(|s| s.weight()), Some(60 * 1024));
        assert_eq!(m.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn a_full_bus_queue_is_remembered_so_the_bus_can_owe_a_resync() {
        let hub = Hub::new();
        let (tx, mut rx) = mpsc::channel(2);
        hub.attach_bus(tx);
        hub.publish_event(event("c1", 1));
        hub.publish_event(event("c1", 2));
        assert!(!hub.take_bus_dropped(), "nothing dropped yet");
        hub.publish_event(event("c1", 3));
        hub.publish_queue_changed();
        assert!(
            hub.take_bus_dropped(),
            "the third and fourth nudges were dropped"
        );
        assert!(!hub.take_bus_dropped(), "taken once");
        assert!(matches!(rx.try_recv(), Ok(Nudge::Event(e)) if e.seq == 1));
        assert!(matches!(rx.try_recv(), Ok(Nudge::Event(e)) if e.seq == 2));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn presence_counts_agents_once() {
        let hub = Hub::new();
        let agent = AgentInfo {
            id: "a1".into(),
            username: "mina".into(),
            display_name: "Mina".into(),
        };
        let one = hub.mailbox();
        let two = hub.mailbox();
        assert!(hub.join_agent(&one.inbox, agent.clone()));
        assert!(!hub.join_agent(&two.inbox, agent));
        assert_eq!(hub.agents_online().len(), 1);
        hub.leave(&one.inbox, []);
        assert_eq!(hub.agents_online().len(), 1);
        hub.leave(&two.inbox, []);
        assert!(hub.agents_online().is_empty());
    }
}
