//! Throughput and loss: processes in the watched cgroup open a marker file
//! at a rising target rate; agentwatch (fresh for every step, default
//! 16 MiB ring buffer) must deliver every open or count it lost.
//!
//! The workers start and load their libraries before agentwatch attaches,
//! and during the step they do nothing but open and close their marker. So
//! every `open` the kernel side counts lost is a marker open, and
//!
//! ```text
//! generated (the workers' own count) == received (marker opens in the
//!   session file, or trace output) + lost (kernel, open) + dropped (recorder)
//! ```
//!
//! must hold exactly, at every rate. A last step stops the daemon
//! (SIGSTOP) for half the step, so loss certainly happens and the counters
//! are checked where they matter.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::host;
use super::monitors::{Agentwatch, AwMode, AwOptions, AwSummary};
use super::report::{num, thousands, Table};
use super::{check_interrupted, Ctx, Section};

/// One step's figures.
struct Step {
    label: String,
    target: f64,
    generated: u64,
    secs: f64,
    received: u64,
    lost_open: u64,
    lost_other: u64,
    recorder_dropped: u64,
    summary: AwSummary,
    /// CPU cores busy machine-wide during the step, and the workers' share.
    busy_cores: f64,
    worker_cores: f64,
}

impl Step {
    fn achieved(&self) -> f64 {
        self.generated as f64 / self.secs
    }
    fn exact(&self) -> bool {
        self.generated == self.received + self.lost_open + self.recorder_dropped
    }
    fn zero_loss(&self) -> bool {
        self.lost_open == 0 && self.lost_other == 0 && self.recorder_dropped == 0
    }
    fn cpu_per_m(&self) -> f64 {
        self.summary.cpu_secs / (self.generated as f64 / 1e6)
    }
}

