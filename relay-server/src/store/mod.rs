//! Durable state: agents, sessions, visitors, conversations and their sequenced events.
//!
//! One trait, [`Store`], so the relay does not care which engine keeps the data. SQLite
//! ([`sqlite::SqliteStore`]) is the default; PostgreSQL ([`postgres::PgStore`]) keeps the same
//! guarantees (seq assigned in the appending transaction, idempotent appends) for several relay
//! nodes sharing one database. [`connect`] picks the engine from the URL.

pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use protocol::{
    Author, ClientId, ConversationId, ConversationStatus, Event, EventBody, PageContext, Role, Seq,
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
}

/// A visitor (one browser, identified by its token).
#[derive(Clone, Debug)]
pub struct VisitorRecord {
    /// Stable id.
    pub id: String,
    /// The site key it belongs to.
    pub site: String,
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
    /// The address a visitor left with an offline message (see [`Store::mark_offline`]): agents'
    /// replies are emailed there.
    pub offline_email: Option<String>,
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
        }
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

/// The durable store. Every method is one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Closes the connections (on shutdown, after the last socket task ended), flushing what the
    /// engine buffers.
    async fn close(&self);

    /// Checks the engine answers (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;

    /// Number of agent accounts.
    async fn agent_count(&self) -> StoreResult<i64>;
    /// Creates the agent or resets its display name and password hash.
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

    /// Creates a visitor with this token hash.
    async fn create_visitor(&self, site: &str, token_hash: &str) -> StoreResult<VisitorRecord>;
    /// The visitor of a token on a site.
    async fn visitor_by_token(
        &self,
        site: &str,
        token_hash: &str,
    ) -> StoreResult<Option<VisitorRecord>>;

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
    ) -> StoreResult<(ConversationRecord, bool)>;
    /// [`Store::open_conversation_as`] without the bot (an agents-first site).
    async fn open_conversation(
        &self,
        site: &str,
        visitor_id: &str,
        context: &PageContext,
    ) -> StoreResult<(ConversationRecord, bool)> {
        self.open_conversation_as(site, visitor_id, context, false)
            .await
    }
    /// One conversation.
    async fn conversation(&self, id: &ConversationId) -> StoreResult<Option<ConversationRecord>>;
    /// Newest-changed conversations first.
    async fn recent_conversations(&self, limit: i64) -> StoreResult<Vec<ConversationRecord>>;
    /// Stores the visitor's current page on every conversation of theirs that is not closed.
    async fn update_context(
        &self,
        id: &ConversationId,
        context: &PageContext,
    ) -> StoreResult<ConversationRecord>;

    /// Appends an event: assigns the next seq, applies the effect, all in one transaction. A
    /// repeated client id returns the original event with `duplicate: true`.
    async fn append(&self, id: &ConversationId, event: NewEvent) -> StoreResult<Appended>;
    /// Events with seq > `after`, oldest first, at most `limit`.
    async fn events_after(
        &self,
        id: &ConversationId,
        after: Seq,
        limit: i64,
    ) -> StoreResult<Vec<Event>>;

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
    /// Saves (creates or replaces) a site's settings.
    async fn put_site_settings(&self, settings: &SiteSettingsRecord) -> StoreResult<()>;
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
