//! The file form of a policy: the serde types as written, every field
//! optional so that a user file can say only what it changes (and be merged
//! over the embedded default).

use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;

use crate::detect::alert::Severity;

/// A policy file as written. Every field is optional so that a user file can
/// say only what it changes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicyFile {
    /// Format version (1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Spanned<u32>>,
    /// Per-rule switches and settings.
    #[serde(default)]
    pub rules: RulesFile,
    /// Alert output settings.
    #[serde(default)]
    pub alerts: AlertsFile,
    /// The secret catalog (`[[secret]]`).
    #[serde(default, rename = "secret", skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretFile>,
    /// Environment-dump settings.
    #[serde(default)]
    pub env: EnvFile,
    /// Allowed egress.
    #[serde(default)]
    pub egress: EgressFile,
    /// Per-rule allowances (`[[allow]]`).
    #[serde(default, rename = "allow", skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<AllowFile>,
}

/// `[rules]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RulesFile {
    /// `[rules.secret-read]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_read: Option<RuleFile>,
    /// `[rules.env-dump]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_dump: Option<RuleFile>,
    /// `[rules.unexpected-egress]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unexpected_egress: Option<RuleFile>,
    /// `[rules.exfiltration]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exfiltration: Option<RuleFile>,
}

/// `[rules.<id>]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuleFile {
    /// Switch the rule on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Severity of its alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// `exfiltration` only: the correlation window in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_secs: Option<Spanned<u64>>,
}

/// `[alerts]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AlertsFile {
    /// Suppression window for repeats of the same rule, process and object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_window_secs: Option<Spanned<u64>>,
}

/// One `[[secret]]` catalog entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecretFile {
    /// Unique name; a user entry with a default's name overrides it.
    pub name: Spanned<String>,
    /// What it is, for messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `false` switches the entry off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Path globs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<Spanned<String>>>,
    /// Globs of paths that are NOT this secret (`*.pub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Vec<Spanned<String>>>,
    /// Programs allowed to read it, by resolved executable (or script) path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_exe: Option<Vec<Spanned<String>>>,
}

/// `[env]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EnvFile {
    /// User file only: `false` replaces the default lists instead of extending them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherit: Option<bool>,
    /// Resolved paths of `env` and `printenv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binaries: Option<Vec<Spanned<String>>>,
    /// Resolved paths of multi-call binaries (busybox, toybox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multicall: Option<Vec<Spanned<String>>>,
    /// Globs of secret-looking variable names (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_vars: Option<Vec<Spanned<String>>>,
}

/// `[egress]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EgressFile {
    /// User file only: `false` replaces the default `allow` list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherit: Option<bool>,
    /// Allow loopback and unspecified addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_loopback: Option<bool>,
    /// Allow the system resolvers (from /etc/resolv.conf) on port 53.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_resolvers: Option<bool>,
    /// Allowed destinations: host patterns, addresses, CIDRs, optional `:PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<Spanned<String>>>,
}

/// One `[[allow]]` per-rule allowance.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AllowFile {
    /// The rule it silences.
    pub rule: Spanned<String>,
    /// Only for this program (resolved executable or script path glob).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<Spanned<String>>,
    /// `secret-read`: only for files matching this glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Spanned<String>>,
    /// `secret-read`: only for this catalog entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Spanned<String>>,
    /// `unexpected-egress`: only for this destination (as in `[egress] allow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<Spanned<String>>,
    /// Free text: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}
