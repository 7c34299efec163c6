//! Frames on the visitor socket (`/ws/visitor`).

use serde::{Deserialize, Serialize};

use crate::cobrowse::Highlight;
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
    /// The visitor's answer to the agent's pending co-browse request. Stored as a `cobrowse`
    /// event (`allowed` or `denied`). Refused with `invalid` when no request is pending.
    CobrowseAnswer {
        /// True: share this page (and the next ones) with the requesting agent.
        allow: bool,
    },
    /// The visitor stops sharing. Stored as a `cobrowse` event `stopped`.
    CobrowseStop,
    /// One co-browse stream item (or a piece of one), forwarded to the assigned agent only and
    /// never stored. Refused with `forbidden` while the visitor is not sharing.
    Cobrowse {
        /// Item number, +1 per item on a page's stream (every piece of one item has the same
        /// `n`). The agent asks for a fresh snapshot when it sees a gap.
        n: u32,
        /// The item: a JSON-encoded [`crate::cobrowse::Stream`], or the `index`-th piece of it.
        data: String,
        /// Which piece (0-based) when an item is split because it exceeds one frame.
        #[serde(default, skip_serializing_if = "is_zero")]
        index: u32,
        /// How many pieces the item has (1 when absent).
        #[serde(default = "one", skip_serializing_if = "is_one")]
        count: u32,
    },
    /// The visitor rates their latest conversation once it is closed (CSAT). Stored as a
    /// `rating` event; refused with `invalid` when the score is not 1–5, the conversation is not
    /// closed or was already rated (the first rating stands), `too_large` for a long comment.
    Rate {
        /// 1 (bad) to 5 (great).
        score: u8,
        /// Optional words, plain text, at most [`crate::MAX_COMMENT_BYTES`] bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// A message left while nobody is available (`welcome.available` false): stored in the
    /// visitor's conversation like a `send`, which is then marked offline with `email`, where
    /// agents' replies and the transcript are mailed. Answered by `ack` once stored.
    LeaveMessage {
        /// Idempotency key, as in `send`.
        client_id: ClientId,
        /// Where replies go; must be a valid address (at most 254 bytes).
        email: String,
        /// Plain text, as in `send`.
        text: String,
    },
    /// The visitor opened the chat from a proactive greeting bubble: the relay stores that
    /// rule's text as the bot's message in the visitor's conversation (at most once per
    /// conversation), creating the conversation if needed. Unknown rules are refused (`invalid`).
    Greeting {
        /// The rule's `id` from `/api/sites/{key}` `greetings`.
        rule: String,
    },
}

pub(crate) fn is_zero(n: &u32) -> bool {
    *n == 0
}

pub(crate) fn is_one(n: &u32) -> bool {
    *n == 1
}

pub(crate) fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
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
        /// Whether people can answer now: inside the site's business hours and at least one
        /// agent online. When false, offer `leave_message` (after the bot's hand-off on
        /// bot-first sites). Absent from older relays: treat as true.
        #[serde(default = "yes")]
        available: bool,
        /// When outside business hours: the next opening (Unix ms).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        opens_at: Option<i64>,
        /// The site's bot answers first: while it does, keep the ordinary composer even when
        /// `available` is false (only the hand-off needs people).
        #[serde(default, skip_serializing_if = "is_false")]
        bot_first: bool,
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
        /// As in `welcome`: people can answer now.
        #[serde(default = "yes")]
        available: bool,
        /// As in `welcome`: the next opening when outside business hours.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        opens_at: Option<i64>,
    },
    /// The agent points at part of the page. Only acted on while the visitor is sharing.
    CobrowseHighlight {
        /// The agent.
        author: Author,
        /// What to draw.
        highlight: Highlight,
    },
    /// The agent asks for a fresh snapshot (its mirror missed an item, or it just opened).
    CobrowseResync,
    /// A frame was refused.
    Error(ErrorFrame),
    /// The visitor's place in the queue for an agent, sent whenever it changes. `position` 1 is
    /// next; 0 means no longer waiting (taken or closed).
    Queue {
        /// 1-based place in line; 0: not waiting.
        position: u32,
        /// Estimated wait in ms: the average of recent visitors' waits. Absent without history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_ms: Option<u64>,
    },
}
