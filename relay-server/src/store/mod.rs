//! Durable state: agents, sessions, visitors, conversations and their sequenced events.
//!
//! One trait, [`Store`], so the relay does not care which engine keeps the data. SQLite
//! ([`sqlite::SqliteStore`]) is the default; PostgreSQL ([`postgres::PgStore`]) keeps the same
//! guarantees (seq assigned in the appending transaction, idempotent appends) for several relay
//! nodes sharing one database. [`connect`] picks the engine from the URL.

mod appends;
pub mod postgres;
pub mod rights;
pub mod sqlite;

pub use rights::{AuditRecord, ConversationData, Erased, VisitorData};

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use protocol::{
    AgentInfo, Author, ClientId, ConversationId, ConversationStatus, Event, EventBody, PageContext,
    Role, Seq,
};

/// What can go wrong in a store call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such conversation.
    #[error("conversation not found")]
    NotFound,
    /// The conversation is assigned to another agent.
    #[error("conversation is assigned to another agent")]
    Forbidden,
    /// The conversation is closed.
    #[error("conversation is closed")]
    Closed,
    /// The engine failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Stored data could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A rating for a conversation that is not closed yet.
    #[error("conversation is not closed")]
    NotClosed,
    /// The conversation was rated already: the first rating stands.
    #[error("conversation was already rated")]
    AlreadyRated,
    /// Another agent has this username.
    #[error("username is taken")]
    UsernameTaken,
    /// The owner already has a canned reply with this shortcut for this site.
    #[error("shortcut is taken")]
    ShortcutTaken,
    /// The change would leave no enabled admin: nobody could manage agents or sites again.
    #[error("the last enabled admin cannot be disabled or demoted")]
    LastAdmin,
    /// No such agent.
    #[error("agent not found")]
    NoSuchAgent,
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// An agent account.
#[derive(Clone, Debug)]
pub struct AgentRecord {
    /// Stable id.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Shown to visitors.
    pub display_name: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// May use the admin pages (routing, hours, capacity of sites).
    pub admin: bool,
    /// Cannot sign in, and has no sessions (removed from the config, or disabled by an admin).
    pub disabled: bool,
    /// Who owns the account: the config file or the console.
    pub managed_by: Managed,
    /// The sites the agent serves; `None`: every site (see [`crate::access::Scope`]).
    pub sites: Option<Vec<String>>,
    /// Most conversations given to the agent automatically; `None`: the site's limit.
    pub max_chats: Option<u32>,
    /// Who disabled the agent: [`DISABLED_BY_CONFIG`] or an admin's username.
    pub disabled_by: Option<String>,
}

/// `disabled_by` of an agent the config file no longer lists: listing them again enables them.
pub const DISABLED_BY_CONFIG: &str = "config";

/// Who owns an agent account (and so where it is edited).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Managed {
    /// Listed in the config file: the file sets name, password, admin, sites and limit at every
    /// start; the console may only disable and enable them.
    Config,
    /// Created in the console (or the generated first admin): admins edit everything.
    Console,
}

impl Managed {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Managed::Config => "config",
            Managed::Console => "console",
        }
    }

    pub(crate) fn parse(s: &str) -> StoreResult<Self> {
        match s {
            "config" => Ok(Managed::Config),
            "console" => Ok(Managed::Console),
            other => Err(StoreError::Corrupt(format!("managed_by {other:?}"))),
        }
    }
}

/// A new console-managed agent.
#[derive(Clone, Debug)]
pub struct NewAgent {
    /// Login name (checked by the caller).
    pub username: String,
    /// Shown to visitors.
    pub display_name: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// May use the admin pages.
    pub admin: bool,
    /// Sites served; `None`: every site.
    pub sites: Option<Vec<String>>,
    /// Own limit; `None`: the site's.
    pub max_chats: Option<u32>,
}

/// Changes to an agent, each `None` left as is. Applied with the audit line in one transaction,
/// which refuses to leave no enabled admin ([`StoreError::LastAdmin`]) and ends the agent's
/// sessions when it disables them or sets a password.
#[derive(Clone, Debug, Default)]
pub struct AgentChange {
    /// New display name.
    pub display_name: Option<String>,
    /// New password hash (ends the agent's sessions).
    pub password_hash: Option<String>,
    /// Admin or not.
    pub admin: Option<bool>,
    /// Disabled (ends the agent's sessions) or enabled; with who did it.
    pub disabled: Option<bool>,
    /// Sites served (`Some(None)`: every site).
    pub sites: Option<Option<Vec<String>>>,
    /// Own limit (`Some(None)`: the site's).
    pub max_chats: Option<Option<u32>>,
}

