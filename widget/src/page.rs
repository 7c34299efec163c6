//! What the agent learns about the visitor's page: the `context` of `hello` and later updates.

use protocol::{PageContext, Viewport};

use crate::storage::{Store, ENTERED};

/// The page as it is now. `entered_at` comes from the loader's sessionStorage entry.
pub fn current(store: &Store) -> PageContext {
    let Some(window) = web_sys::window() else {
        return PageContext::default();
    };
    let document = window.document();
    let navigator = window.navigator();
    let dim = |v: Result<wasm_bindgen::JsValue, _>| {
        v.ok().and_then(|v| v.as_f64()).unwrap_or(0.0).max(0.0) as u32
    };
    PageContext {
        url: window.location().href().unwrap_or_default(),
        title: document.as_ref().map(|d| d.title()).unwrap_or_default(),
        referrer: document.as_ref().map(|d| d.referrer()).unwrap_or_default(),
        language: navigator.language().unwrap_or_default(),
        user_agent: navigator.user_agent().unwrap_or_default(),
        viewport: Some(Viewport {
            width: dim(window.inner_width()),
            height: dim(window.inner_height()),
        }),
        entered_at: store
            .session_get(ENTERED)
            // The loader writes `Date.now()`, an integer; parsing it as one keeps float
            // parsing out of the panel.
            .and_then(|s| s.parse::<i64>().ok()),
    }
    .truncated()
}

/// Whether `now` differs from what the relay last heard enough to tell it: another URL or
/// title, or a viewport at least 100 px different in either direction (a rotation or a resized
/// window, not a scrollbar appearing).
pub fn changed_notably(sent: &PageContext, now: &PageContext) -> bool {
    if sent.url != now.url || sent.title != now.title {
        return true;
    }
    match (sent.viewport, now.viewport) {
        (Some(a), Some(b)) => {
            a.width.abs_diff(b.width) >= 100 || a.height.abs_diff(b.height) >= 100
        }
        (a, b) => a.is_some() != b.is_some(),
    }
}
