//! Identifiers that cross the wire.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Position of an event in its conversation: starts at 1 and grows by exactly 1 per event.
/// A client that has seen seq `n` has seen every event `1..=n` of that conversation.
pub type Seq = u64;

/// Opaque conversation identifier chosen by the relay.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConversationId(pub String);

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ConversationId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// Identifier a client picks for each message it sends, so that a retry of the same send is
/// recognised and acknowledged again instead of stored twice (like Matrix transaction ids).
/// 1 to 64 characters from `[A-Za-z0-9_-]`; unique per sender and conversation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(pub String);

impl ClientId {
    /// Longest accepted client id.
    pub const MAX_LEN: usize = 64;

    /// Whether this id has an accepted length and alphabet.
    pub fn is_valid(&self) -> bool {
        let s = self.0.as_str();
        !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ClientId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}
