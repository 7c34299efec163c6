//! `cargo xtask setup`: makes this machine able to build and test Parley. Every step first checks
//! whether its tool is already there (so a second run takes a second) and installs it otherwise:
//! the wasm32 target, the wasm-bindgen CLI matching Cargo.lock, wasm-opt from npm binaryen, and
//! Chromium + chromedriver for the browser tests, a Python venv with aiosmtpd (the real SMTP
//! server the offline-message tests mail to), and the `redis-server` binary (the two-node test
//! that stops Redis runs a private one).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::exec::{self, probe, run, section};

/// The wasm target the widget and console compile to.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// The binaryen release installed from npm. Debian's binaryen is older and corrupts
/// wasm-bindgen output (it mis-handles the reference-types and bulk-memory features it emits).
const BINARYEN_PACKAGE: &str = "binaryen@132";
/// What `wasm-opt --version` prints for [`BINARYEN_PACKAGE`].
const BINARYEN_VERSION_MARK: &str = "version 132";

/// Where Chromium and chromedriver are expected (Debian's `chromium` and `chromium-driver`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// See [`CHROMIUM`].
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Where the tests look for `redis-server` (Debian's `redis-server` package).
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// Paths of the installed tools, handed to the build and test steps.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The wasm-bindgen CLI (its version equals the `wasm-bindgen` crate in Cargo.lock).
    pub wasm_bindgen: PathBuf,
    /// The test runner shipped with the same wasm-bindgen-cli release.
    pub wasm_bindgen_test_runner: PathBuf,
    /// wasm-opt from npm binaryen (never Debian's).
    pub wasm_opt: PathBuf,
}

/// Installs whatever is missing. `browser: false` skips Chromium (enough for `build` and `run`).
pub fn setup(root: &Path, browser: bool) -> Result<Tools> {
    section("setup: wasm target");
    ensure_wasm_target()?;
    section("setup: wasm-bindgen CLI");
    let (wasm_bindgen, wasm_bindgen_test_runner) = ensure_wasm_bindgen(root)?;
    section("setup: wasm-opt (binaryen from npm)");
    let wasm_opt = ensure_wasm_opt()?;
    if browser {
        section("setup: chromium + chromedriver");
        ensure_chromium()?;
        section("setup: aiosmtpd (SMTP server for the tests)");
        ensure_aiosmtpd()?;
        section("setup: redis-server (the Redis-stop test runs its own)");
        ensure_redis_server()?;
    }
    Ok(Tools {
        wasm_bindgen,
        wasm_bindgen_test_runner,
        wasm_opt,
    })
}

fn ensure_wasm_target() -> Result<()> {
    let Some(installed) = probe(Command::new("rustup").args(["target", "list", "--installed"]))
    else {
        println!("rustup not found: assuming the toolchain already has {WASM_TARGET}");
        return Ok(());
    };
    if installed.lines().any(|l| l.trim() == WASM_TARGET) {
        println!("{WASM_TARGET}: installed");
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

/// The `wasm-bindgen` version pinned in Cargo.lock (a line scan: `name = "wasm-bindgen"` is
/// followed by its `version = "..."` line).
pub fn locked_wasm_bindgen_version(root: &Path) -> Result<String> {
    let lock_path = root.join("Cargo.lock");
    let lock = fs::read_to_string(&lock_path)
        .with_context(|| format!("reading {}", lock_path.display()))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\"" {
            if let Some(version) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
            {
                return Ok(version.to_owned());
            }
        }
    }
    bail!("no wasm-bindgen package in {}", lock_path.display())
}

/// The version a wasm-bindgen binary reports (`wasm-bindgen 0.2.130` → `0.2.130`).
fn installed_version(program: &Path) -> Option<String> {
    let out = probe(Command::new(program).arg("--version"))?;
    out.split_whitespace().nth(1).map(str::to_owned)
}

fn ensure_wasm_bindgen(root: &Path) -> Result<(PathBuf, PathBuf)> {
    let wanted = locked_wasm_bindgen_version(root)?;
    let current = || {
        let cli = exec::find_program("wasm-bindgen")?;
        let runner = exec::find_program("wasm-bindgen-test-runner")?;
        let matches = installed_version(&cli).as_deref() == Some(wanted.as_str())
            && installed_version(&runner).as_deref() == Some(wanted.as_str());
        matches.then_some((cli, runner))
    };
    if let Some(found) = current() {
        println!("wasm-bindgen {wanted}: {}", found.0.display());
        return Ok(found);
    }
    // No --locked: wasm-bindgen-cli's own lock file does not build with current toolchains.
    // --force because a different version (or only half of the pair) may be installed.
    run(exec::cargo(root).args([
        "install",
        "wasm-bindgen-cli",
        "--force",
        "--version",
        &wanted,
    ]))?;
    current().with_context(|| {
        format!("wasm-bindgen {wanted} still not found after installing (is ~/.cargo/bin on PATH?)")
    })
}

/// `~/.cache/parley` (or under `$XDG_CACHE_HOME`): where setup keeps what it installs.
fn cache_dir() -> Result<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| exec::home().map(|h| h.join(".cache")))
        .context("neither $HOME nor $XDG_CACHE_HOME is set")?;
    Ok(cache.join("parley"))
}

