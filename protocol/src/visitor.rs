//! Frames on the visitor socket (`/ws/visitor`).

use serde::{Deserialize, Serialize};

use crate::cobrowse::Highlight;
use crate::context::PageContext;
use crate::error::ErrorFrame;
use crate::event::{Author, Event, EventBody, QuickReply};
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
        /// A signed identity token from the site's server (an HS256 JWT, PROTOCOL.md §15):
        /// the relay then treats this browser as that user of the site, with their history.
        /// A bad token is answered by `identity_invalid` and the visitor goes on anonymously
        /// (unless the site requires identity).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity: Option<String>,
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
        /// The site's user id this visitor is verified as (by a token in this `hello` or an
        /// earlier one on this browser); absent for an anonymous visitor.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    /// A conversation event, live or replayed, as a visitor may see it ([`VisitorEvent`]).
    Event(VisitorEvent),
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

/// A conversation event as a visitor may see it: the visitor's projection of a stored
/// [`Event`], built only by [`VisitorEvent::project`].
///
/// An allow-list by construction: every field here was put here on purpose, and the projection
/// destructures each stored variant in full, so a field or a kind added to [`EventBody`] later
/// does not compile until someone decides what (if anything) of it a visitor sees. Hand-off
/// reasons and summaries, a message's tone, a transfer's note, email outcomes (whose errors can
/// name internal hosts) are agent-only. Every stored event still yields one projection, so the
/// visitor's seqs stay contiguous: an event a visitor may not see at all becomes
/// [`VisitorBody::Internal`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitorEvent {
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// Its position, as in [`Event`].
    pub seq: Seq,
    /// When the relay stored it (Unix milliseconds).
    pub at: i64,
    /// Who did it.
    pub author: Author,
    /// What happened, as far as a visitor may know.
    pub body: VisitorBody,
}

/// What happened, as a visitor may see it (see [`VisitorEvent`]). Same wire names as
/// [`EventBody`], fewer fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VisitorBody {
    /// A chat message.
    Message {
        /// The text, plain (never HTML).
        text: String,
        /// The sender's client id (the visitor's own sends).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<ClientId>,
        /// Quick replies under a bot message.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        buttons: Vec<QuickReply>,
        /// A page that answers in full (a bot answer's entry).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link: Option<String>,
    },
    /// The conversation went from the bot to the people's queue (why, and the summary, are
    /// for agents).
    Handoff,
    /// An agent took the conversation (the author is that agent).
    Joined,
    /// An agent left the conversation without closing it.
    Left,
    /// The conversation was closed.
    Closed,
    /// The co-browse consent life-cycle moved; the author says who.
    Cobrowse {
        /// Where it stands now.
        state: crate::cobrowse::CobrowseState,
    },
    /// The visitor's own rating.
    Rating {
        /// 1 (bad) to 5 (great).
        score: u8,
        /// The visitor's words.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// Another agent has the conversation now (the note for that agent is not here).
    Transferred {
        /// The agent who has it now.
        to: Author,
    },
    /// The agent was gone too long: back in the queue.
    Requeued {
        /// The agent who had it.
        from: Author,
    },
    /// Something only agents see happened here (an email outcome, …): show nothing. Sent so
    /// that seqs stay contiguous.
    Internal,
    /// A kind added by a later revision: show nothing.
    #[serde(other)]
    Unknown,
}

impl VisitorEvent {
    /// The visitor's projection of a stored event: the only way to build one on the relay.
    pub fn project(event: Event) -> VisitorEvent {
        let Event {
            conversation_id,
            seq,
            at,
            author,
            body,
        } = event;
        let body = match body {
            EventBody::Message {
                text,
                client_id,
                buttons,
                link,
                sentiment: _agent_only,
            } => VisitorBody::Message {
                text,
                client_id,
                buttons,
                link,
            },
            EventBody::Handoff {
                reason: _agent_only,
                summary: _also_agent_only,
            } => VisitorBody::Handoff,
            EventBody::Joined => VisitorBody::Joined,
            EventBody::Left => VisitorBody::Left,
            EventBody::Closed => VisitorBody::Closed,
            EventBody::Cobrowse { state } => VisitorBody::Cobrowse { state },
            EventBody::Rating { score, comment } => VisitorBody::Rating { score, comment },
            EventBody::Transferred {
                to,
                note: _agent_only,
            } => VisitorBody::Transferred { to },
            EventBody::Requeued { from } => VisitorBody::Requeued { from },
            EventBody::Email { .. } | EventBody::Note { .. } => VisitorBody::Internal,
            EventBody::Unknown => VisitorBody::Unknown,
        };
        VisitorEvent {
            conversation_id,
            seq,
            at,
            author,
            body,
        }
    }

