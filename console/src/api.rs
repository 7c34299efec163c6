//! The console's HTTP calls to the relay: log in, who am I, log out, the rating numbers, the
//! knowledge-gap report
//! (`/api/*`, same origin, the session cookie travels by itself).

use gloo_net::http::{Request, Response};
use protocol::{AgentInfo, GapReport};
use serde::{Deserialize, Serialize};

use crate::format::login_error;

#[derive(Serialize)]
struct LoginBody<'a> {
    username: &'a str,
    password: &'a str,
}

#[derive(Deserialize)]
struct LoginOk {
    agent: AgentInfo,
}

/// The body of a refused request; only the retry hint of a 429 matters here.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    retry_after_ms: Option<u64>,
}

/// `POST /api/login`. `Err` is the sentence to show under the form.
pub async fn login(username: &str, password: &str) -> Result<AgentInfo, String> {
    let request = Request::post("/api/login")
        .json(&LoginBody { username, password })
        .map_err(|e| format!("Cannot send the login: {e}"))?;
    let response = request.send().await.map_err(|_| login_error(0, None))?;
    if response.ok() {
        return parse::<LoginOk>(response).await.map(|ok| ok.agent);
    }
    let status = response.status();
    let body = response.json::<ErrorBody>().await.unwrap_or_default();
    Err(login_error(status, body.retry_after_ms))
}

/// Why [`me`] found no agent.
#[derive(Debug, PartialEq, Eq)]
pub enum MeError {
    /// 401: not logged in (or the session ended).
    Unauthorized,
    /// Network failure or unexpected answer: the session may still be valid.
    Unavailable,
}

/// `GET /api/me`: the logged-in agent.
pub async fn me() -> Result<AgentInfo, MeError> {
    let response = Request::get("/api/me")
        .send()
        .await
        .map_err(|_| MeError::Unavailable)?;
    match response.status() {
        200 => parse::<AgentInfo>(response)
            .await
            .map_err(|_| MeError::Unavailable),
        401 | 403 => Err(MeError::Unauthorized),
        _ => Err(MeError::Unavailable),
    }
}

/// `GET /api/gaps`: the knowledge-gap report of every site (the last 30 days). `Err` is the
/// sentence to show instead of the report.
pub async fn gaps() -> Result<GapReport, String> {
    let response = Request::get("/api/gaps")
        .send()
        .await
        .map_err(|_| "Cannot reach the server.".to_owned())?;
    match response.status() {
        200 => parse::<GapReport>(response).await,
        401 => Err("Your session ended: log in again.".to_owned()),
        status => Err(format!("The server could not build the report ({status}).")),
    }
}

/// `POST /api/logout`. Errors are ignored: the console forgets the session either way.
pub async fn logout() {
    let _ = Request::post("/api/logout").send().await;
}

/// One agent's line of `GET /api/ratings`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct AgentNumbers {
    /// The agent; absent for conversations no agent had.
    #[serde(default)]
    pub agent: Option<AgentInfo>,
    /// Rated conversations.
    pub count: i64,
    /// Mean score (1–5).
    pub average: f64,
}

#[derive(Deserialize)]
struct Numbers {
    agents: Vec<AgentNumbers>,
}

/// `GET /api/ratings`: rating count and mean per agent. `Err` is the sentence to show.
pub async fn ratings() -> Result<Vec<AgentNumbers>, String> {
    let response = Request::get("/api/ratings")
        .send()
        .await
        .map_err(|_| "Cannot reach the server.".to_owned())?;
    if !response.ok() {
        return Err(format!("The server answered {}.", response.status()));
    }
    parse::<Numbers>(response).await.map(|n| n.agents)
}

/// A page of `GET /api/conversations`.
#[derive(Deserialize)]
pub struct ClosedPage {
    /// Closed conversations, most recently changed first.
    pub conversations: Vec<protocol::ConversationSummary>,
    /// Whether older ones exist.
    pub more: bool,
}

/// `GET /api/conversations`: the closed conversations older than `before` (`updated_at`, id).
pub async fn older_closed(before: (i64, String)) -> Result<ClosedPage, String> {
    let (at, id) = before;
    let url = format!("/api/conversations?limit=50&before={at}&before_id={id}");
    let response = Request::get(&url)
        .send()
        .await
        .map_err(|_| "Cannot reach the server.".to_owned())?;
    if !response.ok() {
        return Err(format!("The server answered {}.", response.status()));
    }
    parse::<ClosedPage>(response).await
}