/// Who changed an agent and how, for the audit log (`None`: the config file at start, which is
/// not audited: the file is its own record).
#[derive(Clone, Debug)]
pub struct AgentAudit {
    /// An admin's username.
    pub actor: String,
    /// `agent_create`, `agent_update`, `agent_disable`, `agent_enable` or `agent_password`.
    pub action: &'static str,
    /// What changed, as JSON (never a password or its hash).
    pub detail: String,
}

/// The columns an [`AgentRecord`] is read from, in both engines.
pub(crate) const AGENT_COLUMNS: &str =
    "id, username, display_name, password_hash, admin, disabled, managed_by, sites, max_chats, disabled_by";

/// `sites` as stored (a JSON array, or NULL).
pub(crate) fn sites_to_db(sites: &Option<Vec<String>>) -> Option<String> {
    sites
        .as_ref()
        .map(|s| serde_json::to_string(s).unwrap_or_else(|_| "[]".into()))
}

/// `sites` as read.
pub(crate) fn sites_from_db(raw: Option<String>) -> StoreResult<Option<Vec<String>>> {
    raw.map(|s| serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("sites: {e}"))))
        .transpose()
}

/// `max_chats` as read.
pub(crate) fn max_chats_from_db(raw: Option<i64>) -> StoreResult<Option<u32>> {
    raw.map(|n| u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("max_chats {n}"))))
        .transpose()
}

/// A visitor: one person on one site, reached through one token per browser they used. An
/// anonymous visitor has one browser; an identified one (`user_id`) every browser that proved
/// that user id.
#[derive(Clone, Debug)]
pub struct VisitorRecord {
    /// Stable id.
    pub id: String,
    /// The site key it belongs to.
    pub site: String,
    /// The site's user id, once a signed identity proved it (`crate::identity`).
    pub user_id: Option<String>,
    /// When the token it was found by was last used (Unix ms); for a visitor just created or
    /// identified, now.
    pub token_seen_at: i64,
}

/// A canned reply: text an agent inserts by typing `/shortcut` in the console's composer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CannedReply {
    /// Stable id.
    pub id: String,
    /// The site it is for; `None`: every site.
    pub site: Option<String>,
    /// The agent whose own reply it is; `None`: shared with every agent of the site (admins
    /// write those).
    pub owner_id: Option<String>,
    /// What follows `/`: 1–32 of `[a-z0-9_-]`.
    pub shortcut: String,
    /// The text, with `{visitor.name}` / `{agent.name}` filled in by the console.
    pub text: String,
    /// Who saved it last (username).
    pub updated_by: String,
    /// When (Unix ms).
    pub updated_at: i64,
}

/// A visitor as agents see them beside a conversation: who they are (verified, or not at all)
/// and their conversations.
#[derive(Clone, Debug)]
pub struct VisitorProfile {
    /// The visitor.
    pub id: String,
    /// Site key.
    pub site: String,
    /// First seen (Unix ms).
    pub created_at: i64,
    /// What the last verified identity said, if any.
    pub identity: Option<crate::identity::Verified>,
    /// When it was last verified (Unix ms).
    pub verified_at: Option<i64>,
    /// Their conversations, newest first (at most [`PROFILE_CONVERSATIONS`]).
    pub conversations: Vec<ConversationRecord>,
}

/// Most conversations a [`VisitorProfile`] lists.
pub const PROFILE_CONVERSATIONS: i64 = 50;

/// What [`Store::identify_visitor`] did with a browser's visitor and a verified identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identified {
    /// The browser's anonymous visitor became the user (first time the user is seen).
    Claimed,
    /// The browser's visitor already was the user: identity details refreshed.
    Same,
    /// A browser never seen, of a person already known: its new token leads to them.
    Added,
    /// The user was known elsewhere: the browser's anonymous visitor was merged into them
    /// (conversations and tokens moved, the anonymous row deleted).
    Merged,
    /// The browser's visitor was another user (a shared computer): only this browser's token
    /// now leads to the user, the other user keeps their history.
    Switched,
}

/// A conversation row.
#[derive(Clone, Debug)]
pub struct ConversationRecord {
    /// Its id.
    pub id: ConversationId,
    /// Site key.
    pub site: String,
    /// Visitor id.
    pub visitor_id: String,
    /// Where it stands.
    pub status: ConversationStatus,
    /// Assigned agent id.
    pub assignee_id: Option<String>,
    /// Newest seq.
    pub last_seq: Seq,
    /// Newest message text, cut.
    pub preview: Option<String>,
    /// Visitor's page.
    pub context: PageContext,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Last changed (Unix ms).
    pub updated_at: i64,
    /// The visitor's rating (1–5) of the closed conversation, once given.
    pub rating: Option<u8>,
    /// When it last entered the people's queue (Unix ms); it waits while its status is `open`.
    pub queued_at: Option<i64>,
    /// The address a visitor left with an offline message (see [`Store::mark_offline`]): agents'
    /// replies are emailed there.
    pub offline_email: Option<String>,
    /// Agents' labels on the conversation ([`Store::set_labels`]).
    pub labels: Vec<String>,
}

