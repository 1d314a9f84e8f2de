//! `cargo xtask bench` (root): agentwatch against no monitor, bpftrace and
//! auditd, side by side in one run.
//!
//! 1. overhead: open, exec and connect loops inside the watched cgroup, and
//!    outside it, under each contender, as time ratios to no monitor;
//! 2. profile: agentwatch's BPF run time per operation (kernel.bpf_stats);
//! 3. flood: opens from the watched cgroup at rising rates; events
//!    generated, received and counted lost, which must add up exactly;
//! 4. latency: from a secret read to the alert on JSON stdout and in journald;
//! 5. footprint: daemon CPU per million events and resident memory over a
//!    run with process churn.
//!
//! These machines are noisy (2 cores shared with compiles), so every
//! comparison is a ratio measured in the same run: each contender's slot is
//! framed by two no-monitor slots, the contenders rotate between
//! repetitions, and medians are reported. The table goes to stdout and the
//! same figures to `target/bench/bench.json`.

mod flood;
mod footprint;
mod host;
mod latency;
mod monitors;
mod overhead;
mod report;
pub mod workload;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::util::{self, is_root};
use host::{Cgroups, Placement};
use monitors::{Agentwatch, AwMode, AwOptions, Env};

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// A short run (about 3 minutes): 2 repetitions, shorter loops, 2 s
    /// flood steps, a 15 s churn.
    #[arg(long)]
    quick: bool,
    /// The footprint churn for 10 minutes instead of 1.
    #[arg(long)]
    long: bool,
    /// Only these phases (comma-separated): overhead, profile, flood,
    /// latency, footprint.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Phase>,
    /// Repetitions of the overhead measurement (default 5, 2 with --quick).
    #[arg(long)]
    reps: Option<u32>,
    /// Use `agentwatch trace` even when the daemon is available.
    #[arg(long)]
    trace: bool,
    /// This agentwatch binary instead of building the release one.
    #[arg(long, value_name = "PATH")]
    agentwatch: Option<PathBuf>,
    /// Also measure this agentwatch binary (overhead and profile phases), to
    /// compare a change against the current build in the same run.
    #[arg(long, value_name = "PATH")]
    candidate: Option<PathBuf>,
    /// Where to write the JSON figures (default target/bench/bench.json).
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    Overhead,
    Profile,
    Flood,
    Latency,
    Footprint,
}

/// Sizes of a run.
pub struct Config {
    pub reps: u32,
    /// Seconds per workload loop.
    pub loop_secs: f64,
    /// Seconds per flood step.
    pub flood_secs: f64,
    /// Target opens/s of the flood steps (0: as fast as the workers can).
    pub flood_rates: Vec<f64>,
    /// Processes flooding.
    pub flood_workers: u32,
    pub latency_samples: u32,
    pub churn_secs: f64,
    pub churn_rate: f64,
}

impl Config {
    fn new(args: &BenchArgs) -> Self {
        let quick = args.quick;
        Self {
            reps: args.reps.unwrap_or(if quick { 2 } else { 5 }),
            loop_secs: if quick { 0.3 } else { 0.7 },
            flood_secs: if quick { 2.0 } else { 10.0 },
            flood_rates: if quick {
                vec![100e3, 200e3, 0.0]
            } else {
                vec![50e3, 100e3, 150e3, 200e3, 250e3, 300e3, 0.0]
            },
            flood_workers: 2,
            latency_samples: if quick { 30 } else { 100 },
            churn_secs: if args.long {
                600.0
            } else if quick {
                15.0
            } else {
                60.0
            },
            churn_rate: 100.0,
        }
    }
}

/// The uid the watched workload runs as: no passwd entry, like a throwaway
/// agent user. Audit's rules select it.
pub const AGENT_UID: u32 = 61234;
/// The uid of "every other process" (the loops outside the watched cgroup).
pub const OTHER_UID: u32 = 61235;

/// Everything the phases share.
pub struct Ctx {
    pub env: Env,
    pub cg: Cgroups,
    pub cfg: Config,
    /// A copy of this binary, runnable by the workload uids.
    pub workload: PathBuf,
    /// The small file the open loop reads.
    pub small: PathBuf,
}

