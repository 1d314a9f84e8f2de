//! Detection: synchronous functions of (state, event) -> alerts.
//!
//! [`Engine`] owns the state built from the stream (process table, DNS map,
//! learned file identities) and the detectors, and turns each [`Event`] into
//! zero or more [`Alert`]s, immediately. It reads nothing from the host: what
//! it needs about the machine comes in as [`HostFacts`] (recorded with a
//! session) and a [`CgroupLookup`]; time is the events' own, never the wall
//! clock, so replaying a session reproduces its alerts.
//!
//! Rules (stable ids): `secret-read` ([`secrets`]), `env-dump` ([`env`](mod@env)),
//! `unexpected-egress` ([`egress`]), `exfiltration` ([`exfil`]); repeats are
//! folded by [`dedup`].

pub mod alert;
pub mod dedup;
pub mod egress;
pub mod env;
pub mod exfil;
pub mod secrets;
pub mod shell;

use std::collections::BTreeMap;

use globset::GlobSet;

use crate::event::model::{Connect, Event, EventKind, Exec, Open};
use crate::host::HostFacts;
pub use crate::policy::RuleId;
use crate::policy::{canonical_ip, DestPattern, Policy};
use crate::proctree::{Proc, ProcTree};
use alert::{Alert, Severity};
use dedup::{Dedup, DedupKey};
use egress::EgressPolicy;
use env::EnvDetector;
use exfil::Correlator;
use secrets::SecretCatalog;

/// Names cgroup ids (path relative to the cgroup2 root). Live: the
/// `cgroup::CgroupNames` cache; replay: the names recorded in the session.
pub trait CgroupLookup: Send {
    /// The path of cgroup `id`, where known.
    fn lookup(&mut self, id: u64) -> Option<String>;
}

impl CgroupLookup for crate::cgroup::CgroupNames {
    fn lookup(&mut self, id: u64) -> Option<String> {
        crate::cgroup::CgroupNames::lookup(self, id)
    }
}

impl CgroupLookup for BTreeMap<u64, String> {
    fn lookup(&mut self, id: u64) -> Option<String> {
        self.get(&id).cloned()
    }
}

/// No names (tests).
impl CgroupLookup for () {
    fn lookup(&mut self, _id: u64) -> Option<String> {
        None
    }
}

/// Anything that turns events into alerts: the [`Engine`], or a closure in tests.
pub trait Detect: Send {
    /// One event in; alerts out, at once.
    fn on_event(&mut self, event: &Event) -> Vec<Alert>;
    /// The time is now `now_ns` (event time): summaries of closed windows.
    fn tick(&mut self, _now_ns: u64) -> Vec<Alert> {
        Vec::new()
    }
    /// End of stream: every pending summary.
    fn finish(&mut self) -> Vec<Alert> {
        Vec::new()
    }
}

/// A plain function of the event is a detector without summaries (tests,
/// `trace`).
impl<F: FnMut(&Event) -> Vec<Alert> + Send> Detect for F {
    fn on_event(&mut self, event: &Event) -> Vec<Alert> {
        self(event)
    }
}

/// Counters for what the engine could not use (never fatal).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Events seen.
    pub events: u64,
    /// Alerts raised before deduplication.
    pub findings: u64,
    /// Alerts folded into a repeat count.
    pub suppressed: u64,
    /// DNS messages that did not parse.
    pub dns_malformed: u64,
    /// Events the kernel reported lost.
    pub lost: u64,
}

struct AllowRule {
    rule: RuleId,
    exe: Option<GlobSet>,
    path: Option<GlobSet>,
    secret: Option<String>,
    dest: Option<DestPattern>,
}

/// A raw finding, before it becomes an alert.
struct Finding {
    rule: RuleId,
    message: String,
    object: String,
    path: Option<String>,
    path_requested: Option<String>,
    connect: Option<(Connect, Option<String>)>,
    detail: Option<String>,
}