/// Counts lines holding `needle` in `file` (zstd-compressed or plain), and
/// the events the recorder's `gap` records say it dropped. zstd and grep do
/// the scanning: a flood step can leave a gigabyte of JSON lines.
fn count_received(file: &Path, needle: &str) -> Result<(u64, u64)> {
    let sh = |script: &str| -> Result<String> {
        let out = Command::new("sh")
            .args(["-c", script, "sh"])
            .arg(file)
            .arg(needle)
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run zstd | grep")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let found: u64 = sh(r#"zstd -dcf -- "$1" | grep -cF -e "$2""#)?
        .trim()
        .parse()
        .unwrap_or(0);
    let gaps = sh(r#"zstd -dcf -- "$1" | grep -F '"gap":'"#)?;
    let dropped = gaps
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["gap"]["dropped_events"].as_u64().unwrap_or(0))
        .sum();
    Ok((found, dropped))
}

fn run_step(ctx: &Ctx, bin: Option<&Path>, idx: usize, target: f64, stall: bool) -> Result<Step> {
    check_interrupted()?;
    let marker = ctx.env.work.join("flood").join(format!("m-{idx:02}"));
    std::fs::write(&marker, "x")?;
    let workers = ctx.cfg.flood_workers;
    let secs = ctx.cfg.flood_secs;
    let per_worker = if target > 0.0 {
        target / workers as f64
    } else {
        0.0
    };
    // Workers first: their start-up (exec, libraries) happens before
    // agentwatch attaches; each says `ready` and waits for a byte.
    let mut children = Vec::new();
    for _ in 0..workers {
        let args: Vec<String> = vec![
            "flood".into(),
            "--path".into(),
            marker.display().to_string(),
            "--rate".into(),
            per_worker.to_string(),
            "--secs".into(),
            secs.to_string(),
        ];
        let mut cmd = ctx.workload_cmd(&args, &ctx.inside())?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        children.push(cmd.spawn().context("starting a flood worker")?);
    }
    // A file for trace mode's stdout (every event); the daemon records instead.
    let trace_out = ctx.env.work.join(format!("trace-{idx:02}.jsonl"));
    let stdout = match ctx.env.mode {
        AwMode::Trace => Stdio::from(std::fs::File::create(&trace_out)?),
        AwMode::Daemon => Stdio::null(),
    };
    let aw = Agentwatch::start_binary(
        &ctx.env,
        bin.unwrap_or(&ctx.env.agentwatch),
        &ctx.cg.watched,
        AwOptions {
            stdout,
            ..AwOptions::default()
        },
    )?;
    if stall {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(aw.pid() as libc::pid_t, libc::SIGSTOP) };
    }
    for c in &mut children {
        c.stdin.as_mut().expect("piped").write_all(b"g")?;
    }
    let started = Instant::now();
    let busy0 = host::busy_secs();
    if stall {
        super::sleep(Duration::from_secs_f64(secs / 2.0))?;
        // SAFETY: as above.
        unsafe { libc::kill(aw.pid() as libc::pid_t, libc::SIGCONT) };
    }
    let mut generated = 0u64;
    let mut worker_secs: f64 = 0.0;
    let mut worker_cpu: f64 = 0.0;
    for c in children {
        let out = c.wait_with_output()?;
        if !out.status.success() {
            bail!("a flood worker failed: {}", out.status);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(text.lines().last().unwrap_or(""))
            .with_context(|| format!("flood worker printed {text:?}"))?;
        generated += v["ops"].as_u64().unwrap_or(0);
        worker_secs = worker_secs.max(v["secs"].as_f64().unwrap_or(0.0));
        worker_cpu += v["cpu_self"].as_f64().unwrap_or(0.0);
    }
    let busy_cores = (host::busy_secs() - busy0) / started.elapsed().as_secs_f64();
    // Let the 5 ms drain timer empty the ring before stopping.
    std::thread::sleep(Duration::from_millis(300));
    let summary = aw.stop()?;
    // The open event's resolved path; the workers' argv (in the start-up
    // process snapshot) holds the marker too, but not after `"path":`.
    let needle = format!("\"path\":\"{}\"", marker.display());
    let (received, recorder_dropped) = match ctx.env.mode {
        AwMode::Daemon => match &summary.session {
            Some(f) => count_received(f, &needle)?,
            None => bail!("the daemon wrote no session file"),
        },
        AwMode::Trace => count_received(&trace_out, &needle)?,
    };
    if let Some(f) = &summary.session {
        let _ = std::fs::remove_file(f);
    }
    let _ = std::fs::remove_file(&trace_out);
    let lost_open = summary.lost_of("open");
    let lost_other = summary.lost_total() - lost_open;
    let who = if bin.is_some() { "candidate: " } else { "" };
    let label = who.to_string()
        + &if stall {
            "as fast as possible, daemon stopped for half the step".to_string()
        } else if target > 0.0 {
            thousands(target)
        } else {
            "as fast as possible".to_string()
        };
    let step = Step {
        label,
        target,
        generated,
        secs: worker_secs,
        received,
        lost_open,
        lost_other,
        recorder_dropped,
        summary,
        busy_cores,
        worker_cores: worker_cpu / worker_secs.max(1e-9),
    };
    println!(
        "flood: {}: {} opens/s, generated {} received {} lost {} dropped {} {}",
        step.label,
        thousands(step.achieved()),
        step.generated,
        step.received,
        step.lost_open,
        step.recorder_dropped,
        if step.exact() { "exact" } else { "NOT EXACT" }
    );
    Ok(step)
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let mut steps = Vec::new();
    let mut rates: Vec<(f64, bool)> = ctx.cfg.flood_rates.iter().map(|r| (*r, false)).collect();
    rates.push((0.0, true));
    let mut cand = Vec::new();
    for (i, &(r, stall)) in rates.iter().enumerate() {
        steps.push(run_step(ctx, None, i, r, stall)?);
        // A candidate build runs each step right after the current one.
        if let Some(c) = &ctx.env.candidate {
            cand.push(run_step(ctx, Some(c), i + 100, r, stall)?);
        }
    }
    let main_steps = steps.len();
    steps.extend(cand);

    let mut t = Table::new(&[
        "target opens/s",
        "achieved/s",
        "generated",
        "received",
        "lost",
        "rec. dropped",
        "exact",
        "CPU s/M ev",
        "peak RSS MiB",
        "cores busy",
    ]);
    for s in &steps {
        t.row(vec![
            s.label.clone(),
            thousands(s.achieved()),
            thousands(s.generated as f64),
            thousands(s.received as f64),
            thousands((s.lost_open + s.lost_other) as f64),
            thousands(s.recorder_dropped as f64),
            if s.exact() { "yes" } else { "NO" }.into(),
            format!("{:.2}", s.cpu_per_m()),
            format!("{:.1}", s.summary.hwm_kib as f64 / 1024.0),
            format!("{:.2}", s.busy_cores),
        ]);
    }
    // The highest rate sustained with nothing lost, over a full step.
    let main = &steps[..main_steps];
    let best = main
        .iter()
        .filter(|s| s.zero_loss() && !s.label.contains("stopped"))
        .map(|s| s.achieved())
        .fold(0.0f64, f64::max);
    let all_exact = steps.iter().all(|s| s.exact());
    let at_goal = main
        .iter()
        .filter(|s| s.target >= 200e3 || s.target == 0.0)
        .filter(|s| !s.label.contains("stopped") && s.achieved() >= 0.98 * 200e3)
        .any(|s| s.zero_loss());
    let text = format!(
        "4. Throughput and loss: {} processes opening a marker file in the watched cgroup, {:.0} s per step,\n   \
         agentwatch {} restarted per step; exact = generated == received + lost + recorder-dropped\n{}   \
         (lost: the kernel could not deliver; rec. dropped: the recorder's queue was full; cores busy: machine-wide,\n   \
         of {}, everyone's work included)\n   \
         highest sustained rate with zero loss: {} opens/s; counters exact at every step: {}\n",
        ctx.cfg.flood_workers,
        ctx.cfg.flood_secs,
        ctx.env.mode.name(),
        t.render("   "),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        thousands(best),
        if all_exact { "yes" } else { "NO" }
    );
    // Peak memory under load (not the stall step, whose recorder queue
    // fills by construction).
    let peak = main
        .iter()
        .filter(|s| !s.label.contains("stopped"))
        .map(|s| s.summary.hwm_kib)
        .max()
        .unwrap_or(0) as f64
        / 1024.0;
    let goals = vec![
        (
            "peak RSS < 64 MiB during the floods".to_string(),
            Some(peak < 64.0),
            format!("{peak:.1} MiB"),
        ),
        (
            format!(
                "zero loss at 200,000 events/s for {:.0} s",
                ctx.cfg.flood_secs
            ),
            Some(at_goal),
            format!("best zero-loss rate {} /s", thousands(best)),
        ),
        (
            "loss counters exact".to_string(),
            Some(all_exact),
            format!(
                "{} of {} steps exact",
                steps.iter().filter(|s| s.exact()).count(),
                steps.len()
            ),
        ),
    ];
    let j = json!({
        "workers": ctx.cfg.flood_workers,
        "step_secs": ctx.cfg.flood_secs,
        "best_zero_loss_rate": num(best),
        "all_exact": all_exact,
        "steps": steps.iter().map(|s| json!({
            "label": s.label,
            "target_rate": num(s.target),
            "achieved_rate": num(s.achieved()),
            "generated": s.generated,
            "received": s.received,
            "lost_open": s.lost_open,
            "lost_other": s.lost_other,
            "recorder_dropped": s.recorder_dropped,
            "exact": s.exact(),
            "daemon_events": s.summary.events,
            "daemon_cpu_secs": num(s.summary.cpu_secs),
            "daemon_cpu_secs_per_million_events": num(s.cpu_per_m()),
            "daemon_peak_rss_kib": s.summary.hwm_kib,
            "daemon_rss_kib": s.summary.rss_kib,
            "daemon_anon_kib": s.summary.anon_kib,
            "daemon_cores": num(s.summary.cpu_secs / s.secs.max(1e-9)),
            "worker_cores": num(s.worker_cores),
            "machine_busy_cores": num(s.busy_cores),
        })).collect::<Vec<_>>(),
    });
    Ok(Section {
        text,
        json: j,
        goals,
    })
}
