//! The contenders: no monitor, agentwatch, bpftrace and auditd, each started
//! so that it watches the same thing and stopped with its own loss report.
//!
//! - agentwatch: the daemon with its default policy and the recorder on
//!   (`agentwatch --cgroup CG --record DIR`), or `agentwatch trace` while the
//!   daemon is not available (the report says which).
//! - bpftrace 0.17: one script on the same tracepoints, filtered on the same
//!   cgroup with `cgroup == cgroupid(PATH)`, printing the same fields (the
//!   path as passed: bpftrace has no way to resolve the opened file without
//!   BTF trampolines, which this kernel lacks), to a file.
//! - auditd: the same system calls as exit rules. Audit has no cgroup
//!   filter, so the rules select the workload's uid, which is how one would
//!   scope auditd to an agent running as its own user.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::host::{self, Spawned};

/// Who is watching during a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contender {
    Agentwatch,
    /// Another agentwatch build (`--candidate`), to compare a change in the
    /// same run.
    Candidate,
    Bpftrace,
    Auditd,
}

impl Contender {
    /// The monitors measured: agentwatch, the candidate if any, the peers.
    pub fn monitors(env: &Env) -> Vec<Contender> {
        let mut v = vec![Contender::Agentwatch];
        if env.candidate.is_some() {
            v.push(Contender::Candidate);
        }
        v.extend([Contender::Bpftrace, Contender::Auditd]);
        v
    }

    pub fn name(self) -> &'static str {
        match self {
            Contender::Agentwatch => "agentwatch",
            Contender::Candidate => "candidate",
            Contender::Bpftrace => "bpftrace",
            Contender::Auditd => "auditd",
        }
    }
}

/// How agentwatch runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AwMode {
    /// The daemon: detection, default policy, recorder.
    Daemon,
    /// `agentwatch trace --json`: every event printed (before the daemon exists).
    Trace,
}

impl AwMode {
    pub fn name(self) -> &'static str {
        match self {
            AwMode::Daemon => "daemon (default policy, recorder on)",
            AwMode::Trace => "trace --json",
        }
    }
}

/// What the benchmark's monitors share.
pub struct Env {
    pub agentwatch: PathBuf,
    /// A second agentwatch binary to measure alongside (`--candidate`).
    pub candidate: Option<PathBuf>,
    pub mode: AwMode,
    /// The benchmark's scratch directory.
    pub work: PathBuf,
    pub watched: PathBuf,
    /// The uid the watched workload runs as (audit's filter).
    pub agent_uid: u32,
}

/// Options of one agentwatch start.
pub struct AwOptions {
    /// Where stdout goes (alerts or trace lines).
    pub stdout: Stdio,
    /// Send alerts to journald (daemon mode).
    pub journald: bool,
    /// Alerts as JSON on stdout (daemon mode).
    pub json: bool,
    /// Ring-buffer size, when not the default.
    pub ring_mib: Option<u32>,
}

impl Default for AwOptions {
    fn default() -> Self {
        Self {
            stdout: Stdio::null(),
            journald: false,
            json: true,
            ring_mib: None,
        }
    }
}

/// A running agentwatch.
pub struct Agentwatch {
    pub proc: Spawned,
    /// Where its session goes (daemon mode).
    pub sessions: PathBuf,
    /// CPU seconds when it became ready.
    pub cpu_at_ready: f64,
}

/// What agentwatch said and used when it stopped.
#[derive(Clone, Debug, Default)]
pub struct AwSummary {
    /// Events it handled (its own count, from the closing line).
    pub events: Option<u64>,
    /// Records the kernel could not deliver, per kind.
    pub lost: Vec<(String, u64)>,
    /// CPU seconds from ready to just before the stop signal.
    pub cpu_secs: f64,
    /// Peak and current resident set, KiB, just before the stop signal.
    pub hwm_kib: u64,
    pub rss_kib: u64,
    /// Private memory (heap, stacks): the resident set without file and
    /// shared mappings such as the ring buffer's (RssAnon).
    pub anon_kib: u64,
    /// The session file, if one was written.
    pub session: Option<PathBuf>,
}

