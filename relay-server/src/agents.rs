//! The console's agents page: admins add agents, disable and enable them, reset their
//! passwords, and set their role, the sites they serve (teams) and their own chat limit. Every
//! change is one store transaction with its audit line (`GET /api/admin/audit`).
//!
//! Who owns what: an agent listed in the config file is the file's ([`Managed::Config`]): its
//! name, password, role, sites and limit are set there at every start, and the console may
//! only disable and enable it (an admin can lock someone out at once, without a restart). One
//! created here, or the generated first `admin`, is the console's ([`Managed::Console`]).
//!
//! Rules owned elsewhere and used here: at least one enabled admin remains (the store's update
//! transaction, [`StoreError::LastAdmin`]); disabling or a new password ends the agent's
//! sessions and closes their sockets on every node ([`access::revoke`]); any other change
//! closes their sockets with [`protocol::CLOSE_ACCESS_CHANGED`] so the console reconnects as
//! the agent now is.
//!
//! Routes (session cookie, admins only; writes also need the same origin):
//! `GET /api/admin/agents`, `POST /api/admin/agents`, `PATCH /api/admin/agents/{id}`,
//! `POST /api/admin/agents/{id}/password`.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::access::{self, Revocation};
use crate::auth::AdminAgent;
use crate::http::AppError;
use crate::logsafe::Untrusted;
use crate::store::{
    AgentAudit, AgentChange, AgentRecord, Managed, NewAgent, StoreError, DISABLED_BY_CONFIG,
};
use crate::App;

/// Audit action: an agent was created.
pub const CREATE: &str = "agent_create";
/// Audit action: an agent's name, role, sites or limit changed.
pub const UPDATE: &str = "agent_update";
/// Audit action: an agent was disabled.
pub const DISABLE: &str = "agent_disable";
/// Audit action: an agent was enabled.
pub const ENABLE: &str = "agent_enable";
/// Audit action: an agent's password was set by an admin.
pub const PASSWORD: &str = "agent_password";

/// Shortest password an admin may set (NIST SP 800-63B asks at least 8; agents hold visitors'
/// data).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Most chats an agent's own limit may be.
pub const MAX_CHATS: u32 = 100;

/// One agent as the agents page shows it (never the password hash).
#[derive(Debug, Serialize)]
pub struct AgentView {
    /// Stable id.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Shown to visitors.
    pub display_name: String,
    /// May use the admin pages.
    pub admin: bool,
    /// Cannot sign in.
    pub disabled: bool,
    /// Who disabled them: `config` (removed from the file) or an admin's username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_by: Option<String>,
    /// `config` or `console`: where they are edited.
    pub managed_by: Managed,
    /// Sites served; `null`: every site.
    pub sites: Option<Vec<String>>,
    /// Own chat limit; `null`: the site's.
    pub max_chats: Option<u32>,
    /// Signed in on some node now.
    pub online: bool,
}

/// The ids of the agents online on any node, read once per response.
fn online(app: &App) -> std::collections::HashSet<String> {
    app.hub.agents_online().into_iter().map(|a| a.id).collect()
}

fn view(online: &std::collections::HashSet<String>, a: AgentRecord) -> AgentView {
    let online = online.contains(&a.id);
    AgentView {
        id: a.id,
        username: a.username,
        display_name: a.display_name,
        admin: a.admin,
        disabled: a.disabled,
        disabled_by: a.disabled_by,
        managed_by: a.managed_by,
        sites: a.sites,
        max_chats: a.max_chats,
        online,
    }
}

/// Body of `POST /api/admin/agents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// Login name: 2–32 of `a-z 0-9 . _ -`.
    pub username: String,
    /// Shown to visitors: 1–64 characters.
    pub display_name: String,
    /// At least [`MIN_PASSWORD_CHARS`] characters.
    pub password: String,
    /// Admin or not (default not).
    #[serde(default)]
    pub admin: bool,
    /// Sites served; absent or `null`: every site.
    #[serde(default)]
    pub sites: Option<Vec<String>>,
    /// Own chat limit 1–100; absent or `null`: the site's.
    #[serde(default)]
    pub max_chats: Option<u32>,
}

