//! `cargo xtask setup`: install what building and testing agentwatch needs,
//! and only what is missing, so that it is quick when everything is there.
//!
//! - Debian packages, checked with one `dpkg-query`; `apt-get update` and
//!   `apt-get install` run only when one is missing.
//! - The eBPF toolchain named by `AGENTWATCH_EBPF_TOOLCHAIN` (default
//!   `debian-1.96`: Debian's rustc-web 1.96 with its std sources, linked into
//!   rustup). Another name (say `nightly`, with rust-src, on a machine where
//!   rustup can fetch it) skips the Debian toolchain parts.
//! - bpf-linker 0.13.0, built against the system's LLVM 22 here.
//! - tracefs and bpffs, mounted when absent.
//!
//! Without root the commands that need it are printed instead of run.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::steps::fmt;
use crate::util::{self, is_root, on_path, probe};

/// The eBPF toolchain used when `AGENTWATCH_EBPF_TOOLCHAIN` is unset.
pub const DEFAULT_TOOLCHAIN: &str = "debian-1.96";
/// Where the Debian toolchain lives (`rustup toolchain link NAME /usr`).
const DEBIAN_TOOLCHAIN_DIR: &str = "/usr";
/// Packages of the Debian eBPF toolchain (rustc 1.96 linking LLVM 22).
const TOOLCHAIN_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src", "llvm-22-dev"];
/// Packages the end-to-end tests use: journald, a DNS server, netns/veth,
/// setpriv/unshare, useradd, busybox/strings/ps for the env-dump scenarios,
/// python3 for listeners and dirfd opens, curl and git for agent-like work.
const TEST_PACKAGES: &[&str] = &[
    "systemd",
    "dnsmasq-base",
    "iproute2",
    "util-linux",
    "passwd",
    "busybox",
    "binutils",
    "procps",
    "python3",
    "curl",
    "git",
];
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// The eBPF toolchain name in force.
pub fn ebpf_toolchain() -> String {
    std::env::var("AGENTWATCH_EBPF_TOOLCHAIN")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_TOOLCHAIN.to_string())
}

/// Commands that need root, collected when we are not root.
#[derive(Default)]
struct Pending(Vec<String>);

