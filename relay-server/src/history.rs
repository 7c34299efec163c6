//! `GET /api/conversations`: closed conversations, page by page, for agents. The agent socket's
//! `welcome` carries the open conversations and only the most recent closed ones
//! (`agent::CLOSED_IN_WELCOME`), so it stays small however long the history; older ones are
//! read here.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use protocol::ConversationSummary;
use serde::{Deserialize, Serialize};

use crate::access::Scope;
use crate::auth::SessionAgent;
use crate::http::AppError;
use crate::App;

/// Largest page.
const MAX_PAGE: i64 = 100;

/// Query of `GET /api/conversations`.
#[derive(Deserialize)]
pub struct Page {
    /// `updated_at` of the last conversation of the previous page (absent: the newest).
    before: Option<i64>,
    /// Its id, to break ties (conversations changed in the same millisecond).
    before_id: Option<String>,
    /// Page size, 1–100 (default 50).
    limit: Option<i64>,
}

/// A page of closed conversations, most recently changed first.
#[derive(Serialize)]
pub struct Conversations {
    /// The page.
    pub conversations: Vec<ConversationSummary>,
    /// Whether older ones exist past this page (ask again with the last one's cursor).
    pub more: bool,
}

/// `GET /api/conversations?before=MS&before_id=ID&limit=N`: closed conversations of the sites
/// the agent serves (session cookie). `400 invalid` for a limit outside 1–100 or a `before_id` without `before`.
pub async fn closed(
    State(app): State<Arc<App>>,
    SessionAgent(agent): SessionAgent,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Conversations>, AppError> {
    let Query(page) = page.map_err(|e| AppError::Invalid(e.body_text()))?;
    let limit = page.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AppError::Invalid(format!("limit must be 1-{MAX_PAGE}")));
    }
    let cursor = match (page.before, page.before_id.as_deref()) {
        (Some(at), id) => Some((at, id.unwrap_or(""))),
        (None, None) => None,
        (None, Some(_)) => return Err(AppError::Invalid("before_id needs before".into())),
    };
    // One more than asked: tells whether there is a next page.
    let mut rows = app
        .store
        .closed_conversations(Scope::of(&agent).sites(), cursor, limit + 1)
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let mut conversations = Vec::with_capacity(rows.len());
    for c in &rows {
        conversations.push(app.summary(c).await);
    }
    Ok(Json(Conversations {
        conversations,
        more,
    }))
}
