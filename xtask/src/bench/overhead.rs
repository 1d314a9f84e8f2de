//! Overhead: the open, exec and connect loops inside the watched cgroup (as
//! the agent's uid) and outside it (another uid, a sibling cgroup), under
//! each contender, as time ratios to no monitor; and agentwatch's BPF run
//! time per operation.
//!
//! One repetition is `B c1 B c2 B c3 B`: every contender slot sits between
//! two no-monitor slots, and its ratio is the mean of those two baselines
//! over its own rate, so slow drifts of the machine's load cancel. The
//! contenders rotate from one repetition to the next; medians over the
//! repetitions are reported.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::host::{self, BpfStats, Placement, SysctlGuard};
use super::monitors::{Agentwatch, AwOptions, Contender, Running};
use super::report::{median, num, percentile, ratio, thousands, Table};
use super::{Ctx, Section, AGENT_UID};

/// The three loops.
pub const LOOPS: [&str; 3] = ["open", "exec", "connect"];
/// Inside or outside the watched cgroup.
const PLACES: [&str; 2] = ["inside", "outside"];

/// Goals: inside per loop, and outside for every loop.
fn inside_goal(l: &str) -> f64 {
    match l {
        "open" => 1.25,
        "exec" => 1.10,
        _ => 1.15,
    }
}
const OUTSIDE_GOAL: f64 = 1.03;

fn loop_args(ctx: &Ctx, l: &str, secs: f64) -> Vec<String> {
    let mut a = vec![l.to_string(), "--secs".into(), secs.to_string()];
    if l == "open" {
        a.push("--file".into());
        a.push(ctx.small.display().to_string());
    }
    a
}

/// Where a loop runs: inside or outside, at real-time priority (see
/// [`Placement::fifo`]; the kernel's RT throttling still leaves others 5 %).
fn place(ctx: &Ctx, p: &str) -> Placement {
    let mut pl = if p == "inside" {
        ctx.inside()
    } else {
        ctx.outside()
    };
    pl.fifo = Some(LOOP_FIFO_PRIORITY);
    pl
}

const LOOP_FIFO_PRIORITY: i32 = 10;
/// Quiet time after every loop, with or without a monitor, so each loop
/// starts from the same state (the kernel's deferred work of the last one,
/// such as freeing sockets and processes, done).
const PAUSE: Duration = Duration::from_millis(300);

/// ops/s of each (loop, place) in one slot.
type Slot = BTreeMap<(String, String), f64>;

