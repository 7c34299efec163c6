//! `cargo xtask build`: compiles the widget panel and the console to wasm, runs wasm-bindgen and
//! wasm-opt on them, assembles `dist/` exactly as the relay serves it, precompresses it and
//! reports the sizes.
//!
//! Layout of `dist/`:
//! - `widget.js` — the loader (copied from `widget/loader/widget.js`);
//! - `widget/panel.js`, `widget/panel_bg.wasm` — the chat panel the loader fetches on demand;
//! - `widget/cobrowse.js`, `widget/cobrowse_bg.wasm` — co-browse, fetched only once the visitor
//!   allowed sharing;
//! - `console/index.html`, `console/console.js`, `console/console_bg.wasm` (+ `console/static/*`);
//! - `X.gz` and `X.br` next to every js/wasm/html/css file; `sizes.json`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::compress::{self, Group};
use crate::exec::{self, run, section};
use crate::tools::{Tools, WASM_TARGET};

/// Binaryen features wasm-bindgen's output uses; wasm-opt must be told, or it refuses the module.
const WASM_OPT_FEATURES: &[&str] = &[
    "--enable-reference-types",
    "--enable-bulk-memory",
    "--enable-nontrapping-float-to-int",
    "--enable-sign-ext",
    "--enable-multivalue",
    "--enable-mutable-globals",
];

/// One wasm bundle: which crate, and where its bindings go.
struct Bundle {
    /// Cargo package name.
    package: &'static str,
    /// Subdirectory of `dist/`, which is also the URL prefix the relay serves it under.
    out_dir: &'static str,
    /// `--out-name` for wasm-bindgen: the file names the loader and index.html import.
    out_name: &'static str,
}

const BUNDLES: &[Bundle] = &[
    Bundle {
        package: "parley-widget",
        out_dir: "widget",
        out_name: "panel",
    },
    Bundle {
        package: "parley-cobrowse",
        out_dir: "widget",
        out_name: "cobrowse",
    },
    Bundle {
        package: "parley-console",
        out_dir: "console",
        out_name: "console",
    },
];

/// Cargo's target directory: `$CARGO_TARGET_DIR` when set (relative to the current directory, as
/// cargo reads it), else the workspace's `target/`.
pub fn target_dir(root: &Path) -> Result<PathBuf> {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => Ok(std::env::current_dir()?.join(dir)),
        None => Ok(root.join("target")),
    }
}

