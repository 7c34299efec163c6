//! Typed errors the relay sends instead of dropping a frame silently.

use serde::{Deserialize, Serialize};

use crate::ids::ClientId;

/// Why a frame was refused. Clients branch on this, never on the human-readable message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON or lacks a `type`.
    Malformed,
    /// The `type` is not one this side accepts.
    UnknownType,
    /// The frame parsed but a field is out of range (empty text, bad client id...).
    Invalid,
    /// The text is longer than [`crate::MAX_TEXT_BYTES`].
    TooLarge,
    /// Too many frames too fast; retry after `retry_after_ms`.
    RateLimited,
    /// The first frame must be `hello`.
    HelloRequired,
    /// The client speaks a protocol version this relay does not.
    UnsupportedVersion,
    /// The conversation does not exist or is not visible to this client.
    NotFound,
    /// The action is not allowed (e.g. replying to a conversation another agent took).
    Forbidden,
    /// The conversation is closed.
    Closed,
    /// The relay failed; the frame was not stored. Retrying with the same client id is safe.
    Internal,
    /// The `hello`'s identity token was refused (`reason` says why); the visitor goes on
    /// anonymously.
    IdentityInvalid,
    /// The site requires a signed identity and this `hello` had none that held: the socket
    /// closes (1008).
    IdentityRequired,
}

/// An error frame. `client_id` names the send it answers, when it answers one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// Human-readable detail, in English, for logs and developers.
    pub message: String,
    /// The client id of the refused send, if the refused frame carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientId>,
    /// With `rate_limited`: how long to wait before retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// With `identity_invalid` and `identity_required`: one word for why (`expired`,
    /// `bad_signature`, `wrong_site`, `malformed`, `too_long`, `lifetime`, `not_yet_valid`,
    /// `missing_claim`, `bad_claim`, `not_enabled`, `absent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ErrorFrame {
    /// An error with no client id and no retry hint.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            client_id: None,
            retry_after_ms: None,
            reason: None,
        }
    }

    /// Adds the one-word reason.
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Names the send this error answers.
    pub fn for_client(mut self, client_id: Option<ClientId>) -> Self {
        self.client_id = client_id;
        self
    }
}