/// `GET /api/visitors/{id}`: who the visitor is and their conversations.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct VisitorProfile {
    /// Who the site's server says they are; absent for an anonymous visitor.
    #[serde(default)]
    pub identity: Option<VerifiedIdentity>,
    /// Their conversations, newest first.
    pub conversations: Vec<protocol::ConversationSummary>,
}

/// A visitor's verified identity (from a token the site signed).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct VerifiedIdentity {
    /// The site's user id.
    pub user_id: String,
    /// Name, if the site gave one.
    #[serde(default)]
    pub name: Option<String>,
    /// Email, if the site gave one.
    #[serde(default)]
    pub email: Option<String>,
    /// Other facts the site vouched for (plan, account, …).
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, serde_json::Value>,
}

/// `GET /api/visitors/{id}`. `Err` is the sentence to show.
pub async fn visitor(id: &str) -> Result<VisitorProfile, String> {
    let response = Request::get(&format!("/api/visitors/{id}"))
        .send()
        .await
        .map_err(|_| "Cannot reach the server.".to_owned())?;
    if !response.ok() {
        return Err(format!("The server answered {}.", response.status()));
    }
    parse::<VisitorProfile>(response).await
}

async fn parse<T: for<'de> Deserialize<'de>>(response: Response) -> Result<T, String> {
    response
        .json::<T>()
        .await
        .map_err(|e| format!("Unexpected answer from the server: {e}"))
}

/// `GET /api/me`'s admin flag: whether to offer the routing page (the relay checks again on
/// every admin call, so a wrong answer here only hides or shows a button).
pub async fn is_admin() -> bool {
    #[derive(Deserialize)]
    struct Me {
        #[serde(default)]
        admin: bool,
    }
    match Request::get("/api/me").send().await {
        Ok(r) if r.ok() => r.json::<Me>().await.map(|m| m.admin).unwrap_or(false),
        _ => false,
    }
}

/// A site's routing settings, as `/api/admin/sites` shows and takes them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteSettings {
    /// Site key (read-only).
    #[serde(default, skip_serializing)]
    pub key: String,
    /// Site name (read-only).
    #[serde(default, skip_serializing)]
    pub name: String,
    /// `bot_first` or `agents_first`.
    pub routing: String,
    /// Business hours; `None`: always open.
    #[serde(default)]
    pub hours: Option<Hours>,
    /// Chats one agent may hold at once; `None`: no limit.
    #[serde(default)]
    pub max_chats_per_agent: Option<i64>,
    /// Whether `bot_first` is possible (read-only).
    #[serde(default, skip_serializing)]
    pub has_kb: bool,
    /// People can answer now (read-only).
    #[serde(default, skip_serializing)]
    pub available: bool,
    /// Who saved last (read-only).
    #[serde(default, skip_serializing)]
    pub updated_by: Option<String>,
}

/// Business hours, in the shape the relay's admin API reads and writes.
pub use protocol::hours::HoursSpec as Hours;

#[derive(Deserialize)]
struct Sites {
    sites: Vec<SiteSettings>,
}

#[derive(Deserialize, Default)]
struct Refusal {
    #[serde(default)]
    message: String,
}

async fn refusal(response: Response) -> String {
    let status = response.status();
    let body = response.json::<Refusal>().await.unwrap_or_default();
    match status {
        403 => "Only admins can do this.".to_owned(),
        _ if !body.message.is_empty() => body.message,
        _ => format!("The relay refused (HTTP {status})."),
    }
}

/// `GET /api/admin/sites`.
pub async fn admin_sites() -> Result<Vec<SiteSettings>, String> {
    let response = Request::get("/api/admin/sites")
        .send()
        .await
        .map_err(|_| "The relay is not reachable.".to_owned())?;
    if !response.ok() {
        return Err(refusal(response).await);
    }
    parse::<Sites>(response).await.map(|s| s.sites)
}

/// `PUT /api/admin/sites/{key}`: the settings now in force, or why they were refused.
pub async fn save_site(settings: &SiteSettings) -> Result<SiteSettings, String> {
    let response = Request::put(&format!("/api/admin/sites/{}", settings.key))
        .json(settings)
        .map_err(|e| format!("Cannot send: {e}"))?
        .send()
        .await
        .map_err(|_| "The relay is not reachable.".to_owned())?;
    if !response.ok() {
        return Err(refusal(response).await);
    }
    parse::<SiteSettings>(response).await
}

