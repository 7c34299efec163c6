//! `GET /api/visitors/{id}`: a visitor as agents see them beside a conversation — who they are
//! (a verified identity, or "anonymous") and their other conversations.
//!
//! Only what a signed identity token said is shown as who the visitor is (`crate::identity`);
//! the teams rule applies: an agent who does not serve the visitor's site gets `404`, as for an
//! unknown visitor.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use protocol::ConversationSummary;
use serde::Serialize;

use crate::access::Scope;
use crate::auth::SessionAgent;
use crate::http::AppError;
use crate::App;

/// What `GET /api/visitors/{id}` answers.
#[derive(Serialize)]
pub struct Profile {
    /// The visitor id.
    pub id: String,
    /// Site key.
    pub site: String,
    /// First seen (Unix ms).
    pub created_at: i64,
    /// Who the site's server says they are; absent for an anonymous visitor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// Their conversations, newest first (at most 50).
    pub conversations: Vec<ConversationSummary>,
}

/// A verified identity, as the last signed token gave it.
#[derive(Serialize)]
pub struct Identity {
    /// The site's user id (`sub`).
    pub user_id: String,
    /// Name, if the token had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Email, if the token had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Other facts the site vouched for.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// When the site last vouched for them (Unix ms).
    pub verified_at: i64,
}

/// `GET /api/visitors/{id}` (agent session): the profile, or `404 not_found` for a visitor
/// that does not exist or belongs to a site the agent does not serve.
pub async fn profile(
    State(app): State<Arc<App>>,
    SessionAgent(agent): SessionAgent,
    Path(id): Path<String>,
) -> Result<Json<Profile>, AppError> {
    let found = app
        .store
        .visitor_profile(&id)
        .await
        .map_err(|e| AppError::Internal(e.into()))?
        .filter(|p| Scope::of(&agent).covers(&p.site))
        .ok_or_else(|| AppError::NotFound("no such visitor".into()))?;
    let mut conversations = Vec::with_capacity(found.conversations.len());
    for c in &found.conversations {
        conversations.push(app.summary(c).await);
    }
    let identity = found.identity.map(|v| Identity {
        user_id: v.user_id,
        name: v.name,
        email: v.email,
        attributes: v.attributes,
        verified_at: found.verified_at.unwrap_or(found.created_at),
    });
    Ok(Json(Profile {
        id: found.id,
        site: found.site,
        created_at: found.created_at,
        identity,
        conversations,
    }))
}