/// A visitor row's identity columns (`user_id`, `name`, `email`, `attributes` as JSON) as a
/// [`crate::identity::Verified`]; None while anonymous.
pub(crate) fn identity_from_db(
    user_id: Option<String>,
    name: Option<String>,
    email: Option<String>,
    attributes: Option<String>,
) -> StoreResult<Option<crate::identity::Verified>> {
    let Some(user_id) = user_id else {
        return Ok(None);
    };
    let attributes = match attributes {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("visitor attributes: {e}")))?,
        None => Default::default(),
    };
    Ok(Some(crate::identity::Verified {
        user_id,
        name,
        email,
        attributes,
    }))
}

/// Reads the `labels` column (a JSON array; NULL: none).
pub(crate) fn labels_from_db(raw: Option<String>) -> StoreResult<Vec<String>> {
    raw.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("labels: {e}"))))
        .transpose()
        .map(Option::unwrap_or_default)
}

/// How visitors rated one agent's conversations (the agent assigned when they were closed).
#[derive(Clone, Debug, PartialEq)]
pub struct AgentRating {
    /// The agent; `None` for conversations no agent had (closed while with the bot or queued).
    pub agent_id: Option<String>,
    /// Rated conversations.
    pub count: i64,
    /// Mean score, 1.0–5.0.
    pub average: f64,
}

/// A site's routing settings as saved from the admin page. A saved row replaces the config
/// file's values for that site entirely (so an admin can also remove the config's hours).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteSettingsRecord {
    /// Site key.
    pub site: String,
    /// `bot_first` or `agents_first`.
    pub routing: String,
    /// The business hours as JSON ([`crate::hours::HoursSpec`]); `None`: always open.
    pub hours: Option<String>,
    /// How many conversations one agent may hold at once; `None`: no limit. Stored here for the
    /// assignment code, which reads it under this name.
    pub max_chats_per_agent: Option<i64>,
    /// When saved (Unix ms).
    pub updated_at: i64,
    /// Who saved it (agent username), for the audit trail.
    pub updated_by: String,
}

/// What an appended event does to its conversation besides adding itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing (a message). Refused on closed conversations.
    None,
    /// Assign to this agent. Refused if another agent has it or it is closed.
    Assign(String),
    /// Close it.
    Close,
    /// The bot hands the conversation to people: clears the bot flag (status stays open).
    /// Refused with [`StoreError::Forbidden`] unless the bot still handles it, so a hand-off
    /// racing an agent's take is not stored.
    Handoff,
    /// A bot message: changes nothing, but is refused with [`StoreError::Forbidden`] unless the
    /// bot still handles the conversation. This is how the bot learns, in the same transaction
    /// that would store its words, that a hand-off or a take silenced it.
    BotReply,
    /// The assignee `from` hands the conversation to `to`. Refused with
    /// [`StoreError::Forbidden`] unless `from` has it.
    Transfer {
        /// The agent who has it now.
        from: String,
        /// The agent who takes over.
        to: String,
    },
    /// Back to the queue from this agent (gone past the grace period). Refused with
    /// [`StoreError::Forbidden`] unless that agent still has it, so two nodes noticing the same
    /// absence store it once.
    Requeue(String),
}

impl Effect {
    /// The conversation's status and assignee after this effect, or why it is refused. The
    /// careful append paths of every engine use it, so they agree on the rules; a conversation
    /// the bot handles has status [`ConversationStatus::Bot`] (stored: `open` + bot flag).
    pub(crate) fn apply(
        &self,
        conv: &ConversationRecord,
    ) -> StoreResult<(ConversationStatus, Option<String>)> {
        if conv.status == ConversationStatus::Closed {
            return Err(StoreError::Closed);
        }
        let bot = conv.status == ConversationStatus::Bot;
        match self {
            Effect::None => Ok((conv.status, conv.assignee_id.clone())),
            Effect::Assign(agent) => match &conv.assignee_id {
                Some(current) if current != agent => Err(StoreError::Forbidden),
                _ => Ok((ConversationStatus::Assigned, Some(agent.clone()))),
            },
            Effect::Close => Ok((ConversationStatus::Closed, conv.assignee_id.clone())),
            Effect::Handoff if bot => Ok((ConversationStatus::Open, conv.assignee_id.clone())),
            Effect::BotReply if bot => Ok((conv.status, conv.assignee_id.clone())),
            Effect::Handoff | Effect::BotReply => Err(StoreError::Forbidden),
            Effect::Transfer { from, to } => match &conv.assignee_id {
                Some(current) if current == from => {
                    Ok((ConversationStatus::Assigned, Some(to.clone())))
                }
                _ => Err(StoreError::Forbidden),
            },
            Effect::Requeue(agent) => match &conv.assignee_id {
                Some(current) if current == agent => Ok((ConversationStatus::Open, None)),
                _ => Err(StoreError::Forbidden),
            },
        }
    }

