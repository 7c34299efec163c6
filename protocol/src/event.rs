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
        /// Quick replies offered under a bot message; a click sends the button's `text`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        buttons: Vec<QuickReply>,
        /// A page that answers in full (a bot answer's knowledge-base entry), same-site URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link: Option<String>,
        /// The tone of a visitor's message, scored by the relay when it stores the message and
        /// sent to agents only (a visitor's [`crate::VisitorEvent`] has no such field), so an
        /// agent sees an upset visitor at a glance. Absent on other authors' messages and on
        /// older events.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sentiment: Option<Mood>,
    },
    /// The conversation left the bot for the queue of people. Shown to both sides; agents read
    /// `summary` to pick up without asking the visitor to repeat themselves.
    Handoff {
        /// Why.
        reason: HandoffReason,
        /// One line: what the visitor asked, which entries the bot showed, the mood.
        summary: String,
    },
    /// An agent took the conversation (the author is that agent).
    Joined,
    /// An agent left the conversation without closing it.
    Left,
    /// The conversation was closed (the author says by whom).
    Closed,
    /// The co-browse consent life-cycle moved (see [`crate::cobrowse`]); the author says who.
    Cobrowse {
        /// Where it stands now.
        state: crate::cobrowse::CobrowseState,
    },
    /// The visitor rated the closed conversation (CSAT); the author is the visitor. At most one
    /// per conversation.
    Rating {
        /// 1 (bad) to 5 (great).
        score: u8,
        /// The visitor's optional words, plain text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// The assigned agent (the author) handed the conversation to another agent. `note` is for
    /// agents only (a visitor's [`crate::VisitorEvent`] has no such field), so visitors read a
    /// neutral "You are now talking to …".
    Transferred {
        /// The agent who has the conversation now.
        to: Author,
        /// Context for the new agent ("wants a refund, order 1234"); agent-only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// An internal note an agent wrote in the conversation, for agents only: a visitor's
    /// [`crate::VisitorEvent`] carries it as `internal`, without its text, so it never reaches a
    /// visitor's screen, replay or emailed transcript.
    Note {
        /// Plain text, at most [`crate::MAX_TEXT_BYTES`] bytes.
        text: String,
        /// The writer's client id, so the console can match the event with its pending note.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<ClientId>,
    },
    /// The assigned agent was gone longer than the relay's grace period: the conversation went
    /// back to the queue (author: the system) and will be offered to another agent.
    Requeued {
        /// The agent who had it.
        from: Author,
    },
    /// The relay emailed (or failed to email) an agent's reply and the transcript to the address
    /// a visitor left with an offline message. Written by the system; consoles show it to agents
    /// so a failed email is never silent.
    Email {
        /// The visitor's address.
        to: String,
        /// True when the mail server accepted the message.
        sent: bool,
        /// Why it was not sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A kind added by a later revision of the protocol. Never sent by this relay; receiving it
    /// lets an older client skip the event instead of failing to decode the whole frame.
    #[serde(other)]
    Unknown,
}

/// A quick-reply button.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuickReply {
    /// What the button says.
    pub label: String,
    /// What clicking it sends as the visitor's message.
    pub text: String,
}

/// The tone of a visitor's message (see `EventBody::Message::sentiment`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mood {
    /// Upset, angry, disappointed.
    Negative,
    /// Nothing notable either way.
    Neutral,
    /// Happy, thankful.
    Positive,
    /// A value added by a later revision: show nothing.
    #[serde(other)]
    Unknown,
}

/// Why a conversation was handed from the bot to people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffReason {
    /// The visitor asked for a person (button or words).
    Asked,
    /// The bot was not sure of its answer several times in a row.
    NotUnderstood,
    /// The visitor's message was strongly negative.
    Negative,
    /// The bot failed or timed out.
    BotFailed,
    /// A reason added by a later revision.
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

impl EventBody {
    /// A plain message body (no buttons, no link).
    pub fn message(text: impl Into<String>, client_id: Option<ClientId>) -> EventBody {
        EventBody::Message {
            text: text.into(),
            client_id,
            buttons: Vec::new(),
            link: None,
            sentiment: None,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentiment_is_additive() {
        let json = r#"{"kind":"message","text":"so slow!!","sentiment":"negative"}"#;
        let body: EventBody = serde_json::from_str(json).unwrap();
        assert!(matches!(
            &body,
            EventBody::Message {
                sentiment: Some(Mood::Negative),
                ..
            }
        ));
        assert_eq!(serde_json::to_string(&body).unwrap(), json);
        let newer: EventBody =
            serde_json::from_str(r#"{"kind":"message","text":"hi","sentiment":"furious"}"#)
                .unwrap();
        assert!(matches!(
            newer,
            EventBody::Message {
                sentiment: Some(Mood::Unknown),
                ..
            }
        ));
    }
}
