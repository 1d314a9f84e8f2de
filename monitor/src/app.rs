//! Wiring: choose a source, build the pipeline and its sinks, run.

use std::io::IsTerminal;
use std::process::ExitCode;

use agentwatch::cgroup::CgroupNames;
use agentwatch::cgroup::{self, WatchTarget};
use agentwatch::commands;
use agentwatch::detect::{CgroupLookup, Engine};
use agentwatch::host::HostFacts;
use agentwatch::pipeline::Pipeline;
use agentwatch::policy::{self, Policy, PolicyError};
use agentwatch::probes::loader::{LoadOptions, Probes};
use agentwatch::session::format::{Header, WatchedCgroup};
use agentwatch::sinks::console::ConsoleSink;
use agentwatch::sinks::journald::{session_closed_fields, JournaldSink};
use agentwatch::sinks::json::JsonSink;
use agentwatch::sinks::recorder::{Recorder, RecorderConfig};
use agentwatch::sinks::trace::TracePrinter;
use agentwatch::sinks::Sink;
use agentwatch::source::live::{now_ns, LiveSource, LiveStats};
use agentwatch::source::procscan;
use anyhow::{Context as _, Result};

use crate::cli::{Cli, Command, Targets, TraceArgs, WatchArgs};

/// An error in what the user gave us (exit code 2), as opposed to a failure
/// while running (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Exit code for an error: 2 for bad input (cgroup, policy, flags), 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> ExitCode {
    if err
        .chain()
        .any(|e| e.is::<UsageError>() || e.is::<cgroup::CgroupError>() || e.is::<PolicyError>())
    {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

/// Runs the command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    init_logging(&cli.log);
    match cli.command {
        Some(Command::Trace(args)) => trace(args),
        Some(Command::Policy(args)) => commands::policy::run(&args),
        Some(Command::Replay(args)) => commands::replay::run(args),
        Some(Command::Sessions(args)) => commands::sessions::run(args),
        Some(Command::Verify(args)) => commands::verify::run(args),
        None => watch(cli.watch),
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

/// Resolves every `--cgroup` on this host.
fn resolve_targets(targets: &Targets) -> Result<(std::path::PathBuf, Vec<WatchTarget>)> {
    if targets.cgroups.is_empty() {
        return Err(UsageError(
            "no cgroup to watch: give --cgroup (for example --cgroup agent.slice)".into(),
        )
        .into());
    }
    if !targets.ring_mib.is_power_of_two() || targets.ring_mib > 1024 {
        return Err(UsageError(format!(
            "--ring-mib {} is not a power of two between 1 and 1024",
            targets.ring_mib
        ))
        .into());
    }
    let root = cgroup::cgroup2_mount_from_host()?;
    let mut out: Vec<WatchTarget> = Vec::new();
    for spec in &targets.cgroups {
        let t = cgroup::resolve(&root, spec)?;
        if !out.iter().any(|o| o.id == t.id) {
            out.push(t);
        }
    }
    Ok((root, out))
}

fn load_options(targets: &Targets) -> LoadOptions {
    LoadOptions {
        ring_bytes: targets.ring_mib << 20,
        ..LoadOptions::default()
    }
}

/// Loads the programs for `targets` and prepares the live source.
fn start_live(targets: &[WatchTarget], opts: &LoadOptions) -> Result<(Probes, LiveSource)> {
    let mut probes = Probes::load(targets, opts).context("starting the eBPF probes")?;
    let ring = probes.take_events()?;
    let lost = probes.take_lost()?;
    let source = LiveSource::new(ring, lost).context("polling the ring buffer")?;
    Ok((probes, source))
}

/// Tells systemd (Type=notify) and the user that watching has begun.
fn announce_ready(targets: &[WatchTarget]) {
    let names: Vec<String> = targets
        .iter()
        .map(|t| format!("{} (id {})", t.rel_path, t.id))
        .collect();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    eprintln!("agentwatch: watching {}; ready", names.join(", "));
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = int.recv() => {},
        _ = term.recv() => {},
    }
}

fn report_stats(stats: &LiveStats) {
    let lost = if stats.lost_total() == 0 {
        "no events lost".to_string()
    } else {
        let parts: Vec<String> = stats.lost.iter().map(|(k, v)| format!("{k} {v}")).collect();
        format!("LOST {} events ({})", stats.lost_total(), parts.join(", "))
    };
    eprintln!(
        "agentwatch: stopped; {} events, {} undecodable records, {lost}",
        stats.events, stats.bad_records
    );
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The daemon: watch, detect, alert, record.
fn watch(args: WatchArgs) -> Result<ExitCode> {
    // Everything the user gave is checked before anything is loaded.
    let policy = Policy::load(args.policy.as_deref())?;
    let (root, targets) = resolve_targets(&args.targets)?;
    let facts = HostFacts::gather(std::path::Path::new("/"), &policy);
    let mut names = CgroupNames::new(root.clone());
    for t in &targets {
        names.insert(t.id, t.rel_path.clone());
    }

    let rt = runtime()?;
    let _rt = rt.enter();
    let (probes, source) = start_live(&targets, &load_options(&args.targets))?;
    let start_ns = now_ns();

    let known_ids: Vec<u64> = names.known().keys().copied().collect();
    let mut recorder_handle: Option<Recorder> = None;
    let mut recorder_stats = None;
    let mut recorder_path = None;
    if !args.no_record {
        let mut header = Header::new(
            start_ns,
            targets
                .iter()
                .map(|t| WatchedCgroup {
                    id: t.id,
                    path: t.rel_path.clone(),
                })
                .collect(),
            policy::show(&policy),
        );
        header.policy_source = Some(match &args.policy {
            Some(p) => p.display().to_string(),
            None => "built-in default".into(),
        });
        header.host_facts = serde_json::to_value(&facts).context("serialising the host facts")?;
        header.cgroup_paths = names.known().clone();
        let config = RecorderConfig::for_record_arg(args.record.as_deref());
        let recorder = Recorder::start(&config, header).context("starting the session recorder")?;
        eprintln!("agentwatch: recording to {}", recorder.path().display());
        recorder_stats = Some(recorder.stats());
        recorder_path = Some(recorder.path().to_path_buf());
        recorder_handle = Some(recorder);
    }
    // Cgroup names learned during the run go into the session too, so replay
    // names them the same way.
    let namer: Box<dyn CgroupLookup> = match &recorder_handle {
        Some(r) => Box::new(r.recording_names(names, known_ids)),
        None => Box::new(names),
    };
    // The recorder sees every event first, before anything can fail later on.
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(r) = recorder_handle {
        sinks.push(Box::new(r));
    }
    if !args.no_journald {
        sinks.push(Box::new(JournaldSink::new()));
    }
    if args.json {
        sinks.push(Box::new(JsonSink::new(std::io::stdout())));
    } else if std::io::stdout().is_terminal() {
        sinks.push(Box::new(ConsoleSink::new(std::io::stdout(), true)));
    }
    let engine = Engine::new(policy, facts, namer);
    let mut pipeline = Pipeline::with_detector(Box::new(engine), sinks);
    let rel: Vec<String> = targets.iter().map(|t| t.rel_path.clone()).collect();
    for ev in procscan::scan(std::path::Path::new("/proc"), &root, &rel, start_ns) {
        pipeline.handle(&ev);
    }
    announce_ready(&targets);
    let stats = rt.block_on(source.run(&mut pipeline, shutdown_signal(), move || drop(probes)))?;
    pipeline.finish();
    report_stats(&stats);
    // Pin the session in the journal: its final hash lets `verify` results be
    // checked even against someone who rewrote the whole file and its chain.
    if let (false, Some(closed), Some(path)) = (
        args.no_journald,
        recorder_stats.as_ref().and_then(|s| s.closed()),
        &recorder_path,
    ) {
        let fields = session_closed_fields(
            &path.display().to_string(),
            closed.footer.events,
            closed.footer.alerts,
            &closed.last_hash,
        );
        let _ = JournaldSink::new().send_entry(&fields);
    }
    Ok(ExitCode::SUCCESS)
}

/// `agentwatch trace`: every event, one line each.
fn trace(args: TraceArgs) -> Result<ExitCode> {
    let (root, targets) = resolve_targets(&args.targets)?;
    let rt = runtime()?;
    let _rt = rt.enter();
    let (probes, source) = start_live(&targets, &load_options(&args.targets))?;
    let printer: Box<dyn Sink> = Box::new(TracePrinter::new(std::io::stdout(), args.json));
    let mut pipeline = Pipeline::new(Box::new(|_| Vec::new()), vec![printer]);
    let rel: Vec<String> = targets.iter().map(|t| t.rel_path.clone()).collect();
    for ev in procscan::scan(std::path::Path::new("/proc"), &root, &rel, now_ns()) {
        pipeline.handle(&ev);
    }
    announce_ready(&targets);
    let stats = rt.block_on(source.run(&mut pipeline, shutdown_signal(), move || drop(probes)))?;
    pipeline.finish();
    report_stats(&stats);
    Ok(ExitCode::SUCCESS)
}