    /// The conversation's `queued_at` after this effect, and the wait to record when it takes
    /// the conversation out of the queue (`(agent, waited_ms)`): every engine's careful path
    /// uses it, so queue times mean the same everywhere.
    pub(crate) fn queue_times(
        &self,
        conv: &ConversationRecord,
        now: i64,
        by_visitor: bool,
    ) -> (Option<i64>, Option<(String, i64)>) {
        match self {
            Effect::Assign(agent) if conv.assignee_id.is_none() => {
                let waited = match (conv.status, conv.queued_at) {
                    (ConversationStatus::Open, Some(at)) => {
                        Some((agent.clone(), (now - at).max(0)))
                    }
                    _ => None,
                };
                (None, waited)
            }
            Effect::Handoff | Effect::Requeue(_) => (Some(now), None),
            Effect::Close => (None, None),
            // A conversation a greeting opened joins the queue when the visitor first writes.
            _ if by_visitor && unqueued(conv) => (Some(now), None),
            _ => (conv.queued_at, None),
        }
    }
}

/// Open, nobody's, and not in the queue: a conversation a greeting opened, before the visitor
/// wrote.
fn unqueued(conv: &ConversationRecord) -> bool {
    conv.status == ConversationStatus::Open
        && conv.assignee_id.is_none()
        && conv.queued_at.is_none()
}

/// Whether appending `new` puts the conversation in the people's queue (the visitor's first
/// message after a greeting): the plain group-commit paths leave that append to the careful one.
pub(crate) fn starts_waiting(conv: &ConversationRecord, new: &NewEvent) -> bool {
    new.author.role == Role::Visitor && unqueued(conv)
}

/// How many conversations an agent may be given automatically: the agent's own limit, else the
/// conversation's site's, else `default`.
#[derive(Clone, Debug, Default)]
pub struct Capacity {
    /// When neither the agent nor the site says.
    pub default: u32,
    /// `max_chats_per_agent` by site key.
    pub sites: HashMap<String, u32>,
    /// Per-agent overrides by agent id.
    pub agents: HashMap<String, u32>,
    /// Sites whose conversations are never given automatically (agents pick them by hand).
    pub manual_sites: std::collections::HashSet<String>,
    /// Agents who serve only some sites, by agent id (absent: every site).
    pub scopes: HashMap<String, crate::access::Scope>,
}

impl Capacity {
    /// Takes every agent's own limit and sites from their records (at start, and when an admin
    /// changed an agent on any node).
    pub fn set_agents(&mut self, agents: &[AgentRecord]) {
        self.agents = agents
            .iter()
            .filter_map(|a| a.max_chats.map(|max| (a.id.clone(), max)))
            .collect();
        self.scopes = agents
            .iter()
            .filter(|a| a.sites.is_some())
            .map(|a| (a.id.clone(), crate::access::Scope::of(a)))
            .collect();
    }

    /// The most conversations `agent` is given automatically while one of `site` waits: none
    /// from a site they do not serve.
    pub fn of(&self, agent: &str, site: &str) -> u32 {
        if self.manual_sites.contains(site) {
            return 0;
        }
        if self.scopes.get(agent).is_some_and(|s| !s.covers(site)) {
            return 0;
        }
        self.agents
            .get(agent)
            .or_else(|| self.sites.get(site))
            .copied()
            .unwrap_or(self.default)
    }

    /// The agent's limit for the console's "2/3": their own, else the largest site limit.
    pub fn shown(&self, agent: &str) -> u32 {
        self.agents
            .get(agent)
            .copied()
            .or_else(|| {
                self.sites
                    .iter()
                    .filter(|(site, _)| !self.manual_sites.contains(*site))
                    .map(|(_, max)| *max)
                    .max()
            })
            .unwrap_or(self.default)
    }
}

/// The people's queue as the store sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueState {
    /// Waiting conversations, first in line first.
    pub waiting: Vec<ConversationId>,
    /// Conversations assigned and not closed, by agent id (agents with none are absent).
    pub loads: HashMap<String, u32>,
    /// Average of the latest [`WAIT_SAMPLES`] waits (ms); `None` before the first.
    pub avg_wait_ms: Option<i64>,
}

/// How many recent waits the visitor's estimate averages.
pub const WAIT_SAMPLES: i64 = 20;

