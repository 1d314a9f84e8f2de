//! The writer thread: takes records off the queue, encodes, hashes,
//! compresses and writes them, flushing and syncing on a timer, and
//! re-applies retention on long runs.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use super::{Closed, RecorderStats};
use crate::detect::alert::Alert;
use crate::event::model::Event;
use crate::session::format::{now_ns, Gap, WatchedCgroup};
use crate::session::store::{self, Retention, StoreError};
use crate::session::writer::{SessionOutput, SessionWriter};

pub(super) enum Msg {
    Event(Box<Event>),
    Alert(Box<Alert>),
    Gap(Gap),
    Cgroup(WatchedCgroup),
    Flush,
    Finish,
}

/// Don't end a zstd frame more often than this on `Sink::flush` requests:
/// the pipeline may flush after every batch, and tiny frames compress badly.
const MIN_REQUESTED_FLUSH: Duration = Duration::from_millis(100);

/// How often a long run re-applies retention to the other sessions.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub(super) struct WriterCfg {
    pub(super) path: PathBuf,
    pub(super) flush_interval: Duration,
    pub(super) sync: bool,
    pub(super) prune: Option<(PathBuf, Retention)>,
}

pub(super) fn report_pruned(r: Result<Vec<store::Pruned>, StoreError>) {
    match r {
        Ok(pruned) => {
            for p in pruned {
                eprintln!("agentwatch: {p}");
            }
        }
        Err(e) => eprintln!("agentwatch: retention: {e}"),
    }
}

pub(super) fn write_loop<W: SessionOutput>(
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
