//! The command line: runtime flags only. What to detect lives in the policy
//! file (`--policy`), how to run lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Watch an AI coding agent's cgroup for secret reads, environment dumps and
/// unexpected network egress, with eBPF.
///
/// Without a subcommand, agentwatch watches the given cgroups and alerts.
/// Alerts go to the journal (`journalctl -t agentwatch -f`), to stdout as JSON
/// lines with `--json`, or as readable lines when stdout is a terminal.
#[derive(Debug, Parser)]
#[command(
    name = "agentwatch",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  \
        sudo agentwatch --cgroup agent.slice\n  \
        sudo agentwatch trace --cgroup agent.slice --json\n  \
        journalctl -t agentwatch -f\n  \
        sudo agentwatch replay /var/lib/agentwatch/sessions/<file>"
)]
pub struct Cli {
    /// What to do; watching is the default.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Watching options (the default mode).
    #[command(flatten)]
    pub watch: WatchArgs,
    /// Log level for agentwatch's own diagnostics on stderr
    /// (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "info", env = "AGENTWATCH_LOG")]
    pub log: String,
}

/// The cgroups to watch, shared by watching and tracing.
#[derive(Debug, Args, Clone)]
pub struct Targets {
    /// cgroup subtree to watch: a systemd unit (agent.slice, a-b.slice,
    /// run-r1.scope), a path under the cgroup2 root (/agent.slice/x.scope),
    /// an absolute path under the cgroup2 mount, or a numeric cgroup id.
    /// Everything below it is watched too. Repeat for several (at most 8).
    #[arg(long = "cgroup", value_name = "CGROUP")]
    pub cgroups: Vec<String>,
    /// Ring-buffer size in MiB (a power of two). Larger absorbs longer bursts
    /// (8 MiB holds about 200 ms of a 200,000 opens/s flood); it counts twice
    /// in the daemon's RSS because the kernel maps it twice.
    #[arg(long, value_name = "MIB", default_value_t = 8)]
    pub ring_mib: u32,
}

/// Options of the watching daemon.
#[derive(Debug, Args, Clone)]
pub struct WatchArgs {
    /// Which cgroups.
    #[command(flatten)]
    pub targets: Targets,
    /// Policy file (TOML) extending the built-in defaults; see
    /// `agentwatch policy show` for the effective policy.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Print alerts on stdout as JSON lines (one object per alert, nothing else).
    #[arg(long)]
    pub json: bool,
    /// Do not send alerts to the journal.
    #[arg(long)]
    pub no_journald: bool,
    /// Record the session to this file or directory
    /// (default: /var/lib/agentwatch/sessions/).
    #[arg(long, value_name = "PATH", conflicts_with = "no_record")]
    pub record: Option<PathBuf>,
    /// Do not record the session.
    #[arg(long)]
    pub no_record: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print every event from the watched cgroups, one per line (debugging).
    Trace(TraceArgs),
    /// Show the effective policy, or check a policy file.
    Policy(agentwatch::commands::policy::PolicyArgs),
    /// Run a recorded session through the detection engine again.
    Replay(agentwatch::commands::replay::ReplayArgs),
    /// List recorded sessions.
    Sessions(agentwatch::commands::sessions::SessionsArgs),
    /// Check a session file's hash chain and footer.
    Verify(agentwatch::commands::verify::VerifyArgs),
}

/// Options of `agentwatch trace`.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Which cgroups.
    #[command(flatten)]
    pub targets: Targets,
    /// One JSON object per event per line.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn trace_takes_several_cgroups() {
        let cli = Cli::try_parse_from([
            "agentwatch",
            "trace",
            "--cgroup",
            "a.slice",
            "--cgroup",
            "/b",
            "--json",
        ])
        .unwrap();
        let Some(Command::Trace(t)) = cli.command else {
            panic!()
        };
        assert_eq!(t.targets.cgroups, vec!["a.slice", "/b"]);
        assert!(t.json);
    }
}
