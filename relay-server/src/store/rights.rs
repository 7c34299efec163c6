//! What the store keeps about one visitor, as the data-rights code reads and erases it
//! (issue #18): the records [`super::Store::visitor_data`], [`super::Store::erase_visitor`],
//! [`super::Store::expire_closed`] and [`super::Store::audit_log`] answer with.
//!
//! Every table that refers to a visitor (read from both migration folders): `visitors` (the row,
//! its first token hash and its verified identity), `visitor_tokens` (one token hash per
//! browser), `conversations` (page context, preview, offline email, rating and its
//! comment), `events` (messages and every other event), `knowledge_gaps` (the visitor's
//! questions and page URL) and `queue_waits` (an agent's wait figure, keyed by the
//! conversation). Agents' `sessions` and `site_settings` hold nothing of visitors. A new table
//! that refers to a visitor must be added to both engines' erase and export, and to the canary
//! tests in `tests/tests/store_conformance.rs` that prove nothing is left.

use protocol::Event;
use serde::Serialize;

use super::{ConversationRecord, Gap};

/// Everything stored about one visitor.
#[derive(Clone, Debug)]
pub struct VisitorData {
    /// Visitor id.
    pub id: String,
    /// Site key.
    pub site: String,
    /// First seen (Unix ms).
    pub created_at: i64,
    /// What the last verified identity said (user id, name, email, attributes), if any.
    pub identity: Option<crate::identity::Verified>,
    /// How many browsers' tokens lead to them.
    pub browsers: i64,
    /// Their conversations, oldest first.
    pub conversations: Vec<ConversationData>,
}

/// One conversation of a visitor, with all that hangs off it.
#[derive(Clone, Debug)]
pub struct ConversationData {
    /// The row (status, page context, preview, offline email, rating).
    pub record: ConversationRecord,
    /// The rating's comment, if any.
    pub rating_comment: Option<String>,
    /// When it was rated (Unix ms).
    pub rated_at: Option<i64>,
    /// Every event, oldest first.
    pub events: Vec<Event>,
    /// Knowledge-gap rows made from the visitor's questions.
    pub gaps: Vec<Gap>,
}

/// What an erasure or a retention pass deleted, in rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    /// The site the rows belonged to.
    pub site: String,
    /// Conversations.
    pub conversations: u64,
    /// Events (messages and the rest).
    pub events: u64,
    /// Knowledge-gap rows.
    pub gaps: u64,
}

/// One line of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// When (Unix ms).
    pub at: i64,
    /// Who: an admin's username, or `retention` for the background job.
    pub actor: String,
    /// `erase_visitor` or `retention`.
    pub action: String,
    /// The visitor id erased, or the site key a retention pass ran on.
    pub subject: String,
    /// What was deleted: [`Erased`] as JSON.
    pub detail: String,
}

/// The audit action of an erasure.
pub const ERASE_VISITOR: &str = "erase_visitor";
/// The audit action of a retention pass (and its actor).
pub const RETENTION: &str = "retention";

/// [`Erased`] as the audit row's `detail`.
pub(crate) fn detail(erased: &Erased) -> String {
    serde_json::to_string(erased).unwrap_or_else(|_| "{}".into())
}
