//! Co-browse on the relay: reading the consent life-cycle from the stored events, deciding who
//! may stream to whom, and bounding what one sharing visitor may send.
//!
//! The relay never looks inside the stream: a visitor's `cobrowse` frame carries JSON text the
//! widget produced *after* masking, and the relay only checks that the visitor is sharing, that
//! the pieces are well-numbered, and that the session stays within its bandwidth budget, then
//! hands it to the hub addressed to one agent. Nothing of the stream is stored or logged.
//!
//! Consent is derived from the conversation's stored `cobrowse` events rather than kept in
//! memory, so it survives reconnects, page loads, relay restarts and nodes: sharing is on when
//! the latest `cobrowse` event is `allowed`, no `closed` event follows it, and the agent who
//! requested it still has the conversation.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use protocol::{
    CobrowseState, ConversationId, ErrorCode, ErrorFrame, EventBody, ToAgent, ToVisitor,
};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;

use crate::config::Limits;
use crate::store::{ConversationRecord, Store, StoreResult};

/// How many of a conversation's latest events are read to find its consent state. A request
/// older than this many events counts as not given (the safe side).
const WINDOW: u64 = 500;

/// Most pieces one stream item may be split into (with 64 KiB frames, a few MB; the bandwidth
/// budget bounds it further).
pub const MAX_PIECES: u32 = 128;

/// The consent state of a conversation as its events tell it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consent {
    /// The latest `cobrowse` state (`stopped` if the conversation closed after it).
    pub state: CobrowseState,
    /// The agent who asked (the author of the `requested` event this state answers).
    pub agent_id: Option<String>,
}

impl Consent {
    /// The agent the visitor streams to, if sharing is on right now for a conversation whose
    /// assignee is `assignee`.
    pub fn sharing_with(&self, assignee: Option<&str>) -> Option<&str> {
        match (&self.state, self.agent_id.as_deref(), assignee) {
            (CobrowseState::Allowed, Some(agent), Some(assignee)) if agent == assignee => {
                Some(agent)
            }
            _ => None,
        }
    }

    /// Whether a request is waiting for the visitor's answer (from the current assignee).
    pub fn pending(&self, assignee: Option<&str>) -> bool {
        self.state == CobrowseState::Requested
            && assignee.is_some()
            && self.agent_id.as_deref() == assignee
    }
}

/// Reads the consent state from the conversation's latest events; `None` if co-browse was never
/// asked for (in the window).
pub async fn consent(
    store: &dyn Store,
    conversation: &ConversationRecord,
) -> StoreResult<Option<Consent>> {
    let from = conversation.last_seq.saturating_sub(WINDOW);
    let events = store
        .events_after(&conversation.id, from, WINDOW as i64)
        .await?;
    let mut closed_after = false;
    let mut found: Option<CobrowseState> = None;
    for event in events.iter().rev() {
        match (&event.body, found) {
            (EventBody::Closed, None) => closed_after = true,
            (EventBody::Cobrowse { state }, None) => {
                if *state == CobrowseState::Requested {
                    return Ok(Some(Consent {
                        state: if closed_after {
                            CobrowseState::Stopped
                        } else {
                            CobrowseState::Requested
                        },
                        agent_id: event.author.id.clone(),
                    }));
                }
                found = Some(*state);
            }
            (EventBody::Cobrowse { state }, Some(latest)) if *state == CobrowseState::Requested => {
                let state = if closed_after || latest == CobrowseState::Unknown {
                    CobrowseState::Stopped
                } else {
                    latest
                };
                return Ok(Some(Consent {
                    state,
                    agent_id: event.author.id.clone(),
                }));
            }
            _ => {}
        }
    }
    Ok(found.map(|state| Consent {
        state: if closed_after {
            CobrowseState::Stopped
        } else {
            state
        },
        agent_id: None,
    }))
}

/// The conversation and its consent state, read together; `None` if there is no such
/// conversation. What both socket kinds read before acting on a co-browse frame.
pub async fn load(
    store: &dyn Store,
    id: &ConversationId,
) -> StoreResult<Option<(ConversationRecord, Option<Consent>)>> {
    let Some(record) = store.conversation(id).await? else {
        return Ok(None);
    };
    let consent = consent(store, &record).await?;
    Ok(Some((record, consent)))
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

/// What a sharing visitor connection may still send: frames and bytes per second, with bursts
/// big enough for a snapshot. Built only while sharing, so idle connections do not carry it.
pub struct Budget {
    frames: DefaultDirectRateLimiter,
    bytes: DefaultDirectRateLimiter,
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
