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

pub mod error;

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;

use crate::detect::alert::Severity;
pub use error::PolicyError;

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
// The file form
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Parsing, validation, merging
// ---------------------------------------------------------------------------

/// The embedded default, parsed and validated on its own.
fn base_file() -> Result<PolicyFile, PolicyError> {
    let file = parse_file(DEFAULT_POLICY_NAME, DEFAULT_POLICY)?;
    let cx = Ctx {
        name: DEFAULT_POLICY_NAME,
        text: DEFAULT_POLICY,
    };
    validate_file(&file, &HashSet::new(), &cx)?;
    Ok(file)
}

fn parse_file(name: &str, text: &str) -> Result<PolicyFile, PolicyError> {
    toml::from_str::<PolicyFile>(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let (message, expected) = split_expected(e.message());
        PolicyError::at(name, text, offset, message, expected)
    })
}

/// toml's messages often read "unknown field `x`, expected one of ...": keep
/// the "expected" part apart so the error prints it uniformly.
fn split_expected(msg: &str) -> (String, Option<String>) {
    let msg = msg.trim();
    if let Some(i) = msg.find(", expected ") {
        let (a, b) = msg.split_at(i);
        return (a.to_string(), Some(b[", expected ".len()..].to_string()));
    }
    (msg.to_string(), None)
}

struct Ctx<'a> {
    name: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        msg: impl Into<String>,
        expected: &str,
    ) -> Result<T, PolicyError> {
        Err(PolicyError::at(
            self.name,
            self.text,
            span.start,
            msg,
            (!expected.is_empty()).then(|| expected.to_string()),
        ))
    }
}

const PATH_EXPECTED: &str = "a glob such as `~/.aws/credentials`, `/etc/shadow` or `.env.*`";
const EXE_EXPECTED: &str =
    "an absolute executable path or glob such as `/usr/bin/git` or `~/.local/bin/*`";
const DEST_EXPECTED: &str =
    "a host name such as `api.example.com` or `*.example.com`, an address, or a CIDR such as `10.0.0.0/8`, optionally followed by `:PORT`";