/// Run setup. Returns the number of things it had to do.
pub fn run() -> Result<usize> {
    let start = Instant::now();
    let toolchain = ebpf_toolchain();
    let debian = toolchain == DEFAULT_TOOLCHAIN;
    let root = is_root();
    let mut done = 0;
    let mut pending = Pending::default();
    println!("setup: eBPF toolchain `{toolchain}` (AGENTWATCH_EBPF_TOOLCHAIN)");

    // 1. Debian packages.
    let mut wanted: Vec<&str> = TEST_PACKAGES.to_vec();
    if debian {
        wanted.extend(TOOLCHAIN_PACKAGES);
    }
    let apt_ok = match missing_packages(&wanted)? {
        None => {
            println!(
                "setup: no dpkg here; make sure these (or your distribution's equivalents) are installed: {}",
                wanted.join(" ")
            );
            true
        }
        Some(missing) if missing.is_empty() => true,
        Some(missing) => {
            let update = "apt-get update".to_string();
            let install = format!(
                "DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=300 {}",
                missing.join(" ")
            );
            if root {
                println!("setup: installing missing packages: {}", missing.join(" "));
                util::run(Command::new("apt-get").args([
                    "-o",
                    "DPkg::Lock::Timeout=300",
                    "update",
                ]))?;
                util::run(
                    Command::new("apt-get")
                        .env("DEBIAN_FRONTEND", "noninteractive")
                        .args(["install", "-y", "-o", "DPkg::Lock::Timeout=300"])
                        .args(&missing),
                )?;
                done += 1;
                true
            } else {
                println!("setup: missing packages: {}", missing.join(" "));
                pending.0.push(format!("sudo {update}"));
                pending.0.push(format!("sudo {install}"));
                false
            }
        }
    };

    // 2. The linked Debian toolchain.
    if debian {
        if !on_path("rustup") {
            bail!("rustup is needed to link the `{DEFAULT_TOOLCHAIN}` toolchain, and it is not on PATH");
        }
        let listed = probe(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
        let linked = listed
            .lines()
            .any(|l| l.split_whitespace().next() == Some(DEFAULT_TOOLCHAIN));
        if !linked {
            let mut cmd = Command::new("rustup");
            cmd.args(["toolchain", "link", DEFAULT_TOOLCHAIN, DEBIAN_TOOLCHAIN_DIR]);
            if apt_ok {
                util::run(&mut cmd)?;
                done += 1;
            } else {
                pending.0.push(util::display(&cmd));
            }
        }
    } else {
        let listed = probe(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
        if !listed.lines().any(|l| l.starts_with(toolchain.as_str())) {
            println!(
                "setup: warning: rustup does not list `{toolchain}`; install it with rust-src, e.g. \
                 `rustup toolchain install {toolchain} --component rust-src`"
            );
        }
    }

    // 3. bpf-linker.
    let version = probe(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    let have_linker = !version.trim().is_empty();
    let right_version = version.split_whitespace().any(|w| w == BPF_LINKER_VERSION);
    let mut cmd = util::cargo();
    if debian && !right_version {
        // Built against Debian's LLVM 22, the LLVM rustc-web 1.96 uses.
        cmd.env("LLVM_PREFIX", LLVM_PREFIX).args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
            "llvm-22",
        ]);
        if have_linker {
            cmd.arg("--force");
            println!(
                "setup: bpf-linker is `{}`, want {BPF_LINKER_VERSION}",
                version.trim()
            );
        }
    } else if !debian && !have_linker {
        // Elsewhere bpf-linker's default build uses the LLVM of rustup's rustc.
        cmd.args(["install", "bpf-linker"]);
    }
    let needs_linker = (debian && !right_version) || (!debian && !have_linker);
    if needs_linker {
        if apt_ok {
            println!("setup: building bpf-linker (about 75 s on 2 cores)");
            util::run(&mut cmd)?;
            if !on_path("bpf-linker") {
                println!(
                    "setup: warning: bpf-linker was installed but is not on PATH; add ~/.cargo/bin to PATH"
                );
            }
            done += 1;
        } else {
            pending.0.push(util::display(&cmd));
        }
    }

    // 4. tracefs and bpffs.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo")?;
    for (fstype, dir) in [("tracefs", "/sys/kernel/tracing"), ("bpf", "/sys/fs/bpf")] {
        if mounted(&mounts, fstype, dir) {
            continue;
        }
        let mut cmd = Command::new("mount");
        cmd.args(["-t", fstype, fstype, dir]);
        if root {
            if !Path::new(dir).is_dir() {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
            }
            util::run(&mut cmd)?;
            done += 1;
        } else {
            pending.0.push(format!("sudo {}", util::display(&cmd)));
        }
    }

    if !pending.0.is_empty() {
        println!(
            "setup: not root, so these steps are left to you (run them, then run this again):"
        );
        for c in &pending.0 {
            println!("    {c}");
        }
        bail!("setup incomplete: {} step(s) need root", pending.0.len());
    }
    let took = fmt(start.elapsed());
    if done == 0 {
        println!("setup: everything already in place ({took})");
    } else {
        println!("setup: {done} step(s) done ({took})");
    }
    Ok(done)
}

/// The packages of `wanted` that are not installed, or `None` without dpkg.
fn missing_packages(wanted: &[&str]) -> Result<Option<Vec<String>>> {
    if !on_path("dpkg-query") {
        return Ok(None);
    }
    // Unknown packages make dpkg-query exit 1 and say so on stderr; the
    // installed ones are still listed on stdout.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package}\t${db:Status-Abbrev}\n"])
        .args(wanted)
        .stderr(std::process::Stdio::null())
        .output()
        .context("cannot run dpkg-query")?;
    let listed = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, status)| status.starts_with("ii"))
        .map(|(name, _)| name.split(':').next().unwrap_or(name))
        .collect();
    Ok(Some(
        wanted
            .iter()
            .filter(|p| !installed.contains(p))
            .map(|p| p.to_string())
            .collect(),
    ))
}

/// Whether a filesystem of `fstype` is mounted at `dir` (per mountinfo).
fn mounted(mountinfo: &str, fstype: &str, dir: &str) -> bool {
    mountinfo.lines().any(|line| {
        let mut halves = line.splitn(2, " - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
            return false;
        };
        let mount_point = left.split_whitespace().nth(4);
        let ty = right.split_whitespace().next();
        mount_point == Some(dir) && ty == Some(fstype)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_matched_by_type_and_point() {
        let info = "45 23 0:13 / /sys/kernel/tracing rw,relatime - tracefs tracefs rw\n\
                    30 23 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert!(mounted(info, "tracefs", "/sys/kernel/tracing"));
        assert!(!mounted(info, "bpf", "/sys/fs/bpf"));
        assert!(!mounted(info, "tracefs", "/sys/fs/bpf"));
    }
}