/// The detection engine.
pub struct Engine {
    policy: Policy,
    cgroups: Box<dyn CgroupLookup>,
    procs: ProcTree,
    dns: crate::dns::DnsMap,
    secrets: SecretCatalog,
    env: EnvDetector,
    egress: EgressPolicy,
    exfil: Correlator,
    dedup: Dedup,
    allow: Vec<AllowRule>,
    stats: EngineStats,
    last_sweep_ns: u64,
}

impl Engine {
    /// Build the engine for a policy, the host facts (live: gathered at start;
    /// replay: from the session) and a cgroup namer.
    pub fn new(policy: Policy, facts: HostFacts, cgroups: Box<dyn CgroupLookup>) -> Engine {
        let homes = facts.homes();
        let allow = policy
            .allow
            .iter()
            .map(|a| AllowRule {
                rule: a.rule,
                exe: a
                    .exe
                    .as_ref()
                    .map(|e| secrets::path_set(std::slice::from_ref(e), &homes)),
                path: a
                    .path
                    .as_ref()
                    .map(|p| secrets::path_set(std::slice::from_ref(p), &homes)),
                secret: a.secret.clone(),
                dest: a.dest.clone(),
            })
            .collect();
        Engine {
            secrets: SecretCatalog::new(&policy, &facts),
            env: EnvDetector::new(&policy, &facts),
            egress: EgressPolicy::new(&policy, &facts),
            exfil: Correlator::new(policy.exfil_window_ns),
            dedup: Dedup::new(policy.dedup_window_ns),
            procs: ProcTree::new(policy.exfil_window_ns.max(120_000_000_000), 65_536),
            dns: crate::dns::DnsMap::default(),
            allow,
            cgroups,
            policy,
            stats: EngineStats::default(),
            last_sweep_ns: 0,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The process table (for timelines and tests).
    pub fn procs(&self) -> &ProcTree {
        &self.procs
    }

    /// One event in; alerts out. Summaries of repeat windows that the event's
    /// time closes come first.
    pub fn on_event(&mut self, ev: &Event) -> Vec<Alert> {
        self.stats.events += 1;
        let mut out = self.dedup.tick(ev.time_ns);
        self.procs.observe(ev);
        let findings: Vec<Finding> = match &ev.kind {
            EventKind::Open(o) => self.on_open(ev, o),
            EventKind::Exec(x) => self.on_exec(ev, x),
            EventKind::Connect(c) => self.on_connect(ev, c),
            EventKind::Dns(d) => {
                if self.dns.observe(ev.time_ns, &d.payload).is_err() {
                    self.stats.dns_malformed += 1;
                }
                Vec::new()
            }
            EventKind::Exit(_) => {
                if let Some(p) = self.procs.get(ev.task.pid) {
                    self.env.on_exit(p.key);
                }
                Vec::new()
            }
            EventKind::Lost(l) => {
                self.stats.lost += l.counts.values().sum::<u64>();
                Vec::new()
            }
            EventKind::Fork(_) | EventKind::ProcSnapshot(_) => Vec::new(),
        };
        for f in findings {
            self.stats.findings += 1;
            self.raise(ev, f, &mut out);
        }
        if ev.time_ns.saturating_sub(self.last_sweep_ns) >= 10_000_000_000 {
            self.exfil.expire(ev.time_ns);
            self.last_sweep_ns = ev.time_ns;
        }
        out
    }

    /// Summaries of repeat windows closed by `now_ns`.
    pub fn tick(&mut self, now_ns: u64) -> Vec<Alert> {
        self.dedup.tick(now_ns)
    }

    /// End of stream: every pending summary.
    pub fn finish(&mut self) -> Vec<Alert> {
        self.dedup.flush()
    }

    fn proc_of(&self, ev: &Event) -> Option<&Proc> {
        self.procs.get(ev.task.pid)
    }

    fn allowed(
        &self,
        rule: RuleId,
        proc: Option<&Proc>,
        path: Option<&str>,
        secret: Option<&str>,
        dest: Option<(&Connect, &[&str])>,
    ) -> bool {
        let ids = proc.map(|p| p.identities()).unwrap_or_default();
        self.allow.iter().filter(|a| a.rule == rule).any(|a| {
            a.exe
                .as_ref()
                .is_none_or(|g| ids.iter().any(|i| g.is_match(i)))
                && a.path
                    .as_ref()
                    .is_none_or(|g| path.is_some_and(|p| g.is_match(p)))
                && a.secret.as_ref().is_none_or(|s| secret == Some(s.as_str()))
                && a.dest.as_ref().is_none_or(|d| {
                    dest.is_some_and(|(c, names)| {
                        d.port_matches(c.dport)
                            && match &d.target {
                                crate::policy::DestTarget::Net(n) => n.contains(c.daddr),
                                crate::policy::DestTarget::Host(_) => {
                                    names.iter().any(|n| d.host_matches(n))
                                }
                            }
                    })
                })
        })
    }

    fn on_open(&mut self, ev: &Event, o: &Open) -> Vec<Finding> {
        let mut out = Vec::new();
        let key = self.proc_of(ev).map(|p| p.key);
        if self.policy.env_dump.enabled {
            if let Some(hit) = self.env.on_open(key, o) {
                if !self.allowed(RuleId::EnvDump, self.proc_of(ev), None, None, None) {
                    out.push(Finding {
                        rule: RuleId::EnvDump,
                        message: format!(
                            "{} read the environment of a process: {}",
                            who(ev),
                            hit.reason
                        ),
                        detail: Some(dump_kind(&hit.object).to_string()),
                        object: hit.object,
                        path: o.path.clone(),
                        path_requested: Some(o.requested.clone()),
                        connect: None,
                    });
                }
            }
        } else {
            self.env.on_open(key, o);
        }
        let proc = self.procs.get(ev.task.pid);
        let ids = || {
            proc.map(|p| p.identities().into_iter().map(String::from).collect())
                .unwrap_or_default()
        };
        if let Some(hit) = self.secrets.check_with(o, ids) {
            if self.policy.secret_read.enabled
                && !hit.allowed
                && !self.allowed(
                    RuleId::SecretRead,
                    self.proc_of(ev),
                    Some(&hit.path),
                    Some(&hit.secret),
                    None,
                )
            {
                let how = match &hit.by {
                    secrets::MatchedBy::Path => String::new(),
                    secrets::MatchedBy::Inode(orig) => format!(" (hard link to {orig})"),
                };
                out.push(Finding {
                    rule: RuleId::SecretRead,
                    message: format!("{} read {} {}{}", who(ev), hit.description, hit.path, how),
                    object: hit.path.clone(),
                    path: Some(hit.path.clone()),
                    path_requested: Some(o.requested.clone()),
                    connect: None,
                    detail: Some(format!("secret: {}{}", hit.secret, how)),
                });
            }
        }
        out
    }

    fn on_exec(&mut self, ev: &Event, x: &Exec) -> Vec<Finding> {
        if !self.policy.env_dump.enabled {
            return Vec::new();
        }
        let proc = self.procs.get(ev.task.pid);
        let Some(hit) = self.env.on_exec(proc, x) else {
            return Vec::new();
        };
        if self.allowed(RuleId::EnvDump, proc, None, None, None) {
            return Vec::new();
        }
        vec![Finding {
            rule: RuleId::EnvDump,
            message: format!("{} dumped the environment: {}", who(ev), hit.reason),
            detail: Some(dump_kind(&hit.object).to_string()),
            object: hit.object,
            path: None,
            path_requested: None,
            connect: None,
        }]
    }

    fn on_connect(&mut self, ev: &Event, c: &Connect) -> Vec<Finding> {
        if !self.policy.unexpected_egress.enabled || !EgressPolicy::relevant(c) {
            return Vec::new();
        }
        let names: Vec<String> = self
            .dns
            .names(c.daddr, ev.time_ns)
            .into_iter()
            .map(String::from)
            .collect();
        let nr: Vec<&str> = names.iter().map(String::as_str).collect();
        let v = self.egress.check(c.daddr, c.dport, &nr);
        if v.allowed
            || self.allowed(
                RuleId::UnexpectedEgress,
                self.proc_of(ev),
                None,
                None,
                Some((c, &nr)),
            )
        {
            return Vec::new();
        }
        let ip = canonical_ip(c.daddr);
        let dest = match &v.host {
            Some(h) => format!("{h} ({})", sockaddr(ip, c.dport)),
            None => sockaddr(ip, c.dport),
        };
        let proto = proto_str(c);
        let mut details = Vec::new();
        match &v.host {
            Some(_) if names.len() > 1 => {
                details.push(format!("resolved from {}", names.join(", ")))
            }
            Some(_) => {}
            None => details.push("no DNS answer seen for this address".to_string()),
        }
        if c.ret < 0 && c.ret != -115 {
            details.push(format!("connect failed with errno {}", -c.ret));
        }
        let detail = details.join("; ");
        vec![Finding {
            rule: RuleId::UnexpectedEgress,
            message: format!(
                "{} connected to {dest} over {proto}, which the policy does not allow",
                who(ev)
            ),
            object: format!("{}/{proto}", sockaddr(ip, c.dport)),
            path: None,
            path_requested: None,
            connect: Some((c.clone(), v.host)),
            detail: (!detail.is_empty()).then_some(detail),
        }]
    }

    fn severity(&self, rule: RuleId) -> Severity {
        self.policy.rule(rule).severity
    }

    fn base_alert(&mut self, ev: &Event, rule: RuleId, message: String) -> Alert {
        let p = self.procs.get(ev.task.pid);
        let exe = p.and_then(|p| p.exe.clone());
        let argv = p.filter(|p| !p.argv.is_empty()).map(|p| p.argv.clone());
        let ppid = if ev.task.ppid != 0 {
            ev.task.ppid
        } else {
            p.map(|p| p.ppid).unwrap_or(0)
        };
        Alert {
            time: rfc3339_ns(ev.time_ns),
            rule: rule.as_str().to_string(),
            severity: self.severity(rule),
            message,
            pid: ev.task.pid,
            ppid,
            uid: ev.task.uid,
            comm: ev.task.comm.clone(),
            exe,
            argv,
            cgroup_id: ev.task.cgroup_id,
            cgroup: self.cgroups.lookup(ev.task.cgroup_id),
            ..Alert::default()
        }
    }

    fn raise(&mut self, ev: &Event, f: Finding, out: &mut Vec<Alert>) {
        let mut a = self.base_alert(ev, f.rule, f.message);
        a.path = f.path;
        a.path_requested = f.path_requested;
        a.detail = f.detail;
        if let Some((c, host)) = &f.connect {
            a.daddr = Some(canonical_ip(c.daddr));
            a.dport = Some(c.dport);
            a.protocol = Some(proto_str(c).to_string());
            a.host = host.clone();
        }
        let (pkey, tree) = self
            .proc_of(ev)
            .map(|p| (p.key, Some(p.tree)))
            .unwrap_or((u64::from(ev.task.pid) << 32, None));
        // correlation sees every finding, repeats included
        let mut exfil = None;
        match f.rule {
            RuleId::SecretRead | RuleId::EnvDump => {
                if let (Some(t), true) = (tree, self.policy.exfiltration.enabled) {
                    self.exfil.cause(t, ev.time_ns, &a);
                }
            }
            RuleId::UnexpectedEgress => {
                if let (Some(t), true) = (tree, self.policy.exfiltration.enabled) {
                    if let Some((cause, n)) = self.exfil.egress(t, ev.time_ns) {
                        let allowed =
                            self.allowed(RuleId::Exfiltration, self.proc_of(ev), None, None, None);
                        if !allowed {
                            exfil = Some(self.exfil_alert(ev, &a, cause, n));
                        }
                    }
                }
            }
            RuleId::Exfiltration => {}
        }
        let key = DedupKey {
            rule: f.rule.as_str(),
            process: pkey,
            object: f.object.clone(),
        };
        match self.dedup.admit(key, a, ev.time_ns) {
            Some(a) => out.push(a),
            None => self.stats.suppressed += 1,
        }
        if let Some((x, object)) = exfil {
            let key = DedupKey {
                rule: RuleId::Exfiltration.as_str(),
                process: pkey,
                object,
            };
            match self.dedup.admit(key, x, ev.time_ns) {
                Some(x) => out.push(x),
                None => self.stats.suppressed += 1,
            }
        }
    }

    fn exfil_alert(
        &mut self,
        ev: &Event,
        egress: &Alert,
        cause: Alert,
        n: usize,
    ) -> (Alert, String) {
        let dest = match (&egress.host, egress.daddr, egress.dport) {
            (Some(h), Some(ip), Some(p)) => format!("{h} ({})", sockaddr(ip, p)),
            (None, Some(ip), Some(p)) => sockaddr(ip, p),
            _ => "an unexpected destination".into(),
        };
        let what = match cause.rule.as_str() {
            "secret-read" => format!("read {}", cause.path.as_deref().unwrap_or("a secret")),
            _ => "dumped the environment".to_string(),
        };
        let secs = parse_gap(&cause.time, ev.time_ns);
        let message = format!(
            "possible exfiltration: {} (pid {}) connected to {dest} {secs} after {} (pid {}) {what}, in the same process tree",
            ev.task.comm, ev.task.pid, cause.comm, cause.pid
        );
        let object = format!(
            "{}|{}",
            cause
                .path
                .clone()
                .or(cause.detail.clone())
                .unwrap_or_default(),
            dest
        );
        let mut x = self.base_alert(ev, RuleId::Exfiltration, message);
        x.path = cause.path.clone();
        x.path_requested = cause.path_requested.clone();
        x.daddr = egress.daddr;
        x.dport = egress.dport;
        x.protocol = egress.protocol.clone();
        x.host = egress.host.clone();
        x.detail = Some(format!(
            "{n} secret-read/env-dump finding(s) in the window; latest: {}",
            cause.message
        ));
        x.cause = Some(Box::new(cause));
        x.egress = Some(Box::new(egress.clone()));
        (x, object)
    }
}

impl Detect for Engine {
    fn on_event(&mut self, event: &Event) -> Vec<Alert> {
        Engine::on_event(self, event)
    }
    fn tick(&mut self, now_ns: u64) -> Vec<Alert> {
        Engine::tick(self, now_ns)
    }
    fn finish(&mut self) -> Vec<Alert> {
        Engine::finish(self)
    }
}

/// How an environment was dumped, for `detail`.
fn dump_kind(object: &str) -> &'static str {
    match object.split(':').next().unwrap_or("") {
        "exec" => "env/printenv executed",
        "/proc/*/environ" => "/proc/PID/environ opened",
        "shell" => "shell builtin or expansion in sh -c",
        _ => "interpreter one-liner",
    }
}

fn who(ev: &Event) -> String {
    format!("{} (pid {})", ev.task.comm, ev.task.pid)
}

fn sockaddr(ip: std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        v4 => format!("{v4}:{port}"),
    }
}

