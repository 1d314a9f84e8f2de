//! The recorder: a sink that writes every event and alert to a session file
//! (format in [`crate::session::format`]).
//!
//! The hot path (the pipeline thread) only clones the record and offers it
//! to a BOUNDED queue with `try_send`: it never waits for the disk. A writer
//! thread encodes, hashes, compresses and writes. If the queue is full (the
//! disk cannot keep up) the record is dropped and counted, and a `gap` record
//! with the counts goes into the file ahead of the next record that fits: a
//! session is never silently incomplete.
//!
//! Durability: the header is written and synced at once; after that the
//! writer flushes (one complete zstd frame) and syncs at least every
//! [`RecorderConfig::flush_interval`] (1 s), and on [`Sink::finish`] it writes
//! the footer, flushes and syncs. After a crash the file holds every record
//! of the last completed flush.

mod names;
mod thread;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::detect::alert::Alert;
use crate::detect::CgroupLookup;
use crate::event::model::Event;
use crate::session::format::{Footer, Gap, Header};
use crate::session::store::{self, Retention, StoreError};
use crate::session::writer::{SessionOutput, SessionWriter};
use crate::sinks::Sink;
pub use names::RecordedNames;
use thread::{report_pruned, write_loop, Msg, WriterCfg};

/// Where to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordTarget {
    /// A new file named by start time and cgroup in this directory, which is
    /// created root-only and kept within the retention limits.
    Dir(PathBuf),
    /// Exactly this file (must not exist yet). No retention.
    File(PathBuf),
}

/// How to record. The CLI builds one from `--record` / `--no-record`.
#[derive(Clone, Debug)]
pub struct RecorderConfig {
    /// Where.
    pub target: RecordTarget,
    /// zstd-compress the file.
    pub compress: bool,
    /// Records the queue to the writer thread holds; beyond that they are
    /// dropped (and a gap recorded).
    pub queue_capacity: usize,
    /// The longest time a record waits in memory before it is on disk.
    pub flush_interval: Duration,
    /// fdatasync after each flush (survives power loss, not only a crash).
    pub sync: bool,
    /// Retention for [`RecordTarget::Dir`].
    pub retention: Retention,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            target: RecordTarget::Dir(PathBuf::from(store::DEFAULT_DIR)),
            compress: true,
            queue_capacity: 65_536,
            flush_interval: Duration::from_secs(1),
            sync: true,
            retention: Retention::default(),
        }
    }
}

impl RecorderConfig {
    /// The config for `--record PATH` (or the default without it): an
    /// existing directory, or a path ending in `/`, is a directory to record
    /// into; anything else is the file itself, compressed if it ends in
    /// `.zst`.
    pub fn for_record_arg(path: Option<&Path>) -> Self {
        let mut c = RecorderConfig::default();
        if let Some(p) = path {
            if p.is_dir() || p.as_os_str().to_string_lossy().ends_with('/') {
                c.target = RecordTarget::Dir(p.to_path_buf());
            } else {
                c.compress = p.extension().is_some_and(|e| e == "zst");
                c.target = RecordTarget::File(p.to_path_buf());
            }
        }
        c
    }
}

