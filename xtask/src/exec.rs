//! Running child processes: every command is echoed before it runs so CI logs show exactly what
//! happened, and a failing command becomes an error naming it (never a silent exit code).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Prints a section header; CI logs are read by scanning for these.
pub fn section(title: &str) {
    println!("\n==> {title}");
}

/// Prints `$ program args...` the way a shell user would type it.
fn echo(cmd: &Command) {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        if arg.contains(' ') || arg.is_empty() {
            line.push_str(&format!(" '{arg}'"));
        } else {
            line.push(' ');
            line.push_str(&arg);
        }
    }
    println!("$ {line}");
}

/// Runs `cmd` with inherited stdio; fails unless it exits with status 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    echo(cmd);
    let started = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("could not start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!(
            "{:?} failed ({status}) after {:.1}s",
            cmd.get_program(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout, or `None` when it cannot start or fails.
/// Used for probes such as `wasm-bindgen --version`, where absence is an answer, not an error.
pub fn probe(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A `Command` for cargo: the same cargo that runs xtask (`$CARGO`), so toolchain overrides hold.
pub fn cargo(root: &Path) -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(root);
    cmd
}

/// Finds `name` on `PATH`, falling back to `$CARGO_HOME/bin` (a fresh `cargo install` lands there
/// even when that directory is not on `PATH` yet).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let candidate = cargo_home()?.join("bin").join(name);
        candidate.is_file().then_some(candidate)
    })
}

/// `$CARGO_HOME`, or `~/.cargo`.
pub fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".cargo")))
}

/// The user's home directory from `$HOME`.
pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// A `Command` for `program` that runs as root: directly when we are root, through `sudo`
/// otherwise (when it exists; else directly, and the command's own error explains).
pub fn as_root<S: AsRef<OsStr>>(program: S) -> Command {
    let is_root = probe(Command::new("id").arg("-u")).is_some_and(|uid| uid.trim() == "0");
    if !is_root && find_program("sudo").is_some() {
        let mut cmd = Command::new("sudo");
        cmd.arg(program);
        cmd
    } else {
        Command::new(program)
    }
}
