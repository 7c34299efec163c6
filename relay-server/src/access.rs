//! Access that can be taken back: who may sign in, and which open agent sockets must close.
//!
//! The rule, owned here: an agent socket lives only as long as the session it was opened with
//! is valid in the store: not logged out, not expired, its agent not disabled. Every way a
//! session ends goes through [`revoke`], which closes the matching sockets at once on every
//! node (a [`Revocation`] through the hub and the bus). A revocation that does not arrive (a
//! lagged socket, a bus outage) is caught by the socket itself: it re-checks its session on
//! every resync and every ping interval (`connection::Session::still_valid`).
//!
//! Agents come from the config file. At start ([`seed_agents`]): a listed agent whose password
//! changed loses its sessions; when the file lists agents, every stored agent it does not list
//! is disabled (their name stays on old conversations). Expired sessions are purged hourly.

use std::sync::Arc;
use std::time::Duration;

use crate::config::AgentSeed;
use crate::store::{now_ms, AgentRecord, Store};
use crate::{auth, App};

/// Which sessions ended: one (`session`: its token hash), or all of an agent's.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Revocation {
    /// Whose.
    pub agent_id: String,
    /// The one session that ended; `None`: every session of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl Revocation {
    /// Whether a socket opened by `agent_id` with session `session` must close.
    pub fn ends(&self, agent_id: &str, session: &str) -> bool {
        self.agent_id == agent_id && self.session.as_deref().is_none_or(|s| s == session)
    }
}

/// Tells every node's agent sockets that these sessions ended (already deleted in the store).
pub fn revoke(app: &App, revocation: Revocation) {
    app.hub.publish_revoked(Arc::new(revocation));
}

/// What [`seed_agents`] did.
pub struct Seeded {
    /// The config's agents as stored.
    pub agents: Vec<(AgentSeed, AgentRecord)>,
    /// Agents whose sessions ended (password changed, or removed from the config): their
    /// sockets on other nodes are told once the bus is up.
    pub revoked: Vec<String>,
}

/// Creates or updates the config's agents, ends the sessions of those whose password changed,
/// and disables stored agents the config no longer lists (when it lists any).
pub async fn seed_agents(store: &dyn Store, seeds: &[AgentSeed]) -> anyhow::Result<Seeded> {
    let mut agents = Vec::with_capacity(seeds.len());
    let mut revoked = Vec::new();
    for seed in seeds {
        let existing = store.agent_by_username(&seed.username).await?;
        // The same password keeps its hash (no new salt, no argon2 run, sessions kept).
        let same = existing
            .as_ref()
            .is_some_and(|a| auth::password_matches(&seed.password, &a.password_hash));
        let hash = match (&existing, same) {
            (Some(a), true) => a.password_hash.clone(),
            _ => auth::hash_password(&seed.password)?,
        };
        let record = store
            .upsert_agent(&seed.username, &seed.display_name, &hash)
            .await?;
        if existing.is_some() && !same && store.delete_agent_sessions(&record.id).await? > 0 {
            tracing::info!(username = %record.username, "password changed: sessions ended");
            revoked.push(record.id.clone());
        }
        store.set_agent_admin(&seed.username, seed.admin).await?;
        agents.push((seed.clone(), record));
    }
    if !seeds.is_empty() {
        for stored in store.agents().await? {
            let listed = seeds.iter().any(|s| s.username == stored.username);
            if !listed && !stored.disabled {
                store.set_agent_disabled(&stored.id, true).await?;
                tracing::info!(username = %stored.username, "not in the config: disabled");
                revoked.push(stored.id);
            }
        }
    }
    Ok(Seeded { agents, revoked })
}

/// Deletes expired sessions every hour until shutdown (their sockets closed themselves at
/// their next check).
pub async fn purge_forever(app: Arc<App>) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = every.tick() => match app.store.purge_expired_sessions(now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(sessions = n, "expired sessions purged"),
                Err(e) => tracing::warn!(error = %e, "could not purge expired sessions"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_ends_the_right_sockets() {
        let one = Revocation {
            agent_id: "a1".into(),
            session: Some("s1".into()),
        };
        assert!(one.ends("a1", "s1"));
        assert!(!one.ends("a1", "s2"), "another tab's session stays");
        assert!(!one.ends("a2", "s1"));
        let all = Revocation {
            agent_id: "a1".into(),
            session: None,
        };
        assert!(all.ends("a1", "s1") && all.ends("a1", "s2"));
        assert!(!all.ends("a2", "s1"));
    }
}
