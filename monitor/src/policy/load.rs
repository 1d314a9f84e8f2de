//! Parsing, validation, merging and compiling: from TOML text to a
//! [`Policy`], with every error naming the file, line and column.

use std::collections::HashSet;
use std::str::FromStr;

use serde_spanned::Spanned;

use super::{
    rule_list, Allowance, DestPattern, EgressFile, EgressSpec, EnvFile, EnvSpec, PathPattern,
    Policy, PolicyError, PolicyFile, RuleFile, RuleId, RuleSettings, RulesFile, SecretSpec,
    DEFAULT_POLICY, DEFAULT_POLICY_NAME, POLICY_VERSION,
};
use crate::detect::alert::Severity;

/// The embedded default, parsed and validated on its own.
pub(super) fn base_file() -> Result<PolicyFile, PolicyError> {
    let file = parse_file(DEFAULT_POLICY_NAME, DEFAULT_POLICY)?;
    let cx = Ctx {
        name: DEFAULT_POLICY_NAME,
        text: DEFAULT_POLICY,
    };
    validate_file(&file, &HashSet::new(), &cx)?;
    Ok(file)
}

pub(super) fn parse_file(name: &str, text: &str) -> Result<PolicyFile, PolicyError> {
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

pub(super) struct Ctx<'a> {
    pub(super) name: &'a str,
    pub(super) text: &'a str,
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
pub(super) fn validate_file(
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

pub(super) fn validate_user(
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
pub(super) fn merge(mut base: PolicyFile, user: PolicyFile) -> PolicyFile {
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
pub(super) fn compile(merged: PolicyFile) -> Policy {
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