impl Ctx {
    pub fn inside(&self) -> Placement {
        Placement {
            cgroup: self.cg.watched.clone(),
            uid: Some(AGENT_UID),
            fifo: None,
        }
    }

    pub fn outside(&self) -> Placement {
        Placement {
            cgroup: self.cg.outside.clone(),
            uid: Some(OTHER_UID),
            fifo: None,
        }
    }

    /// A `bench-workload` command placed in `place`.
    pub fn workload_cmd(&self, args: &[String], place: &Placement) -> Result<Command> {
        let mut cmd = Command::new(&self.workload);
        cmd.arg("bench-workload").args(args).current_dir("/");
        host::place(&mut cmd, place)?;
        Ok(cmd)
    }

    /// Runs a workload to completion and parses its JSON line.
    pub fn run_workload(&self, args: &[String], place: &Placement) -> Result<Value> {
        check_interrupted()?;
        let mut cmd = self.workload_cmd(args, place)?;
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run the workload {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "workload `{}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().last().unwrap_or("");
        serde_json::from_str(line).with_context(|| format!("workload printed {line:?}"))
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Fails once SIGINT or SIGTERM arrived, so guards (cgroups, auditd rules,
/// sysctls) are undone on the way out.
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// The scratch directory, removed on drop.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Packages the benchmark compares against or uses.
const PACKAGES: &[&str] = &["bpftrace", "auditd", "bpftool", "zstd"];

fn install_peers() -> Result<()> {
    let Some(missing) = host::missing_packages(PACKAGES) else {
        println!(
            "bench: no dpkg here; install {} yourself",
            PACKAGES.join(" ")
        );
        return Ok(());
    };
    if missing.is_empty() {
        return Ok(());
    }
    println!("bench: installing {}", missing.join(" "));
    util::run(Command::new("apt-get").args(["-o", "DPkg::Lock::Timeout=300", "update"]))?;
    util::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-o", "DPkg::Lock::Timeout=300"])
            .args(&missing),
    )
}

/// Facts about the machine for the report.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    json!({
        "kernel": kernel.trim(),
        "os": os,
        "cpus": cpus,
        "cpu_model": model,
        "mem_gib": (mem_kib as f64 / 1048576.0).round(),
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether the full daemon runs on this build (it may still be `trace` only).
fn probe_mode(env: &mut Env, force_trace: bool) -> String {
    if force_trace {
        env.mode = AwMode::Trace;
        return "--trace given".into();
    }
    env.mode = AwMode::Daemon;
    match Agentwatch::start(env, &env.watched.clone(), AwOptions::default()) {
        Ok(a) => {
            let _ = a.stop();
            "daemon available".into()
        }
        Err(e) => {
            env.mode = AwMode::Trace;
            format!(
                "daemon not available ({:#}); measuring `agentwatch trace`",
                e
            )
            .chars()
            .take(300)
            .collect()
        }
    }
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if !is_root() {
        bail!("the benchmark loads BPF programs, creates cgroups and runs auditd: run it as root");
    }
    let started = Instant::now();
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let cfg = Config::new(args);
    let phases: Vec<Phase> = if args.only.is_empty() {
        vec![
            Phase::Overhead,
            Phase::Profile,
            Phase::Flood,
            Phase::Latency,
            Phase::Footprint,
        ]
    } else {
        args.only.clone()
    };

    let agentwatch = match &args.agentwatch {
        Some(p) => p.clone(),
        None => crate::build::build(true)?,
    };
    install_peers()?;
    crate::test::start_journald()?;

    let work = WorkDir(PathBuf::from(format!(
        "/tmp/agentwatch-bench-{}",
        std::process::id()
    )));
    prepare_work_dir(&work.0)?;
    let cg = Cgroups::create()?;
    let workload = work.0.join("workload");
    std::fs::copy(std::env::current_exe()?, &workload).context("copying the workload binary")?;
    let small = work.0.join("data").join("small.txt");

    let mut env = Env {
        agentwatch,
        candidate: args.candidate.clone(),
        mode: AwMode::Daemon,
        work: work.0.clone(),
        watched: cg.watched.clone(),
        agent_uid: AGENT_UID,
    };
    let mode_note = probe_mode(&mut env, args.trace);
    println!("bench: agentwatch mode: {} ({mode_note})", env.mode.name());
    let ctx = Ctx {
        env,
        cg,
        cfg,
        workload,
        small,
    };

    let mut doc = json!({
        "started": util_time(),
        "machine": machine(),
        "loadavg_start": loadavg(),
        "agentwatch_mode": ctx.env.mode.name(),
        "agentwatch_mode_note": mode_note,
        "config": {
            "quick": args.quick,
            "reps": ctx.cfg.reps,
            "loop_secs": ctx.cfg.loop_secs,
            "flood_secs": ctx.cfg.flood_secs,
            "flood_workers": ctx.cfg.flood_workers,
            "latency_samples": ctx.cfg.latency_samples,
            "churn_secs": ctx.cfg.churn_secs,
            "churn_rate": ctx.cfg.churn_rate,
            "agent_uid": AGENT_UID,
            "other_uid": OTHER_UID,
        },
    });
    let mut text = String::new();
    let mut goals: Vec<(String, Option<bool>, String)> = Vec::new();
    for phase in &phases {
        check_interrupted()?;
        let t = Instant::now();
        let (key, result) = match phase {
            Phase::Overhead => ("overhead", overhead::run(&ctx)),
            Phase::Profile => ("profile", overhead::profile(&ctx)),
            Phase::Flood => ("flood", flood::run(&ctx)),
            Phase::Latency => ("latency", latency::run(&ctx)),
            Phase::Footprint => ("footprint", footprint::run(&ctx)),
        };
        let took = t.elapsed();
        match result {
            Ok(section) => {
                println!("\n{}", section.text);
                text.push_str(&section.text);
                text.push('\n');
                goals.extend(section.goals);
                let mut v = section.json;
                v["secs"] = report::num(took.as_secs_f64());
                doc[key] = v;
            }
            Err(e) => {
                check_interrupted()?;
                println!("\n{key}: FAILED: {e:#}");
                doc[key] = json!({ "error": format!("{e:#}") });
                text.push_str(&format!("{key}: FAILED: {e:#}\n\n"));
            }
        }
    }

    let mut g = report::Table::new(&["goal", "result", "measured"]);
    for (name, ok, measured) in &goals {
        let word = match ok {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "n/a",
        };
        g.row(vec![name.clone(), word.into(), measured.clone()]);
    }
    let goals_text = format!("Goals (issue 5)\n{}", g.render("  "));
    println!("\n{goals_text}");
    text.push_str(&goals_text);
    doc["goals"] = goals
        .iter()
        .map(|(n, ok, m)| json!({ "goal": n, "met": ok, "measured": m }))
        .collect();
    doc["loadavg_end"] = json!(loadavg());
    doc["total_secs"] = report::num(started.elapsed().as_secs_f64());
    doc["table"] = json!(text);

    let path = args
        .json
        .clone()
        .unwrap_or_else(|| crate::build::target_dir().join("bench").join("bench.json"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")?;
    std::fs::write(path.with_extension("txt"), &text)?;
    println!(
        "bench: figures in {} (table in {}); took {}",
        path.display(),
        path.with_extension("txt").display(),
        crate::steps::fmt(started.elapsed())
    );
    Ok(())
}

fn util_time() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    out
}

/// Lays out the scratch directory, readable by the workload uids.
fn prepare_work_dir(work: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_dir_all(work);
    for d in ["", "data", "flood", "decoy"] {
        let dir = work.join(d);
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::write(
        work.join("data").join("small.txt"),
        "a small file the open loop reads\n".repeat(4),
    )?;
    Ok(())
}

/// What a phase hands back: its table, its JSON and its goal verdicts.
pub struct Section {
    pub text: String,
    pub json: Value,
    /// (goal, met (None: not measured), measured value).
    pub goals: Vec<(String, Option<bool>, String)>,
}

/// Waits `d`, failing early on an interrupt.
pub fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        check_interrupted()?;
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    Ok(())
}
