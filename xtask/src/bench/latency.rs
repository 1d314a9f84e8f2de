//! Alert latency: a process in the watched cgroup reads decoy secrets
//! (`.env.lat-NNNNN` files, which the default policy's `dotenv` entry
//! covers anywhere; one new file per sample, so deduplication never merges
//! two), noting the wall-clock time just before each open. The daemon runs
//! with `--json` and journald on:
//!
//! - JSON: the time this process reads the alert's line from the daemon's
//!   stdout pipe, minus the syscall time;
//! - journald: the entry's `__REALTIME_TIMESTAMP` (set by journald when it
//!   receives the entry), minus the syscall time.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::monitors::{Agentwatch, AwMode, AwOptions};
use super::report::{num, percentile, Table};
use super::{Ctx, Section};

const GOAL_MS: f64 = 50.0;

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The sample number in `.env.lat-NNNNN`, anywhere in `text`.
fn sample_of(text: &str) -> Option<u32> {
    let i = text.find(".env.lat-")?;
    text.get(i + 9..i + 14)?.parse().ok()
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    if ctx.env.mode != AwMode::Daemon {
        return Ok(Section {
            text: "5. Alert latency: not measured (the daemon with alerts is not available yet)\n"
                .into(),
            json: json!({ "skipped": "daemon not available" }),
            goals: vec![(
                format!("alert latency p99 < {GOAL_MS:.0} ms (JSON)"),
                None,
                "not measured".into(),
            )],
        });
    }
    let n = ctx.cfg.latency_samples;
    let decoys = ctx.env.work.join("decoy");
    for i in 0..n {
        std::fs::write(
            decoys.join(format!(".env.lat-{i:05}")),
            "API_TOKEN=decoy-not-a-secret\n",
        )?;
    }
    let since_us = now_ns() / 1000;
    let mut aw = Agentwatch::start(
        &ctx.env,
        &ctx.cg.watched,
        AwOptions {
            stdout: Stdio::piped(),
            journald: true,
            json: true,
            ring_mib: None,
        },
    )?;
    // Timestamp every stdout line as it arrives.
    let stdout = aw.proc.child.stdout.take().context("stdout is piped")?;
    let arrivals: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let sink = arrivals.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            sink.lock().expect("lock").push((now_ns(), line));
        }
    });

    let args: Vec<String> = vec![
        "decoy".into(),
        "--dir".into(),
        decoys.display().to_string(),
        "--count".into(),
        n.to_string(),
        "--gap-ms".into(),
        "30".into(),
    ];
    let out = ctx
        .workload_cmd(&args, &ctx.inside())?
        .stdin(Stdio::null())
        .output()
        .context("running the decoy reader")?;
    if !out.status.success() {
        bail!(
            "decoy reader failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut t0: BTreeMap<u32, u64> = BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        if let Ok(v) = serde_json::from_str::<Value>(l) {
            if let (Some(i), Some(t)) = (v["i"].as_u64(), v["t0"].as_u64()) {
                t0.insert(i as u32, t);
            }
        }
    }
    super::sleep(Duration::from_millis(1000))?;
    aw.stop()?;
    let _ = reader.join();

    // JSON stdout.
    let mut json_ms: BTreeMap<u32, f64> = BTreeMap::new();
    for (at, line) in arrivals.lock().expect("lock").iter() {
        if let Some(i) = sample_of(line) {
            if let Some(t) = t0.get(&i) {
                json_ms.entry(i).or_insert((*at as f64 - *t as f64) / 1e6);
            }
        }
    }
    // journald.
    let mut journal_ms: BTreeMap<u32, f64> = BTreeMap::new();
    let jout = Command::new("journalctl")
        .args(["-o", "json", "--no-pager", "SYSLOG_IDENTIFIER=agentwatch"])
        .arg(format!(
            "--since=@{}.{:06}",
            since_us / 1_000_000,
            since_us % 1_000_000
        ))
        .stderr(Stdio::null())
        .output();
    if let Ok(jout) = jout {
        for l in String::from_utf8_lossy(&jout.stdout).lines() {
            let Some(i) = sample_of(l) else { continue };
            let Ok(v) = serde_json::from_str::<Value>(l) else {
                continue;
            };
            let at_us: Option<u64> = v["__REALTIME_TIMESTAMP"]
                .as_str()
                .and_then(|s| s.parse().ok());
            if let (Some(at), Some(t)) = (at_us, t0.get(&i)) {
                journal_ms
                    .entry(i)
                    .or_insert((at as f64 * 1000.0 - *t as f64) / 1e6);
            }
        }
    }

    let jv: Vec<f64> = json_ms.values().copied().collect();
    let kv: Vec<f64> = journal_ms.values().copied().collect();
    let mut t = Table::new(&["output", "alerts", "p50 ms", "p99 ms", "max ms"]);
    for (name, v) in [("JSON stdout", &jv), ("journald", &kv)] {
        t.row(vec![
            name.into(),
            format!("{}/{}", v.len(), n),
            format!("{:.2}", percentile(v, 50.0)),
            format!("{:.2}", percentile(v, 99.0)),
            format!("{:.2}", percentile(v, 100.0)),
        ]);
    }
    let p99 = percentile(&jv, 99.0);
    let complete = jv.len() as u32 == n;
    let text = format!(
        "5. Alert latency: from just before a decoy secret's open(2) to the alert ({n} reads, 30 ms apart)\n{}",
        t.render("   ")
    );
    let goals = vec![(
        format!("alert latency p99 < {GOAL_MS:.0} ms (JSON)"),
        Some(complete && p99 < GOAL_MS),
        format!("p99 {p99:.2} ms, {}/{n} alerts", jv.len()),
    )];
    let stats = |v: &[f64]| {
        json!({
            "alerts": v.len(),
            "p50_ms": num(percentile(v, 50.0)),
            "p99_ms": num(percentile(v, 99.0)),
            "max_ms": num(percentile(v, 100.0)),
        })
    };
    Ok(Section {
        text,
        json: json!({ "samples": n, "json": stats(&jv), "journald": stats(&kv) }),
        goals,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn samples_are_found_in_alert_lines() {
        assert_eq!(
            super::sample_of(r#"{"path":"/tmp/x/decoy/.env.lat-00042","rule":"secret-read"}"#),
            Some(42)
        );
        assert_eq!(super::sample_of("nothing"), None);
    }
}
