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
//! IPv6 addresses are keyed by their /64 (one host usually holds a whole /64). The limiters'
//! maps are pruned every minute, so their memory follows the recent rate, not the history.
//!
//! [`Limits::login_attempts_per_ip_per_minute`]: crate::config::Limits::login_attempts_per_ip_per_minute
//! [`Limits::logins_per_minute`]: crate::config::Limits::logins_per_minute
//! [`Hasher`]: crate::hasher::Hasher

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;

use crate::auth::{check_same_origin, info, COOKIE, SESSION_MS};
use crate::http::AppError;
use crate::logsafe::Untrusted;
use crate::store::now_ms;
use crate::{token, App};

/// Longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;
/// Longest password, in bytes (argon2 takes any length; the cap bounds what a request carries).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Where a login comes from, as the limiters key it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The key of a peer address: IPv4 as is (also when mapped into IPv6), IPv6 by its /64.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let mask = !0u128 << 64;
                    Self(IpAddr::V6((u128::from(v6) & mask).into()))
                }
            },
        }
    }
}

/// The two login limiters.
pub struct Throttle {
    /// Attempts per source, any username.
    per_source: DefaultKeyedRateLimiter<Source>,
    /// Attempts per source and (lower-cased) username.
    per_account: DefaultKeyedRateLimiter<(Source, String)>,
}

impl Throttle {
    /// `per_source` attempts a minute from one source, `per_account` for one username from it.
    pub fn new(per_source: u32, per_account: u32) -> Self {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Self {
            per_source: RateLimiter::keyed(quota(per_source)),
            per_account: RateLimiter::keyed(quota(per_account)),
        }
    }

    /// Counts one attempt; `Err(wait)` when it is over either limit.
    pub fn attempt(&self, source: Source, username: &str) -> Result<(), Duration> {
        let now = DefaultClock::default().now();
        self.per_source
            .check_key(&source)
            .map_err(|n| n.wait_time_from(now))?;
        self.per_account
            .check_key(&(source, username.to_lowercase()))
            .map_err(|n| n.wait_time_from(now))
    }

    /// Forgets keys whose limits have fully recovered.
    pub fn prune(&self) {
        self.per_source.retain_recent();
        self.per_source.shrink_to_fit();
        self.per_account.retain_recent();
        self.per_account.shrink_to_fit();
    }

    /// Keys held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.per_source.len() + self.per_account.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Prunes the limiters every minute until shutdown.
pub async fn prune_forever(app: Arc<App>) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = every.tick() => app.login_throttle.prune(),
        }
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
    check_same_origin(&headers)?;
    let Json(body) = body.map_err(|e| AppError::Invalid(e.body_text()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_key_ipv6_by_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(Source::of(a), Source::of(b), "same /64");
        assert_ne!(Source::of(a), Source::of(c), "another /64");
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().expect("ip");
        let v4: IpAddr = "10.0.0.7".parse().expect("ip");
        assert_eq!(Source::of(mapped), Source::of(v4));
    }

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
