//! `agentwatch policy show [--policy FILE]` prints the effective policy (the
//! embedded default merged with the user's file) as TOML;
//! `agentwatch policy check FILE` validates a file.
//!
//! A bad policy is returned as a [`PolicyError`] inside the `anyhow::Error`:
//! the binary maps it to exit code [`PolicyError::EXIT_CODE`] (2), as it does
//! for a bad `--policy` when watching.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::policy::{self, Policy, PolicyError};

/// `agentwatch policy ...`
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// What to do with the policy.
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// The policy subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum PolicyCommand {
    /// Print the effective policy as TOML: the embedded default, merged with
    /// FILE if given. The output is itself a valid policy file.
    Show {
        /// A policy file to merge over the default.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Check a policy file: exit 0 and a summary if it is valid, exit 2 and
    /// the file, line, column and what was expected if not.
    Check {
        /// The policy file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Run a policy subcommand, printing to stdout.
pub fn run(args: &PolicyArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    run_to(args, &mut out)
}

/// Run a policy subcommand, printing to `out`.
pub fn run_to(args: &PolicyArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match &args.command {
        PolicyCommand::Show { policy: file } => {
            let p = Policy::load(file.as_deref())?;
            out.write_all(policy::show(&p).as_bytes())?;
        }
        PolicyCommand::Check { file } => {
            let p: Result<Policy, PolicyError> = policy::check(file);
            let p = p?;
            writeln!(out, "{}: valid; {}", file.display(), summary(&p))?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// One line about what a policy does.
pub fn summary(p: &Policy) -> String {
    let on: Vec<&str> = crate::policy::RuleId::ALL
        .iter()
        .filter(|r| p.rule(**r).enabled)
        .map(|r| r.as_str())
        .collect();
    format!(
        "rules on: {}; {} secret catalog entries; {} allowed destinations; {} allowances; exfiltration window {} s",
        if on.is_empty() { "none".to_string() } else { on.join(", ") },
        p.secrets.len(),
        p.egress.allow.len(),
        p.allow.len(),
        p.exfil_window_ns / 1_000_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_prints_a_loadable_policy() {
        let mut out = Vec::new();
        let args = PolicyArgs {
            command: PolicyCommand::Show { policy: None },
        };
        assert_eq!(run_to(&args, &mut out).unwrap(), ExitCode::SUCCESS);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("[[secret]]") && text.contains("api.anthropic.com"),
            "{text}"
        );
        Policy::from_user_str("shown", &text).unwrap();
    }

    #[test]
    fn check_reports_position_as_a_policy_error() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "[rules.env-dump]\nenabled = false\n").unwrap();
        let mut out = Vec::new();
        let args = PolicyArgs {
            command: PolicyCommand::Check { file: good.clone() },
        };
        run_to(&args, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("valid") && !text.contains("env-dump,"),
            "{text}"
        );

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[egress]\nallow = [\"10.0.0.0/99\"]\n").unwrap();
        let args = PolicyArgs {
            command: PolicyCommand::Check { file: bad.clone() },
        };
        let err = run_to(&args, &mut Vec::new()).unwrap_err();
        let pe = err
            .downcast_ref::<PolicyError>()
            .expect("a PolicyError for the CLI to map to exit 2");
        assert!(
            matches!(
                pe,
                PolicyError::Invalid {
                    line: 2,
                    column: 10,
                    ..
                }
            ),
            "{pe}"
        );
        assert!(
            format!("{err:#}").starts_with(&format!("{}:2:10: ", bad.display())),
            "{err:#}"
        );
    }
}
