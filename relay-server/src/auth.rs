//! Agent authentication: argon2 password hashes, cookie sessions, login throttling, and the
//! same-origin check that makes the cookie safe against cross-site requests.
//!
//! CSRF: the cookie is `SameSite=Strict` (browsers do not attach it to cross-site requests) and,
//! as a second lock, every state-changing request and the agent socket upgrade must carry either
//! no `Origin` (non-browser clients) or the relay's own.

use std::num::NonZeroU32;
use std::sync::Arc;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use governor::{Quota, RateLimiter};
use protocol::AgentInfo;
use serde::Deserialize;

use crate::http::AppError;
use crate::store::{now_ms, AgentRecord};
use crate::{token, App};

/// Name of the session cookie.
pub const COOKIE: &str = "parley_session";
/// Session lifetime.
const SESSION_MS: i64 = 12 * 60 * 60 * 1000;

/// Login attempts per username, shared by all connections.
pub type LoginLimiter = governor::DefaultKeyedRateLimiter<String>;

/// A limiter allowing `per_minute` attempts per username.
pub fn login_limiter(per_minute: u32) -> LoginLimiter {
    RateLimiter::keyed(Quota::per_minute(
        NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN),
    ))
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// What others see of an agent.
pub fn info(a: &AgentRecord) -> AgentInfo {
    AgentInfo {
        id: a.id.clone(),
        username: a.username.clone(),
        display_name: a.display_name.clone(),
    }
}

/// Refuses a request whose `Origin` is present and is not this relay's (`Host`).
pub fn check_same_origin(headers: &HeaderMap) -> Result<(), AppError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split("://").nth(1).unwrap_or("");
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(AppError::OriginNotAllowed)
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The logged-in agent of a request; rejects with 401.
pub struct CurrentAgent(pub AgentInfo);

impl FromRequestParts<Arc<App>> for CurrentAgent {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, AppError> {
        let cookie = session_cookie(&parts.headers).ok_or(AppError::Unauthorized)?;
        let agent = app
            .store
            .session_agent(&token::hash(&cookie), now_ms())
            .await
            .map_err(|e| AppError::Internal(e.into()))?
            .ok_or(AppError::Unauthorized)?;
        Ok(Self(info(&agent)))
    }
}

/// The logged-in agent of a request, as stored (with the admin flag); rejects with 401.
pub struct SessionAgent(pub AgentRecord);

impl FromRequestParts<Arc<App>> for SessionAgent {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, AppError> {
        let cookie = session_cookie(&parts.headers).ok_or(AppError::Unauthorized)?;
        app.store
            .session_agent(&token::hash(&cookie), now_ms())
            .await
            .map_err(|e| AppError::Internal(e.into()))?
            .map(Self)
            .ok_or(AppError::Unauthorized)
    }
}

/// A logged-in admin agent; rejects with 401 without a session and 403 for other agents.
pub struct AdminAgent(pub AgentRecord);

impl FromRequestParts<Arc<App>> for AdminAgent {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, AppError> {
        let SessionAgent(agent) = SessionAgent::from_request_parts(parts, app).await?;
        if agent.admin {
            Ok(Self(agent))
        } else {
            Err(AppError::Forbidden)
        }
    }
}

/// Body of `POST /api/login`.
#[derive(Deserialize)]
pub struct Login {
    username: String,
    password: String,
}

/// `POST /api/login`.
pub async fn login(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(body): Json<Login>,
) -> Result<Response, AppError> {
    check_same_origin(&headers)?;
    let key = body.username.to_lowercase();
    if let Err(not_until) = app.login_limiter.check_key(&key) {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        return Err(AppError::RateLimited(wait.as_millis() as u64));
    }
    let agent = app
        .store
        .agent_by_username(&body.username)
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    // Verify against a real hash even for unknown users, so timing does not reveal usernames.
    let phc = agent
        .as_ref()
        .map(|a| a.password_hash.clone())
        .unwrap_or_else(|| app.dummy_hash.clone());
    let password = body.password;
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &phc))
        .await
        .unwrap_or(false);
    let agent = match agent {
        Some(a) if ok => a,
        _ => {
            tracing::info!(username = %body.username, "login refused");
            return Err(AppError::BadCredentials);
        }
    };
    let secret = token::generate();
    app.store
        .create_session(&token::hash(&secret), &agent.id, now_ms() + SESSION_MS)
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    let cookie = format!(
        "{COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_MS / 1000
    );
    let mut response = Json(serde_json::json!({ "agent": info(&agent) })).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// `POST /api/logout`.
pub async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, AppError> {
    check_same_origin(&headers)?;
    if let Some(secret) = session_cookie(&headers) {
        app.store
            .delete_session(&token::hash(&secret))
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
    }
    let mut response = Json(serde_json::json!({ "ok": true })).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("parley_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    Ok(response)
}

/// `GET /api/me`: the agent, plus `"admin": true` for agents who may use the admin pages.
pub async fn me(SessionAgent(agent): SessionAgent) -> Json<serde_json::Value> {
    let mut body = serde_json::to_value(info(&agent)).unwrap_or_default();
    if agent.admin {
        body["admin"] = true.into();
    }
    Json(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash_password("correct horse").expect("hash");
        let b = hash_password("correct horse").expect("hash");
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("wrong", &a));
    }

    #[test]
    fn same_origin_rule() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(check_same_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(check_same_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(check_same_origin(&h).is_err());
    }
}