/// Check everything in one file that can be checked without the other
/// (globs, destinations, ranges), with that file's positions.
fn validate_file(
    file: &PolicyFile,
    known_secrets: &HashSet<String>,
    cx: &Ctx<'_>,
) -> Result<(), PolicyError> {
    if let Some(v) = &file.version {
        if *v.get_ref() != POLICY_VERSION {
            return cx.err(
                v.span(),
                format!("unsupported policy version {}", v.get_ref()),
                "version = 1",
            );
        }
    }
    for (id, rule) in [
        (RuleId::SecretRead, &file.rules.secret_read),
        (RuleId::EnvDump, &file.rules.env_dump),
        (RuleId::UnexpectedEgress, &file.rules.unexpected_egress),
        (RuleId::Exfiltration, &file.rules.exfiltration),
    ] {
        let Some(rule) = rule else { continue };
        if let Some(w) = &rule.window_secs {
            if id != RuleId::Exfiltration {
                return cx.err(
                    w.span(),
                    format!("`window-secs` applies to `exfiltration` only, not `{id}`"),
                    "",
                );
            }
            if !(1..=86_400).contains(w.get_ref()) {
                return cx.err(
                    w.span(),
                    format!("window of {} s is out of range", w.get_ref()),
                    "1 to 86400 seconds",
                );
            }
        }
    }
    if let Some(w) = &file.alerts.dedup_window_secs {
        if *w.get_ref() > 3600 {
            return cx.err(
                w.span(),
                format!("window of {} s is out of range", w.get_ref()),
                "0 (off) to 3600 seconds",
            );
        }
    }
    let mut names = HashSet::new();
    for s in &file.secrets {
        let name = s.name.get_ref();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return cx.err(
                s.name.span(),
                format!("invalid secret name `{name}`"),
                "letters, digits, `-` and `_`",
            );
        }
        if !names.insert(name.clone()) {
            return cx.err(
                s.name.span(),
                format!("secret `{name}` is defined twice in this file"),
                "unique names",
            );
        }
        let overrides = known_secrets.contains(name);
        match &s.paths {
            Some(p) if p.is_empty() && !overrides => {
                return cx.err(
                    s.name.span(),
                    format!("secret `{name}` has no paths"),
                    PATH_EXPECTED,
                )
            }
            None if !overrides => {
                return cx.err(
                    s.name.span(),
                    format!("new secret `{name}` needs `paths`"),
                    "`paths = [...]` (or the name of a default entry to override it)",
                )
            }
            _ => {}
        }
        for p in s.paths.iter().flatten().chain(s.exclude.iter().flatten()) {
            check_path_glob(p, cx)?;
        }
        for e in s.allow_exe.iter().flatten() {
            check_exe_glob(e, cx)?;
        }
    }
    for e in file
        .env
        .binaries
        .iter()
        .flatten()
        .chain(file.env.multicall.iter().flatten())
    {
        check_exe_glob(e, cx)?;
    }
    for v in file.env.secret_vars.iter().flatten() {
        let s = v.get_ref();
        if s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '*' || c == '?')
        {
            return cx.err(
                v.span(),
                format!("invalid variable name pattern `{s}`"),
                "letters, digits, `_`, `*` and `?`",
            );
        }
    }
    for d in file.egress.allow.iter().flatten() {
        if let Err(m) = DestPattern::from_str(d.get_ref()) {
            return cx.err(d.span(), m, DEST_EXPECTED);
        }
    }
    for a in &file.allow {
        let rule = match RuleId::from_str(a.rule.get_ref()) {
            Ok(r) => r,
            Err(m) => return cx.err(a.rule.span(), m, &rule_list()),
        };
        if a.exe.is_none() && a.path.is_none() && a.secret.is_none() && a.dest.is_none() {
            return cx.err(a.rule.span(), "allowance without a condition would switch the rule off", "at least one of `exe`, `path`, `secret`, `dest` (or `[rules.<id>] enabled = false`)");
        }
        let (ok_path, ok_dest) = match rule {
            RuleId::SecretRead => (true, false),
            RuleId::EnvDump => (false, false),
            RuleId::UnexpectedEgress => (false, true),
            RuleId::Exfiltration => (false, false),
        };
        if let Some(e) = &a.exe {
            check_exe_glob(e, cx)?;
        }
        for (key, v, ok) in [
            ("path", &a.path, ok_path),
            ("secret", &a.secret, ok_path),
            ("dest", &a.dest, ok_dest),
        ] {
            if let Some(v) = v {
                if !ok {
                    return cx.err(
                        v.span(),
                        format!("`{key}` does not apply to rule `{rule}`"),
                        allow_keys(rule),
                    );
                }
            }
        }
        if let Some(p) = &a.path {
            check_path_glob(p, cx)?;
        }
        if let Some(s) = &a.secret {
            if !known_secrets.contains(s.get_ref()) && !names.contains(s.get_ref()) {
                return cx.err(
                    s.span(),
                    format!("no secret named `{}`", s.get_ref()),
                    "the name of a `[[secret]]` entry",
                );
            }
        }
        if let Some(d) = &a.dest {
            if let Err(m) = DestPattern::from_str(d.get_ref()) {
                return cx.err(d.span(), m, DEST_EXPECTED);
            }
        }
    }
    Ok(())
}

fn allow_keys(rule: RuleId) -> &'static str {
    match rule {
        RuleId::SecretRead => "`exe`, `path` or `secret`",
        RuleId::EnvDump | RuleId::Exfiltration => "`exe`",
        RuleId::UnexpectedEgress => "`exe` or `dest`",
    }
}

fn validate_user(
    base: &PolicyFile,
    user: &PolicyFile,
    name: &str,
    text: &str,
) -> Result<(), PolicyError> {
    let known: HashSet<String> = base
        .secrets
        .iter()
        .map(|s| s.name.get_ref().clone())
        .collect();
    validate_file(user, &known, &Ctx { name, text })
}

fn check_path_glob(p: &Spanned<String>, cx: &Ctx<'_>) -> Result<(), PolicyError> {
    match PathPattern::parse(p.get_ref()) {
        Ok(_) => Ok(()),
        Err(m) => cx.err(p.span(), m, PATH_EXPECTED),
    }
}

