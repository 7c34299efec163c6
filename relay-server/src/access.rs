//! Access that can be taken back: who may sign in, and which open agent sockets must close.
//!
//! The rule, owned here: an agent socket lives only as long as the session it was opened with
//! is valid in the store: not logged out, not expired, its agent not disabled. Every way a
//! session ends goes through [`revoke`], which closes the matching sockets at once on every
//! node (a [`Revocation`] through the hub and the bus). A revocation that does not arrive (a
//! lagged socket, a bus outage) is caught by the socket itself: it re-checks its session on
//! every resync and every ping interval (`connection::Session::still_valid`).
//!
//! Agents come from the config file or the console's agents page (`crate::agents`). At start
//! ([`seed_agents`]): a listed agent whose password changed loses its sessions; when the file
//! lists agents, every config-managed agent it no longer lists is disabled (their name stays on
//! old conversations). Expired sessions are purged hourly.
//!
//! Teams: an agent may serve only some sites ([`Scope`], the one rule): their `welcome`, list
//! updates, history, knowledge gaps and automatic assignments hold only those sites'
//! conversations, and opening, taking, answering, closing or transferring another site's
//! conversation answers `not_found` (its existence is not theirs to know).

use std::sync::Arc;
use std::time::Duration;

use crate::config::AgentSeed;
use crate::store::{now_ms, AgentChange, AgentRecord, Managed, Store};

/// Which sites' conversations an agent may see and act on. Read from the agent's record at
/// every socket check; the queue's [`crate::store::Capacity`] holds each agent's copy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every site (no `sites` set).
    #[default]
    Every,
    /// Only these site keys.
    Only(Arc<[String]>),
}

impl Scope {
    /// An agent's scope as stored.
    pub fn of(agent: &AgentRecord) -> Self {
        match &agent.sites {
            None => Scope::Every,
            Some(sites) => Scope::Only(sites.clone().into()),
        }
    }

    /// Whether the agent may see and act on `site`'s conversations.
    pub fn covers(&self, site: &str) -> bool {
        match self {
            Scope::Every => true,
            Scope::Only(sites) => sites.iter().any(|s| s == site),
        }
    }

    /// The site keys for a store query (`None`: every site).
    pub fn sites(&self) -> Option<&[String]> {
        match self {
            Scope::Every => None,
            Scope::Only(sites) => Some(sites),
        }
    }
}
use crate::{auth, App};

/// Which sessions ended: one (`session`: its token hash), or all of an agent's. With
/// `reread`, nothing ended: the agent's access changed (sites, admin, name) and their sockets
/// re-read it and send `welcome` again.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Revocation {
    /// Whose.
    pub agent_id: String,
    /// The one session that ended; `None`: every session of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The sessions stay; the sockets re-read the agent's access.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reread: bool,
}

impl Revocation {
    /// Every session of an agent ended.
    pub fn all(agent_id: &str) -> Self {
        Self {
            agent_id: agent_id.to_owned(),
            session: None,
            reread: false,
        }
    }

    /// The agent's access changed; their sessions stay.
    pub fn changed(agent_id: &str) -> Self {
        Self {
            agent_id: agent_id.to_owned(),
            session: None,
            reread: true,
        }
    }

    /// Whether a socket opened by `agent_id` with session `session` must close.
    pub fn ends(&self, agent_id: &str, session: &str) -> bool {
        !self.reread
            && self.agent_id == agent_id
            && self.session.as_deref().is_none_or(|s| s == session)
    }

    /// Whether a socket of `agent_id` must re-read the agent's access.
    pub fn rereads(&self, agent_id: &str) -> bool {
        self.reread && self.agent_id == agent_id
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
        // The file owns the agent's sites and limit too (not audited: the file is its record);
        // written only when they differ, so an unchanged file costs no write at start.
        let record = if record.sites != seed.sites || record.max_chats != seed.max_chats {
            let change = AgentChange {
                sites: Some(seed.sites.clone()),
                max_chats: Some(seed.max_chats),
                ..AgentChange::default()
            };
            store.update_agent(&record.id, &change, None).await?.0
        } else {
            record
        };
        agents.push((seed.clone(), record));
    }
    if !seeds.is_empty() {
        for stored in store.agents().await? {
            let listed = seeds.iter().any(|s| s.username == stored.username);
            // Agents created in the console are the console's to disable.
            if !listed && !stored.disabled && stored.managed_by == Managed::Config {
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
            reread: false,
        };
        assert!(one.ends("a1", "s1"));
        assert!(!one.ends("a1", "s2"), "another tab's session stays");
        assert!(!one.ends("a2", "s1"));
        let all = Revocation::all("a1");
        assert!(all.ends("a1", "s1") && all.ends("a1", "s2"));
        assert!(!all.ends("a2", "s1"));
        assert!(!all.rereads("a1"));
        let changed = Revocation::changed("a1");
        assert!(
            !changed.ends("a1", "s1"),
            "a change of access ends no session"
        );
        assert!(changed.rereads("a1") && !changed.rereads("a2"));
    }

    #[test]
    fn a_scope_covers_only_its_sites() {
        assert!(Scope::Every.covers("shop") && Scope::Every.sites().is_none());
        let only = Scope::Only(vec!["shop".to_owned()].into());
        assert!(only.covers("shop"));
        assert!(
            !only.covers("bank"),
            "another site's conversations are not theirs"
        );
        assert_eq!(only.sites(), Some(&["shop".to_owned()][..]));
        let none = Scope::Only(Vec::<String>::new().into());
        assert!(!none.covers("shop"), "an empty list serves no site");
    }
}
