//! Customer satisfaction (CSAT): the numbers agents read. The rating itself arrives on the
//! visitor socket (`rate`, handled in [`crate::visitor`]) and is stored with its conversation;
//! this module serves `GET /api/ratings`, the per-agent mean and count, to logged-in agents.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use protocol::AgentInfo;
use serde::Serialize;

use crate::auth::CurrentAgent;
use crate::http::AppError;
use crate::App;

/// One agent's line in the numbers.
#[derive(Debug, Serialize)]
pub struct AgentNumbers {
    /// The agent assigned when the rated conversations closed; absent for conversations no
    /// agent had (closed while with the bot or in the queue).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentInfo>,
    /// Rated conversations.
    pub count: i64,
    /// Mean score, rounded to two decimals (1.00–5.00).
    pub average: f64,
}

/// The body of `GET /api/ratings`.
#[derive(Debug, Serialize)]
pub struct Numbers {
    /// Per agent, most rated first.
    pub agents: Vec<AgentNumbers>,
}

/// `GET /api/ratings`: per-agent rating count and mean. Needs the agent session cookie.
pub async fn ratings(
    State(app): State<Arc<App>>,
    _agent: CurrentAgent,
) -> Result<Json<Numbers>, AppError> {
    let rows = app
        .store
        .agent_ratings()
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    let mut agents = Vec::with_capacity(rows.len());
    for row in rows {
        let agent = match &row.agent_id {
            Some(id) => app.agent_info(id).await,
            None => None,
        };
        agents.push(AgentNumbers {
            agent,
            count: row.count,
            average: (row.average * 100.0).round() / 100.0,
        });
    }
    Ok(Json(Numbers { agents }))
}
