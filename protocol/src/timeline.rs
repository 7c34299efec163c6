//! A client's view of one conversation: events merged by seq, and sends still waiting for an ack.
//!
//! Used by the widget, the console and the test and load tools, so that every client handles
//! replays, duplicates and gaps the same way.

use crate::event::Event;
use crate::ids::{ClientId, ConversationId, Seq};
use crate::visitor::VisitorEvent;

/// An event a timeline can hold: the stored [`Event`] (agents, tools) or a visitor's
/// [`VisitorEvent`] (the widget).
pub trait Sequenced {
    /// The conversation it belongs to.
    fn conversation(&self) -> &ConversationId;
    /// Its seq.
    fn seq(&self) -> Seq;
}

impl Sequenced for Event {
    fn conversation(&self) -> &ConversationId {
        &self.conversation_id
    }
    fn seq(&self) -> Seq {
        self.seq
    }
}

impl Sequenced for VisitorEvent {
    fn conversation(&self) -> &ConversationId {
        &self.conversation_id
    }
    fn seq(&self) -> Seq {
        self.seq
    }
}

/// What [`Timeline::apply`] did with an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The event was the next one and was added.
    Appended,
    /// The event was already held (a replay overlap, or a second tab's copy): ignored.
    Duplicate,
    /// Events are missing between what is held and this one: reconnect with `last_seq` to
    /// have the relay replay them. The event was not added.
    Gap {
        /// The seq that was expected.
        expected: Seq,
        /// The seq that arrived.
        got: Seq,
    },
}

/// Events of one conversation, contiguous from seq 1 (or from the first event held).
#[derive(Clone, Debug)]
pub struct Timeline<E = Event> {
    conversation_id: Option<ConversationId>,
    events: Vec<E>,
}

impl<E> Default for Timeline<E> {
    fn default() -> Self {
        Self {
            conversation_id: None,
            events: Vec::new(),
        }
    }
}

impl<E: Sequenced> Timeline<E> {
    /// An empty timeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// The conversation held, if any.
    pub fn conversation_id(&self) -> Option<&ConversationId> {
        self.conversation_id.as_ref()
    }

    /// Seq of the newest event held (0 when none).
    pub fn last_seq(&self) -> Seq {
        self.events.last().map_or(0, Sequenced::seq)
    }

    /// The events, in seq order.
    pub fn events(&self) -> &[E] {
        &self.events
    }

    /// Forgets everything (after `welcome` says `recovered: false`).
    pub fn reset(&mut self) {
        self.conversation_id = None;
        self.events.clear();
    }

    /// Adds an event if it is the next one. An event of another conversation replaces the
    /// timeline (the visitor's conversation was closed and a new one started).
    pub fn apply(&mut self, event: E) -> Applied {
        if self.conversation_id.as_ref() != Some(event.conversation()) {
            self.conversation_id = Some(event.conversation().clone());
            self.events.clear();
        }
        let expected = self.last_seq() + 1;
        if event.seq() < expected {
            return Applied::Duplicate;
        }
        // The first event held may start after 1 (history paged or trimmed); after that, +1 only.
        if event.seq() > expected && !self.events.is_empty() {
            return Applied::Gap {
                expected,
                got: event.seq(),
            };
        }
        self.events.push(event);
        Applied::Appended
    }
}

/// A message sent but not yet acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// Its idempotency key.
    pub client_id: ClientId,
    /// Its text.
    pub text: String,
}

/// Sends waiting for their ack, in the order they were made. Resent on every reconnect: the
/// relay's idempotency makes that safe.
#[derive(Clone, Debug, Default)]
pub struct Outbox {
    pending: Vec<Pending>,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a send.
    pub fn push(&mut self, client_id: ClientId, text: String) {
        self.pending.push(Pending { client_id, text });
    }

    /// Removes the send with this client id (acked, or refused for good). Returns it if held.
    pub fn settle(&mut self, client_id: &ClientId) -> Option<Pending> {
        let i = self
            .pending
            .iter()
            .position(|p| &p.client_id == client_id)?;
        Some(self.pending.remove(i))
    }

    /// The sends still waiting.
    pub fn pending(&self) -> &[Pending] {
        &self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Author, EventBody};

    fn ev(conv: &str, seq: Seq) -> Event {
        Event {
            conversation_id: ConversationId::from(conv),
            seq,
            at: 0,
            author: Author::system(),
            body: EventBody::message(format!("m{seq}"), None),
        }
    }

    #[test]
    fn appends_in_order_and_ignores_duplicates() {
        let mut t: Timeline = Timeline::new();
        assert_eq!(t.apply(ev("a", 1)), Applied::Appended);
        assert_eq!(t.apply(ev("a", 2)), Applied::Appended);
        assert_eq!(t.apply(ev("a", 2)), Applied::Duplicate);
        assert_eq!(t.apply(ev("a", 1)), Applied::Duplicate);
        assert_eq!(t.last_seq(), 2);
    }

    #[test]
    fn reports_gaps_without_adding() {
        let mut t: Timeline = Timeline::new();
        t.apply(ev("a", 1));
        assert_eq!(
            t.apply(ev("a", 4)),
            Applied::Gap {
                expected: 2,
                got: 4
            }
        );
        assert_eq!(t.last_seq(), 1);
    }

    #[test]
    fn new_conversation_replaces_old() {
        let mut t: Timeline = Timeline::new();
        t.apply(ev("a", 1));
        t.apply(ev("a", 2));
        assert_eq!(t.apply(ev("b", 1)), Applied::Appended);
        assert_eq!(t.events().len(), 1);
    }

    #[test]
    fn outbox_settles_by_client_id() {
        let mut o = Outbox::new();
        o.push(ClientId::from("x"), "one".into());
        o.push(ClientId::from("y"), "two".into());
        assert!(o.settle(&ClientId::from("x")).is_some());
        assert!(o.settle(&ClientId::from("x")).is_none());
        assert_eq!(o.pending().len(), 1);
    }
}
