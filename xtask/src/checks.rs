//! `cargo xtask lint` and `cargo xtask test`: the checks CI runs. Each step runs even when an
//! earlier one failed, so one CI log shows every problem; the command fails if any step did.

use std::path::Path;

use anyhow::{bail, Result};

use crate::exec::{self, run, section};
use crate::tools::{Tools, CHROMEDRIVER, CHROMIUM, WASM_TARGET};

/// Collects the outcome of independent steps so all of them run before we report.
#[derive(Default)]
pub struct Outcome {
    /// Names of the steps that failed, with their error.
    failed: Vec<String>,
}

impl Outcome {
    /// Records `result` of the step `name`, printing the error right away.
    pub fn record(&mut self, name: &str, result: Result<()>) {
        if let Err(e) = result {
            println!("!! {name} failed: {e:#}");
            self.failed.push(format!("{name}: {e:#}"));
        }
    }

    /// Ok when every recorded step succeeded; else an error listing the failures.
    pub fn finish(self, what: &str) -> Result<()> {
        if self.failed.is_empty() {
            println!("\n{what}: all steps passed");
            return Ok(());
        }
        bail!(
            "{what}: {} step(s) failed:\n  - {}",
            self.failed.len(),
            self.failed.join("\n  - ")
        )
    }
}

/// rustfmt, then clippy natively on the whole workspace, then clippy for the wasm crates on the
/// wasm target (their `cfg(target_arch = "wasm32")` code is only seen there).
pub fn lint(root: &Path, outcome: &mut Outcome) {
    section("lint: cargo fmt --check");
    outcome.record(
        "cargo fmt",
        run(exec::cargo(root).args(["fmt", "--all", "--check"])),
    );

    section("lint: clippy (native, whole workspace)");
    outcome.record(
        "clippy (native)",
        run(exec::cargo(root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])),
    );

    section("lint: clippy (wasm32: widget, cobrowse, console, protocol)");
    outcome.record(
        "clippy (wasm32)",
        run(exec::cargo(root).args([
            "clippy",
            "-p",
            "parley-widget",
            "-p",
            "parley-cobrowse",
            "-p",
            "parley-console",
            "-p",
            "parley-protocol",
            "--target",
            WASM_TARGET,
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])),
    );
}

/// The loader's and the panel's brotli budgets, the workspace tests (the browser tests find the
/// built bundles through `PARLEY_DIST`), then the wasm unit tests of the widget and console in
/// headless Chromium.
pub fn test(root: &Path, tools: &Tools, dist: &Path, outcome: &mut Outcome) {
    section("test: bundle budgets (brotli: loader 5 KiB, panel 100 KiB)");
    outcome.record("bundle budgets", crate::bundle::check_budgets(dist));

    section("test: cargo test --workspace (browser tests use dist/ and chromedriver)");
    outcome.record(
        "cargo test --workspace",
        run(exec::cargo(root)
            .args(["test", "--workspace", "--no-fail-fast"])
            .env("PARLEY_DIST", dist)
            .env("CHROMEDRIVER", CHROMEDRIVER)
            .env("CHROMIUM", CHROMIUM)),
    );

    section("test: wasm unit tests (widget, cobrowse, console) in headless chromium");
    // The runner prints "no tests to run!" and succeeds for a crate without wasm tests, so only
    // real failures (or build errors) fail this step.
    outcome.record(
        "wasm unit tests",
        run(exec::cargo(root)
            .args([
                "test",
                "--no-fail-fast",
                // Unit and integration tests only: doctests are covered natively above.
                "--tests",
                "-p",
                "parley-widget",
                "-p",
                "parley-cobrowse",
                "-p",
                "parley-console",
                "--target",
                WASM_TARGET,
            ])
            .env(
                "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
                &tools.wasm_bindgen_test_runner,
            )
            .env("CHROMEDRIVER", CHROMEDRIVER)),
    );
}