/// Body of `PATCH /api/admin/agents/{id}`: what is absent stays; `sites: null` means every
/// site and `max_chats: null` the site's limit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    /// New display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Admin or not.
    #[serde(default)]
    pub admin: Option<bool>,
    /// Disable (ends their sessions) or enable.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Sites served.
    #[serde(default, deserialize_with = "present")]
    pub sites: Option<Option<Vec<String>>>,
    /// Own chat limit.
    #[serde(default, deserialize_with = "present")]
    pub max_chats: Option<Option<u32>>,
}

/// Body of `POST /api/admin/agents/{id}/password`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    /// At least [`MIN_PASSWORD_CHARS`] characters.
    pub password: String,
}

/// A field that is present (even as `null`) is `Some`: tells "set to null" from "absent".
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The routes of this module (merged into the relay's router).
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/admin/agents", get(list).post(create))
        .route("/api/admin/agents/{id}", patch(update))
        .route("/api/admin/agents/{id}/password", post(set_password))
}

fn store_error(e: StoreError) -> AppError {
    match e {
        StoreError::UsernameTaken => {
            AppError::Conflict("username_taken", "another agent has this username".into())
        }
        StoreError::LastAdmin => AppError::Conflict(
            "last_admin",
            "the last enabled admin cannot be disabled or demoted: make another admin first".into(),
        ),
        StoreError::NoSuchAgent => AppError::NotFound("no such agent".into()),
        other => AppError::Internal(other.into()),
    }
}

/// Checks a login name for a new agent.
pub fn check_username(username: &str) -> Result<(), AppError> {
    let ok = (2..=32).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AppError::Invalid(
            "username must be 2-32 of a-z, 0-9, '.', '_' and '-'".into(),
        ))
    }
}

/// Checks a display name: 1–64 characters, not blank, no control characters.
pub fn check_display_name(name: &str) -> Result<(), AppError> {
    let chars = name.chars().count();
    if (1..=64).contains(&chars) && !name.trim().is_empty() && !name.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(AppError::Invalid(
            "display_name must be 1-64 characters, not blank, without control characters".into(),
        ))
    }
}

/// Checks a password an admin sets.
pub fn check_password(password: &str) -> Result<(), AppError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AppError::Invalid(format!(
            "password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > crate::login::MAX_PASSWORD_BYTES {
        return Err(AppError::Invalid(format!(
            "password must have at most {} bytes",
            crate::login::MAX_PASSWORD_BYTES
        )));
    }
    Ok(())
}

/// Checks a list of sites against the config: known keys, at least one, each once (sorted).
fn check_sites(app: &App, sites: Option<Vec<String>>) -> Result<Option<Vec<String>>, AppError> {
    let Some(sites) = sites else { return Ok(None) };
    if sites.is_empty() {
        return Err(AppError::Invalid(
            "sites must name at least one site (or be null: every site)".into(),
        ));
    }
    let mut unique = BTreeSet::new();
    for key in sites {
        if !app.sites.contains_key(&key) {
            return Err(AppError::Invalid(format!(
                "unknown site \"{}\" in sites",
                Untrusted(&key)
            )));
        }
        unique.insert(key);
    }
    Ok(Some(unique.into_iter().collect()))
}

fn check_max_chats(max: Option<u32>) -> Result<Option<u32>, AppError> {
    match max {
        Some(n) if !(1..=MAX_CHATS).contains(&n) => Err(AppError::Invalid(format!(
            "max_chats must be 1-{MAX_CHATS} (or null: the site's limit)"
        ))),
        other => Ok(other),
    }
}

/// Hashes off the async threads: argon2 takes tens of milliseconds and 19 MiB.
async fn hash(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || crate::auth::hash_password(&password))
        .await
        .map_err(|e| AppError::Internal(e.into()))?
        .map_err(AppError::Internal)
}

