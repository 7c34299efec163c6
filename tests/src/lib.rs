//! Shared helpers for Parley's integration tests: a real relay on a free port with a throw-away
//! SQLite database ([`relay`]), protocol-speaking WebSocket clients for visitors and agents
//! ([`ws`]), and a headless-Chromium harness with Shadow-DOM helpers for the widget and the
//! console ([`browser`]); and, for the fault tests, the relay as a killable process
//! ([`process`]), clients that reconnect and resend like real ones ([`resilient`]), and Redis
//! behind a cuttable proxy or as a private killable server ([`bus`]); a
//! Rasa-shaped HTTP bot for the external-bot tests ([`fake_bot`]); a real SMTP server (aiosmtpd)
//! for the offline-message tests ([`smtp`]).
//!
//! The tests themselves live in `tests/tests/*.rs`; everything they share is here so each test
//! reads as a scenario, not as plumbing.

pub mod browser;
pub mod bus;
pub mod capture;
pub mod fake_bot;
pub mod identity;
pub mod pg;
pub mod process;
pub mod relay;
pub mod resilient;
pub mod smtp;
pub mod ws;

use std::path::PathBuf;
use std::time::Duration;

pub use relay::{start_server, TestRelay, TestRelayBuilder};
pub use ws::{AgentClient, RawSocket, VisitorClient};

/// How long a helper waits for something that should happen "soon" (a frame, a DOM change)
/// before failing with what it saw instead. Generous, because 5 builders share 2 cores.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// Known agent accounts every [`TestRelay`] seeds: (username, display name, password).
pub const AGENTS: [(&str, &str, &str); 2] = [
    ("mina", "Mina", "mina-password-1"),
    ("joon", "Joon", "joon-password-2"),
];

/// The repository root (the workspace that contains this crate). From the `CARGO_MANIFEST_DIR`
/// that `cargo test` sets at run time first: a test binary built by another checkout sharing
/// the target directory (a clean clone) would otherwise test that checkout's files.
pub fn repo_root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The built bundles: `$PARLEY_DIST` or `<repo>/dist`.
pub fn dist_dir() -> PathBuf {
    std::env::var_os("PARLEY_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("dist"))
}

/// The built bundles, or an error telling the developer how to build them. Browser tests call
/// this so a missing bundle fails loudly instead of skipping.
pub fn require_dist() -> anyhow::Result<PathBuf> {
    let dist = dist_dir();
    let needed = ["widget.js", "widget/panel.js", "console/index.html"];
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|p| !dist.join(p).is_file())
        .collect();
    if missing.is_empty() {
        Ok(dist)
    } else {
        anyhow::bail!(
            "the built bundles are missing from {} ({}): run `cargo xtask build` first",
            dist.display(),
            missing.join(", ")
        )
    }
}
