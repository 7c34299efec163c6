//! The visitor's few persisted facts, namespaced per site: `parley:{site}:{name}`.
//!
//! Storage may be missing (privacy modes, sandboxed iframes) or full; every call degrades to
//! "nothing stored" instead of failing, because the chat still works for the current page.

use web_sys::Storage;

/// Key of the visitor token from `welcome`.
pub const TOKEN: &str = "token";
/// Key of the unacknowledged sends (see [`crate::outbox`]).
pub const OUTBOX: &str = "outbox";
/// Key of the newest event the visitor has seen with the panel open (for unread counts).
pub const READ: &str = "read";
/// sessionStorage key the loader sets once per browsing session: when the visitor arrived.
pub const ENTERED: &str = "entered";

/// One site's slice of `localStorage` (and the `sessionStorage` entry of the loader).
#[derive(Clone, Debug)]
pub struct Store {
    /// `parley:{site}:`, so two widgets of different sites on one origin never share state.
    prefix: String,
}

impl Store {
    /// The store of one site key.
    pub fn new(site: &str) -> Self {
        Self {
            prefix: format!("parley:{site}:"),
        }
    }

    /// The full key of a name.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn local() -> Option<Storage> {
        web_sys::window()?.local_storage().ok().flatten()
    }

    /// Reads a value.
    pub fn get(&self, name: &str) -> Option<String> {
        Self::local()?.get_item(&self.key(name)).ok().flatten()
    }

    /// Writes a value; a full or disabled storage is ignored.
    pub fn set(&self, name: &str, value: &str) {
        if let Some(s) = Self::local() {
            let _ = s.set_item(&self.key(name), value);
        }
    }

    /// Removes a value.
    pub fn remove(&self, name: &str) {
        if let Some(s) = Self::local() {
            let _ = s.remove_item(&self.key(name));
        }
    }

    /// Reads a `sessionStorage` value.
    pub fn session_get(&self, name: &str) -> Option<String> {
        web_sys::window()?
            .session_storage()
            .ok()
            .flatten()?
            .get_item(&self.key(name))
            .ok()
            .flatten()
    }
}
