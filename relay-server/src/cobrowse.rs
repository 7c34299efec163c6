//! Co-browse on the relay: reading the consent life-cycle from the stored events, deciding who
//! may stream to whom, and bounding what one sharing visitor may send.
//!
//! The relay never looks inside the stream: a visitor's `cobrowse` frame carries JSON text the
//! widget produced *after* masking, and the relay only checks that the visitor is sharing, that
//! the pieces are well-numbered, and that the session stays within its bandwidth budget, then
//! hands it to the hub addressed to one agent. Nothing of the stream is stored or logged.
//!
//! Consent is the one rule in `protocol::consent` folded over the conversation's stored events
//! (never a cache that could outlive a stop, a close, a transfer, a requeue or a take), so it
//! survives reconnects, page loads, relay restarts and nodes. A visitor connection folds every
//! event it delivers onto the state it read at `hello`, and forwards stream frames only while the
//! rule says it shares; an agent connection writes a stream frame only if the conversation's
//! assignee, read from the store at delivery, is that agent ([`deliverable`]).

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use protocol::{Consent, ConversationId, ErrorCode, ErrorFrame, ToAgent, ToVisitor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};

use crate::config::Limits;
use crate::store::{ConversationRecord, Store, StoreResult};

/// How many of a conversation's latest events are read to find its consent state. A request
/// older than this many events counts as not given (the safe side: the fold starts from
/// [`Consent::Off`], and an answer without its request shares nothing).
const WINDOW: u64 = 500;

/// Most pieces one stream item may be split into (with 64 KiB frames, a few MB; the bandwidth
/// budget bounds it further).
pub const MAX_PIECES: u32 = 128;

/// Where consent stands, by the one rule in `protocol::consent`, and the seq it was read up to
/// (the caller folds later events onto it with [`Consent::apply`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    /// The state.
    pub consent: Consent,
    /// The seq of the last event folded in.
    pub upto: u64,
}

/// Reads the consent state from the conversation's latest events.
pub async fn consent(store: &dyn Store, conversation: &ConversationRecord) -> StoreResult<Known> {
    let from = conversation.last_seq.saturating_sub(WINDOW);
    let events = store
        .events_after(&conversation.id, from, WINDOW as i64)
        .await?;
    Ok(Known {
        consent: Consent::of(&events),
        upto: events.last().map_or(from, |e| e.seq),
    })
}

/// The conversation and its consent state, read together; `None` if there is no such
/// conversation. What both socket kinds read before acting on a co-browse frame.
pub async fn load(
    store: &dyn Store,
    id: &ConversationId,
) -> StoreResult<Option<(ConversationRecord, Known)>> {
    let Some(record) = store.conversation(id).await? else {
        return Ok(None);
    };
    let known = consent(store, &record).await?;
    Ok(Some((record, known)))
}

/// Whether a stream frame addressed to `agent` for `conversation` may be written on that
/// agent's socket now: the conversation's assignee, read from the store at delivery (not from a
/// cache that a transfer, a requeue or a take could have outdated), is that agent. The visitor's
/// side already forwards only while the consent rule says it shares with `agent`; this is the
/// second lock for frames that were on their way when the conversation changed hands.
pub async fn deliverable(
    store: &dyn Store,
    conversation: &ConversationId,
    agent: &str,
) -> StoreResult<bool> {
    Ok(store.conversation(conversation).await?.is_some_and(|c| {
        c.status != protocol::ConversationStatus::Closed && c.assignee_id.as_deref() == Some(agent)
    }))
}

/// A co-browse frame on its way through the hub (and the bus) to one side of a conversation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Relayed {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Who gets it.
    pub to: Recipient,
}

/// The receiving side of a [`Relayed`] frame, with the frame as that side reads it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Recipient {
    /// Only the connections of this agent that opened the conversation.
    Agent {
        /// The agent's id.
        agent_id: String,
        /// The frame.
        frame: ToAgent,
    },
    /// The visitor's connections (tabs) listening to the conversation.
    Visitor {
        /// The frame.
        frame: ToVisitor,
    },
}

/// What a share may still send: frames and bytes per second, with bursts big enough for a
/// snapshot. One per share (conversation and agent), whatever number of tabs the visitor has
/// open ([`Budgets`]); built only while sharing, so idle connections do not carry it.
pub struct Budget {
    frames: DefaultDirectRateLimiter,
    bytes: DefaultDirectRateLimiter,
}

/// The budgets of the shares going on through this node, so that every tab (connection) of one
/// share draws from the same one: a visitor opening ten tabs does not get ten times the
/// bandwidth. Held weakly: a share's budget goes with the last connection using it.
#[derive(Default)]
pub struct Budgets(std::sync::Mutex<HashMap<(ConversationId, String), Weak<Budget>>>);

