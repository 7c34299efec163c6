//! The one co-browse consent rule: who may see a visitor's page, decided from a conversation's
//! events alone.
//!
//! The relay (on every stream frame it forwards and every one it delivers), the widget (it
//! streams only while this says so) and the console (it shows the mirror only while this says
//! so) all call [`Consent::apply`] over the same events, so the rule cannot drift between them.
//! It is a fold: events are applied in seq order, from the conversation's first event or from any
//! point where the state is known.
//!
//! The rule, as what must not happen:
//! - nobody sees the page unless the visitor answered `allowed` to a request *of that agent*
//!   and nothing ended it since;
//! - a `stopped` or `denied` answer, a close, a transfer, a requeue, an agent leaving, or another
//!   agent taking the conversation ends it, whether or not a `stopped` event follows;
//! - a new request replaces the old one: the visitor must answer again.
//!
//! The relay also requires the agent to be the conversation's assignee when it forwards (the
//! stored record, read at delivery): the events say the same thing, the record is a second lock.

use crate::cobrowse::CobrowseState;
use crate::event::{Event, EventBody, Role};
use crate::visitor::{VisitorBody, VisitorEvent};

/// Where consent stands for one conversation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Consent {
    /// Nobody may see the page (never asked, denied, stopped, or ended by a change of hands).
    #[default]
    Off,
    /// This agent asked; the visitor has not answered yet.
    Asked {
        /// The asking agent's id.
        agent: String,
    },
    /// The visitor shares the page with this agent.
    Sharing {
        /// The agent's id.
        agent: String,
    },
}

/// What one event means for consent, whatever side's projection of it is at hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// An agent asked to see the page.
    Requested {
        /// The agent's id (absent on a malformed event: treated as nobody).
        agent: Option<&'a str>,
    },
    /// The visitor allowed the pending request.
    Allowed,
    /// Sharing (or the request) ended: denied, stopped, a state a later revision added, the
    /// conversation closed, transferred, requeued, or its agent left.
    Ended,
    /// An agent took the conversation (`joined`): ends sharing with anyone else.
    Joined {
        /// The agent's id.
        agent: Option<&'a str>,
    },
    /// Changes nothing (messages, ratings, hand-offs, …).
    Nothing,
}

impl Step<'_> {
    fn cobrowse(state: CobrowseState, agent: Option<&str>) -> Step<'_> {
        match state {
            CobrowseState::Requested => Step::Requested { agent },
            CobrowseState::Allowed => Step::Allowed,
            CobrowseState::Denied | CobrowseState::Stopped | CobrowseState::Unknown => Step::Ended,
        }
    }
}

/// An event the consent rule can read: the stored [`Event`] (relay, console) and the visitor's
/// projection [`VisitorEvent`] (widget).
pub trait ConsentEvent {
    /// What this event means for consent.
    fn step(&self) -> Step<'_>;
}

impl ConsentEvent for Event {
    fn step(&self) -> Step<'_> {
        let agent = (self.author.role == Role::Agent)
            .then_some(self.author.id.as_deref())
            .flatten();
        match &self.body {
            EventBody::Cobrowse { state } => Step::cobrowse(*state, agent),
            EventBody::Closed
            | EventBody::Transferred { .. }
            | EventBody::Requeued { .. }
            | EventBody::Left => Step::Ended,
            EventBody::Joined => Step::Joined { agent },
            EventBody::Message { .. }
            | EventBody::Handoff { .. }
            | EventBody::Rating { .. }
            | EventBody::Email { .. }
            | EventBody::Note { .. }
            | EventBody::Unknown => Step::Nothing,
        }
    }
}