fn check_exe_glob(p: &Spanned<String>, cx: &Ctx<'_>) -> Result<(), PolicyError> {
    let s = p.get_ref();
    if !(s.starts_with('/') || s.starts_with("~/")) {
        return cx.err(
            p.span(),
            format!("`{s}` is not an absolute path"),
            EXE_EXPECTED,
        );
    }
    match PathPattern::parse(s) {
        Ok(_) => Ok(()),
        Err(m) => cx.err(p.span(), m, EXE_EXPECTED),
    }
}

fn merge_list(
    base: Option<Vec<Spanned<String>>>,
    user: Option<Vec<Spanned<String>>>,
    inherit: bool,
) -> Option<Vec<Spanned<String>>> {
    match (base, user) {
        (b, None) => b,
        (Some(mut b), Some(u)) if inherit => {
            for x in u {
                if !b.iter().any(|y| y.get_ref() == x.get_ref()) {
                    b.push(x);
                }
            }
            Some(b)
        }
        (_, Some(u)) => Some(u),
    }
}

fn merge_rule(base: Option<RuleFile>, user: Option<RuleFile>) -> Option<RuleFile> {
    match (base, user) {
        (b, None) => b,
        (None, u) => u,
        (Some(b), Some(u)) => Some(RuleFile {
            enabled: u.enabled.or(b.enabled),
            severity: u.severity.or(b.severity),
            window_secs: u.window_secs.or(b.window_secs),
        }),
    }
}

/// Merge a user file over the base (both already validated).
fn merge(mut base: PolicyFile, user: PolicyFile) -> PolicyFile {
    if user.version.is_some() {
        base.version = user.version;
    }
    base.rules = RulesFile {
        secret_read: merge_rule(base.rules.secret_read, user.rules.secret_read),
        env_dump: merge_rule(base.rules.env_dump, user.rules.env_dump),
        unexpected_egress: merge_rule(base.rules.unexpected_egress, user.rules.unexpected_egress),
        exfiltration: merge_rule(base.rules.exfiltration, user.rules.exfiltration),
    };
    if user.alerts.dedup_window_secs.is_some() {
        base.alerts.dedup_window_secs = user.alerts.dedup_window_secs;
    }
    for s in user.secrets {
        if let Some(b) = base
            .secrets
            .iter_mut()
            .find(|b| b.name.get_ref() == s.name.get_ref())
        {
            if s.description.is_some() {
                b.description = s.description;
            }
            if s.enabled.is_some() {
                b.enabled = s.enabled;
            }
            if s.paths.is_some() {
                b.paths = s.paths;
            }
            if s.exclude.is_some() {
                b.exclude = s.exclude;
            }
            if s.allow_exe.is_some() {
                b.allow_exe = s.allow_exe;
            }
        } else {
            base.secrets.push(s);
        }
    }
    let inherit = user.env.inherit.unwrap_or(true);
    base.env = EnvFile {
        inherit: None,
        binaries: merge_list(base.env.binaries, user.env.binaries, inherit),
        multicall: merge_list(base.env.multicall, user.env.multicall, inherit),
        secret_vars: merge_list(base.env.secret_vars, user.env.secret_vars, inherit),
    };
    let inherit = user.egress.inherit.unwrap_or(true);
    base.egress = EgressFile {
        inherit: None,
        allow_loopback: user.egress.allow_loopback.or(base.egress.allow_loopback),
        allow_resolvers: user.egress.allow_resolvers.or(base.egress.allow_resolvers),
        allow: merge_list(base.egress.allow, user.egress.allow, inherit),
    };
    base.allow.extend(user.allow);
    base
}

fn strings(v: &Option<Vec<Spanned<String>>>) -> Vec<String> {
    v.iter().flatten().map(|s| s.get_ref().clone()).collect()
}

fn rule_settings(r: &Option<RuleFile>, default: Severity) -> RuleSettings {
    RuleSettings {
        enabled: r.as_ref().and_then(|r| r.enabled).unwrap_or(true),
        severity: r.as_ref().and_then(|r| r.severity).unwrap_or(default),
    }
}