/// Picks who gets what: the first waiting conversation (in line order) that some online agent
/// has room for, and among those agents the least busy, then the least recently assigned (never
/// assigned first), then the smallest id — a round robin every node computes the same way from
/// the same rows. `waiting` is `(id, site)` in line order.
pub(crate) fn choose<'a>(
    waiting: &[(ConversationId, String)],
    online: &'a [AgentInfo],
    loads: &HashMap<String, u32>,
    last_assigned: &HashMap<String, i64>,
    capacity: &Capacity,
) -> Option<(ConversationId, &'a AgentInfo)> {
    for (conversation, site) in waiting {
        let best = online
            .iter()
            .map(|a| (a, loads.get(&a.id).copied().unwrap_or(0)))
            .filter(|(a, load)| *load < capacity.of(&a.id, site))
            .min_by(|(a, la), (b, lb)| {
                la.cmp(lb)
                    .then(
                        last_assigned
                            .get(&a.id)
                            .unwrap_or(&i64::MIN)
                            .cmp(last_assigned.get(&b.id).unwrap_or(&i64::MIN)),
                    )
                    .then(a.id.cmp(&b.id))
            });
        if let Some((agent, _)) = best {
            return Some((conversation.clone(), agent));
        }
    }
    None
}

/// How many waiting conversations one assignment looks at: past the first ones nobody has room
/// for (their site's limit is lower), a later one of another site may fit.
pub(crate) const ASSIGN_SCAN: i64 = 100;

/// The `joined` event that assigns a conversation from the queue.
pub(crate) fn auto_join(agent: &AgentInfo) -> NewEvent {
    NewEvent {
        author: Author {
            role: Role::Agent,
            id: Some(agent.id.clone()),
            name: Some(agent.display_name.clone()),
        },
        body: EventBody::Joined,
        client_id: None,
        effect: Effect::Assign(agent.id.clone()),
    }
}

/// An event to append.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// Who.
    pub author: Author,
    /// What.
    pub body: EventBody,
    /// The sender's idempotency key, if any.
    pub client_id: Option<ClientId>,
    /// Side effect on the conversation.
    pub effect: Effect,
}

/// Result of an append.
#[derive(Clone, Debug)]
pub struct Appended {
    /// The stored event (the original one when this was a repeat).
    pub event: Event,
    /// The conversation after the append.
    pub conversation: ConversationRecord,
    /// True when the client id was seen before: nothing new was stored.
    pub duplicate: bool,
}

/// Why a knowledge gap was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GapKind {
    /// The bot was not sure of any entry: the question is missing from the knowledge base.
    Unanswered,
    /// The bot showed an entry and the visitor handed off right after: the entry did not help.
    HandoffAfterAnswer,
}

impl GapKind {
    /// How it is stored and sent (`unanswered`, `handoff_after_answer`).
    pub fn as_str(self) -> &'static str {
        match self {
            GapKind::Unanswered => "unanswered",
            GapKind::HandoffAfterAnswer => "handoff_after_answer",
        }
    }

    /// A stored kind.
    pub(crate) fn parse(s: &str) -> StoreResult<Self> {
        match s {
            "unanswered" => Ok(GapKind::Unanswered),
            "handoff_after_answer" => Ok(GapKind::HandoffAfterAnswer),
            other => Err(StoreError::Corrupt(format!("gap kind {other}"))),
        }
    }
}

/// A knowledge gap: a question the bot could not answer, or an entry that did not help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    /// Site key, so each site's manager sees their own gaps.
    pub site: String,
    /// The conversation it happened in (an agent can open it for context).
    pub conversation_id: ConversationId,
    /// Seq of the visitor message that produced it; with `kind`, the gap's identity, so a
    /// repeated bot turn never counts twice.
    pub seq: Seq,
    /// Why it was recorded.
    pub kind: GapKind,
    /// The visitor's question (for `HandoffAfterAnswer`: the question the entry was shown for).
    pub question: String,
    /// The entry counted against (`HandoffAfterAnswer` only): its id in the knowledge base.
    pub entry_id: Option<String>,
    /// The entry's title, kept so the report reads well even after the entry is renamed.
    pub entry_title: Option<String>,
    /// The visitor's page when it happened, if known: where the missing answer was looked for.
    pub page_url: Option<String>,
    /// When it was recorded (Unix ms); set by the store on insert.
    pub at: i64,
}

