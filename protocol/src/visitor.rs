//! Frames on the visitor socket (`/ws/visitor`).

use serde::{Deserialize, Serialize};

use crate::context::PageContext;
use crate::error::ErrorFrame;
use crate::event::{Author, Event};
use crate::ids::{ClientId, ConversationId, Seq};

/// A frame the visitor's widget sends to the relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VisitorFrame {
    /// First frame on every connection: who this is and what they have already seen.
    Hello {
        /// Protocol version the client speaks.
        v: u32,
        /// The visitor token from an earlier `welcome`; absent for a first visit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// The conversation the client holds events of, if any. When it is not the visitor's
        /// current conversation, `welcome` says `recovered: false` and all events are replayed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation_id: Option<ConversationId>,
        /// Highest seq this client holds for its conversation; the relay replays what follows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_seq: Option<Seq>,
        /// The page the visitor is on.
        #[serde(default)]
        context: PageContext,
    },
    /// A chat message. Answered by `ack` once stored (or by `error` naming the same client id).
    Send {
        /// Idempotency key: resending the same id never stores the message twice.
        client_id: ClientId,
        /// Plain text.
        text: String,
    },
    /// The visitor started or stopped typing.
    Typing {
        /// True while typing.
        active: bool,
    },
    /// The visitor moved to another page (single-page navigation or a reload).
    Context {
        /// The new page.
        context: PageContext,
    },
}

/// A frame the relay sends to a visitor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToVisitor {
    /// Answer to `hello`. Events after the client's `last_seq` follow as `event` frames.
    Welcome {
        /// Protocol version the relay speaks.
        v: u32,
        /// Token to keep (localStorage) and present in the next `hello`.
        token: String,
        /// Stable visitor id.
        visitor_id: String,
        /// The visitor's current conversation, if one exists yet (it is created by the first send).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation_id: Option<ConversationId>,
        /// Seq of the newest event of that conversation (0 when none).
        last_seq: Seq,
        /// False when the relay could not replay every event after the client's `last_seq`
        /// (history trimmed, or a different conversation): drop local state and rebuild from the
        /// events that follow.
        recovered: bool,
        /// Agents online for this site right now (0: tell the visitor replies may take a while).
        agents_online: u32,
    },
    /// A conversation event, live or replayed.
    Event(Event),
    /// The send with this client id is stored as `seq`.
    Ack {
        /// The client id of the send.
        client_id: ClientId,
        /// Conversation the message went to (created by a visitor's first send).
        conversation_id: ConversationId,
        /// Its seq.
        seq: Seq,
    },
    /// Someone on the other side started or stopped typing.
    Typing {
        /// Who.
        author: Author,
        /// True while typing.
        active: bool,
    },
    /// The number of agents online changed.
    Presence {
        /// Agents online for this site now.
        agents_online: u32,
    },
    /// A frame was refused.
    Error(ErrorFrame),
}