/// After a change: the queue here takes the new limits and sites, the other nodes re-read
/// them, and the agent's sockets close (ended sessions) or reconnect (anything else).
async fn changed(app: &App, agent_id: &str, sessions_ended: bool) -> Result<(), AppError> {
    let agents = app.store.agents().await.map_err(store_error)?;
    app.queue.set_agents(&agents);
    app.hub.publish_settings_changed();
    app.hub.publish_queue_changed();
    let revocation = if sessions_ended {
        Revocation::all(agent_id)
    } else {
        Revocation::changed(agent_id)
    };
    access::revoke(app, revocation);
    Ok(())
}

/// The agent with this id, or `404 not_found`.
async fn stored(app: &App, id: &str) -> Result<AgentRecord, AppError> {
    app.store
        .agent_by_id(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| AppError::NotFound("no such agent".into()))
}

/// `GET /api/admin/agents`: every agent, enabled or not, by username.
async fn list(
    State(app): State<Arc<App>>,
    _admin: AdminAgent,
) -> Result<Json<serde_json::Value>, AppError> {
    let online = online(&app);
    let agents: Vec<AgentView> = app
        .store
        .agents()
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|a| view(&online, a))
        .collect();
    Ok(Json(serde_json::json!({ "agents": agents })))
}

/// `POST /api/admin/agents`: creates a console-managed agent; `201` with the agent.
async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    AdminAgent(admin): AdminAgent,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Result<(axum::http::StatusCode, Json<AgentView>), AppError> {
    app.public.check_origin(&headers)?;
    let Json(body) = body.map_err(AppError::from_json)?;
    check_username(&body.username)?;
    check_display_name(&body.display_name)?;
    check_password(&body.password)?;
    let sites = check_sites(&app, body.sites)?;
    let max_chats = check_max_chats(body.max_chats)?;
    let new = NewAgent {
        username: body.username,
        display_name: body.display_name,
        password_hash: hash(body.password).await?,
        admin: body.admin,
        sites,
        max_chats,
    };
    let audit = AgentAudit {
        actor: admin.username.clone(),
        action: CREATE,
        detail: serde_json::json!({
            "username": new.username,
            "admin": new.admin,
            "sites": new.sites,
            "max_chats": new.max_chats,
        })
        .to_string(),
    };
    let record = app
        .store
        .create_agent(&new, &audit)
        .await
        .map_err(store_error)?;
    tracing::info!(username = %record.username, by = %admin.username, "agent created");
    changed(&app, &record.id, false).await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(view(&online(&app), record)),
    ))
}

/// `PATCH /api/admin/agents/{id}`: changes an agent; answers with the agent as now stored.
async fn update(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    AdminAgent(admin): AdminAgent,
    body: Result<Json<UpdateBody>, JsonRejection>,
) -> Result<Json<AgentView>, AppError> {
    app.public.check_origin(&headers)?;
    let Json(body) = body.map_err(AppError::from_json)?;
    let target = stored(&app, &id).await?;
    if target.managed_by == Managed::Config
        && (body.display_name.is_some()
            || body.admin.is_some()
            || body.sites.is_some()
            || body.max_chats.is_some())
    {
        return Err(AppError::Conflict(
            "managed_by_config",
            "this agent is listed in the config file: change their name, role, sites and limit there (here they can only be disabled or enabled)".into(),
        ));
    }
    if body.disabled == Some(false)
        && target.disabled
        && target.disabled_by.as_deref() == Some(DISABLED_BY_CONFIG)
    {
        return Err(AppError::Conflict(
            "managed_by_config",
            "this agent was removed from the config file: list them there again".into(),
        ));
    }
    if body.disabled == Some(true) && target.id == admin.id {
        return Err(AppError::Invalid(
            "you cannot disable yourself: ask another admin".into(),
        ));
    }
    if let Some(name) = &body.display_name {
        check_display_name(name)?;
    }
    let change = AgentChange {
        display_name: body.display_name,
        password_hash: None,
        admin: body.admin,
        disabled: body.disabled,
        sites: body.sites.map(|s| check_sites(&app, s)).transpose()?,
        max_chats: body.max_chats.map(check_max_chats).transpose()?,
    };
    let action = match change.disabled {
        Some(true) if !target.disabled => DISABLE,
        Some(false) if target.disabled => ENABLE,
        _ => UPDATE,
    };
    let audit = AgentAudit {
        actor: admin.username.clone(),
        action,
        detail: serde_json::json!({
            "username": target.username,
            "display_name": change.display_name,
            "admin": change.admin,
            "disabled": change.disabled,
            "sites": change.sites,
            "max_chats": change.max_chats,
        })
        .to_string(),
    };
    let (record, ended) = app
        .store
        .update_agent(&id, &change, Some(&audit))
        .await
        .map_err(store_error)?;
    tracing::info!(username = %record.username, by = %admin.username, action, "agent changed");
    changed(&app, &record.id, ended || record.disabled).await?;
    Ok(Json(view(&online(&app), record)))
}