/// Turn a merged, validated file into a [`Policy`].
fn compile(merged: PolicyFile) -> Policy {
    let r = &merged.rules;
    let exfil_window_secs = r
        .exfiltration
        .as_ref()
        .and_then(|r| r.window_secs.as_ref())
        .map(|w| *w.get_ref())
        .unwrap_or(60);
    let dedup_secs = merged
        .alerts
        .dedup_window_secs
        .as_ref()
        .map(|w| *w.get_ref())
        .unwrap_or(10);
    let secrets = merged
        .secrets
        .iter()
        .filter(|s| s.enabled.unwrap_or(true))
        .map(|s| SecretSpec {
            name: s.name.get_ref().clone(),
            description: s
                .description
                .clone()
                .unwrap_or_else(|| s.name.get_ref().clone()),
            paths: strings(&s.paths),
            exclude: strings(&s.exclude),
            allow_exe: strings(&s.allow_exe),
        })
        .collect();
    let env = EnvSpec {
        binaries: strings(&merged.env.binaries),
        multicall: strings(&merged.env.multicall),
        secret_vars: strings(&merged.env.secret_vars),
    };
    let egress = EgressSpec {
        allow_loopback: merged.egress.allow_loopback.unwrap_or(true),
        allow_resolvers: merged.egress.allow_resolvers.unwrap_or(true),
        allow: merged
            .egress
            .allow
            .iter()
            .flatten()
            .filter_map(|d| DestPattern::from_str(d.get_ref()).ok())
            .collect(),
    };
    let allow = merged
        .allow
        .iter()
        .filter_map(|a| {
            Some(Allowance {
                rule: RuleId::from_str(a.rule.get_ref()).ok()?,
                exe: a.exe.as_ref().map(|s| s.get_ref().clone()),
                path: a.path.as_ref().map(|s| s.get_ref().clone()),
                secret: a.secret.as_ref().map(|s| s.get_ref().clone()),
                dest: a
                    .dest
                    .as_ref()
                    .and_then(|s| DestPattern::from_str(s.get_ref()).ok()),
            })
        })
        .collect();
    Policy {
        secret_read: rule_settings(&r.secret_read, Severity::High),
        env_dump: rule_settings(&r.env_dump, Severity::High),
        unexpected_egress: rule_settings(&r.unexpected_egress, Severity::Medium),
        exfiltration: rule_settings(&r.exfiltration, Severity::Critical),
        exfil_window_ns: exfil_window_secs * 1_000_000_000,
        dedup_window_ns: dedup_secs * 1_000_000_000,
        secrets,
        env,
        egress,
        allow,
        merged,
    }
}

// ---------------------------------------------------------------------------
// Path patterns
// ---------------------------------------------------------------------------

/// A path glob from the policy, in one of three forms:
/// `/abs/glob`, `~/home/relative/glob` (every user's home), or a pattern
/// without a leading `/` that matches the end of any path (`.env` matches
/// `/srv/app/.env`). `*` and `?` stay within a component; `**` crosses them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathPattern {
    /// An absolute glob.
    Absolute(String),
    /// Relative to every home directory (the part after `~/`).
    Home(String),
    /// Matches anywhere: the glob for the trailing components.
    Anywhere(String),
}

impl PathPattern {
    /// Parse and check a pattern.
    pub fn parse(s: &str) -> Result<PathPattern, String> {
        if s.is_empty() {
            return Err("empty path pattern".into());
        }
        if s.contains('\0') {
            return Err("path pattern contains a NUL byte".into());
        }
        let p = if let Some(rest) = s.strip_prefix("~/") {
            if rest.is_empty() {
                return Err("`~/` alone would match every home directory".into());
            }
            PathPattern::Home(rest.to_string())
        } else if s.starts_with('~') {
            return Err(format!(
                "`{s}`: only `~/` (every user's home) is supported, not `~user`"
            ));
        } else if s.starts_with('/') {
            PathPattern::Absolute(s.to_string())
        } else {
            PathPattern::Anywhere(s.trim_start_matches("**/").to_string())
        };
        for g in p.globs(&["/h".to_string()]) {
            globset::GlobBuilder::new(&g)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("invalid glob `{s}`: {}", e.kind()))?;
        }
        Ok(p)
    }

    /// The absolute globs this pattern stands for, given the home directories.
    pub fn globs(&self, homes: &[String]) -> Vec<String> {
        match self {
            PathPattern::Absolute(s) => vec![s.clone()],
            PathPattern::Home(rest) => homes
                .iter()
                .map(|h| format!("{}/{}", h.trim_end_matches('/'), rest))
                .collect(),
            PathPattern::Anywhere(s) => vec![format!("/**/{s}")],
        }
    }
}