/// The durable store. Every method is one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Closes the connections (on shutdown, after the last socket task ended), flushing what the
    /// engine buffers.
    async fn close(&self);

    /// Checks the engine can commit a write (for `/readyz`): a one-row upsert into `health`.
    async fn ping(&self) -> StoreResult<()>;

    /// The WAL's figures, for `/metrics`: SQLite only.
    fn wal(&self) -> Option<crate::metrics::Wal> {
        None
    }

    /// How many appends the group commit stored together, for `/metrics` (and the tests that
    /// check a burst was grouped). Both engines group: no default.
    fn group_commit(&self) -> crate::metrics::GroupCommit;

    /// Number of agent accounts.
    async fn agent_count(&self) -> StoreResult<i64>;
    /// Creates the agent or resets its display name and password hash; either way it is enabled.
    async fn upsert_agent(
        &self,
        username: &str,
        display_name: &str,
        password_hash: &str,
    ) -> StoreResult<AgentRecord>;
    /// Looks an agent up by login name.
    async fn agent_by_username(&self, username: &str) -> StoreResult<Option<AgentRecord>>;
    /// Looks an agent up by id.
    async fn agent_by_id(&self, id: &str) -> StoreResult<Option<AgentRecord>>;

    /// Records a login session.
    async fn create_session(
        &self,
        token_hash: &str,
        agent_id: &str,
        expires_at: i64,
    ) -> StoreResult<()>;
    /// The agent of a live session.
    async fn session_agent(&self, token_hash: &str, now: i64) -> StoreResult<Option<AgentRecord>>;
    /// Ends a session.
    async fn delete_session(&self, token_hash: &str) -> StoreResult<()>;
    /// Ends every session of an agent; returns how many there were.
    async fn delete_agent_sessions(&self, agent_id: &str) -> StoreResult<u64>;
    /// Deletes sessions that expired before `now`; returns how many.
    async fn purge_expired_sessions(&self, now: i64) -> StoreResult<u64>;
    /// Every agent account, enabled or not.
    async fn agents(&self) -> StoreResult<Vec<AgentRecord>>;
    /// Disables an agent the config no longer lists (and ends their sessions, in the same
    /// transaction; `disabled_by` [`DISABLED_BY_CONFIG`]) or enables them.
    async fn set_agent_disabled(&self, agent_id: &str, disabled: bool) -> StoreResult<()>;
    /// Creates a console-managed agent, with its audit line. [`StoreError::UsernameTaken`] if the
    /// name is used.
    async fn create_agent(&self, new: &NewAgent, audit: &AgentAudit) -> StoreResult<AgentRecord>;
    /// Changes an agent (see [`AgentChange`]); returns it as now stored and whether sessions
    /// ended. `audit: None` only for the config file's own settings at start.
    async fn update_agent(
        &self,
        agent_id: &str,
        change: &AgentChange,
        audit: Option<&AgentAudit>,
    ) -> StoreResult<(AgentRecord, bool)>;

    /// Creates an anonymous visitor reached by this token hash.
    async fn create_visitor(&self, site: &str, token_hash: &str) -> StoreResult<VisitorRecord>;
    /// The visitor a token leads to on a site.
    async fn visitor_by_token(
        &self,
        site: &str,
        token_hash: &str,
    ) -> StoreResult<Option<VisitorRecord>>;
    /// Records that a token was used now (anonymous tokens unused too long stop working).
    async fn touch_visitor_token(&self, token_hash: &str) -> StoreResult<()>;
    /// Makes the browser whose token hash is `token_hash` (leading to visitor `visitor_id`; None:
    /// a new token, stored here) the site's user `identity.user_id`, in one transaction: one
    /// visitor per user id and site, an anonymous history merged into the user's without
    /// copies, another user's history left to them (see [`Identified`]). Returns the visitor
    /// the token now leads to.
    async fn identify_visitor(
        &self,
        site: &str,
        visitor_id: Option<&str>,
        token_hash: &str,
        identity: &crate::identity::Verified,
    ) -> StoreResult<(VisitorRecord, Identified)>;
    /// The visitor as agents see them, or None when unknown.
    async fn visitor_profile(&self, visitor_id: &str) -> StoreResult<Option<VisitorProfile>>;

    /// The visitor's newest conversation, closed or not.
    async fn latest_conversation(
        &self,
        visitor_id: &str,
    ) -> StoreResult<Option<ConversationRecord>>;
    /// The visitor's newest conversation if it is not closed, else a new one that starts with
    /// the bot when `bot` is true (a bot-first site) and in the people's queue otherwise.
    async fn open_conversation_as(
        &self,
        site: &str,
        visitor_id: &str,
        context: &PageContext,
        bot: bool,
        waiting: bool,
    ) -> StoreResult<(ConversationRecord, bool)>;
    /// [`Store::open_conversation_as`] without the bot (an agents-first site).
    async fn open_conversation(
        &self,
        site: &str,
        visitor_id: &str,
        context: &PageContext,
    ) -> StoreResult<(ConversationRecord, bool)> {
        self.open_conversation_as(site, visitor_id, context, false, true)
            .await
    }
    /// One conversation.
    async fn conversation(&self, id: &ConversationId) -> StoreResult<Option<ConversationRecord>>;
    /// Conversations not closed, of these sites (`None`: all), most recently changed first, at
    /// most `limit`.
    async fn open_conversations(
        &self,
        sites: Option<&[String]>,
        limit: i64,
    ) -> StoreResult<Vec<ConversationRecord>>;
    /// Closed conversations of these sites (`None`: all) changed before the cursor
    /// `(updated_at, id)` (none: from the newest), most recent first, at most `limit`: the
    /// agent's history, page by page.
    async fn closed_conversations(
        &self,
        sites: Option<&[String]>,
        before: Option<(i64, &str)>,
        limit: i64,
    ) -> StoreResult<Vec<ConversationRecord>>;
    /// Stores the visitor's current page on every conversation of theirs that is not closed.
    async fn update_context(
        &self,
        id: &ConversationId,
        context: &PageContext,
    ) -> StoreResult<ConversationRecord>;

    /// Appends an event: assigns the next seq, applies the effect, all in one transaction. A
    /// repeated client id returns the original event with `duplicate: true`.
    async fn append(&self, id: &ConversationId, event: NewEvent) -> StoreResult<Appended>;
    /// Assigns one waiting conversation to one of `online` (see [`choose`]), deciding and
    /// appending its `joined` event in one transaction that no other assignment (on any node)
    /// interleaves with, so no conversation is assigned twice and no agent past capacity.
    /// `None` when nothing waits or nobody has room. Call until `None`.
    async fn assign_next(
        &self,
        online: &[AgentInfo],
        capacity: &Capacity,
    ) -> StoreResult<Option<Appended>>;
    /// The queue, the agents' loads and the recent average wait.
    async fn queue_state(&self) -> StoreResult<QueueState>;
    /// Conversations assigned to the agent and not closed, oldest first.
    async fn assigned_to(&self, agent_id: &str) -> StoreResult<Vec<ConversationId>>;

    /// Events with seq > `after`, oldest first, at most `limit`.
    async fn events_after(
        &self,
        id: &ConversationId,
        after: Seq,
        limit: i64,
    ) -> StoreResult<Vec<Event>>;
    /// For each `(conversation, after)`, its events with seq > `after`, at most `limit` of
    /// each, in one read: grouped by conversation (in no set order), oldest first within one.
    /// Unknown conversations give nothing. Why one read: a connection that fell behind catches
    /// up every conversation it follows at once (an agent's may be hundreds, and after a bus
    /// outage every connection of a node does it), and one query each made that a burst of
    /// round trips.
    async fn events_after_each(
        &self,
        after: &[(ConversationId, Seq)],
        limit: i64,
    ) -> StoreResult<Vec<Event>>;

    /// Records a knowledge gap (its `at` is ignored: the store stamps it). `Ok(false)` when the
    /// same conversation, seq and kind were recorded before: nothing new is stored.
    async fn record_gap(&self, gap: &Gap) -> StoreResult<bool>;
    /// Knowledge gaps recorded at or after `since` (Unix ms), of one site or all, newest first,
    /// at most `limit`.
    async fn gaps(&self, site: Option<&str>, since: i64, limit: i64) -> StoreResult<Vec<Gap>>;
    /// Stores the visitor's rating of their closed conversation and appends the `rating` event
    /// (authored by `author`), in one transaction. [`StoreError::NotFound`] when the
    /// conversation is not this visitor's, [`StoreError::NotClosed`] before it is closed,
    /// [`StoreError::AlreadyRated`] for a second rating (the first one stands). The caller
    /// validates score and comment (`protocol::validate_rating`).
    async fn rate(
        &self,
        id: &ConversationId,
        visitor_id: &str,
        author: Author,
        score: u8,
        comment: Option<String>,
    ) -> StoreResult<Appended>;
    /// Rating count and mean per agent, most rated first.
    async fn agent_ratings(&self) -> StoreResult<Vec<AgentRating>>;
    /// Grants or revokes the admin pages to an agent (no-op for an unknown username).
    async fn set_agent_admin(&self, username: &str, admin: bool) -> StoreResult<()>;
    /// Marks a conversation as left offline by a visitor with this email: agents' replies are
    /// mailed there. Clears the bot flag (a left message is for people). Refused with
    /// [`StoreError::Closed`] on a closed conversation.
    async fn mark_offline(
        &self,
        id: &ConversationId,
        email: &str,
    ) -> StoreResult<ConversationRecord>;
    /// Every site's saved settings.
    async fn site_settings(&self) -> StoreResult<Vec<SiteSettingsRecord>>;
    /// Replaces a conversation's labels (it keeps its place in lists: `updated_at` stays).
    /// Returns the conversation as it is now, or None when there is none.
    async fn set_labels(
        &self,
        conversation_id: &ConversationId,
        labels: &[String],
    ) -> StoreResult<Option<ConversationRecord>>;
    /// Every canned reply (a small table: the caller filters by owner and site).
    async fn canned_replies(&self) -> StoreResult<Vec<CannedReply>>;
    /// Creates or replaces (by id) a canned reply. [`StoreError::ShortcutTaken`] when its owner
    /// has that shortcut for that site already.
    async fn save_canned(&self, reply: &CannedReply) -> StoreResult<()>;
    /// Deletes a canned reply; false when there was none.
    async fn delete_canned(&self, id: &str) -> StoreResult<bool>;
    /// Saves (creates or replaces) a site's settings.
    async fn put_site_settings(&self, settings: &SiteSettingsRecord) -> StoreResult<()>;

    /// Everything stored about a visitor (see [`rights`]); `None` for an unknown id.
    async fn visitor_data(&self, visitor_id: &str) -> StoreResult<Option<VisitorData>>;
    /// Deletes everything stored about a visitor, and writes an audit row naming `actor`, in one
    /// transaction; `None` (and nothing changed) for an unknown id. Appends racing it either
    /// land before it (and are erased) or find no conversation. SQLite zeroes what it frees
    /// (`secure_delete`) and rewinds the WAL afterwards, so the content does not linger in the
    /// files either.
    async fn erase_visitor(&self, visitor_id: &str, actor: &str) -> StoreResult<Option<Erased>>;
    /// Deletes at most `limit` visitors of `site` created before `created_before` that have no
    /// conversation left (never chatted, or every conversation expired): a visitor row holds
    /// only a token hash, but retention should leave nothing of someone long gone. Returns how
    /// many. A returning visitor whose row went simply becomes a new one.
    async fn expire_idle_visitors(
        &self,
        site: &str,
        created_before: i64,
        limit: i64,
    ) -> StoreResult<u64>;
    /// Deletes at most `limit` of a site's closed conversations last changed before
    /// `closed_before` (Unix ms), oldest first, with their events, gaps and queue waits, and
    /// writes an audit row when it deleted any. The retention job calls it until it deletes
    /// fewer than `limit`.
    async fn expire_closed(
        &self,
        site: &str,
        closed_before: i64,
        limit: i64,
    ) -> StoreResult<Erased>;
    /// The newest audit rows first, at most `limit`.
    async fn audit_log(&self, limit: i64) -> StoreResult<Vec<AuditRecord>>;
}

