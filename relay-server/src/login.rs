//! `POST /api/login`: what a login costs the relay, and who can be kept out by whom.
//!
//! In order, each step cheaper than the next:
//! 1. the body is checked (a username of 1–64 characters without control characters, a
//!    password of at most 1,024 bytes): `400 invalid` otherwise;
//! 2. the client's address may try [`Limits::login_attempts_per_ip_per_minute`] times a minute
//!    whatever the usernames (made-up names cost the same as real ones);
//! 3. the pair (address, username) may try [`Limits::logins_per_minute`] times a minute: a
//!    password guesser is stopped, and a stranger elsewhere cannot lock an agent out;
//! 4. only then is a password hashed, on the bounded [`Hasher`] pool (`503 busy` when full).
//!
//! The limiters are `per_source`'s (IPv6 keyed by /64, pruned every minute).
//!
//! [`Limits::login_attempts_per_ip_per_minute`]: crate::config::Limits::login_attempts_per_ip_per_minute
//! [`Limits::logins_per_minute`]: crate::config::Limits::logins_per_minute
//! [`Hasher`]: crate::hasher::Hasher

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::auth::{info, SESSION_MS};
use crate::http::AppError;
use crate::logsafe::Untrusted;
use crate::per_source::{PerSource, Source};
use crate::store::now_ms;
use crate::{token, App};

/// Longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;
/// Longest password, in bytes (argon2 takes any length; the cap bounds what a request carries).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The two login limiters.
pub struct Throttle {
    /// Attempts per source, any username.
    per_source: PerSource,
    /// Attempts per source and (lower-cased) username.
    per_account: PerSource<(Source, String)>,
}

impl Throttle {
    /// `per_source` attempts a minute from one source, `per_account` for one username from it.
    pub fn new(per_source: u32, per_account: u32) -> Self {
        Self {
            per_source: PerSource::per_minute(per_source),
            per_account: PerSource::per_minute(per_account),
        }
    }

    /// Counts one attempt; `Err(wait)` when it is over either limit.
    pub fn attempt(&self, source: Source, username: &str) -> Result<(), Duration> {
        self.per_source.check(&source)?;
        self.per_account.check(&(source, username.to_lowercase()))
    }

    /// Forgets keys whose limits have fully recovered.
    pub fn prune(&self) {
        self.per_source.prune();
        self.per_account.prune();
    }
}

/// Body of `POST /api/login`.
#[derive(Deserialize)]
pub struct Login {
    username: String,
    password: String,
}

/// Why a login body is refused before anything else happens.
fn check_body(body: &Login) -> Result<(), AppError> {
    let chars = body.username.chars().count();
    if chars == 0 || chars > MAX_USERNAME_CHARS || body.username.chars().any(char::is_control) {
        return Err(AppError::Invalid(format!(
            "username must be 1-{MAX_USERNAME_CHARS} characters without control characters"
        )));
    }
    if body.password.len() > MAX_PASSWORD_BYTES {
        return Err(AppError::Invalid(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// `POST /api/login`.
pub async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<Login>, JsonRejection>,
) -> Result<Response, AppError> {
    app.public.check_origin(&headers)?;
    let Json(body) = body.map_err(AppError::from_json)?;
    check_body(&body)?;
    let source = Source::of(peer.ip());
    let username = Untrusted(&body.username);
    if let Err(wait) = app.login_throttle.attempt(source, &body.username) {
        tracing::info!(%username, ip = %peer.ip(), "login throttled");
        return Err(AppError::RateLimited(wait.as_millis().max(1) as u64));
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
    let ok = match app.hasher.verify(body.password, phc).await {
        Ok(ok) => ok,
        Err(busy) => {
            tracing::warn!(%username, ip = %peer.ip(), "login refused: {busy}");
            return Err(AppError::Busy);
        }
    };
    let agent = match agent {
        // A disabled agent is refused like a wrong password (the password was still checked:
        // the answer takes as long).
        Some(a) if ok && !a.disabled => a,
        _ => {
            tracing::info!(%username, ip = %peer.ip(), "login refused");
            return Err(AppError::BadCredentials);
        }
    };
    let secret = token::generate();
    app.store
        .create_session(&token::hash(&secret), &agent.id, now_ms() + SESSION_MS)
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    tracing::info!(%username, ip = %peer.ip(), "login ok");
    let cookie = app.public.set_cookie(&secret, SESSION_MS / 1000);
    let mut response = Json(serde_json::json!({ "agent": info(&agent) })).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stranger_uses_up_only_their_own_attempts() {
        let throttle = Throttle::new(100, 3);
        let stranger = Source::of("10.0.0.66".parse().expect("ip"));
        let agent = Source::of("10.0.0.7".parse().expect("ip"));
        for _ in 0..3 {
            assert!(throttle.attempt(stranger, "Mina").is_ok());
        }
        assert!(throttle.attempt(stranger, "mina").is_err(), "case-folded");
        assert!(throttle.attempt(agent, "mina").is_ok(), "her own address");
        // Any username counts against a source's own budget.
        let spray = Throttle::new(5, 100);
        for n in 0..5 {
            assert!(spray.attempt(stranger, &format!("user{n}")).is_ok());
        }
        assert!(spray.attempt(stranger, "fresh-name").is_err());
    }

    #[test]
    fn bodies_are_checked() {
        let ok = Login {
            username: "mina".into(),
            password: "pw".into(),
        };
        assert!(check_body(&ok).is_ok());
        for bad in ["", "a\nb", &"x".repeat(65)] {
            let body = Login {
                username: bad.into(),
                password: "pw".into(),
            };
            assert!(check_body(&body).is_err(), "{bad:?}");
        }
        let long = Login {
            username: "mina".into(),
            password: "p".repeat(1025),
        };
        assert!(check_body(&long).is_err());
    }
}
