//! Agent authentication: argon2 password hashes, cookie sessions and the same-origin check that
//! makes the cookie safe against cross-site requests. Logging in (throttling, bounded hashing)
//! is `login`.
//!
//! CSRF: the cookie is `SameSite=Strict` (browsers do not attach it to cross-site requests) and,
//! as a second lock, every state-changing request and the agent socket upgrade must carry either
//! no `Origin` (non-browser clients) or the relay's own.

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
use protocol::AgentInfo;

use crate::http::AppError;
use crate::store::{now_ms, AgentRecord};
use crate::{token, App};

/// Name of the session cookie.
pub const COOKIE: &str = "parley_session";
/// Session lifetime.
pub const SESSION_MS: i64 = 12 * 60 * 60 * 1000;

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

/// Whether `password` matches the PHC string `phc`, on the calling thread: for the few checks at
/// start. Logins go through the bounded pool (`hasher`).
pub fn password_matches(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Tells the operator the generated `admin`'s password, once: on a terminal it is printed;
/// otherwise (a service manager, a container, CI) it goes to `admin-password` beside the SQLite
/// database (`./data` for PostgreSQL), readable by the relay's user only, and only the path is
/// printed: logs are kept and shipped, a password in them is a password leaked.
pub fn announce_first_admin(password: &str, database_url: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        println!(
            "\n  Created the first agent. Sign in at /console with\n    username: admin\n    password: {password}\n  (shown once; stored only as an argon2 hash)\n"
        );
        return Ok(());
    }
    let dir = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .filter(|path| !path.starts_with(':'))
        .and_then(|path| std::path::Path::new(path).parent())
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| std::path::PathBuf::from("data"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("admin-password");
    // A file left by an earlier database goes; the new one is created private.
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::anyhow!("cannot replace {}: {e}", path.display())),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, format!("{password}\n").as_bytes())?;
    println!(
        "\n  Created the first agent. Sign in at /console as `admin`, with the password in\n    password-file: {}\n  (readable by this user only; the relay keeps only an argon2 hash)\n",
        path.display()
    );
    Ok(())
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

/// The token hash of the request's session cookie (how sessions are stored and revoked).
pub fn session_hash(headers: &HeaderMap) -> Option<String> {
    session_cookie(headers).map(|secret| token::hash(&secret))
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

/// `POST /api/logout`.
pub async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, AppError> {
    check_same_origin(&headers)?;
    if let Some(hash) = session_hash(&headers) {
        let agent = app
            .store
            .session_agent(&hash, now_ms())
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
        app.store
            .delete_session(&hash)
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
        // The console tabs and bots opened with this session close now, on every node.
        if let Some(agent) = agent {
            crate::access::revoke(
                &app,
                crate::access::Revocation {
                    agent_id: agent.id,
                    session: Some(hash),
                },
            );
        }
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
        assert!(password_matches("correct horse", &a));
        assert!(!password_matches("wrong", &a));
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