/// `POST /api/admin/agents/{id}/password`: sets a console-managed agent's password and ends
/// their sessions.
async fn set_password(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    AdminAgent(admin): AdminAgent,
    body: Result<Json<PasswordBody>, JsonRejection>,
) -> Result<Json<AgentView>, AppError> {
    app.public.check_origin(&headers)?;
    let Json(body) = body.map_err(AppError::from_json)?;
    let target = stored(&app, &id).await?;
    if target.managed_by == Managed::Config {
        return Err(AppError::Conflict(
            "managed_by_config",
            "this agent's password is set in the config file".into(),
        ));
    }
    check_password(&body.password)?;
    let change = AgentChange {
        password_hash: Some(hash(body.password).await?),
        ..AgentChange::default()
    };
    let audit = AgentAudit {
        actor: admin.username.clone(),
        action: PASSWORD,
        detail: serde_json::json!({ "username": target.username }).to_string(),
    };
    let (record, _) = app
        .store
        .update_agent(&id, &change, Some(&audit))
        .await
        .map_err(store_error)?;
    tracing::info!(username = %record.username, by = %admin.username, "agent password set");
    // Every session ended, whether or not one was open: their sockets close everywhere.
    changed(&app, &record.id, true).await?;
    Ok(Json(view(&online(&app), record)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_passwords_are_checked() {
        assert!(check_username("mina.k").is_ok());
        for bad in ["m", "Mina", "mina k", "mina\nadmin", &"a".repeat(33)] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
        assert!(check_display_name("민아 K.").is_ok());
        for bad in ["", "   ", "a\u{7}b", &"a".repeat(65)] {
            assert!(check_display_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_password("correct horse battery").is_ok());
        assert!(check_password("short").is_err());
        assert!(check_password(&"x".repeat(2000)).is_err());
        assert!(check_max_chats(Some(0)).is_err() && check_max_chats(Some(101)).is_err());
        assert_eq!(check_max_chats(None).ok(), Some(None));
    }

    #[test]
    fn absent_and_null_differ_in_a_patch() {
        let absent: UpdateBody = serde_json::from_str("{}").expect("json");
        assert!(absent.sites.is_none() && absent.max_chats.is_none());
        let null: UpdateBody =
            serde_json::from_str(r#"{"sites":null,"max_chats":null}"#).expect("json");
        assert_eq!(null.sites, Some(None));
        assert_eq!(null.max_chats, Some(None));
        let set: UpdateBody = serde_json::from_str(r#"{"sites":["shop"]}"#).expect("json");
        assert_eq!(set.sites, Some(Some(vec!["shop".to_owned()])));
        assert!(serde_json::from_str::<UpdateBody>(r#"{"password":"x"}"#).is_err());
    }
}
