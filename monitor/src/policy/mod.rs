//! The detection policy: WHAT to detect (runtime flags say HOW to run).
//!
//! A TOML file with positions: [`PolicyFile`] is the serde form (every field
//! optional, so that a user file can be merged over the embedded default,
//! [`DEFAULT_POLICY`]); [`Policy`] is the validated, merged result the detectors
//! compile against the host facts. Merge rules are documented at the top of
//! `default.toml` (and in `docs/detection.md`).
//!
//! Nothing here touches the host: `~/` stays a pattern until the detectors
//! expand it against the users of [`crate::host::HostFacts`].
//!
//! Layout: `file.rs` holds the serde types, `load.rs` parses, validates,
//! merges and compiles them, `pattern.rs` the path, address and destination
//! patterns; this file the rule ids and the validated [`Policy`].

pub mod error;
mod file;
mod load;
mod pattern;

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::detect::alert::Severity;
pub use error::PolicyError;
pub use file::{
    AlertsFile, AllowFile, EgressFile, EnvFile, PolicyFile, RuleFile, RulesFile, SecretFile,
};
use load::{base_file, compile, merge, parse_file, validate_file, validate_user, Ctx};
pub use pattern::{canonical_ip, host_matches, DestPattern, DestTarget, IpNet, PathPattern};

/// The embedded default policy.
pub const DEFAULT_POLICY: &str = include_str!("default.toml");

/// The name errors in the embedded default are reported under.
pub const DEFAULT_POLICY_NAME: &str = "<default policy>";

/// The only policy format version so far.
pub const POLICY_VERSION: u32 = 1;

// ---------------------------------------------------------------------------
// Rule ids
// ---------------------------------------------------------------------------

/// A rule's stable id (part of the public interface: JSON `rule`, journald
/// `AGENTWATCH_RULE`, policy keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    /// `secret-read`
    SecretRead,
    /// `env-dump`
    EnvDump,
    /// `unexpected-egress`
    UnexpectedEgress,
    /// `exfiltration`
    Exfiltration,
}

impl RuleId {
    /// Every rule, in documentation order.
    pub const ALL: [RuleId; 4] = [
        RuleId::SecretRead,
        RuleId::EnvDump,
        RuleId::UnexpectedEgress,
        RuleId::Exfiltration,
    ];

    /// The stable id.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::SecretRead => "secret-read",
            RuleId::EnvDump => "env-dump",
            RuleId::UnexpectedEgress => "unexpected-egress",
            RuleId::Exfiltration => "exfiltration",
        }
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RuleId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RuleId::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown rule `{s}`"))
    }
}

fn rule_list() -> String {
    RuleId::ALL
        .iter()
        .map(|r| format!("`{r}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------
// The validated form
// ---------------------------------------------------------------------------

/// A rule's effective settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleSettings {
    /// On or off.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
}

/// A secret catalog entry, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSpec {
    /// Unique name.
    pub name: String,
    /// What it is.
    pub description: String,
    /// Path globs (see [`PathPattern`] for the syntax).
    pub paths: Vec<String>,
    /// Exclusion globs.
    pub exclude: Vec<String>,
    /// Allowed readers.
    pub allow_exe: Vec<String>,
}

/// `[env]`, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvSpec {
    /// Resolved paths of env/printenv.
    pub binaries: Vec<String>,
    /// Resolved paths of multi-call binaries.
    pub multicall: Vec<String>,
    /// Secret-looking variable name globs.
    pub secret_vars: Vec<String>,
}

/// `[egress]`, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EgressSpec {
    /// Allow loopback.
    pub allow_loopback: bool,
    /// Allow the system resolvers on port 53.
    pub allow_resolvers: bool,
    /// Allowed destinations.
    pub allow: Vec<DestPattern>,
}

/// An `[[allow]]` entry, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowance {
    /// The rule it silences.
    pub rule: RuleId,
    /// Executable glob.
    pub exe: Option<String>,
    /// File glob.
    pub path: Option<String>,
    /// Catalog entry name.
    pub secret: Option<String>,
    /// Destination.
    pub dest: Option<DestPattern>,
}

/// The effective policy: the embedded default merged with the user's file,
/// validated.
#[derive(Clone, Debug)]
pub struct Policy {
    merged: PolicyFile,
    /// `secret-read`.
    pub secret_read: RuleSettings,
    /// `env-dump`.
    pub env_dump: RuleSettings,
    /// `unexpected-egress`.
    pub unexpected_egress: RuleSettings,
    /// `exfiltration`.
    pub exfiltration: RuleSettings,
    /// Correlation window of `exfiltration`, nanoseconds.
    pub exfil_window_ns: u64,
    /// Alert suppression window, nanoseconds.
    pub dedup_window_ns: u64,
    /// Enabled catalog entries, in file order.
    pub secrets: Vec<SecretSpec>,
    /// Environment-dump settings.
    pub env: EnvSpec,
    /// Egress settings.
    pub egress: EgressSpec,
    /// Per-rule allowances.
    pub allow: Vec<Allowance>,
}

impl Policy {
    /// The embedded default alone.
    pub fn default_policy() -> Policy {
        compile(base_file().expect("the embedded default policy is valid (tested)"))
    }

    /// The default merged with the user's file at `path`, if any.
    pub fn load(path: Option<&Path>) -> Result<Policy, PolicyError> {
        match path {
            None => Ok(Policy::default_policy()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| PolicyError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                Policy::from_user_str(&p.display().to_string(), &text)
            }
        }
    }

    /// The default merged with a user policy given as text; `name` is used in
    /// error messages.
    pub fn from_user_str(name: &str, text: &str) -> Result<Policy, PolicyError> {
        let base = base_file()?;
        let user = parse_file(name, text)?;
        validate_user(&base, &user, name, text)?;
        Ok(compile(merge(base, user)))
    }

    /// A complete effective policy (what [`show`] printed, as a session
    /// records it), taken as it is: NOT merged over this build's default, so
    /// replaying an old session is not changed by catalog entries a later
    /// agentwatch adds to its default.
    pub fn from_effective_str(name: &str, text: &str) -> Result<Policy, PolicyError> {
        let file = parse_file(name, text)?;
        validate_file(&file, &HashSet::new(), &Ctx { name, text })?;
        Ok(compile(file))
    }

    /// The merged file form (what [`show`] prints).
    pub fn file(&self) -> &PolicyFile {
        &self.merged
    }

    /// A rule's settings.
    pub fn rule(&self, rule: RuleId) -> RuleSettings {
        match rule {
            RuleId::SecretRead => self.secret_read,
            RuleId::EnvDump => self.env_dump,
            RuleId::UnexpectedEgress => self.unexpected_egress,
            RuleId::Exfiltration => self.exfiltration,
        }
    }
}

/// The effective policy as TOML (`agentwatch policy show`). Parsing the output
/// as a user policy gives the same effective policy.
pub fn show(policy: &Policy) -> String {
    let body = toml::to_string_pretty(policy.file())
        .unwrap_or_else(|e| format!("# cannot print the policy: {e}\n"));
    format!(
        "# agentwatch effective policy (the embedded default merged with the user's file)\n{body}"
    )
}

/// Validate a user policy file (`agentwatch policy check FILE`).
pub fn check(path: &Path) -> Result<Policy, PolicyError> {
    Policy::load(Some(path))
}

#[cfg(test)]
mod tests;