/// Why recording cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// The directory or file.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Setting up the writer.
    #[error("cannot start recording to {path}")]
    Start {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Numbers the recorder keeps, readable from any thread (the daemon reports
/// them; tests check them).
#[derive(Debug, Default)]
pub struct RecorderStats {
    /// Records handed to the writer thread.
    pub queued: AtomicU64,
    /// Events dropped because the queue was full or the writer stopped.
    pub dropped_events: AtomicU64,
    /// Alerts dropped likewise.
    pub dropped_alerts: AtomicU64,
    /// Cgroup names learned during the run that could not be queued.
    pub dropped_facts: AtomicU64,
    /// The writer hit an I/O error and stopped.
    pub failed: AtomicBool,
    closed: Mutex<Option<Closed>>,
}

impl RecorderStats {
    /// How the session was closed, once it is.
    pub fn closed(&self) -> Option<Closed> {
        self.closed.lock().ok().and_then(|c| c.clone())
    }
}

/// A closed session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    /// The footer written.
    pub footer: Footer,
    /// The footer's own chain hash: the session's last hash, worth keeping
    /// elsewhere to pin the file.
    pub last_hash: String,
}

/// Records dropped since the last record that got into the queue.
#[derive(Default)]
struct Pending(Option<Gap>);

impl Pending {
    fn add(&mut self, alert: bool, time_ns: Option<u64>) {
        let g = self.0.get_or_insert_with(|| Gap {
            reason: "recorder queue full".into(),
            ..Gap::default()
        });
        if alert {
            g.dropped_alerts += 1;
        } else {
            g.dropped_events += 1;
        }
        if let Some(t) = time_ns {
            g.first_time_ns.get_or_insert(t);
            g.last_time_ns = Some(t);
        }
    }
}

/// How long `finish` waits for room in the queue and for the writer to end.
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// The recording sink.
pub struct Recorder {
    tx: Option<SyncSender<Msg>>,
    done: Option<Receiver<()>>,
    thread: Option<JoinHandle<()>>,
    pending: Pending,
    stats: Arc<RecorderStats>,
    path: PathBuf,
}

impl Recorder {
    /// Create the session file per `config` and start the writer thread.
    /// Applies retention to the directory first (a line on stderr for each
    /// session removed).
    pub fn start(config: &RecorderConfig, header: Header) -> Result<Recorder, RecorderError> {
        let (path, file, prune) = match &config.target {
            RecordTarget::Dir(dir) => {
                store::prepare_dir(dir)?;
                report_pruned(store::prune(
                    dir,
                    None,
                    &config.retention,
                    SystemTime::now(),
                ));
                let paths: Vec<&str> = header.cgroups.iter().map(|c| c.path.as_str()).collect();
                let label = store::label_for_cgroups(&paths);
                let (path, file) =
                    store::create_in_dir(dir, header.start_time_ns, &label, config.compress)?;
                (path, file, Some((dir.clone(), config.retention)))
            }
            RecordTarget::File(path) => (path.clone(), store::create_at(path)?, None),
        };
        let cfg = WriterCfg {
            path: path.clone(),
            flush_interval: config.flush_interval,
            sync: config.sync,
            prune,
        };
        Recorder::spawn(file, header, config.compress, config.queue_capacity, cfg).map_err(
            |source| RecorderError::Start {
                path: path.clone(),
                source,
            },
        )
    }

    /// Record to any output (tests, or a pipe): `name` is only used in
    /// messages. No retention, no sync.
    pub fn with_output<W: SessionOutput + 'static>(
        out: W,
        name: &Path,
        header: Header,
        compress: bool,
        queue_capacity: usize,
        flush_interval: Duration,
    ) -> std::io::Result<Recorder> {
        let cfg = WriterCfg {
            path: name.to_path_buf(),
            flush_interval,
            sync: false,
            prune: None,
        };
        Recorder::spawn(out, header, compress, queue_capacity, cfg)
    }

    fn spawn<W: SessionOutput + 'static>(
        out: W,
        header: Header,
        compress: bool,
        queue_capacity: usize,
        cfg: WriterCfg,
    ) -> std::io::Result<Recorder> {
        let writer = SessionWriter::new(out, compress, &header)?;
        let (tx, rx) = mpsc::sync_channel(queue_capacity.max(1));
        let (done_tx, done_rx) = mpsc::channel();
        let stats = Arc::new(RecorderStats::default());
        let path = cfg.path.clone();
        let st = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("agentwatch-recorder".into())
            .spawn(move || {
                write_loop(writer, rx, &st, &cfg);
                let _ = done_tx.send(());
            })?;
        Ok(Recorder {
            tx: Some(tx),
            done: Some(done_rx),
            thread: Some(thread),
            pending: Pending::default(),
            stats,
            path,
        })
    }

    /// The session file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Live numbers.
    pub fn stats(&self) -> Arc<RecorderStats> {
        Arc::clone(&self.stats)
    }

    /// Wrap the engine's cgroup namer so that every name it learns during
    /// the run (a cgroup created after the header was written) goes into
    /// the session, for replay to name it the same way. Use the result as
    /// the engine's [`CgroupLookup`]; `known` are the ids the header holds.
    pub fn recording_names<L: CgroupLookup>(
        &self,
        inner: L,
        known: impl IntoIterator<Item = u64>,
    ) -> RecordedNames<L> {
        RecordedNames {
            inner,
            known: known.into_iter().collect(),
            tx: self.tx.clone(),
            stats: Arc::clone(&self.stats),
        }
    }

    fn offer(&mut self, msg: Msg, alert: bool, time_ns: Option<u64>) {
        let Some(tx) = &self.tx else {
            self.drop_one(alert, time_ns);
            return;
        };
        // Losses are written where they happened: before the next record.
        if let Some(gap) = self.pending.0.take() {
            match tx.try_send(Msg::Gap(gap)) {
                Ok(()) => {}
                Err(TrySendError::Full(Msg::Gap(g)) | TrySendError::Disconnected(Msg::Gap(g))) => {
                    self.pending.0 = Some(g);
                    self.drop_one(alert, time_ns);
                    return;
                }
                Err(_) => unreachable!("try_send returns the message it was given"),
            }
        }
        match tx.try_send(msg) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => self.drop_one(alert, time_ns),
        }
    }

    fn drop_one(&mut self, alert: bool, time_ns: Option<u64>) {
        self.pending.add(alert, time_ns);
        let c = if alert {
            &self.stats.dropped_alerts
        } else {
            &self.stats.dropped_events
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn close(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        let deadline = Instant::now() + FINISH_TIMEOUT;
        if let Some(gap) = self.pending.0.take() {
            send_until(&tx, Msg::Gap(gap), deadline);
        }
        send_until(&tx, Msg::Finish, deadline);
        drop(tx);
        let finished = self
            .done
            .take()
            .map(|d| {
                d.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .is_ok()
            })
            .unwrap_or(false);
        if finished {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        } else {
            eprintln!(
                "agentwatch: the recorder did not finish writing {} within {}s; the session may \
                 lack its footer",
                self.path.display(),
                FINISH_TIMEOUT.as_secs()
            );
        }
        let de = self.stats.dropped_events.load(Ordering::Relaxed);
        let da = self.stats.dropped_alerts.load(Ordering::Relaxed);
        if de + da > 0 {
            eprintln!(
                "agentwatch: the recorder dropped {de} events and {da} alerts (marked as gaps in {})",
                self.path.display()
            );
        }
    }
}

fn send_until(tx: &SyncSender<Msg>, mut msg: Msg, deadline: Instant) -> bool {
    loop {
        match tx.try_send(msg) {
            Ok(()) => return true,
            Err(TrySendError::Disconnected(_)) => return false,
            Err(TrySendError::Full(m)) => {
                if Instant::now() >= deadline {
                    return false;
                }
                msg = m;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

impl Sink for Recorder {
    fn event(&mut self, event: &Event) {
        self.offer(
            Msg::Event(Box::new(event.clone())),
            false,
            Some(event.time_ns),
        );
    }

    fn alert(&mut self, alert: &Alert) {
        self.offer(Msg::Alert(Box::new(alert.clone())), true, None);
    }

    fn flush(&mut self) {
        if let Some(tx) = &self.tx {
            // A request, not a promise: the writer flushes every second anyway.
            let _ = tx.try_send(Msg::Flush);
        }
    }

    fn finish(&mut self) {
        self.close();
        if let Some(c) = self.stats.closed() {
            eprintln!(
                "agentwatch: session recorded to {}: {} events, {} alerts, last hash {}",
                self.path.display(),
                c.footer.events,
                c.footer.alerts,
                c.last_hash
            );
        }
    }
}

impl Drop for Recorder {
    /// A recorder dropped without `finish` (an early return, a panic
    /// unwinding) still closes its session properly.
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests;