// ---------------------------------------------------------------------------
// Destinations
// ---------------------------------------------------------------------------

/// An address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    /// Network address (host bits cleared).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl IpNet {
    /// Parse `addr/prefix` or a bare address.
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("`{a}` is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => {
                let n: u8 = p
                    .parse()
                    .map_err(|_| format!("`{p}` is not a prefix length"))?;
                if n > max {
                    return Err(format!("prefix length {n} is over {max}"));
                }
                n
            }
        };
        Ok(IpNet {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether `ip` is inside (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix as u32)
            };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix as u32)
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as IPv4; everything else unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// What an allowed destination names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestTarget {
    /// A host name pattern, lowercase: `api.example.com` or `*.example.com`
    /// (`*.` is any number of labels, at least one; never the apex).
    Host(String),
    /// An address range.
    Net(IpNet),
}

/// An allowed destination: a host pattern or address range, optional port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestPattern {
    /// Host or range.
    pub target: DestTarget,
    /// Port, or any.
    pub port: Option<u16>,
}

impl DestPattern {
    /// Whether a host name matches this pattern's host part (case-insensitive,
    /// a trailing dot ignored).
    pub fn host_matches(&self, name: &str) -> bool {
        let DestTarget::Host(pat) = &self.target else {
            return false;
        };
        host_matches(pat, name)
    }

    /// Whether the port is allowed.
    pub fn port_matches(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }
}

/// `*.example.com` matches `a.example.com` and `a.b.example.com`, not
/// `example.com`; other patterns match exactly. Case-insensitive.
pub fn host_matches(pattern: &str, name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            name.len() > suffix.len() + 1
                && name.ends_with(suffix)
                && name[..name.len() - suffix.len()].ends_with('.')
        }
        None => name == pattern,
    }
}

impl FromStr for DestPattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty destination".into());
        }
        let parse_port = |p: &str| -> Result<u16, String> {
            match p.parse::<u16>() {
                Ok(0) | Err(_) => Err(format!("`{p}` is not a port (1-65535)")),
                Ok(n) => Ok(n),
            }
        };
        // [v6] / [v6/len] with optional :port
        if let Some(rest) = s.strip_prefix('[') {
            let (inner, after) = rest.split_once(']').ok_or("missing `]`")?;
            let port = match after {
                "" => None,
                a => Some(parse_port(
                    a.strip_prefix(':').ok_or("expected `:PORT` after `]`")?,
                )?),
            };
            return Ok(DestPattern {
                target: DestTarget::Net(IpNet::parse(inner)?),
                port,
            });
        }
        // bare IPv6 address or CIDR (several colons, no brackets): no port
        if s.matches(':').count() > 1 {
            return Ok(DestPattern {
                target: DestTarget::Net(IpNet::parse(s)?),
                port: None,
            });
        }
        let (main, port) = match s.rsplit_once(':') {
            Some((m, p)) => (m, Some(parse_port(p)?)),
            None => (s, None),
        };
        let looks_numeric = main
            .split('/')
            .next()
            .is_some_and(|a| a.parse::<std::net::Ipv4Addr>().is_ok());
        if main.contains('/') || looks_numeric {
            return Ok(DestPattern {
                target: DestTarget::Net(IpNet::parse(main)?),
                port,
            });
        }
        let host = main.to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        let body = host.strip_prefix("*.").unwrap_or(host);
        if body.is_empty()
            || body.split('.').any(|l| {
                l.is_empty()
                    || l.len() > 63
                    || !l
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
        {
            return Err(format!(
                "`{main}` is not a host name (a `*` may only stand as the whole first label)"
            ));
        }
        Ok(DestPattern {
            target: DestTarget::Host(host.to_string()),
            port,
        })
    }
}

impl fmt::Display for DestPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.target, self.port) {
            (DestTarget::Host(h), None) => write!(f, "{h}"),
            (DestTarget::Host(h), Some(p)) => write!(f, "{h}:{p}"),
            (DestTarget::Net(n), None) => write!(f, "{n}"),
            (DestTarget::Net(n), Some(p)) if n.addr.is_ipv6() => write!(f, "[{n}]:{p}"),
            (DestTarget::Net(n), Some(p)) => write!(f, "{n}:{p}"),
        }
    }
}

#[cfg(test)]
mod tests;
