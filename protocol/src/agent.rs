//! Frames on the agent socket (`/ws/agent`), used by the console and by bots or tools that log in
//! as an agent.

use serde::{Deserialize, Serialize};

use crate::cobrowse::Highlight;
use crate::context::PageContext;
use crate::error::ErrorFrame;
use crate::event::{Author, Event};
use crate::ids::{ClientId, ConversationId, Seq};

/// An agent as others see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Stable id.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Name shown to visitors ("Mina").
    pub display_name: String,
}

/// Where a conversation stands. New states may be added later: treat unknown ones as `open`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    /// The bot is answering; no person is needed yet.
    Bot,
    /// Waiting for an agent to take it.
    Open,
    /// An agent has it.
    Assigned,
    /// Finished.
    Closed,
    /// A status added by a later revision; treat it as `Open`. Never sent by this relay.
    #[serde(other)]
    Unknown,
}

/// A conversation as listed in the console.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationSummary {
    /// Its id.
    pub id: ConversationId,
    /// The site's key.
    pub site: String,
    /// The site's display name.
    pub site_name: String,
    /// The visitor's stable id.
    pub visitor_id: String,
    /// Where it stands.
    pub status: ConversationStatus,
    /// The agent who has it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<AgentInfo>,
    /// Seq of its newest event.
    pub last_seq: Seq,
    /// The newest message text, cut to 140 characters, for the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Last changed (Unix ms).
    pub updated_at: i64,
    /// The visitor's page as last reported.
    pub context: PageContext,
    /// The visitor's rating (1–5) once they rated the closed conversation; absent before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<u8>,
    /// When it entered the people's queue (Unix ms), while it waits there (status `open`):
    /// consoles order the queue by it. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<i64>,
    /// Set when the visitor left a message while nobody was available: the address replies are
    /// emailed to. Consoles mark such conversations as offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_email: Option<String>,
    /// Agents' labels on it ("refund", "vip"), as set with `label`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// How many conversations an agent has and may have (for the console's "2/3").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentLoad {
    /// The agent's id.
    pub id: String,
    /// Conversations assigned to them and not closed.
    pub chats: u32,
    /// Most conversations the relay assigns them automatically.
    pub max: u32,
}

/// Most labels on one conversation.
pub const MAX_LABELS: usize = 10;
/// Longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 32;

/// `labels` cleaned as the relay stores them: trimmed, empty ones and repeats (compared without
/// case) dropped, in the given order; `Err` names what is wrong (too many, too long, control
/// characters).
pub fn clean_labels(labels: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for l in labels {
        let t = l.trim();
        if t.is_empty() || out.iter().any(|o| o.to_lowercase() == t.to_lowercase()) {
            continue;
        }
        if t.chars().count() > MAX_LABEL_CHARS || t.chars().any(char::is_control) {
            return Err(format!(
                "a label is 1-{MAX_LABEL_CHARS} characters without control characters"
            ));
        }
        out.push(t.to_owned());
    }
    if out.len() > MAX_LABELS {
        return Err(format!("at most {MAX_LABELS} labels"));
    }
    Ok(out)
}

/// A frame an agent sends to the relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentFrame {
    /// First frame: answered by `welcome` with the conversation list.
    Hello {
        /// Protocol version the client speaks.
        v: u32,
    },
    /// Subscribe to a conversation's events; the relay answers with `history` of the events after
    /// `after_seq` (all when absent), then streams new ones as `event`.
    Open {
        /// Which conversation.
        conversation_id: ConversationId,
        /// Highest seq already held.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_seq: Option<Seq>,
    },
    /// Take (be assigned) the conversation. Refused with `forbidden` if another agent has it.
    Take {
        /// Which conversation.
        conversation_id: ConversationId,
    },
    /// Reply. Taking the conversation first is implied when nobody has it.
    Send {
        /// Which conversation.
        conversation_id: ConversationId,
        /// Idempotency key.
        client_id: ClientId,
        /// Plain text.
        text: String,
    },
    /// Started or stopped typing in a conversation.
    Typing {
        /// Which conversation.
        conversation_id: ConversationId,
        /// True while typing.
        active: bool,
    },
    /// Close the conversation.
    Close {
        /// Which conversation.
        conversation_id: ConversationId,
    },
    /// Ask the visitor to share their page. Only the assigned agent may; stored as a `cobrowse`
    /// event `requested`.
    CobrowseRequest {
        /// Which conversation.
        conversation_id: ConversationId,
    },
    /// Stop co-browsing. Stored as a `cobrowse` event `stopped`.
    CobrowseStop {
        /// Which conversation.
        conversation_id: ConversationId,
    },
    /// Point at part of the visitor's page (assigned agent only; not stored).
    CobrowseHighlight {
        /// Which conversation.
        conversation_id: ConversationId,
        /// What to draw.
        highlight: Highlight,
    },
    /// Ask the visitor's widget for a fresh snapshot (assigned agent only).
    CobrowseResync {
        /// Which conversation.
        conversation_id: ConversationId,
    },
    /// Hand a conversation you are assigned to another agent. Stored as a `transferred` event;
    /// `note` is shown to agents only. Refused with `forbidden` unless you have it, `invalid`
    /// for an unknown agent or yourself.
    Transfer {
        /// Which conversation.
        conversation_id: ConversationId,
        /// The id of the agent who takes over.
        to_agent: String,
        /// A line of context for them (at most 16 KiB).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Sets a conversation's labels (the whole list; empty clears them). Any agent who serves
    /// the site may; every agent then gets the `conversation` summary with the new `labels`.
    Label {
        /// Which conversation.
        conversation_id: ConversationId,
        /// At most [`MAX_LABELS`] labels of 1–[`MAX_LABEL_CHARS`] characters (trimmed, compared
        /// without case: repeats are dropped).
        labels: Vec<String>,
    },
    /// An internal note in the conversation, for agents only. Any agent who serves the site may
    /// write one (taking the conversation is not needed; a closed one takes none).
    /// Answered by `ack` once stored, like `send`; the same `client_id` is stored once.
    Note {
        /// Which conversation.
        conversation_id: ConversationId,
        /// Idempotency key.
        client_id: ClientId,
        /// Plain text.
        text: String,
    },
}

