//! Recording the cgroup names the engine learns mid-run, so replay names
//! them as the live run did.

use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use super::thread::Msg;
use super::RecorderStats;
use crate::detect::CgroupLookup;
use crate::session::format::WatchedCgroup;

/// A [`CgroupLookup`] that records the names it learns (see
/// [`Recorder::recording_names`](super::Recorder::recording_names)). The lookup happens on the pipeline thread
/// while the engine handles an event, after the recorder queued that event
/// and before its alerts, so the name lands between them in the file.
pub struct RecordedNames<L: CgroupLookup> {
    pub(super) inner: L,
    pub(super) known: std::collections::HashSet<u64>,
    pub(super) tx: Option<SyncSender<Msg>>,
    pub(super) stats: Arc<RecorderStats>,
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
