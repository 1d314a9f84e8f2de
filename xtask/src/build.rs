//! `cargo xtask build` and `cargo xtask run`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use crate::util::{self, is_root};
use crate::{setup, steps};

/// The cargo target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                std::env::current_dir().unwrap_or_default().join(dir)
            }
        }
        None => util::workspace_root().join("target"),
    }
}

/// Set up, then build the agentwatch binary; returns its path.
pub fn build(release: bool) -> Result<PathBuf> {
    setup::run()?;
    build_only(release)
}

/// Build the agentwatch binary (setup already done); returns its path.
pub fn build_only(release: bool) -> Result<PathBuf> {
    let start = std::time::Instant::now();
    let mut cmd = util::cargo();
    cmd.args(["build", "--package", "agentwatch", "--bin", "agentwatch"]);
    if release {
        cmd.arg("--release");
    }
    util::run(&mut cmd)?;
    let bin = target_dir()
        .join(if release { "release" } else { "debug" })
        .join("agentwatch");
    println!("build: {} ({})", bin.display(), steps::fmt(start.elapsed()));
    Ok(bin)
}

/// Set up, build (release), then replace this process with agentwatch, as
/// root: directly when we are root, through sudo otherwise.
pub fn run(args: &[String]) -> Result<()> {
    let bin = build(true)?;
    let mut cmd = if is_root() {
        let mut c = Command::new(&bin);
        c.args(args);
        c
    } else {
        println!("run: not root, so through sudo");
        let mut c = Command::new("sudo");
        c.arg("--preserve-env=RUST_LOG")
            .arg("--")
            .arg(&bin)
            .args(args);
        c
    };
    println!("+ {}", util::display(&cmd));
    let err = cmd.exec();
    Err(err).with_context(|| format!("cannot run {}", bin.display()))
}