impl Budgets {
    /// The budget of the share of `conversation` with `agent`: the one its other tabs use, or
    /// a full one.
    pub fn of(&self, conversation: &ConversationId, agent: &str, limits: &Limits) -> Arc<Budget> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (conversation.clone(), agent.to_owned());
        if let Some(budget) = map.get(&key).and_then(Weak::upgrade) {
            return budget;
        }
        // Shares are few and this runs once per share: forget the ended ones here.
        map.retain(|_, b| b.strong_count() > 0);
        let budget = Arc::new(Budget::new(limits));
        map.insert(key, Arc::downgrade(&budget));
        budget
    }

    /// Shares with a live budget (for tests).
    pub fn live(&self) -> usize {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.values().filter(|b| b.strong_count() > 0).count()
    }
}

fn quota(per_second: u32, burst: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

impl Budget {
    /// A full budget per the relay's limits.
    pub fn new(limits: &Limits) -> Self {
        Self {
            frames: RateLimiter::direct(quota(
                limits.cobrowse_frames_per_second,
                limits.cobrowse_frames_burst,
            )),
            bytes: RateLimiter::direct(quota(
                limits.cobrowse_bytes_per_second,
                limits.cobrowse_bytes_burst,
            )),
        }
    }

    /// Takes one frame of `len` bytes from the budget, or says how long to wait.
    pub fn take(&self, len: usize) -> Result<(), ErrorFrame> {
        let now = DefaultClock::default().now();
        let refused = |wait_ms: u64| {
            let mut e = ErrorFrame::new(
                ErrorCode::RateLimited,
                "co-browse bandwidth budget exceeded; this item was not forwarded: send a fresh \
                 snapshot after retry_after_ms",
            );
            e.retry_after_ms = Some(wait_ms.max(1));
            e
        };
        if let Err(not_until) = self.frames.check() {
            return Err(refused(not_until.wait_time_from(now).as_millis() as u64));
        }
        let cells =
            NonZeroU32::new(u32::try_from(len).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        match self.bytes.check_n(cells) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(refused(not_until.wait_time_from(now).as_millis() as u64)),
            Err(_) => Err(refused(1000)),
        }
    }
}

/// Checks the numbering of a stream piece.
pub fn check_piece(data: &str, index: u32, count: u32) -> Result<(), ErrorFrame> {
    if data.is_empty() {
        return Err(ErrorFrame::new(
            ErrorCode::Invalid,
            "co-browse data is empty",
        ));
    }
    if count == 0 || count > MAX_PIECES || index >= count {
        return Err(ErrorFrame::new(
            ErrorCode::Invalid,
            format!("co-browse piece {index} of {count}: need index < count <= {MAX_PIECES}"),
        ));
    }
    Ok(())
}

/// Checks a highlight an agent or visitor sends.
pub fn check_highlight(h: &protocol::Highlight) -> Result<(), ErrorFrame> {
    if let Some(note) = &h.note {
        if note.chars().count() > protocol::cobrowse::MAX_NOTE_CHARS {
            return Err(ErrorFrame::new(
                ErrorCode::TooLarge,
                format!(
                    "highlight notes are at most {} characters",
                    protocol::cobrowse::MAX_NOTE_CHARS
                ),
            ));
        }
    }
    if let protocol::HighlightTarget::Rect(r) = h.target {
        if r.w < 0 || r.h < 0 {
            return Err(ErrorFrame::new(
                ErrorCode::Invalid,
                "highlight rectangle has a negative size",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tab_of_a_share_draws_from_one_budget() {
        let limits = Limits {
            cobrowse_frames_per_second: 1,
            cobrowse_frames_burst: 2,
            ..Limits::default()
        };
        let budgets = Budgets::default();
        let c = ConversationId("c1".into());
        let tab1 = budgets.of(&c, "mina", &limits);
        let tab2 = budgets.of(&c, "mina", &limits);
        assert!(
            tab1.take(10).is_ok() && tab2.take(10).is_ok(),
            "the burst, shared"
        );
        assert!(
            tab1.take(10).is_err() && tab2.take(10).is_err(),
            "spent for both tabs"
        );
        // Positive control: another agent's share (after a transfer) starts full.
        assert!(budgets.of(&c, "joon", &limits).take(10).is_ok());
        assert_eq!(budgets.live(), 1, "joon's ended with its last holder");
        drop((tab1, tab2));
        assert_eq!(
            budgets.live(),
            0,
            "the share's budget goes with its last tab"
        );
    }
}
