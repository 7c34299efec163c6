//! The knowledge-gap report (`GET /api/gaps`): what the bot could not answer, grouped, so a site
//! manager sees what to add to the knowledge base. Shared by the relay (which builds it) and the
//! console (which shows it); not a socket frame.

use serde::{Deserialize, Serialize};

use crate::ids::ConversationId;

/// The whole report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapReport {
    /// The oldest time (Unix ms) the report covers.
    pub since: i64,
    /// How many questions the bot could not answer in that time (the sum of the groups' counts).
    pub unanswered: u32,
    /// Unanswered questions grouped by similarity, the biggest group first.
    pub questions: Vec<QuestionGroup>,
    /// Entries the bot showed right before the visitor asked for a person, most often first.
    pub entries: Vec<EntryMisses>,
}

/// Similar questions the bot could not answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionGroup {
    /// How many times a question of this group was asked.
    pub count: u32,
    /// Distinct wordings, newest first (at most a few): the first one names the group.
    pub examples: Vec<String>,
    /// Site keys the questions came from.
    pub sites: Vec<String>,
    /// Distinct pages the visitors were on, newest first (at most a few).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<String>,
    /// When a question of this group was last asked (Unix ms).
    pub latest_at: i64,
    /// Conversations to read for context, newest first (at most a few).
    pub conversations: Vec<ConversationId>,
}

/// An entry that was shown and then followed by a hand-off: it did not help.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryMisses {
    /// Site key of the knowledge base.
    pub site: String,
    /// The entry's id in the knowledge base.
    pub entry_id: String,
    /// The entry's title when it was shown.
    pub title: String,
    /// How many hand-offs followed it.
    pub count: u32,
    /// Distinct questions it was shown for, newest first (at most a few).
    pub questions: Vec<String>,
    /// When it last happened (Unix ms).
    pub latest_at: i64,
}
