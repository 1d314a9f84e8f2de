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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::detect::alert::Alert;
use crate::detect::CgroupLookup;
use crate::event::model::Event;
use crate::session::format::{now_ns, Footer, Gap, Header, WatchedCgroup};
use crate::session::store::{self, Retention, StoreError};
use crate::session::writer::{SessionOutput, SessionWriter};
use crate::sinks::Sink;

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

enum Msg {
    Event(Box<Event>),
    Alert(Box<Alert>),
    Gap(Gap),
    Cgroup(WatchedCgroup),
    Flush,
    Finish,
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

/// Don't end a zstd frame more often than this on `Sink::flush` requests:
/// the pipeline may flush after every batch, and tiny frames compress badly.
const MIN_REQUESTED_FLUSH: Duration = Duration::from_millis(100);

/// How often a long run re-applies retention to the other sessions.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

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

struct WriterCfg {
    path: PathBuf,
    flush_interval: Duration,
    sync: bool,
    prune: Option<(PathBuf, Retention)>,
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

fn report_pruned(r: Result<Vec<store::Pruned>, StoreError>) {
    match r {
        Ok(pruned) => {
            for p in pruned {
                eprintln!("agentwatch: {p}");
            }
        }
        Err(e) => eprintln!("agentwatch: retention: {e}"),
    }
}

fn write_loop<W: SessionOutput>(
    mut w: SessionWriter<W>,
    rx: Receiver<Msg>,
    stats: &RecorderStats,
    cfg: &WriterCfg,
) {
    let fail = |what: &str, e: std::io::Error| {
        stats.failed.store(true, Ordering::Relaxed);
        eprintln!(
            "agentwatch: recording to {} stopped: {what}: {e}; events from now on are not recorded",
            cfg.path.display()
        );
    };
    // The header goes to disk at once, so even a session that dies in its
    // first second is a readable (truncated) session.
    if let Err(e) = w
        .flush()
        .and_then(|_| if cfg.sync { w.sync() } else { Ok(()) })
    {
        fail("writing the header", e);
        return;
    }
    let mut last_flush = Instant::now();
    let mut last_prune = Instant::now();
    loop {
        let wait = cfg.flush_interval.saturating_sub(last_flush.elapsed());
        let res = match rx.recv_timeout(wait) {
            Ok(Msg::Event(e)) => w.event(&e),
            Ok(Msg::Alert(a)) => w.alert(&a),
            Ok(Msg::Gap(g)) => w.gap(&g),
            Ok(Msg::Cgroup(c)) => w.cgroup(&c),
            Ok(Msg::Flush) => {
                if w.dirty() && last_flush.elapsed() >= MIN_REQUESTED_FLUSH {
                    last_flush = Instant::now();
                    flush(&mut w, cfg.sync)
                } else {
                    Ok(())
                }
            }
            Ok(Msg::Finish) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => Ok(()),
        };
        if let Err(e) = res {
            fail("write failed", e);
            return;
        }
        if last_flush.elapsed() >= cfg.flush_interval {
            last_flush = Instant::now();
            if w.dirty() {
                if let Err(e) = flush(&mut w, cfg.sync) {
                    fail("flush failed", e);
                    return;
                }
            }
            if let Some((dir, retention)) = &cfg.prune {
                if last_prune.elapsed() >= PRUNE_EVERY {
                    last_prune = Instant::now();
                    report_pruned(store::prune(
                        dir,
                        Some(&cfg.path),
                        retention,
                        SystemTime::now(),
                    ));
                }
            }
        }
    }
    // Whatever is still queued was sent before Finish: drain it first.
    while let Ok(m) = rx.try_recv() {
        let res = match m {
            Msg::Event(e) => w.event(&e),
            Msg::Alert(a) => w.alert(&a),
            Msg::Gap(g) => w.gap(&g),
            Msg::Cgroup(c) => w.cgroup(&c),
            Msg::Flush | Msg::Finish => Ok(()),
        };
        if let Err(e) = res {
            fail("write failed", e);
            return;
        }
    }
    match w.finish(now_ns()) {
        Ok((_, footer, last)) => {
            if let Ok(mut c) = stats.closed.lock() {
                *c = Some(Closed {
                    footer,
                    last_hash: last.to_string(),
                });
            }
        }
        Err(e) => fail("writing the footer", e),
    }
}

fn flush<W: SessionOutput>(w: &mut SessionWriter<W>, sync: bool) -> std::io::Result<()> {
    w.flush()?;
    if sync {
        w.sync()?;
    }
    Ok(())
}

/// A [`CgroupLookup`] that records the names it learns (see
/// [`Recorder::recording_names`]). The lookup happens on the pipeline thread
/// while the engine handles an event, after the recorder queued that event
/// and before its alerts, so the name lands between them in the file.
pub struct RecordedNames<L: CgroupLookup> {
    inner: L,
    known: std::collections::HashSet<u64>,
    tx: Option<SyncSender<Msg>>,
    stats: Arc<RecorderStats>,
}

impl<L: CgroupLookup> CgroupLookup for RecordedNames<L> {
    fn lookup(&mut self, id: u64) -> Option<String> {
        let name = self.inner.lookup(id);
        if let (Some(path), Some(tx)) = (&name, &self.tx) {
            if self.known.insert(id) {
                let fact = Msg::Cgroup(WatchedCgroup {
                    id,
                    path: path.clone(),
                });
                // Never block the pipeline; a lost name is counted (replay
                // would then leave that cgroup unnamed).
                if tx.try_send(fact).is_err() {
                    self.stats.dropped_facts.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        name
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
mod tests {
    use super::*;
    use crate::event::model::{EventKind, Exit, Task};
    use crate::session::{Record, SessionReader};
    use std::io::Write;
    use std::sync::Condvar;

    /// An output the test can hold closed (to fill the queue) and read.
    #[derive(Clone, Default)]
    struct Gated {
        out: Arc<Mutex<Vec<u8>>>,
        gate: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Gated {
        fn closed() -> Self {
            Gated::default()
        }
        fn open(&self) {
            *self.gate.0.lock().unwrap() = true;
            self.gate.1.notify_all();
        }
        fn bytes(&self) -> Vec<u8> {
            self.out.lock().unwrap().clone()
        }
    }

    impl Write for Gated {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let mut open = self.gate.0.lock().unwrap();
            while !*open {
                open = self.gate.1.wait(open).unwrap();
            }
            self.out.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl SessionOutput for Gated {}

    fn ev(i: u64) -> Event {
        Event {
            time_ns: 1_000 + i,
            task: Task {
                pid: i as u32,
                comm: "t".into(),
                ..Task::default()
            },
            kind: EventKind::Exit(Exit { exit_code: 0 }),
        }
    }

    fn header() -> Header {
        Header::new(1, vec![], "# policy".into())
    }

    fn read_all(bytes: Vec<u8>) -> (Vec<Record>, crate::session::Verdict) {
        let mut r =
            SessionReader::from_reader(Path::new("mem"), std::io::Cursor::new(bytes)).unwrap();
        let mut recs = Vec::new();
        while let Some(e) = r.next_record().unwrap() {
            recs.push(e.record);
        }
        (recs, r.finish().unwrap())
    }

    #[test]
    fn a_full_queue_drops_and_records_a_gap_in_place() {
        let out = Gated::closed();
        let mut rec = Recorder::with_output(
            out.clone(),
            Path::new("mem"),
            header(),
            true,
            4,
            Duration::from_secs(3600),
        )
        .unwrap();
        // The writer thread is stuck writing the header: the queue fills.
        for i in 0..100 {
            rec.event(&ev(i));
        }
        let stats = rec.stats();
        let dropped = stats.dropped_events.load(Ordering::Relaxed);
        assert!(dropped >= 95, "only {dropped} dropped");
        out.open();
        // Let the writer drain, then one more event gets in after the gap.
        while stats.queued.load(Ordering::Relaxed) < 100 - dropped {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(50));
        rec.event(&ev(100));
        rec.finish();

        let (recs, verdict) = read_all(out.bytes());
        assert_eq!(
            verdict.integrity(),
            crate::session::Integrity::Intact,
            "{:?}",
            verdict.problems
        );
        let kept = (100 - dropped) as usize;
        assert_eq!(recs.len(), kept + 3, "{recs:?}");
        for (i, r) in recs[..kept].iter().enumerate() {
            assert_eq!(r, &Record::Event(ev(i as u64)));
        }
        let Record::Gap(g) = &recs[kept] else {
            panic!("expected a gap after the kept events, got {:?}", recs[kept]);
        };
        assert_eq!(g.dropped_events, dropped);
        assert_eq!(g.first_time_ns, Some(1_000 + kept as u64));
        assert_eq!(g.last_time_ns, Some(1_099));
        assert_eq!(recs[kept + 1], Record::Event(ev(100)));
        let Record::Footer(f) = &recs[kept + 2] else {
            panic!()
        };
        assert_eq!(f.dropped_events, dropped);
        assert_eq!(f.gaps, 1);
        assert_eq!(stats.closed().unwrap().footer, *f);
    }

    #[test]
    fn drops_at_the_end_are_recorded_before_the_footer() {
        let out = Gated::closed();
        let mut rec = Recorder::with_output(
            out.clone(),
            Path::new("mem"),
            header(),
            false,
            2,
            Duration::from_secs(3600),
        )
        .unwrap();
        for i in 0..10 {
            rec.event(&ev(i));
        }
        out.open();
        rec.finish();
        let (recs, verdict) = read_all(out.bytes());
        assert_eq!(verdict.integrity(), crate::session::Integrity::Intact);
        let n = recs.len();
        assert!(matches!(recs[n - 2], Record::Gap(_)), "{recs:?}");
        let Record::Footer(f) = &recs[n - 1] else {
            panic!()
        };
        assert_eq!(f.events + f.dropped_events, 10);
    }

    #[test]
    fn flushes_on_its_own_within_the_interval() {
        let out = Gated::closed();
        out.open();
        let mut rec = Recorder::with_output(
            out.clone(),
            Path::new("mem"),
            header(),
            true,
            64,
            Duration::from_millis(50),
        )
        .unwrap();
        rec.event(&ev(1));
        let t = Instant::now();
        loop {
            let bytes = out.bytes();
            if bytes.is_empty() {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            // Readable now, though not closed: header + the event, no footer.
            let (recs, v) = read_all(bytes);
            if recs.len() == 1 {
                assert_eq!(
                    v.problems.last().unwrap().kind,
                    crate::session::ProblemKind::MissingFooter
                );
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(5), "not flushed");
            std::thread::sleep(Duration::from_millis(10));
        }
        rec.finish();
    }

    #[test]
    fn start_creates_a_private_file_in_the_directory() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sessions");
        let config = RecorderConfig {
            target: RecordTarget::Dir(dir.clone()),
            ..RecorderConfig::default()
        };
        let mut h = header();
        h.cgroups = vec![crate::session::WatchedCgroup {
            id: 7,
            path: "agent.slice".into(),
        }];
        let mut rec = Recorder::start(&config, h).unwrap();
        rec.event(&ev(1));
        rec.finish();
        let path = rec.path().to_path_buf();
        assert!(path.starts_with(&dir));
        assert!(
            path.to_str().unwrap().ends_with("-agent.slice.jsonl.zst"),
            "{path:?}"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let v = SessionReader::open(&path).unwrap().finish().unwrap();
        assert_eq!(v.integrity(), crate::session::Integrity::Intact);
        assert_eq!(v.counts.events, 1);
    }

    #[test]
    fn record_arg_chooses_file_or_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let c = RecorderConfig::for_record_arg(Some(tmp.path()));
        assert_eq!(c.target, RecordTarget::Dir(tmp.path().to_path_buf()));
        let f = tmp.path().join("s.jsonl");
        let c = RecorderConfig::for_record_arg(Some(&f));
        assert_eq!(c.target, RecordTarget::File(f));
        assert!(!c.compress);
        let c = RecorderConfig::for_record_arg(Some(Path::new("/x/s.jsonl.zst")));
        assert!(c.compress);
        let c = RecorderConfig::for_record_arg(None);
        assert_eq!(c.target, RecordTarget::Dir(store::DEFAULT_DIR.into()));
    }
}