/// An agent as the agents page shows it (`/api/admin/agents`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct AgentAccount {
    /// Stable id.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Shown to visitors.
    pub display_name: String,
    /// May use the admin pages.
    #[serde(default)]
    pub admin: bool,
    /// Cannot sign in.
    #[serde(default)]
    pub disabled: bool,
    /// Who disabled them.
    #[serde(default)]
    pub disabled_by: Option<String>,
    /// `config` (edited in the config file) or `console`.
    pub managed_by: String,
    /// Sites served; `None`: every site.
    #[serde(default)]
    pub sites: Option<Vec<String>>,
    /// Own chat limit; `None`: the site's.
    #[serde(default)]
    pub max_chats: Option<u32>,
    /// Signed in now.
    #[serde(default)]
    pub online: bool,
}

impl AgentAccount {
    /// The config file owns this agent: the console may only disable and enable them.
    pub fn from_config(&self) -> bool {
        self.managed_by == "config"
    }
}

#[derive(Deserialize)]
struct Accounts {
    agents: Vec<AgentAccount>,
}

async fn send_json(
    request: gloo_net::http::RequestBuilder,
    body: &serde_json::Value,
) -> Result<AgentAccount, String> {
    let response = request
        .json(body)
        .map_err(|e| format!("Cannot send: {e}"))?
        .send()
        .await
        .map_err(|_| "The relay is not reachable.".to_owned())?;
    if !response.ok() {
        return Err(refusal(response).await);
    }
    parse::<AgentAccount>(response).await
}

/// A canned reply (`GET /api/canned`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct CannedReply {
    /// Stable id.
    pub id: String,
    /// The site it is for; absent: every site.
    #[serde(default)]
    pub site: Option<String>,
    /// Shared (an admin's) rather than the agent's own.
    pub shared: bool,
    /// What follows `/`.
    pub shortcut: String,
    /// The text, with `{visitor.name}` and `{agent.name}` to fill in.
    pub text: String,
}

#[derive(Deserialize)]
struct CannedList {
    replies: Vec<CannedReply>,
}

/// `GET /api/canned`: the shared replies of the agent's sites and their own.
pub async fn canned() -> Result<Vec<CannedReply>, String> {
    let response = Request::get("/api/canned")
        .send()
        .await
        .map_err(|_| "The relay is not reachable.".to_owned())?;
    if !response.ok() {
        return Err(refusal(response).await);
    }
    parse::<CannedList>(response).await.map(|l| l.replies)
}

/// `POST /api/canned` with `{shortcut, text, shared}`.
pub async fn create_canned(body: &serde_json::Value) -> Result<(), String> {
    let response = Request::post("/api/canned")
        .json(body)
        .map_err(|e| format!("Cannot send: {e}"))?
        .send()
        .await
        .map_err(|_| "The relay is not reachable.".to_owned())?;
    if !response.ok() {
        return Err(refusal(response).await);
    }
    Ok(())
}

/// `DELETE /api/canned/{id}`.
pub async fn delete_canned(id: &str) -> Result<(), String> {
    let response = Request::delete(&format!("/api/canned/{id}"))
        .send()
        .await
        .map_err(|_| "The relay is not reachable.".to_owned())?;
    if !response.ok() {
        return Err(refusal(response).await);
    }
    Ok(())
}

/// `GET /api/admin/agents`.
pub async fn admin_agents() -> Result<Vec<AgentAccount>, String> {
    let response = Request::get("/api/admin/agents")
        .send()
        .await
        .map_err(|_| "The relay is not reachable.".to_owned())?;
    if !response.ok() {
        return Err(refusal(response).await);
    }
    parse::<Accounts>(response).await.map(|a| a.agents)
}

/// `POST /api/admin/agents`: the new agent, or why it was refused.
pub async fn create_agent(body: &serde_json::Value) -> Result<AgentAccount, String> {
    send_json(Request::post("/api/admin/agents"), body).await
}

/// `PATCH /api/admin/agents/{id}` with the fields to change.
pub async fn update_agent(id: &str, patch: &serde_json::Value) -> Result<AgentAccount, String> {
    send_json(Request::patch(&format!("/api/admin/agents/{id}")), patch).await
}

/// `POST /api/admin/agents/{id}/password`.
pub async fn set_agent_password(id: &str, password: &str) -> Result<AgentAccount, String> {
    let body = serde_json::json!({ "password": password });
    send_json(
        Request::post(&format!("/api/admin/agents/{id}/password")),
        &body,
    )
    .await
}
