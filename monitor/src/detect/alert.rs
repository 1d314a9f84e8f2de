//! The alert: what a detector found, in the shape every sink writes.
//!
//! The JSON form of [`Alert`] (one object per line on stdout with `--json`) is
//! a public interface, documented in the README: add fields, never rename or
//! remove them.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// How bad it is. Maps to a journald `PRIORITY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Unexpected, possibly harmless.
    Medium,
    /// A secret was touched.
    High,
    /// A secret was touched and something left the machine.
    Critical,
}

impl Severity {
    /// The lowercase name used in JSON and journald.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// syslog priority for journald: critical 2, high 3, medium 4, low 5.
    pub fn syslog_priority(self) -> u8 {
        match self {
            Severity::Critical => 2,
            Severity::High => 3,
            Severity::Medium => 4,
            Severity::Low => 5,
        }
    }
}

/// One alert. Field names are the JSON schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Time of the event that triggered it: RFC 3339, UTC, nanoseconds.
    pub time: String,
    /// Stable rule id: `secret-read`, `env-dump`, `unexpected-egress`, `exfiltration`.
    pub rule: String,
    /// Severity.
    pub severity: Severity,
    /// One human sentence.
    pub message: String,
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// User id.
    pub uid: u32,
    /// `comm` of the process.
    pub comm: String,
    /// Resolved executable path, where known.
    pub exe: Option<String>,
    /// Command line, where known.
    pub argv: Option<Vec<String>>,
    /// cgroup id of the process.
    pub cgroup_id: u64,
    /// cgroup path relative to the cgroup2 root, where known.
    pub cgroup: Option<String>,
    /// File rules: the resolved path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// File rules: the path as the process passed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_requested: Option<String>,
    /// Network rules: destination address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daddr: Option<IpAddr>,
    /// Network rules: destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// Network rules: `tcp` or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Network rules: the name the address was resolved from, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// How many times this (rule, process, object) fired in the suppression
    /// window; 1 for a first alert.
    pub count: u64,
    /// `exfiltration`: the secret-read or env-dump half.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Box<Alert>>,
    /// `exfiltration`: the unexpected-egress half.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Box<Alert>>,
    /// Extra rule-specific detail (what matched, which catalog entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// An empty alert to fill in with struct-update syntax
/// (`Alert { rule, message, ..Alert::default() }`): every optional field
/// empty, `count` 1 (a first alert), severity `low` until the rule sets it.
impl Default for Alert {
    fn default() -> Self {
        Alert {
            time: String::new(),
            rule: String::new(),
            severity: Severity::Low,
            message: String::new(),
            pid: 0,
            ppid: 0,
            uid: 0,
            comm: String::new(),
            exe: None,
            argv: None,
            cgroup_id: 0,
            cgroup: None,
            path: None,
            path_requested: None,
            daddr: None,
            dport: None,
            protocol: None,
            host: None,
            count: 1,
            cause: None,
            egress: None,
            detail: None,
        }
    }
}
