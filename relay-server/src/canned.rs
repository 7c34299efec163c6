//! Canned replies: text an agent inserts in the console's composer by typing `/` and a few
//! letters of its shortcut. Shared ones (for one site or every site) are written by admins; an
//! agent's own are theirs alone. Variables (`{visitor.name}`, `{agent.name}`) are filled in by
//! the console when it inserts one.
//!
//! Who sees what is decided here, from the session's agent: shared replies of the sites the
//! agent serves (`access::Scope`) plus their own. Routes (session cookie; writes need the same
//! origin): `GET /api/canned`, `POST /api/canned`, `PUT /api/canned/{id}`,
//! `DELETE /api/canned/{id}`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::access::Scope;
use crate::auth::SessionAgent;
use crate::http::AppError;
use crate::store::{new_id, now_ms, AgentRecord, CannedReply, StoreError};
use crate::App;

/// Longest shortcut, in bytes.
pub const MAX_SHORTCUT: usize = 32;
/// Longest canned text, in bytes (a chat message's limit).
pub const MAX_TEXT: usize = protocol::MAX_TEXT_BYTES;

/// The replies an agent may use, as `GET /api/canned` lists them.
#[derive(Serialize)]
pub struct CannedList {
    /// Shared ones of the agent's sites, then their own, by shortcut.
    pub replies: Vec<CannedView>,
}

/// One canned reply as the console sees it.
#[derive(Serialize)]
pub struct CannedView {
    /// Stable id.
    pub id: String,
    /// The site it is for; absent: every site.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Shared with every agent of the site (an admin's), rather than the agent's own.
    pub shared: bool,
    /// What follows `/`.
    pub shortcut: String,
    /// The text.
    pub text: String,
}

/// Body of `POST /api/canned` and `PUT /api/canned/{id}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CannedInput {
    /// 1–32 of `[a-z0-9_-]`.
    shortcut: String,
    /// 1 byte to 16 KiB of plain text.
    text: String,
    /// A site key the agent serves; absent: every site.
    #[serde(default)]
    site: Option<String>,
    /// Shared with every agent (admins only); default: the agent's own.
    #[serde(default)]
    shared: bool,
}

/// The routes of this module.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/canned", get(list).post(create))
        .route("/api/canned/{id}", put(update).delete(remove))
}

fn view(r: CannedReply) -> CannedView {
    CannedView {
        shared: r.owner_id.is_none(),
        id: r.id,
        site: r.site,
        shortcut: r.shortcut,
        text: r.text,
    }
}

/// Whether `agent` may use `r`: their own, or shared for a site they serve (or every site).
fn usable(agent: &AgentRecord, r: &CannedReply) -> bool {
    match &r.owner_id {
        Some(owner) => owner == &agent.id,
        None => r
            .site
            .as_deref()
            .is_none_or(|site| Scope::of(agent).covers(site)),
    }
}

/// Whether `agent` may change or delete `r`: their own; shared ones for admins.
fn editable(agent: &AgentRecord, r: &CannedReply) -> bool {
    match &r.owner_id {
        Some(owner) => owner == &agent.id,
        None => agent.admin,
    }
}

async fn list(
    State(app): State<Arc<App>>,
    SessionAgent(agent): SessionAgent,
) -> Result<Json<CannedList>, AppError> {
    let all = app
        .store
        .canned_replies()
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    let mut replies: Vec<CannedView> = all
        .into_iter()
        .filter(|r| usable(&agent, r))
        .map(view)
        .collect();
    // Shared first, each group by shortcut (the store sorts by shortcut).
    replies.sort_by_key(|r| !r.shared);
    Ok(Json(CannedList { replies }))
}

/// Checks the input and builds the row (id, owner and audit fields from the caller).
fn checked(
    app: &App,
    agent: &AgentRecord,
    input: CannedInput,
    id: String,
) -> Result<CannedReply, AppError> {
    let shortcut = input.shortcut.trim().to_ascii_lowercase();
    if shortcut.is_empty()
        || shortcut.len() > MAX_SHORTCUT
        || !shortcut
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(AppError::Invalid(format!(
            "shortcut must be 1-{MAX_SHORTCUT} of [a-z0-9_-]"
        )));
    }
    if input.text.trim().is_empty() || input.text.len() > MAX_TEXT {
        return Err(AppError::Invalid(format!(
            "text must be 1-{MAX_TEXT} bytes"
        )));
    }
    if let Some(site) = &input.site {
        if app.site(site).is_none() || !Scope::of(agent).covers(site) {
            return Err(AppError::Invalid(format!("unknown site {site:?}")));
        }
    }
    if input.shared && !agent.admin {
        return Err(AppError::Forbidden);
    }
    Ok(CannedReply {
        id,
        site: input.site,
        owner_id: (!input.shared).then(|| agent.id.clone()),
        shortcut,
        text: input.text,
        updated_by: agent.username.clone(),
        updated_at: now_ms(),
    })
}

async fn save(app: &App, reply: &CannedReply) -> Result<(), AppError> {
    match app.store.save_canned(reply).await {
        Ok(()) => Ok(()),
        Err(StoreError::ShortcutTaken) => Err(AppError::Conflict(
            "shortcut_taken",
            format!("/{} exists already", reply.shortcut),
        )),
        Err(e) => Err(AppError::Internal(e.into())),
    }
}

async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    SessionAgent(agent): SessionAgent,
    body: Result<Json<CannedInput>, JsonRejection>,
) -> Result<(StatusCode, Json<CannedView>), AppError> {
    app.public.check_origin(&headers)?;
    let Json(input) = body.map_err(|e| AppError::Invalid(e.body_text()))?;
    let reply = checked(&app, &agent, input, new_id())?;
    save(&app, &reply).await?;
    Ok((StatusCode::CREATED, Json(view(reply))))
}

/// The stored reply `id` if `agent` may edit it; `404` otherwise (another agent's own reply
/// is none of their business).
async fn editable_reply(app: &App, agent: &AgentRecord, id: &str) -> Result<CannedReply, AppError> {
    let all = app
        .store
        .canned_replies()
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    let found = all
        .into_iter()
        .find(|r| r.id == id && usable(agent, r))
        .ok_or_else(|| AppError::NotFound("no such canned reply".into()))?;
    if !editable(agent, &found) {
        return Err(AppError::Forbidden);
    }
    Ok(found)
}

async fn update(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    SessionAgent(agent): SessionAgent,
    Path(id): Path<String>,
    body: Result<Json<CannedInput>, JsonRejection>,
) -> Result<Json<CannedView>, AppError> {
    app.public.check_origin(&headers)?;
    let Json(input) = body.map_err(|e| AppError::Invalid(e.body_text()))?;
    let old = editable_reply(&app, &agent, &id).await?;
    if input.shared != old.owner_id.is_none() {
        return Err(AppError::Invalid(
            "a reply stays shared or own: delete it and create another".into(),
        ));
    }
    let mut reply = checked(&app, &agent, input, id)?;
    reply.owner_id = old.owner_id;
    save(&app, &reply).await?;
    Ok(Json(view(reply)))
}

async fn remove(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    SessionAgent(agent): SessionAgent,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    app.public.check_origin(&headers)?;
    editable_reply(&app, &agent, &id).await?;
    app.store
        .delete_canned(&id)
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    Ok(StatusCode::NO_CONTENT)
}