/// Why a rating is refused, judged on the conversation read inside the rating transaction.
pub(crate) fn check_rateable(conv: &ConversationRecord, visitor_id: &str) -> StoreResult<()> {
    if conv.visitor_id != visitor_id {
        Err(StoreError::NotFound)
    } else if conv.status != ConversationStatus::Closed {
        Err(StoreError::NotClosed)
    } else if conv.rating.is_some() {
        Err(StoreError::AlreadyRated)
    } else {
        Ok(())
    }
}

/// Opens the store a database URL names: `sqlite://PATH` (or `sqlite:PATH`) or
/// `postgres://...` / `postgresql://...`. Anything else is refused with a message naming the
/// accepted forms rather than guessing.
pub async fn connect(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect(url).await?))
    } else {
        anyhow::bail!(
            "unsupported database URL {url:?}: use sqlite://PATH or postgres://USER@HOST/DB"
        )
    }
}

// Text forms shared by every engine, so rows mean the same in SQLite and PostgreSQL.

/// How a status is stored. `bot` is stored as `open` plus the `bot` column (see
/// [`parse_status`]), so a hand-off only clears the flag and old rows need no rewrite.
pub(crate) fn status_str(s: ConversationStatus) -> &'static str {
    match s {
        ConversationStatus::Open | ConversationStatus::Unknown | ConversationStatus::Bot => "open",
        ConversationStatus::Assigned => "assigned",
        ConversationStatus::Closed => "closed",
    }
}

