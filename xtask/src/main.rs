//! `cargo xtask`: the project's own set-up, build, run and test tasks.
//!
//! Everything a fresh machine needs is installed by `setup`, which every other
//! task runs first; it is idempotent and takes well under a second when there
//! is nothing to do, so `cargo xtask run` and `cargo xtask test` are the only
//! two commands a user or CI ever needs.

mod bench;
mod build;
mod setup;
mod steps;
mod test;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// agentwatch's development tasks.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing: apt packages, the eBPF toolchain, bpf-linker,
    /// tracefs and bpffs mounts. Prints the commands instead when not root.
    Setup,
    /// Set up, then build the `agentwatch` binary.
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Set up, build (release), then run agentwatch as root (through sudo
    /// when not root) with the given arguments.
    Run {
        /// Arguments for agentwatch, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then run every check: rustfmt, clippy, unit tests and the
    /// privileged end-to-end tests against the real kernel (as root).
    Test(test::TestArgs),
    /// Set up, build (release), then measure agentwatch against no monitor,
    /// bpftrace and auditd (as root): overhead, throughput and loss, alert
    /// latency, footprint. Prints a table; figures in target/bench/bench.json.
    Bench(bench::BenchArgs),
    /// One benchmark workload (run by `bench` inside its cgroups).
    #[command(hide = true)]
    BenchWorkload(bench::workload::WorkloadArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run().map(|_| ()),
        Task::Build { release } => build::build(release).map(|_| ()),
        Task::Run { args } => build::run(&args),
        Task::Test(args) => test::run(&args),
        Task::Bench(args) => bench::run(&args),
        Task::BenchWorkload(args) => bench::workload::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
