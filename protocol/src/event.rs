//! Conversation events: the persisted, sequenced history both sides replay.

use serde::{Deserialize, Serialize};

use crate::ids::{ClientId, ConversationId, Seq};

/// Who wrote an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The person on the site.
    Visitor,
    /// A person answering from the console.
    Agent,
    /// An automated answerer.
    Bot,
    /// The relay itself ("Mina joined", "conversation closed").
    System,
}

/// The author of an event, as shown to the other side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    /// What kind of author.
    pub role: Role,
    /// Stable id of the author (agent id, visitor id); absent for the system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Display name (agent's name, bot's name); absent for visitors and the system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Author {
    /// The relay itself.
    pub fn system() -> Self {
        Self {
            role: Role::System,
            id: None,
            name: None,
        }
    }
}

/// What happened. New kinds may be added in later minor revisions: clients must show an event
/// of an unknown kind as nothing (or a neutral line) rather than fail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    /// A chat message.
    Message {
        /// The text, plain (never HTML), at most [`crate::MAX_TEXT_BYTES`] bytes.
        text: String,
        /// The sender's client id, so the sender can match the event with its pending send.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<ClientId>,
    },
    /// An agent took the conversation (the author is that agent).
    Joined,
    /// An agent left the conversation without closing it.
    Left,
    /// The conversation was closed (the author says by whom).
    Closed,
    /// A kind added by a later revision of the protocol. Never sent by this relay; receiving it
    /// lets an older client skip the event instead of failing to decode the whole frame.
    #[serde(other)]
    Unknown,
}

/// One sequenced event of a conversation, exactly as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// Its position: the previous event of the conversation has `seq - 1`.
    pub seq: Seq,
    /// When the relay stored it (Unix milliseconds).
    pub at: i64,
    /// Who did it.
    pub author: Author,
    /// What happened.
    pub body: EventBody,
}

impl Event {
    /// The text if this is a message.
    pub fn message_text(&self) -> Option<&str> {
        match &self.body {
            EventBody::Message { text, .. } => Some(text),
            _ => None,
        }
    }
}
