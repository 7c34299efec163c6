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

/// Name of the session cookie without a public URL (plain HTTP, local use).
pub const COOKIE: &str = "parley_session";
/// Name of the session cookie when the relay's public URL is `https://`: the `__Host-` prefix
/// makes browsers refuse it unless it is `Secure`, host-only and for `Path=/`, so a sibling
/// subdomain cannot plant or overwrite it.
pub const HOST_COOKIE: &str = "__Host-parley_session";

/// Where browsers reach the relay (`--public-url`), and the two rules that follow from it: the
/// session cookie's name and flags, and which `Origin` counts as the relay's own. One value,
/// used by every handler that reads the cookie or checks the origin.
#[derive(Clone, Debug, Default)]
pub struct PublicUrl {
    /// `https://chat.example.com` (scheme, host and non-default port, as browsers send
    /// `Origin`); `None`: not configured.
    origin: Option<String>,
    /// The origin is `https`: the cookie is `__Host-` and `Secure`.
    secure: bool,
}

impl PublicUrl {
    /// Parses `--public-url`; `None` keeps the local defaults.
    pub fn parse(url: Option<&str>) -> anyhow::Result<Self> {
        let Some(url) = url else {
            return Ok(Self::default());
        };
        let parsed =
            url::Url::parse(url).map_err(|e| anyhow::anyhow!("bad --public-url {url:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            anyhow::bail!("--public-url must be http(s)://HOST[:PORT], got {url:?}");
        }
        Ok(Self {
            origin: Some(parsed.origin().ascii_serialization()),
            secure: parsed.scheme() == "https",
        })
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            HOST_COOKIE
        } else {
            COOKIE
        }
    }

    /// A `Set-Cookie` value for the session secret (empty and expired: a logout).
    pub fn set_cookie(&self, secret: &str, max_age_secs: i64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}{secure}",
            self.cookie_name()
        )
    }

    /// Refuses a request whose `Origin` is present and is not the relay's own: with a public
    /// URL, its scheme, host and port exactly (a proxy may rewrite `Host`); without one, the
    /// `Host` the request was sent to.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), AppError> {
        match &self.origin {
            None => check_same_origin(headers),
            Some(own) => match headers.get(header::ORIGIN).map(|v| v.to_str()) {
                None => Ok(()),
                Some(Ok(origin)) if origin.trim().eq_ignore_ascii_case(own) => Ok(()),
                Some(_) => Err(AppError::OriginNotAllowed),
            },
        }
    }

    /// The token hash of the request's session cookie (how sessions are stored and revoked).
    pub fn session_hash(&self, headers: &HeaderMap) -> Option<String> {
        session_cookie(headers, self.cookie_name()).map(|secret| token::hash(&secret))
    }
}
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

/// Refuses a request whose `Origin` is present and is not this relay's (`Host`): the rule
/// without a public URL (see [`PublicUrl::check_origin`]).
fn check_same_origin(headers: &HeaderMap) -> Result<(), AppError> {
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

fn session_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(cookie, _)| *cookie == name)
        .map(|(_, value)| value.to_owned())
}

/// The logged-in agent of a request; rejects with 401.
pub struct CurrentAgent(pub AgentInfo);

impl FromRequestParts<Arc<App>> for CurrentAgent {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, AppError> {
        let hash = app
            .public
            .session_hash(&parts.headers)
            .ok_or(AppError::Unauthorized)?;
        let agent = app
            .store
            .session_agent(&hash, now_ms())
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
        let hash = app
            .public
            .session_hash(&parts.headers)
            .ok_or(AppError::Unauthorized)?;
        app.store
            .session_agent(&hash, now_ms())
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
    app.public.check_origin(&headers)?;
    if let Some(hash) = app.public.session_hash(&headers) {
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
                    reread: false,
                },
            );
        }
    }
    let mut response = Json(serde_json::json!({ "ok": true })).into_response();
    if let Ok(v) = HeaderValue::from_str(&app.public.set_cookie("", 0)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// `GET /api/me`: the agent, plus `"admin": true` for agents who may use the admin pages and
/// `"sites"` for agents who serve only some sites.
pub async fn me(SessionAgent(agent): SessionAgent) -> Json<serde_json::Value> {
    let mut body = serde_json::to_value(info(&agent)).unwrap_or_default();
    if agent.admin {
        body["admin"] = true.into();
    }
    if let Some(sites) = &agent.sites {
        body["sites"] = sites.clone().into();
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

    #[test]
    fn a_public_url_sets_the_cookie_and_the_origin_rule() {
        let public = PublicUrl::parse(Some("https://Chat.Example.com/console")).expect("valid");
        assert_eq!(public.cookie_name(), HOST_COOKIE);
        let cookie = public.set_cookie("s3cret", 60);
        assert!(
            cookie.starts_with("__Host-parley_session=s3cret;"),
            "{cookie}"
        );
        assert!(
            cookie.ends_with("; Secure") && cookie.contains("Path=/"),
            "{cookie}"
        );
        assert!(!cookie.contains("Domain"), "{cookie}");
        let mut h = HeaderMap::new();
        // A proxy in front rewrote Host: the public URL decides.
        h.insert(header::HOST, HeaderValue::from_static("10.0.0.5:8080"));
        for (origin, ok) in [
            ("https://chat.example.com", true),
            ("http://chat.example.com", false),
            ("https://chat.example.com:8443", false),
            ("https://evil.example", false),
        ] {
            h.insert(header::ORIGIN, HeaderValue::from_static(origin));
            assert_eq!(public.check_origin(&h).is_ok(), ok, "{origin}");
        }
        let local = PublicUrl::parse(None).expect("none");
        assert_eq!(local.cookie_name(), COOKIE);
        assert!(!local.set_cookie("x", 1).contains("Secure"));
        assert!(PublicUrl::parse(Some("ftp://x")).is_err());
    }
}