/// Builds everything into `root/dist`. `debug` uses the dev profile and skips wasm-opt.
pub fn build(root: &Path, tools: &Tools, debug: bool) -> Result<PathBuf> {
    let dist = root.join("dist");
    let profile = if debug { "dev" } else { "wasm-release" };
    // Cargo names the output directory of the dev profile "debug".
    let profile_dir = if debug { "debug" } else { "wasm-release" };

    section(&format!("build: cargo build ({profile}, {WASM_TARGET})"));
    let mut cargo = exec::cargo(root);
    cargo.args(["build", "--target", WASM_TARGET, "--profile", profile]);
    for bundle in BUNDLES {
        cargo.args(["-p", bundle.package]);
    }
    run(&mut cargo)?;

    let wasm_dir = target_dir(root)?.join(WASM_TARGET).join(profile_dir);
    for bundle in BUNDLES {
        section(&format!("build: bindings for {}", bundle.package));
        let input = wasm_dir.join(format!("{}.wasm", bundle.package.replace('-', "_")));
        bind_and_optimize(tools, bundle, &input, &dist.join(bundle.out_dir), debug)?;
    }

    section("build: static files");
    copy_if_changed(
        &root.join("widget/loader/widget.js"),
        &dist.join("widget.js"),
    )?;
    copy_if_changed(
        &root.join("console/index.html"),
        &dist.join("console/index.html"),
    )?;
    let statics = root.join("console/static");
    if statics.is_dir() {
        copy_tree(&statics, &dist.join("console"))?;
    }

    section("build: precompress (gzip -9, brotli -q 11)");
    let started = Instant::now();
    let n = compress::precompress_tree(&dist)?;
    println!(
        "{n} file(s) compressed in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    section("build: sizes");
    compress::report(&dist, &groups(&dist)?, profile)?;
    if !debug {
        // Reported here for whoever builds; `cargo xtask test` (and so CI) fails on it.
        if let Err(e) = check_budgets(&dist) {
            println!("!! {e:#}");
        }
    }
    Ok(dist)
}

/// Brotli budget of the loader: it is on every page of every site, at once.
const LOADER_BUDGET: u64 = 5 * 1024;
/// Brotli budget of the chat panel: what a visitor downloads on first hover or click.
const PANEL_BUDGET: u64 = 100 * 1024;

/// The bundles as `dist/` holds them, with the budgets of the two a site's visitors pay for.
fn groups(dist: &Path) -> Result<Vec<Group>> {
    Ok(vec![
        Group {
            name: "loader",
            files: vec!["widget.js".into()],
            budget: Some(LOADER_BUDGET),
        },
        Group {
            name: "panel",
            files: vec!["widget/panel.js".into(), "widget/panel_bg.wasm".into()],
            budget: Some(PANEL_BUDGET),
        },
        Group {
            name: "cobrowse",
            files: vec![
                "widget/cobrowse.js".into(),
                "widget/cobrowse_bg.wasm".into(),
            ],
            budget: None,
        },
        Group {
            name: "console",
            files: bundle_files(dist, "console")?,
            budget: None,
        },
    ])
}

/// Fails when the loader or the panel in `dist/` weighs more than its budget (release builds:
/// a `--debug` build is not optimized and would always be over).
pub fn check_budgets(dist: &Path) -> Result<()> {
    compress::check_budgets(dist, &groups(dist)?)
}

/// Runs wasm-bindgen then wasm-opt for one bundle, unless `out_dir` already holds the result for
/// exactly this input (same size and mtime, same profile): wasm-opt -Oz takes a while and cargo
/// leaves the input untouched when nothing changed.
fn bind_and_optimize(
    tools: &Tools,
    bundle: &Bundle,
    input: &Path,
    out_dir: &Path,
    debug: bool,
) -> Result<()> {
    let meta = fs::metadata(input)
        .with_context(|| format!("{} missing after cargo build", input.display()))?;
    let mtime = meta
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // One stamp per bundle: the panel and co-browse share `widget/`.
    let stamp_path = out_dir.join(format!(".xtask-stamp.{}", bundle.out_name));
    let stamp = format!(
        "input={} len={} mtime={mtime} debug={debug} opt={}\n",
        input.display(),
        meta.len(),
        tools.wasm_opt.display()
    );
    let out_wasm = out_dir.join(format!("{}_bg.wasm", bundle.out_name));
    let out_js = out_dir.join(format!("{}.js", bundle.out_name));
    if fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp)
        && out_wasm.is_file()
        && out_js.is_file()
    {
        println!(
            "{} unchanged: keeping {}",
            input.display(),
            out_dir.display()
        );
        return Ok(());
    }

    // Remove what an earlier build put there (and its .gz/.br), but keep files that are not ours
    // (the console's index.html and static files are copied in afterwards anyway).
    let _ = fs::remove_file(&stamp_path);
    if out_dir.is_dir() {
        for entry in fs::read_dir(out_dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with(&format!("{}.", bundle.out_name))
                || name.starts_with(&format!("{}_bg.", bundle.out_name))
                || name.starts_with("snippets")
            {
                if path.is_dir() {
                    fs::remove_dir_all(&path)?;
                } else {
                    fs::remove_file(&path)?;
                }
            }
        }
    }
    fs::create_dir_all(out_dir)?;

    run(Command::new(&tools.wasm_bindgen)
        .args(["--target", "web", "--no-typescript"])
        .arg("--out-dir")
        .arg(out_dir)
        .args(["--out-name", bundle.out_name])
        .arg(input))?;

    if debug {
        println!("--debug: skipping wasm-opt");
    } else {
        let before = fs::metadata(&out_wasm)?.len();
        let started = Instant::now();
        run(Command::new(&tools.wasm_opt)
            .arg("-Oz")
            .args(WASM_OPT_FEATURES)
            .arg(&out_wasm)
            .arg("-o")
            .arg(&out_wasm))?;
        let after = fs::metadata(&out_wasm)?.len();
        println!(
            "wasm-opt: {before} -> {after} bytes in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    fs::write(&stamp_path, stamp)?;
    Ok(())
}

/// The files a browser downloads from `dist/<sub>` (not the `.gz`/`.br` copies or the stamp),
/// as `<sub>/<name>`, sorted so the report is stable.
fn bundle_files(dist: &Path, sub: &str) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dist.join(sub))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let compressed = name.ends_with(".gz") || name.ends_with(".br");
        if entry.path().is_file() && !compressed && !name.starts_with('.') {
            files.push(format!("{sub}/{name}"));
        }
    }
    files.sort();
    Ok(files)
}

/// Copies `from` to `to` unless `to` already has the same bytes (so its mtime, and thus its
/// precompressed copies, stay valid).
fn copy_if_changed(from: &Path, to: &Path) -> Result<()> {
    let data = match fs::read(from) {
        Ok(data) => data,
        Err(e) => bail!("{} cannot be read: {e}", from.display()),
    };
    if fs::read(to).is_ok_and(|old| old == data) {
        return Ok(());
    }
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(to, data).with_context(|| format!("writing {}", to.display()))?;
    println!("copied {} -> {}", from.display(), to.display());
    Ok(())
}

/// Copies every file under `from` into `to`, keeping relative paths.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let path = entry?.path();
        let dest = to.join(path.file_name().context("file without a name")?);
        if path.is_dir() {
            copy_tree(&path, &dest)?;
        } else {
            copy_if_changed(&path, &dest)?;
        }
    }
    Ok(())
}