/// Whether a status is stored with the bot flag set.
pub(crate) fn is_bot(s: ConversationStatus) -> bool {
    s == ConversationStatus::Bot
}

/// A stored status and bot flag: `open` with the flag is [`ConversationStatus::Bot`].
pub(crate) fn parse_status(s: &str, bot: bool) -> StoreResult<ConversationStatus> {
    match s {
        "open" if bot => Ok(ConversationStatus::Bot),
        "open" => Ok(ConversationStatus::Open),
        "assigned" => Ok(ConversationStatus::Assigned),
        "closed" => Ok(ConversationStatus::Closed),
        other => Err(StoreError::Corrupt(format!("status {other}"))),
    }
}

/// How a role is stored.
pub(crate) fn role_str(r: Role) -> &'static str {
    match r {
        Role::Visitor => "visitor",
        Role::Agent => "agent",
        Role::Bot => "bot",
        Role::System => "system",
    }
}

/// A stored role.
pub(crate) fn parse_role(s: &str) -> StoreResult<Role> {
    match s {
        "visitor" => Ok(Role::Visitor),
        "agent" => Ok(Role::Agent),
        "bot" => Ok(Role::Bot),
        "system" => Ok(Role::System),
        other => Err(StoreError::Corrupt(format!("role {other}"))),
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A fresh time-ordered id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// First 140 characters of a text, for list previews.
pub fn preview_of(text: &str) -> String {
    let mut out: String = text.chars().take(140).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}
