//! Parley's agents' console: a Leptos (CSR) app served by the relay at `/console`.
//!
//! Agents log in (`/api/login`), then keep one WebSocket to `/ws/agent` that streams the live
//! conversation list and the events of the conversations they open. Modules are cut by domain:
//! [`api`] (HTTP), [`socket`] (the WebSocket and its reconnects), [`state`] (the pure model the
//! frames act on), [`typing`] (typing-frame throttle), [`format`] (pure text formatting),
//! [`app`] (the shell and shared context) and [`components`] (the screen areas); co-browse adds
//! [`cobrowse`] (stream reassembly, mirror geometry, sanitizing rules — pure) and [`mirror`] (the
//! mirror's DOM).
//!
//! The pure modules (`state`, `cobrowse`, `typing`, `format`, and the backoff in `socket`) compile natively,
//! so `cargo test -p parley-console` runs their tests without a browser.

pub mod api;
pub mod app;
pub mod cobrowse;
pub mod components;
pub mod format;
pub mod mirror;
pub mod socket;
pub mod state;
pub mod typing;

use wasm_bindgen::prelude::wasm_bindgen;

/// Entry point run by `init()` in `static/boot.js`: mounts the app on `<body>`.
#[wasm_bindgen(start)]
pub fn start() {
    leptos::mount::mount_to_body(app::App);
}