impl AwSummary {
    pub fn lost_total(&self) -> u64 {
        self.lost.iter().map(|(_, n)| n).sum()
    }

    pub fn lost_of(&self, kind: &str) -> u64 {
        self.lost
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, n)| n)
            .sum()
    }
}

impl Agentwatch {
    /// Starts agentwatch on `cgroup` and waits for its `ready` line.
    pub fn start(env: &Env, cgroup: &Path, opts: AwOptions) -> Result<Self> {
        Self::start_binary(env, &env.agentwatch, cgroup, opts)
    }

    /// Starts the agentwatch binary `bin` (the candidate, say).
    pub fn start_binary(env: &Env, bin: &Path, cgroup: &Path, opts: AwOptions) -> Result<Self> {
        let sessions = env.work.join(format!("sessions-{}", unique()));
        let mut cmd = Command::new(bin);
        match env.mode {
            AwMode::Daemon => {
                std::fs::create_dir_all(&sessions)?;
                cmd.arg("--cgroup")
                    .arg(cgroup)
                    .arg("--record")
                    .arg(&sessions);
                if opts.json {
                    cmd.arg("--json");
                }
                if !opts.journald {
                    cmd.arg("--no-journald");
                }
            }
            AwMode::Trace => {
                cmd.args(["trace", "--json", "--cgroup"]).arg(cgroup);
            }
        }
        if let Some(m) = opts.ring_mib {
            cmd.arg("--ring-mib").arg(m.to_string());
        }
        cmd.stdin(Stdio::null()).stdout(opts.stdout);
        let mut proc = Spawned::start(&mut cmd)?;
        proc.wait_line(|l| l.contains("; ready"), Duration::from_secs(60))
            .context("agentwatch did not start")?;
        let cpu_at_ready = host::cpu_secs(proc.pid()).unwrap_or(0.0);
        Ok(Self {
            proc,
            sessions,
            cpu_at_ready,
        })
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// SIGTERM, wait, and read its closing line.
    pub fn stop(self) -> Result<AwSummary> {
        let pid = self.pid();
        let cpu = host::cpu_secs(pid).unwrap_or(0.0) - self.cpu_at_ready;
        let hwm_kib = host::vm_kib(pid, "VmHWM").unwrap_or(0);
        let rss_kib = host::vm_kib(pid, "VmRSS").unwrap_or(0);
        let anon_kib = host::vm_kib(pid, "RssAnon").unwrap_or(0);
        let stderr = self.proc.stop(libc::SIGTERM, Duration::from_secs(60))?;
        let mut s = parse_summary(&stderr);
        s.cpu_secs = cpu;
        s.hwm_kib = hwm_kib;
        s.rss_kib = rss_kib;
        s.anon_kib = anon_kib;
        s.session = std::fs::read_dir(&self.sessions)
            .ok()
            .and_then(|d| d.flatten().map(|e| e.path()).find(|p| p.is_file()));
        Ok(s)
    }
}

fn unique() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// Parses `agentwatch: stopped; N events, M undecodable records, no events
/// lost` or `... LOST n events (open k, exec j)`.
pub fn parse_summary(lines: &[String]) -> AwSummary {
    let mut s = AwSummary::default();
    let Some(line) = lines.iter().rev().find(|l| l.contains("stopped;")) else {
        return s;
    };
    let after = &line[line.find("stopped;").unwrap_or(0) + "stopped;".len()..];
    s.events = after
        .split_whitespace()
        .next()
        .and_then(|w| w.trim_matches(',').parse().ok());
    if let Some(i) = line.find("LOST") {
        if let (Some(a), Some(b)) = (line[i..].find('('), line[i..].find(')')) {
            for part in line[i + a + 1..i + b].split(',') {
                let mut w = part.split_whitespace();
                if let (Some(k), Some(n)) = (w.next(), w.next().and_then(|n| n.parse().ok())) {
                    s.lost.push((k.to_string(), n));
                }
            }
        }
    }
    s
}

/// A running bpftrace.
pub struct Bpftrace {
    proc: Spawned,
    out: PathBuf,
}

/// Printed by the script's BEGIN probe, which runs once every probe is attached.
const BPFTRACE_READY: &str = "agentwatch-bench-ready";

/// The bpftrace script equivalent to agentwatch's probes on `cgroup`.
pub fn bpftrace_script(cgroup: &Path) -> String {
    let cg = format!("cgroup == cgroupid(\"{}\")", cgroup.display());
    let who = "nsecs, pid, curtask->real_parent->tgid, uid, gid, cgroup, comm";
    let whof = "%llu pid=%d ppid=%d uid=%d gid=%d cgroup=%llu comm=%s";
    format!(
        r#"// agentwatch bench: bpftrace doing what agentwatch's kernel side does, on
// the same tracepoints, for the same cgroup, printing the same fields.
BEGIN {{ printf("{BPFTRACE_READY}\n"); }}

tracepoint:syscalls:sys_enter_openat /{cg}/ {{ @path[tid] = args->filename; @flags[tid] = args->flags; }}
tracepoint:syscalls:sys_enter_openat2 /{cg}/ {{ @path[tid] = args->filename; @flags[tid] = args->how->flags; }}
tracepoint:syscalls:sys_enter_open /{cg}/ {{ @path[tid] = args->filename; @flags[tid] = args->flags; }}
tracepoint:syscalls:sys_enter_creat /{cg}/ {{ @path[tid] = args->pathname; @flags[tid] = 577; }}
tracepoint:syscalls:sys_exit_openat, tracepoint:syscalls:sys_exit_openat2,
tracepoint:syscalls:sys_exit_open, tracepoint:syscalls:sys_exit_creat
/@path[tid]/
{{
  printf("{whof} open path=%s flags=%d ret=%d\n", {who}, str(@path[tid]), @flags[tid], args->ret);
  delete(@path[tid]); delete(@flags[tid]);
}}

tracepoint:syscalls:sys_enter_execve /{cg}/ {{
  printf("{whof} exec file=%s argv=", {who}, str(args->filename));
  join(args->argv);
}}
tracepoint:syscalls:sys_enter_execveat /{cg}/ {{
  printf("{whof} exec file=%s argv=", {who}, str(args->filename));
  join(args->argv);
}}
tracepoint:syscalls:sys_exit_execve, tracepoint:syscalls:sys_exit_execveat /{cg}/ {{
  printf("{whof} exec-done ret=%d\n", {who}, args->ret);
}}

tracepoint:syscalls:sys_enter_connect /{cg}/ {{ @sa[tid] = args->uservaddr; @fd[tid] = args->fd; }}
tracepoint:syscalls:sys_exit_connect /@sa[tid]/ {{
  $sa = (struct sockaddr_in *)@sa[tid];
  $fam = $sa->sin_family;
  if ($fam == 2) {{
    $p = $sa->sin_port;
    printf("{whof} connect fd=%d family=%d addr=%s port=%d ret=%d\n", {who},
      @fd[tid], $fam, ntop(2, $sa->sin_addr.s_addr), (($p & 0xff) << 8) | ($p >> 8), args->ret);
  }} else if ($fam == 10) {{
    $s6 = (struct sockaddr_in6 *)@sa[tid];
    $p6 = $s6->sin6_port;
    printf("{whof} connect fd=%d family=%d addr=%s port=%d ret=%d\n", {who},
      @fd[tid], $fam, ntop(10, $s6->sin6_addr.in6_u.u6_addr8), (($p6 & 0xff) << 8) | ($p6 >> 8), args->ret);
  }}
  delete(@sa[tid]); delete(@fd[tid]);
}}

tracepoint:sched:sched_process_fork /{cg}/ {{
  printf("{whof} fork child=%d\n", {who}, args->child_pid);
}}
tracepoint:sched:sched_process_exit /{cg} && pid == tid/ {{
  printf("{whof} exit code=%d\n", {who}, curtask->exit_code >> 8);
}}
"#
    )
}

impl Bpftrace {
    pub fn start(env: &Env) -> Result<Self> {
        let n = unique();
        let script = env.work.join(format!("bench-{n}.bt"));
        let out = env.work.join(format!("bpftrace-{n}.out"));
        std::fs::write(&script, bpftrace_script(&env.watched))?;
        let file = std::fs::File::create(&out)?;
        let mut cmd = Command::new("bpftrace");
        cmd.arg(&script).stdin(Stdio::null()).stdout(file);
        let mut proc = Spawned::start(&mut cmd)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if host::read_head(&out, 4096).contains(BPFTRACE_READY) {
                break;
            }
            if let Some(st) = proc.child.try_wait()? {
                bail!("bpftrace exited ({st}): {}", proc.lines().join(" | "));
            }
            if Instant::now() > deadline {
                bail!("bpftrace not attached within 120 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { proc, out })
    }

    /// SIGINT; returns the events it reported lost. bpftrace sometimes does
    /// not exit after a flood of output (seen about once in 15 stops); it
    /// is then killed after 20 s, and the measurement already made stands.
    pub fn stop(self) -> Result<u64> {
        if let Err(e) = self.proc.stop(libc::SIGINT, Duration::from_secs(20)) {
            println!("bench: bpftrace: {e:#}");
        }
        let tail = host::read_tail(&self.out, 65536);
        let lost = tail
            .lines()
            .filter_map(|l| {
                let rest = l.trim().strip_prefix("Lost ")?;
                rest.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum();
        let _ = std::fs::remove_file(&self.out);
        Ok(lost)
    }
}

/// A running auditd with the benchmark's rules loaded.
pub struct Auditd {
    proc: Spawned,
    was_enabled: bool,
    lost_at_start: u64,
}

/// The audit rules equivalent to agentwatch's probes, for `uid`.
pub fn audit_rules(uid: u32) -> Vec<Vec<String>> {
    let rule = |syscalls: &str| -> Vec<String> {
        format!("-a always,exit -F arch=b64 -S {syscalls} -F uid={uid} -k agentwatch-bench")
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    vec![
        rule("open,openat,openat2,creat"),
        rule("execve,execveat"),
        rule("connect"),
        rule("fork,vfork,clone,clone3"),
        rule("exit_group"),
    ]
}

fn auditctl(args: &[&str]) -> Result<String> {
    let out = Command::new("auditctl")
        .args(args)
        .output()
        .context("cannot run auditctl")?;
    if !out.status.success() {
        bail!(
            "auditctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A field of `auditctl -s`.
fn audit_status(field: &str) -> Option<u64> {
    let s = auditctl(&["-s"]).ok()?;
    s.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next()? == field).then(|| w.next()?.parse().ok())?
    })
}

impl Auditd {
    pub fn start(env: &Env) -> Result<Self> {
        if let Some(pid) = audit_status("pid").filter(|p| *p != 0) {
            bail!("an audit daemon (pid {pid}) is already running; stop it first");
        }
        let was_enabled = audit_status("enabled").unwrap_or(0) != 0;
        let mut cmd = Command::new("auditd");
        cmd.arg("-n").stdin(Stdio::null()).stdout(Stdio::null());
        let mut proc = Spawned::start(&mut cmd)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while audit_status("pid") != Some(proc.pid() as u64) {
            if let Some(st) = proc.child.try_wait()? {
                bail!("auditd exited ({st}): {}", proc.lines().join(" | "));
            }
            if Instant::now() > deadline {
                bail!("auditd did not register within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Debian's /etc/audit/rules.d/audit.rules settings, then our rules.
        auditctl(&["-D"])?;
        auditctl(&["-b", "8192"])?;
        auditctl(&["--backlog_wait_time", "60000"])?;
        auditctl(&["-f", "1"])?;
        for r in audit_rules(env.agent_uid) {
            let args: Vec<&str> = r.iter().map(String::as_str).collect();
            auditctl(&args)?;
        }
        auditctl(&["-e", "1"])?;
        Ok(Self {
            proc,
            was_enabled,
            lost_at_start: audit_status("lost").unwrap_or(0),
        })
    }

    /// Deletes the rules and stops auditd; returns the records the kernel
    /// counted lost meanwhile.
    pub fn stop(self) -> Result<u64> {
        let lost = audit_status("lost")
            .unwrap_or(0)
            .saturating_sub(self.lost_at_start);
        let _ = auditctl(&["-D"]);
        let r = self.proc.stop(libc::SIGTERM, Duration::from_secs(30));
        if !self.was_enabled {
            let _ = auditctl(&["-e", "0"]);
        }
        r?;
        Ok(lost)
    }
}

/// One running contender.
pub enum Running {
    Agentwatch(Agentwatch),
    Bpftrace(Bpftrace),
    Auditd(Auditd),
}

/// What a contender reported when stopped.
#[derive(Clone, Debug)]
pub struct StopReport {
    pub lost: u64,
}

impl Running {
    pub fn start(c: Contender, env: &Env) -> Result<Self> {
        Ok(match c {
            Contender::Agentwatch => {
                Running::Agentwatch(Agentwatch::start(env, &env.watched, AwOptions::default())?)
            }
            Contender::Candidate => {
                let bin = env.candidate.as_deref().context("no --candidate given")?;
                Running::Agentwatch(Agentwatch::start_binary(
                    env,
                    bin,
                    &env.watched,
                    AwOptions::default(),
                )?)
            }
            Contender::Bpftrace => Running::Bpftrace(Bpftrace::start(env)?),
            Contender::Auditd => Running::Auditd(Auditd::start(env)?),
        })
    }

    /// The processes doing this monitor's user-space (and kernel thread) work.
    pub fn pids(&self) -> Vec<u32> {
        match self {
            Running::Agentwatch(a) => vec![a.pid()],
            Running::Bpftrace(b) => vec![b.proc.pid()],
            Running::Auditd(a) => {
                let mut v = vec![a.proc.pid()];
                v.extend(host::kthread("kauditd"));
                v
            }
        }
    }

    pub fn stop(self) -> Result<StopReport> {
        Ok(match self {
            Running::Agentwatch(a) => {
                let s = a.stop()?;
                if let Some(p) = &s.session {
                    let _ = std::fs::remove_file(p);
                }
                StopReport {
                    lost: s.lost_total(),
                }
            }
            Running::Bpftrace(b) => StopReport { lost: b.stop()? },
            Running::Auditd(a) => StopReport { lost: a.stop()? },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_lines_are_parsed() {
        let s = parse_summary(&[
            "agentwatch: watching /x (id 3); ready".into(),
            "agentwatch: stopped; 1200 events, 0 undecodable records, LOST 35 events (open 30, exec 5)"
                .into(),
        ]);
        assert_eq!(s.events, Some(1200));
        assert_eq!(s.lost_total(), 35);
        assert_eq!(s.lost_of("open"), 30);
        let s = parse_summary(&[
            "agentwatch: stopped; 7 events, 0 undecodable records, no events lost".into(),
        ]);
        assert_eq!((s.events, s.lost_total()), (Some(7), 0));
    }

    #[test]
    fn bpftrace_script_filters_on_the_cgroup() {
        let s = bpftrace_script(Path::new("/sys/fs/cgroup/unified/a/b"));
        assert!(s.contains("cgroup == cgroupid(\"/sys/fs/cgroup/unified/a/b\")"));
        assert!(s.contains("sys_exit_connect"));
    }
}
