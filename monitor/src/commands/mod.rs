//! Subcommands whose work is library code: each module has a clap `Args`
//! struct and `run(args) -> anyhow::Result<ExitCode>`; the binary's `cli.rs`
//! and `app.rs` only wire them in.

pub mod policy;
pub mod replay;
pub mod sessions;
pub mod verify;
