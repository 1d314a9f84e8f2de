//! The live source: the kernel's ring buffer, read asynchronously.
//!
//! The kernel side batches open records (no wake-up per record unless much is
//! pending), so besides waking on the ring buffer's fd the loop also drains on
//! a short timer. Lost-record counters are polled and turned into `Lost` gap
//! events at the point the loss is noticed. On shutdown the ring buffer is
//! drained once more, so nothing already delivered by the kernel is lost.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use monitor_common::EventKind as WireKind;
use tokio::io::unix::AsyncFd;

use crate::event::decode::{Clock, Decoder};
use crate::event::model::{Event, EventKind, Lost, Task};
use crate::pipeline::Pipeline;
use crate::probes::loader::LostCounters;

/// How often the ring buffer is drained even without a wake-up.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(5);
/// How often the lost counters are read.
const LOST_INTERVAL: Duration = Duration::from_millis(200);
/// How often sinks are flushed.
const FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// Counts of what the live source did.
#[derive(Clone, Debug, Default)]
pub struct LiveStats {
    /// Records read from the ring buffer.
    pub records: u64,
    /// Events handed to the pipeline.
    pub events: u64,
    /// Records that could not be decoded.
    pub bad_records: u64,
    /// Records the kernel could not deliver, per kind.
    pub lost: BTreeMap<String, u64>,
}

impl LiveStats {
    /// Total lost records.
    pub fn lost_total(&self) -> u64 {
        self.lost.values().sum()
    }
}

/// Reads the ring buffer into the pipeline.
pub struct LiveSource {
    ring: AsyncFd<RingBuf<MapData>>,
    lost: LostCounters,
    decoder: Decoder,
    clock: Clock,
    last_lost: BTreeMap<&'static str, u64>,
    stats: LiveStats,
}

impl LiveSource {
    /// A source over an attached ring buffer and its loss counters.
    pub fn new(ring: RingBuf<MapData>, lost: LostCounters) -> std::io::Result<Self> {
        let clock = Clock::from_host();
        Ok(Self {
            // SAFETY: the ring buffer owns its fd and the AsyncFd owns the ring
            // buffer, so the fd stays open for as long as it is registered.
            ring: unsafe { AsyncFd::register(ring) }.map_err(std::io::Error::from)?,
            lost,
            decoder: Decoder::new(clock),
            clock,
            last_lost: BTreeMap::new(),
            stats: LiveStats::default(),
        })
    }

    /// The clock used to convert kernel times.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Runs until `shutdown` resolves, then calls `detach` (so the kernel
    /// stops producing), drains what is left and returns the counts: nothing
    /// the kernel delivered before the programs were detached is left unread.
    pub async fn run(
        mut self,
        pipeline: &mut Pipeline,
        shutdown: impl Future<Output = ()>,
        detach: impl FnOnce(),
    ) -> std::io::Result<LiveStats> {
        tokio::pin!(shutdown);
        let mut drain = tokio::time::interval(DRAIN_INTERVAL);
        drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lost_tick = tokio::time::interval(LOST_INTERVAL);
        let mut flush_tick = tokio::time::interval(FLUSH_INTERVAL);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                guard = self.ring.readable_mut() => {
                    let mut guard = guard?;
                    guard.clear_ready();
                    drop(guard);
                    self.drain(pipeline);
                }
                _ = drain.tick() => self.drain(pipeline),
                _ = lost_tick.tick() => self.check_lost(pipeline),
                _ = flush_tick.tick() => {
                    // Closed suppression windows report their counts even
                    // when no further event arrives.
                    pipeline.tick(now_ns());
                    pipeline.flush();
                }
            }
        }
        // Detach first, then read whatever the kernel already put in the ring
        // buffer (the map stays alive: this source holds it).
        detach();
        self.drain(pipeline);
        self.check_lost(pipeline);
        pipeline.flush();
        Ok(self.stats)
    }

    /// Reads every record now in the ring buffer.
    fn drain(&mut self, pipeline: &mut Pipeline) {
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            self.stats.records += 1;
            match self.decoder.decode(&item) {
                Ok(Some(ev)) => {
                    self.stats.events += 1;
                    pipeline.handle(&ev);
                }
                Ok(None) => {}
                Err(e) => {
                    self.stats.bad_records += 1;
                    if self.stats.bad_records <= 10 {
                        tracing::warn!("dropping undecodable record: {e}");
                    }
                }
            }
        }
    }

    /// Emits a `Lost` gap event if the kernel counted new losses.
    fn check_lost(&mut self, pipeline: &mut Pipeline) {
        let mut delta = BTreeMap::new();
        for (kind, total) in self.lost.totals() {
            let name = kind_name(kind);
            let prev = self.last_lost.insert(name, total).unwrap_or(0);
            if total > prev {
                delta.insert(name.to_string(), total - prev);
                *self.stats.lost.entry(name.to_string()).or_default() += total - prev;
            }
        }
        if delta.is_empty() {
            return;
        }
        tracing::warn!("ring buffer full: lost records {delta:?}");
        let ev = Event {
            time_ns: now_ns(),
            task: Task::default(),
            kind: EventKind::Lost(Lost { counts: delta }),
        };
        self.stats.events += 1;
        pipeline.handle(&ev);
    }
}

fn kind_name(k: WireKind) -> &'static str {
    k.name()
}

/// Wall-clock ns since the epoch.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