/// A frame the relay sends to an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToAgent {
    /// Answer to `hello`.
    Welcome {
        /// Protocol version the relay speaks.
        v: u32,
        /// Who you are logged in as.
        agent: AgentInfo,
        /// Open and recently closed conversations, newest first.
        conversations: Vec<ConversationSummary>,
        /// Agents online now, you included.
        agents_online: Vec<AgentInfo>,
    },
    /// A conversation was created or changed: replace it in the list.
    Conversation(Box<ConversationSummary>),
    /// Answer to `open`: the events after `after_seq`, in seq order.
    History {
        /// Which conversation.
        conversation_id: ConversationId,
        /// The events.
        events: Vec<Event>,
    },
    /// A new event in a conversation you opened.
    Event(Event),
    /// Your send with this client id is stored as `seq`.
    Ack {
        /// The client id of the send.
        client_id: ClientId,
        /// Its conversation.
        conversation_id: ConversationId,
        /// Its seq.
        seq: Seq,
    },
    /// Someone is typing in a conversation you opened.
    Typing {
        /// Which conversation.
        conversation_id: ConversationId,
        /// Who.
        author: Author,
        /// True while typing.
        active: bool,
    },
    /// The set of agents online changed.
    Presence {
        /// Agents online now.
        agents_online: Vec<AgentInfo>,
    },
    /// A co-browse stream item (or piece) from the visitor of a conversation you are assigned
    /// and opened. Same fields as the visitor's `cobrowse` frame.
    Cobrowse {
        /// Which conversation.
        conversation_id: ConversationId,
        /// Item number on the page's stream.
        n: u32,
        /// A JSON-encoded [`crate::cobrowse::Stream`] item, or a piece of one.
        data: String,
        /// Which piece (0-based).
        #[serde(default, skip_serializing_if = "crate::visitor::is_zero")]
        index: u32,
        /// How many pieces (1 when absent).
        #[serde(
            default = "crate::visitor::one",
            skip_serializing_if = "crate::visitor::is_one"
        )]
        count: u32,
    },
    /// A frame was refused.
    Error(ErrorFrame),
    /// The people's queue or an agent's load changed. Sent after `welcome` and on every change.
    Queue {
        /// Conversations waiting for an agent (all sites).
        waiting: u32,
        /// Load of every agent online.
        agents: Vec<AgentLoad>,
    },
}

#[cfg(test)]
mod label_tests {
    use super::*;

    #[test]
    fn labels_are_trimmed_deduplicated_and_bounded() {
        let l = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            clean_labels(&l(&[" Refund ", "vip", "REFUND", "", "환불"])),
            Ok(l(&["Refund", "vip", "환불"]))
        );
        assert!(clean_labels(&l(&[&"x".repeat(MAX_LABEL_CHARS + 1)])).is_err());
        assert!(clean_labels(&l(&["a\nb"])).is_err());
        let many: Vec<String> = (0..=MAX_LABELS).map(|i| format!("l{i}")).collect();
        assert!(clean_labels(&many).is_err());
        assert_eq!(clean_labels(&[]), Ok(vec![]));
    }
}