/// The directory npm installs binaryen into.
fn binaryen_dir() -> Result<PathBuf> {
    Ok(cache_dir()?.join("binaryen"))
}

/// The aiosmtpd release the tests run (`tests/src/smtp.rs` finds the venv by the same path).
const AIOSMTPD_PACKAGE: &str = "aiosmtpd==1.4.6";

/// A venv under the cache directory with aiosmtpd, so tests mail to a real SMTP server without
/// touching the system Python.
fn ensure_aiosmtpd() -> Result<PathBuf> {
    let venv = cache_dir()?.join("venv");
    let python = venv.join("bin").join("python");
    let good =
        |p: &Path| probe(Command::new(p).args(["-c", "import aiosmtpd; print('ok')"])).is_some();
    if good(&python) {
        println!("aiosmtpd: {}", python.display());
        return Ok(python);
    }
    if exec::find_program("python3").is_none()
        || probe(Command::new("python3").args(["-c", "import venv, ensurepip"])).is_none()
    {
        println!("python3 with venv not found: installing python3-venv with apt");
        apt_install(&["python3", "python3-venv"])?;
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(&python).args(["-m", "pip", "install", "--quiet", AIOSMTPD_PACKAGE]))?;
    if !good(&python) {
        bail!(
            "{} cannot import aiosmtpd after pip install",
            python.display()
        );
    }
    println!("installed aiosmtpd: {}", python.display());
    Ok(python)
}

/// The wasm-opt to use: `$PARLEY_WASM_OPT` when set (an escape hatch for unusual machines),
/// else the npm binaryen under the cache directory.
fn wasm_opt_path() -> Result<PathBuf> {
    if let Some(custom) = std::env::var_os("PARLEY_WASM_OPT") {
        return Ok(PathBuf::from(custom));
    }
    Ok(binaryen_dir()?.join("node_modules/binaryen/bin/wasm-opt"))
}

fn ensure_wasm_opt() -> Result<PathBuf> {
    let path = wasm_opt_path()?;
    let good = |p: &Path| {
        probe(Command::new(p).arg("--version")).is_some_and(|v| v.contains(BINARYEN_VERSION_MARK))
    };
    if good(&path) {
        println!("wasm-opt ({BINARYEN_VERSION_MARK}): {}", path.display());
        return Ok(path);
    }
    if std::env::var_os("PARLEY_WASM_OPT").is_some() {
        bail!(
            "PARLEY_WASM_OPT={} is not binaryen {BINARYEN_VERSION_MARK}",
            path.display()
        );
    }
    if exec::find_program("npm").is_none() {
        println!("npm not found: installing nodejs + npm with apt");
        apt_install(&["nodejs", "npm"])?;
    }
    let dir = binaryen_dir()?;
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg(BINARYEN_PACKAGE))?;
    if !good(&path) {
        bail!(
            "{} does not report {BINARYEN_VERSION_MARK} after npm install",
            path.display()
        );
    }
    println!("installed wasm-opt: {}", path.display());
    Ok(path)
}

fn ensure_chromium() -> Result<()> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        println!("chromium: {CHROMIUM}, chromedriver: {CHROMEDRIVER}");
        return Ok(());
    }
    println!("missing {}: installing with apt", missing.join(", "));
    apt_install(&["chromium", "chromium-driver"])?;
    for p in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(p).exists() {
            bail!("{p} still missing after apt-get install");
        }
    }
    println!("installed chromium and chromedriver");
    Ok(())
}

/// The binary only: the test starts and kills its own server on a free port, so the service
/// the package enables (on 6379) is neither needed nor touched.
fn ensure_redis_server() -> Result<()> {
    if Path::new(REDIS_SERVER).exists() {
        println!("redis-server: {REDIS_SERVER}");
        return Ok(());
    }
    println!("missing {REDIS_SERVER}: installing redis-server with apt");
    apt_install(&["redis-server"])?;
    if !Path::new(REDIS_SERVER).exists() {
        bail!("{REDIS_SERVER} still missing after apt-get install");
    }
    println!("installed redis-server");
    Ok(())
}

/// `apt-get update` then `apt-get install -y PACKAGES`, as root (through sudo when needed).
fn apt_install(packages: &[&str]) -> Result<()> {
    // `env` carries DEBIAN_FRONTEND through sudo, which would otherwise drop it.
    run(exec::as_root("env").args(["DEBIAN_FRONTEND=noninteractive", "apt-get", "update"]))?;
    run(exec::as_root("env")
        .args(["DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y"])
        .args(packages))
}
