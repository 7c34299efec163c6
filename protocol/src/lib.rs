//! The Parley wire protocol, version 1: every frame a visitor, an agent or the relay sends.
//!
//! This crate is shared by the widget (wasm32), the console (wasm32), the relay and the test and
//! load tools (native). It knows nothing of transport: it turns text into typed frames and back,
//! validates them, and keeps a client's view of a conversation ([`timeline::Timeline`]).
//! `PROTOCOL.md` at the repository root is the human-readable contract and must agree with it.
//!
//! Serialization is deterministic: struct fields are written in declaration order and optional
//! fields that are `None` are left out, so the same frame always produces the same bytes.

pub mod agent;
pub mod cobrowse;
pub mod codec;
pub mod consent;
pub mod context;
pub mod error;
pub mod event;
pub mod gaps;
pub mod hours;
pub mod ids;
pub mod timeline;
pub mod url;
pub mod visitor;

pub use agent::{
    AgentFrame, AgentInfo, AgentLoad, ConversationStatus, ConversationSummary, ToAgent,
};
pub use cobrowse::{CobrowseState, Highlight, HighlightTarget, NodeId};
pub use codec::{
    decode, encode, validate_rating, validate_text, ClientFrame, DecodeError, Frame, ServerFrame,
};
pub use consent::Consent;
pub use context::{PageContext, Viewport};
pub use error::{ErrorCode, ErrorFrame};
pub use event::{Author, Event, EventBody, HandoffReason, Mood, QuickReply, Role};
pub use gaps::{EntryMisses, GapReport, QuestionGroup};
pub use ids::{ClientId, ConversationId, Seq};
pub use visitor::{ToVisitor, VisitorBody, VisitorEvent, VisitorFrame};

/// The protocol version spoken by this crate. Sent in every `hello` and `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest chat message text, in bytes of UTF-8. Longer texts are refused with `too_large`.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

/// Largest rating comment, in bytes of UTF-8 (a sentence or two, not a second conversation).
pub const MAX_COMMENT_BYTES: usize = 2000;

/// Largest WebSocket message the relay reads from a client. A bigger one closes the socket with
/// code 1009 (message too big): the relay cannot parse it, so it cannot answer it with a typed error.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Close code sent when a frame exceeds [`MAX_FRAME_BYTES`] (RFC 6455 "message too big").
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Close code sent on graceful shutdown of a relay (RFC 6455 "going away"): reconnect elsewhere.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Close code of an agent socket whose session ended (logout, expiry, the agent disabled or
/// their password changed): sign in again; reconnecting with the same cookie is refused (401).
pub const CLOSE_SESSION_ENDED: u16 = 4401;

/// Close code of an agent socket whose agent an admin changed (sites served, role, name): the
/// session is still valid; reconnect at once to get `welcome` as the agent now is.
pub const CLOSE_ACCESS_CHANGED: u16 = 4403;

/// Close code of a visitor socket whose visitor an admin erased (PROTOCOL §13): everything
/// stored about them is gone; a client that reconnects with the old token becomes a new visitor.
pub const CLOSE_ERASED: u16 = 4410;

/// Close code of a visitor socket whose anonymous visitor was merged into a signed-in visitor
/// (another tab of the same browser proved who the person is, PROTOCOL §15): reconnect with the
/// same token, which now leads to that person's history.
pub const CLOSE_MOVED: u16 = 4409;

/// Close code sent when a socket stays silent past the idle timeout or a policy is violated
/// (RFC 6455 "policy violation").
pub const CLOSE_POLICY: u16 = 1008;
