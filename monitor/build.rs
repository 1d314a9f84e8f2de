//! Builds the kernel programs (monitor-ebpf) for bpfel-unknown-none with
//! aya-build and leaves the object in OUT_DIR for `include_bytes_aligned!`.
//!
//! The toolchain is a setting, not a fork: `AGENTWATCH_EBPF_TOOLCHAIN` names
//! a rustup toolchain that can build `core` for BPF (default `debian-1.96`,
//! the Debian rustc linked by `cargo xtask setup`; elsewhere `nightly` with
//! the rust-src component). `AYA_BUILD_SKIP=1` skips the kernel build (for
//! `cargo check`/`clippy` on machines without bpf-linker); the binary then
//! carries an empty object and says so when asked to load it.

use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, Result};

fn main() -> Result<()> {
    println!("cargo:rerun-if-env-changed=AGENTWATCH_EBPF_TOOLCHAIN");
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let out = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        fs::write(out.join("monitor"), b"").context("writing the empty eBPF placeholder")?;
        return Ok(());
    }
    let toolchain = env::var("AGENTWATCH_EBPF_TOOLCHAIN").unwrap_or_else(|_| "debian-1.96".into());
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest.join("../monitor-ebpf");
    let common_dir = manifest.join("../monitor-common");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    // The eBPF build needs unstable `-Z build-std=core`; enable it for that
    // child cargo only, never for the user-space crates.
    // SAFETY: single-threaded build script, before any thread is spawned.
    unsafe { env::set_var("RUSTC_BOOTSTRAP", "1") };
    let ebpf_dir = ebpf_dir.to_str().context("non-UTF-8 path")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "monitor-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
    .with_context(|| {
        format!(
            "building the eBPF programs with toolchain {toolchain:?} failed; \
             run `cargo xtask setup` (or set AGENTWATCH_EBPF_TOOLCHAIN to a toolchain with rust-src)"
        )
    })
}