impl ConsentEvent for VisitorEvent {
    fn step(&self) -> Step<'_> {
        let agent = (self.author.role == Role::Agent)
            .then_some(self.author.id.as_deref())
            .flatten();
        match &self.body {
            VisitorBody::Cobrowse { state } => Step::cobrowse(*state, agent),
            VisitorBody::Closed
            | VisitorBody::Transferred { .. }
            | VisitorBody::Requeued { .. }
            | VisitorBody::Left => Step::Ended,
            VisitorBody::Joined => Step::Joined { agent },
            VisitorBody::Message { .. }
            | VisitorBody::Handoff
            | VisitorBody::Rating { .. }
            | VisitorBody::Internal
            | VisitorBody::Unknown => Step::Nothing,
        }
    }
}

impl Consent {
    /// The state after `events`, in seq order, starting from nothing asked.
    pub fn of<'a, E: ConsentEvent + 'a>(events: impl IntoIterator<Item = &'a E>) -> Consent {
        let mut consent = Consent::Off;
        for e in events {
            consent.apply(e);
        }
        consent
    }

    /// Moves the state past one event (the next in seq order).
    pub fn apply(&mut self, event: &impl ConsentEvent) {
        self.step(event.step());
    }

    /// Moves the state by one [`Step`].
    pub fn step(&mut self, step: Step<'_>) {
        *self = match (std::mem::take(self), step) {
            (_, Step::Requested { agent: Some(agent) }) => Consent::Asked {
                agent: agent.to_owned(),
            },
            (_, Step::Requested { agent: None }) => Consent::Off,
            (Consent::Asked { agent }, Step::Allowed) => Consent::Sharing { agent },
            (Consent::Sharing { agent }, Step::Allowed) => Consent::Sharing { agent },
            (Consent::Off, Step::Allowed) => Consent::Off,
            (_, Step::Ended) => Consent::Off,
            (current, Step::Joined { agent }) => match current.agent() {
                Some(mine) if agent == Some(mine) => current,
                _ => Consent::Off,
            },
            (current, Step::Nothing) => current,
        };
    }

    /// The agent the page is shared with right now, if any.
    pub fn sharing_with(&self) -> Option<&str> {
        match self {
            Consent::Sharing { agent } => Some(agent),
            _ => None,
        }
    }

    /// The agent whose request waits for the visitor's answer, if any.
    pub fn asked_by(&self) -> Option<&str> {
        match self {
            Consent::Asked { agent } => Some(agent),
            _ => None,
        }
    }

    /// The agent concerned (asking or shared with).
    pub fn agent(&self) -> Option<&str> {
        match self {
            Consent::Asked { agent } | Consent::Sharing { agent } => Some(agent),
            Consent::Off => None,
        }
    }

