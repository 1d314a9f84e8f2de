//! `agentwatch replay SESSION`: run a recorded session through the same
//! pipeline and detection engine as live, and print the alerts in the same
//! formats.
//!
//! With the recorded policy (the default) the engine gets the recorded
//! policy, host facts and cgroup names, so it must raise exactly the
//! recorded alerts; replay checks that and says where it differs (exit code
//! [`exit::REPLAY_DIFFERS`](crate::session::exit::REPLAY_DIFFERS)). With `--policy NEW` it shows what that policy
//! would have raised and how that differs from the recording.
//!
//! stdout carries only the alerts (or the timeline); the summary, damage and
//! differences go to stderr.

mod report;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;

use crate::detect::alert::Alert;
use crate::detect::{Detect, Engine};
use crate::host::HostFacts;
use crate::pipeline::Pipeline;
use crate::policy::Policy;
use crate::report::filter::{parse_time, Filter, Filtered};
use crate::report::timeline::Timeline;
use crate::session::{Header, Record, SessionError};
use crate::sinks::console::ConsoleSink;
use crate::sinks::journald::JournaldSink;
use crate::sinks::json::JsonSink;
use crate::sinks::Sink;
use crate::source::replay::{ReplayNames, ReplaySource};
pub use report::{summary, Difference, Located, ReplayReport};

/// Options of `agentwatch replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The session file (plain or .zst).
    #[arg(value_name = "SESSION")]
    pub session: PathBuf,
    /// Replay with this policy instead of the recorded one, to see what it
    /// would have raised.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Print alerts as JSON lines (the live `--json` format).
    #[arg(long)]
    pub json: bool,
    /// Send the replayed alerts to the journal as well.
    #[arg(long)]
    pub journald: bool,
    /// Only this process and its descendants.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Only alerts of this rule (repeat for several).
    #[arg(long, value_name = "RULE")]
    pub rule: Vec<String>,
    /// Only from this time: RFC 3339, a UTC time of day (21:05:00), or an
    /// offset from the session start (+5m).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only until this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Print every event in order as a story with the process tree, alerts
    /// marked.
    #[arg(long, conflicts_with = "json")]
    pub timeline: bool,
}

/// The detection engine as the pipeline takes it.
pub type Detector = Box<dyn Detect>;

/// Collects every alert the pipeline raises (before any filter), with the
/// line of the event being replayed.
struct Collector {
    alerts: Arc<Mutex<Vec<Located>>>,
    line: Arc<AtomicU64>,
}

impl Sink for Collector {
    fn alert(&mut self, a: &Alert) {
        if let Ok(mut v) = self.alerts.lock() {
            v.push((self.line.load(Ordering::Relaxed), a.clone()));
        }
    }
}

/// Replay `source` through a pipeline made of `detector` and `outputs`
/// (wrapped in `filter`), comparing with the recorded alerts. The function to
/// time for replay speed: no output is the pipeline cost alone.
pub fn replay(
    source: ReplaySource,
    detector: Detector,
    outputs: Vec<Box<dyn Sink>>,
    filter: &Filter,
) -> Result<ReplayReport, SessionError> {
    let started = Instant::now();
    let line = source.current_line();
    let replayed = Arc::new(Mutex::new(Vec::new()));
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(Collector {
        alerts: Arc::clone(&replayed),
        line: Arc::clone(&line),
    })];
    for s in outputs {
        if filter.is_empty() {
            sinks.push(s);
        } else {
            sinks.push(Box::new(Filtered::new(s, filter.clone())));
        }
    }
    let mut pipeline = Pipeline::with_detector(detector, sinks);
    let mut recorded = Vec::new();
    let mut gaps = Vec::new();
    let (events, verdict) = source.run(&mut pipeline, |entry, event_line| match &entry.record {
        Record::Alert(a) => recorded.push((event_line, a.clone())),
        Record::Gap(g) => gaps.push((entry.line, g.clone())),
        _ => {}
    })?;
    pipeline.finish();
    drop(pipeline);
    let replayed = std::mem::take(&mut *replayed.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(ReplayReport {
        verdict,
        events,
        recorded,
        replayed,
        gaps,
        last_event_line: line.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}

/// The detection engine for a session: the recorded policy, host facts and
/// cgroup names (`names`, from [`ReplaySource::names`]), or `policy` instead
/// of the recorded policy.
pub fn engine_for(
    header: &Header,
    names: ReplayNames,
    policy: Option<&Path>,
) -> anyhow::Result<Detector> {
    let policy = match policy {
        Some(p) => Policy::load(Some(p))?,
        None => Policy::from_effective_str("the session's recorded policy", &header.policy)
            .context("the policy recorded in the session does not load in this agentwatch")?,
    };
    let facts: HostFacts = if header.host_facts.is_null() {
        HostFacts::default()
    } else {
        serde_json::from_value(header.host_facts.clone())
            .context("the host facts recorded in the session do not load in this agentwatch")?
    };
    Ok(Box::new(Engine::new(policy, facts, Box::new(names))))
}

/// Replay a session with its recorded policy and no output: what the replay
/// benchmark times.
pub fn replay_quiet(path: &Path) -> anyhow::Result<ReplayReport> {
    let source = ReplaySource::open(path)?;
    let detector = engine_for(source.header(), source.names(), None)?;
    Ok(replay(source, detector, Vec::new(), &Filter::default())?)
}

/// Run `agentwatch replay`.
pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let source = match ReplaySource::open(&args.session) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("agentwatch: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
    };
    let header = source.header().clone();
    let filter = Filter {
        pid: args.pid,
        rules: args.rule.clone(),
        since_ns: args
            .since
            .as_deref()
            .map(|s| parse_time(s, header.start_time_ns))
            .transpose()
            .map_err(anyhow::Error::msg)
            .context("--since")?,
        until_ns: args
            .until
            .as_deref()
            .map(|s| parse_time(s, header.start_time_ns))
            .transpose()
            .map_err(anyhow::Error::msg)
            .context("--until")?,
    };
    let detector = engine_for(&header, source.names(), args.policy.as_deref())?;

    let stdout = std::io::stdout();
    let mut outputs: Vec<Box<dyn Sink>> = Vec::new();
    if args.timeline {
        let mut t = Timeline::new(std::io::LineWriter::new(stdout), true);
        t.intro(&header, &args.session.display().to_string());
        outputs.push(Box::new(t));
    } else if args.json {
        outputs.push(Box::new(JsonSink::new(stdout)));
    } else {
        let color = stdout.is_terminal();
        outputs.push(Box::new(ConsoleSink::new(stdout, color)));
    }
    if args.journald {
        outputs.push(Box::new(JournaldSink::new()));
    }

    let report = replay(source, detector, outputs, &filter)?;
    let compared = args.policy.is_none();
    eprint!(
        "{}",
        summary(&args.session, &report, args.policy.as_deref())
    );
    Ok(ExitCode::from(report.exit_code(compared)))
}

#[cfg(test)]
mod tests;