fn proto_str(c: &Connect) -> &'static str {
    match c.protocol {
        crate::event::model::Protocol::Tcp => "tcp",
        crate::event::model::Protocol::Udp => "udp",
        crate::event::model::Protocol::Other => "other",
    }
}

/// The gap between an alert's RFC 3339 time and an event time, as "1.25 s".
fn parse_gap(rfc3339: &str, now_ns: u64) -> String {
    let then = rfc3339
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_nanosecond());
    match then {
        Some(t) => {
            let d = (i128::from(now_ns) - t).max(0) as f64 / 1e9;
            format!("{d:.2} s")
        }
        None => "shortly".into(),
    }
}

/// Nanoseconds since the epoch as RFC 3339 UTC with nine fractional digits
/// (`2026-12-01T10:00:00.123456789Z`).
pub fn rfc3339_ns(time_ns: u64) -> String {
    let secs = (time_ns / 1_000_000_000) as i64;
    let nanos = time_ns % 1_000_000_000;
    match jiff::Timestamp::from_second(secs) {
        Ok(ts) => format!("{}.{nanos:09}Z", ts.strftime("%Y-%m-%dT%H:%M:%S")),
        Err(_) => format!("1970-01-01T00:00:00.{nanos:09}Z"),
    }
}

#[cfg(test)]
mod tests;