    /// Whether `agent` may see the page now, given the conversation's current `assignee` as the
    /// store has it: sharing is on, with this agent, and the agent still has the conversation.
    pub fn may_see(&self, agent: &str, assignee: Option<&str>) -> bool {
        self.sharing_with() == Some(agent) && assignee == Some(agent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Author;
    use crate::ids::ConversationId;

    fn ev(seq: u64, role: Role, id: Option<&str>, body: EventBody) -> Event {
        Event {
            conversation_id: ConversationId::from("c"),
            seq,
            at: 0,
            author: Author {
                role,
                id: id.map(str::to_owned),
                name: None,
            },
            body,
        }
    }

    fn cob(seq: u64, role: Role, id: &str, state: CobrowseState) -> Event {
        ev(seq, role, Some(id), EventBody::Cobrowse { state })
    }

    fn shared_with_mina() -> Vec<Event> {
        vec![
            ev(1, Role::Agent, Some("mina"), EventBody::Joined),
            cob(2, Role::Agent, "mina", CobrowseState::Requested),
            cob(3, Role::Visitor, "v", CobrowseState::Allowed),
        ]
    }

    #[test]
    fn allowed_request_shares_with_the_asking_agent_only() {
        let c = Consent::of(&shared_with_mina());
        assert_eq!(c.sharing_with(), Some("mina"));
        assert!(c.may_see("mina", Some("mina")));
        assert!(!c.may_see("joon", Some("mina")));
        assert!(
            !c.may_see("mina", Some("joon")),
            "the record's assignee is a second lock"
        );
    }

    #[test]
    fn pending_request_shares_nothing() {
        let events = &shared_with_mina()[..2];
        let c = Consent::of(events);
        assert_eq!(c.asked_by(), Some("mina"));
        assert_eq!(c.sharing_with(), None);
    }

    #[test]
    fn every_change_of_hands_or_end_stops_sharing() {
        let joon = Author {
            role: Role::Agent,
            id: Some("joon".into()),
            name: None,
        };
        let enders = [
            ev(4, Role::System, None, EventBody::Closed),
            ev(
                4,
                Role::Agent,
                Some("mina"),
                EventBody::Transferred {
                    to: joon.clone(),
                    note: None,
                },
            ),
            ev(4, Role::System, None, EventBody::Requeued { from: joon }),
            ev(4, Role::Agent, Some("mina"), EventBody::Left),
            ev(4, Role::Agent, Some("joon"), EventBody::Joined),
            cob(4, Role::Visitor, "v", CobrowseState::Stopped),
            cob(4, Role::Agent, "mina", CobrowseState::Stopped),
            cob(4, Role::Visitor, "v", CobrowseState::Denied),
            cob(4, Role::Visitor, "v", CobrowseState::Unknown),
        ];
        for end in enders {
            let mut events = shared_with_mina();
            events.push(end.clone());
            assert_eq!(Consent::of(&events), Consent::Off, "{:?}", end.body);
        }
    }

    #[test]
    fn nothing_else_changes_it_and_a_rejoin_by_the_same_agent_keeps_it() {
        let mut events = shared_with_mina();
        events.push(ev(
            4,
            Role::Visitor,
            Some("v"),
            EventBody::message("hi", None),
        ));
        events.push(ev(5, Role::Agent, Some("mina"), EventBody::Joined));
        assert_eq!(Consent::of(&events).sharing_with(), Some("mina"));
    }

    #[test]
    fn an_answer_without_a_request_or_a_request_without_an_agent_shares_nothing() {
        let events = [cob(1, Role::Visitor, "v", CobrowseState::Allowed)];
        assert_eq!(Consent::of(&events), Consent::Off);
        let events = [
            ev(
                1,
                Role::Agent,
                None,
                EventBody::Cobrowse {
                    state: CobrowseState::Requested,
                },
            ),
            cob(2, Role::Visitor, "v", CobrowseState::Allowed),
        ];
        assert_eq!(Consent::of(&events), Consent::Off);
        // A "request" authored by the visitor is nobody's request.
        let events = [
            cob(1, Role::Visitor, "v", CobrowseState::Requested),
            cob(2, Role::Visitor, "v", CobrowseState::Allowed),
        ];
        assert_eq!(Consent::of(&events), Consent::Off);
    }

    #[test]
    fn a_new_request_needs_a_new_answer() {
        let mut events = shared_with_mina();
        events.push(ev(4, Role::Agent, Some("joon"), EventBody::Joined));
        events.push(cob(5, Role::Agent, "joon", CobrowseState::Requested));
        assert_eq!(Consent::of(&events).asked_by(), Some("joon"));
        events.push(cob(6, Role::Visitor, "v", CobrowseState::Allowed));
        assert_eq!(Consent::of(&events).sharing_with(), Some("joon"));
    }

    #[test]
    fn the_visitor_projection_folds_the_same() {
        let mut events = shared_with_mina();
        events.push(ev(
            4,
            Role::Agent,
            Some("mina"),
            EventBody::Transferred {
                to: Author {
                    role: Role::Agent,
                    id: Some("joon".into()),
                    name: None,
                },
                note: Some("refund".into()),
            },
        ));
        for n in 1..=events.len() {
            let agent_side = Consent::of(&events[..n]);
            let projected: Vec<VisitorEvent> = events[..n]
                .iter()
                .cloned()
                .map(VisitorEvent::project)
                .collect();
            assert_eq!(Consent::of(&projected), agent_side, "after {n} events");
        }
    }
}
