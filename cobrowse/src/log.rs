//! "What was shared": a record of everything this tab sent to the agent, kept in
//! `sessionStorage` per conversation so it survives navigation and can be read after sharing
//! stopped. It records sizes and counts, never the content itself.

use serde::{Deserialize, Serialize};

use crate::i18n::Counts;

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Entry {
    /// Sharing started with this agent.
    Start {
        /// When (Unix ms).
        at: f64,
        /// The agent's name.
        agent: String,
    },
    /// A whole page was sent, then what followed it.
    Page {
        /// When (Unix ms).
        at: f64,
        /// Its URL.
        url: String,
        /// Bytes of the snapshot.
        bytes: u32,
        /// Fields masked in it.
        masked: u32,
        /// What followed until the next snapshot.
        #[serde(default)]
        then: Counts,
    },
    /// Sharing stopped.
    Stop {
        /// When (Unix ms).
        at: f64,
    },
}

/// The log of one conversation in this tab.
pub struct Log {
    key: String,
    /// Oldest first.
    pub entries: Vec<Entry>,
}

/// Oldest entries are dropped beyond this many (sessionStorage is small).
const MAX_ENTRIES: usize = 200;

fn storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.session_storage().ok().flatten())
}

impl Log {
    /// The stored log of `conversation` (empty when none).
    pub fn load(conversation: &str) -> Log {
        let key = format!("parley:cobrowse:{conversation}");
        let entries = storage()
            .and_then(|s| s.get_item(&key).ok().flatten())
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Log { key, entries }
    }

    /// Appends an entry.
    pub fn push(&mut self, e: Entry) {
        self.entries.push(e);
        if self.entries.len() > MAX_ENTRIES {
            let extra = self.entries.len() - MAX_ENTRIES;
            self.entries.drain(..extra);
        }
    }

    /// The counters of the newest page, to add to.
    pub fn counts(&mut self) -> Option<&mut Counts> {
        match self.entries.last_mut() {
            Some(Entry::Page { then, .. }) => Some(then),
            _ => None,
        }
    }

    /// Writes the log to sessionStorage (a full or unavailable storage only loses the log).
    pub fn save(&self) {
        if let (Some(s), Ok(t)) = (storage(), serde_json::to_string(&self.entries)) {
            let _ = s.set_item(&self.key, &t);
        }
    }
}