    /// The text if this is a message.
    pub fn message_text(&self) -> Option<&str> {
        match &self.body {
            VisitorBody::Message { text, .. } => Some(text),
            _ => None,
        }
    }
}

impl VisitorBody {
    /// A plain message body (no buttons, no link).
    pub fn message(text: impl Into<String>, client_id: Option<ClientId>) -> VisitorBody {
        VisitorBody::Message {
            text: text.into(),
            client_id,
            buttons: Vec::new(),
            link: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{HandoffReason, Mood, Role};

    fn stored(body: EventBody) -> Event {
        Event {
            conversation_id: ConversationId::from("c"),
            seq: 7,
            at: 1,
            author: Author {
                role: Role::Agent,
                id: Some("mina".into()),
                name: Some("Mina".into()),
            },
            body,
        }
    }

    /// The agent-only words of every kind that has some, as the relay stores them; the
    /// positive control proves the check sees them in the stored form.
    #[test]
    fn no_agent_only_field_survives_the_projection() {
        let canary = "CANARY-agent-only";
        let bodies = [
            EventBody::Handoff {
                reason: HandoffReason::Negative,
                summary: format!("asked about refunds; mood: negative {canary}"),
            },
            EventBody::Transferred {
                to: Author {
                    role: Role::Agent,
                    id: Some("joon".into()),
                    name: Some("Joon".into()),
                },
                note: Some(canary.into()),
            },
            EventBody::Email {
                to: "v@example.com".into(),
                sent: false,
                error: Some(format!("smtp.internal.example:25 refused {canary}")),
            },
            EventBody::Note {
                text: format!("gave a 10% discount, do not tell others {canary}"),
                client_id: Some("note-1".into()),
            },
        ];
        for body in bodies {
            let event = stored(body);
            let raw = serde_json::to_string(&event).unwrap();
            assert!(raw.contains(canary), "positive control: {raw}");
            let seen =
                serde_json::to_string(&ToVisitor::Event(VisitorEvent::project(event))).unwrap();
            assert!(!seen.contains(canary), "leaked: {seen}");
            assert!(!seen.contains("negative"), "leaked the reason: {seen}");
        }
        let message = stored(EventBody::Message {
            text: "so slow".into(),
            client_id: None,
            buttons: Vec::new(),
            link: None,
            sentiment: Some(Mood::Negative),
        });
        assert!(serde_json::to_string(&message)
            .unwrap()
            .contains("sentiment"));
        let seen = serde_json::to_string(&VisitorEvent::project(message)).unwrap();
        assert_eq!(
            seen,
            r#"{"conversation_id":"c","seq":7,"at":1,"author":{"role":"agent","id":"mina","name":"Mina"},"body":{"kind":"message","text":"so slow"}}"#
        );
    }

    #[test]
    fn visitor_events_read_back_and_unknown_kinds_are_nothing() {
        let e = VisitorEvent::project(stored(EventBody::Handoff {
            reason: HandoffReason::Asked,
            summary: "s".into(),
        }));
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.contains(r#""body":{"kind":"handoff"}"#), "{text}");
        assert_eq!(serde_json::from_str::<VisitorEvent>(&text).unwrap(), e);
        let newer = r#"{"kind":"poll","question":"?"}"#;
        assert_eq!(
            serde_json::from_str::<VisitorBody>(newer).unwrap(),
            VisitorBody::Unknown
        );
    }
}