/// Runs every loop outside, then inside, once. Between loops the monitor is
/// given time to finish the previous loop's backlog (up to 10 s), so that
/// work is charged to the loop that caused it, not to the next.
fn measure_slot(ctx: &Ctx, running: Option<&Running>) -> Result<Slot> {
    let pids = running.map(Running::pids).unwrap_or_default();
    if !pids.is_empty() {
        // Whatever the monitor does right after start-up is not the loops' cost.
        host::wait_idle(&pids, Duration::from_secs(10));
    }
    let mut s = Slot::new();
    for l in LOOPS {
        for p in ["outside", "inside"] {
            let v = ctx.run_workload(&loop_args(ctx, l, ctx.cfg.loop_secs), &place(ctx, p))?;
            let ops = v["ops"].as_f64().unwrap_or(0.0);
            let secs = v["secs"].as_f64().unwrap_or(1.0);
            s.insert((l.to_string(), p.to_string()), ops / secs);
            let cpu =
                v["cpu_self"].as_f64().unwrap_or(0.0) + v["cpu_children"].as_f64().unwrap_or(0.0);
            s.insert((format!("{l}/cpu"), p.to_string()), ops / cpu.max(1e-9));
            super::sleep(PAUSE)?;
            if !pids.is_empty() {
                host::wait_idle(&pids, Duration::from_secs(10));
            }
        }
    }
    Ok(s)
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    // The kernel's run-time statistics cost two clock reads per program run;
    // users run without them, so the overhead is measured without them.
    let stats_before = host::sysctl("kernel/bpf_stats_enabled");
    let _stats_off = SysctlGuard::set("kernel/bpf_stats_enabled", "0")?;

    // A warm-up slot (page cache, binaries) that is not counted.
    measure_slot(ctx, None)?;

    let mut failed: BTreeMap<&'static str, String> = BTreeMap::new();
    // ratios[contender][(loop, place)] = one ratio per repetition
    let mut ratios: BTreeMap<&'static str, BTreeMap<(String, String), Vec<f64>>> = BTreeMap::new();
    let mut rates: BTreeMap<&'static str, BTreeMap<(String, String), Vec<f64>>> = BTreeMap::new();
    let mut lost: BTreeMap<&'static str, u64> = BTreeMap::new();
    for rep in 0..ctx.cfg.reps {
        let mut order = Contender::monitors(&ctx.env);
        let n = order.len();
        order.rotate_left(rep as usize % n);
        println!(
            "overhead: repetition {}/{} ({})",
            rep + 1,
            ctx.cfg.reps,
            order
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut before = measure_slot(ctx, None)?;
        push_rates(&mut rates, "baseline", &before);
        for c in order {
            let slot = if failed.contains_key(c.name()) {
                None
            } else {
                match Running::start(c, &ctx.env) {
                    Ok(running) => {
                        let s = measure_slot(ctx, Some(&running));
                        let report = running.stop();
                        match (s, report) {
                            (Ok(s), Ok(r)) => {
                                *lost.entry(c.name()).or_default() += r.lost;
                                Some(s)
                            }
                            (Err(e), _) | (_, Err(e)) => {
                                super::check_interrupted()?;
                                failed.insert(c.name(), format!("{e:#}"));
                                None
                            }
                        }
                    }
                    Err(e) => {
                        super::check_interrupted()?;
                        println!("overhead: {} failed to start: {e:#}", c.name());
                        failed.insert(c.name(), format!("{e:#}"));
                        None
                    }
                }
            };
            let after = measure_slot(ctx, None)?;
            push_rates(&mut rates, "baseline", &after);
            if let Some(s) = slot {
                push_rates(&mut rates, c.name(), &s);
                for (k, v) in &s {
                    let base = (before[k] + after[k]) / 2.0;
                    ratios
                        .entry(c.name())
                        .or_default()
                        .entry(k.clone())
                        .or_default()
                        .push(base / v);
                }
            }
            before = after;
        }
    }

    // Tables.
    let all = |c: &str, l: &str, p: &str| -> Vec<f64> {
        ratios
            .get(c)
            .and_then(|m| m.get(&(l.to_string(), p.to_string())))
            .cloned()
            .unwrap_or_default()
    };
    let med = |c: &str, l: &str, p: &str| -> f64 { median(&all(c, l, p)) };
    // "1.07x ±0.03": the median and half the interquartile range.
    let cell = |c: &str, l: &str, p: &str| -> String {
        let v = all(c, l, p);
        if v.len() < 3 {
            return ratio(median(&v));
        }
        let half_iqr = (percentile(&v, 75.0) - percentile(&v, 25.0)) / 2.0;
        format!("{} ±{half_iqr:.2}", ratio(median(&v)))
    };
    let base_rate = |l: &str, p: &str| -> f64 {
        rates
            .get("baseline")
            .and_then(|m| m.get(&(l.to_string(), p.to_string())))
            .map_or(f64::NAN, |v| median(v))
    };
    let mut text = format!(
        "1. Overhead inside the watched cgroup: time per operation as a ratio to no monitor\n   \
         (median ± half the interquartile range of {} repetitions of {:.1} s loops at SCHED_FIFO;\n   \
         each contender's slot framed by no-monitor slots; the workload runs as uid {AGENT_UID})\n",
        ctx.cfg.reps, ctx.cfg.loop_secs
    );
    let mut goals = Vec::new();
    for p in PLACES {
        if p == "outside" {
            text.push_str(
                "\n2. Overhead outside the watched cgroup (another cgroup and uid: every other process)\n",
            );
        }
        let names: Vec<&str> = Contender::monitors(&ctx.env)
            .iter()
            .map(|c| c.name())
            .collect();
        let mut header = vec!["loop", "no monitor ops/s"];
        header.extend(&names);
        header.push("goal");
        let mut t = Table::new(&header);
        for l in LOOPS {
            let goal = if p == "inside" {
                inside_goal(l)
            } else {
                OUTSIDE_GOAL
            };
            let mut row = vec![l.to_string(), thousands(base_rate(l, p))];
            row.extend(names.iter().map(|c| cell(c, l, p)));
            row.push(format!("<= {goal:.2}x"));
            t.row(row);
            let aw = med("agentwatch", l, p);
            let (bt, au) = (med("bpftrace", l, p), med("auditd", l, p));
            let met = aw.is_finite().then(|| {
                let peers_ok = p == "outside"
                    || ((!bt.is_finite() || aw < bt) && (!au.is_finite() || aw < au));
                aw <= goal && peers_ok
            });
            let name = if p == "inside" {
                format!("{l} loop inside <= {goal:.2}x and below bpftrace, auditd")
            } else {
                format!("{l} loop outside <= {goal:.2}x")
            };
            goals.push((
                name,
                met,
                format!(
                    "{} (bpftrace {}, auditd {})",
                    ratio(aw),
                    ratio(bt),
                    ratio(au)
                ),
            ));
        }
        text.push_str(&t.render("   "));
    }
    if !failed.is_empty() {
        for (c, e) in &failed {
            text.push_str(&format!("   {c}: not measured: {e}\n"));
        }
    }
    if let Some(c) = &ctx.env.candidate {
        text.push_str(&format!("   candidate: {}\n", c.display()));
    }
    text.push_str(&format!(
        "   events the contenders reported lost during these loops: {}\n",
        Contender::monitors(&ctx.env)
            .iter()
            .map(|c| c.name())
            .map(|c| format!("{c} {}", lost.get(c).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let mut j = json!({
        "bpf_stats_enabled_before": stats_before,
        "ratio_median": {},
        "ratios": {},
        "ops_per_sec_median": {},
        "lost": lost,
        "failed": failed,
    });
    for (c, m) in &ratios {
        for ((l, p), v) in m {
            j["ratio_median"][c][p][l] = num(median(v));
            j["ratios"][c][p][l] = json!(v.iter().map(|x| num(*x)).collect::<Vec<_>>());
        }
    }
    for (c, m) in &rates {
        for ((l, p), v) in m {
            j["ops_per_sec_median"][c][p][l] = num(median(v));
        }
    }
    Ok(Section {
        text,
        json: j,
        goals,
    })
}

fn push_rates(
    rates: &mut BTreeMap<&'static str, BTreeMap<(String, String), Vec<f64>>>,
    who: &'static str,
    slot: &Slot,
) {
    for (k, v) in slot {
        rates
            .entry(who)
            .or_default()
            .entry(k.clone())
            .or_default()
            .push(*v);
    }
}

/// agentwatch's BPF run time per loop operation, inside and outside, from
/// the kernel's per-program counters (enabled only for this phase).
pub fn profile(ctx: &Ctx) -> Result<Section> {
    let secs = ctx.cfg.loop_secs.max(0.5);
    let mut j = json!({});
    let mut t = Table::new(&[
        "loop",
        "inside ns/op",
        "programs/op",
        "outside ns/op",
        "programs/op",
        "top programs inside (ns/op)",
    ]);
    let mut bins = vec![("agentwatch", ctx.env.agentwatch.clone())];
    if let Some(c) = &ctx.env.candidate {
        bins.push(("candidate", c.clone()));
    }
    let many = bins.len() > 1;
    for (label, bin) in &bins {
        let mut jj = json!({});
        profile_one(
            ctx,
            bin,
            secs,
            if many { Some(*label) } else { None },
            &mut t,
            &mut jj,
        )?;
        if many {
            j[*label] = jj;
        } else {
            j = jj;
        }
    }
    let text = format!(
        "3. agentwatch's BPF run time per operation (kernel per-program statistics, {secs:.1} s per loop)\n{}",
        t.render("   ")
    );
    Ok(Section {
        text,
        json: j,
        goals: Vec::new(),
    })
}

fn profile_one(
    ctx: &Ctx,
    bin: &std::path::Path,
    secs: f64,
    label: Option<&str>,
    t: &mut Table,
    j: &mut serde_json::Value,
) -> Result<()> {
    let aw = Agentwatch::start_binary(&ctx.env, bin, &ctx.cg.watched, AwOptions::default())?;
    let pid = aw.pid();
    let names: BTreeMap<u32, String> = host::prog_names().into_iter().collect();
    let stats = BpfStats::enable()?;
    let mut result = Ok(());
    for l in LOOPS {
        let mut row = vec![match label {
            Some(b) => format!("{l} ({b})"),
            None => l.to_string(),
        }];
        let mut top = String::new();
        for p in PLACES {
            let before = host::prog_stats(pid);
            let v = match ctx.run_workload(&loop_args(ctx, l, secs), &place(ctx, p)) {
                Ok(v) => v,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let after = host::prog_stats(pid);
            let ops = v["ops"].as_f64().unwrap_or(0.0).max(1.0);
            let mut per: Vec<(String, f64, f64)> = Vec::new();
            for a in &after {
                let b = before.iter().find(|b| b.id == a.id);
                let dt = a.run_time_ns - b.map_or(0, |b| b.run_time_ns);
                let dc = a.run_cnt - b.map_or(0, |b| b.run_cnt);
                if dc > 0 {
                    let name = names
                        .get(&a.id)
                        .cloned()
                        .unwrap_or_else(|| format!("prog {}", a.id));
                    per.push((name, dt as f64 / ops, dc as f64 / ops));
                }
            }
            per.sort_by(|a, b| b.1.total_cmp(&a.1));
            let total: f64 = per.iter().map(|x| x.1).sum();
            let runs: f64 = per.iter().map(|x| x.2).sum();
            row.push(format!("{total:.0}"));
            row.push(format!("{runs:.1}"));
            if p == "inside" {
                top = per
                    .iter()
                    .take(3)
                    .map(|(n, ns, _)| format!("{n} {ns:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ");
            }
            j[l][p] = json!({
                "ns_per_op": num(total),
                "program_runs_per_op": num(runs),
                "ops": ops,
                "programs": per.iter().map(|(n, ns, r)| json!({"name": n, "ns_per_op": num(*ns), "runs_per_op": num(*r)})).collect::<Vec<_>>(),
            });
        }
        row.push(top);
        t.row(row);
        if result.is_err() {
            break;
        }
    }
    drop(stats);
    aw.stop()?;
    result
}
