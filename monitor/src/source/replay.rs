//! The replay source: a recorded session's events, in their recorded order,
//! into the same [`Pipeline`] the live source feeds. Nothing downstream
//! knows it is a replay; the events carry their own timestamps, which is all
//! the detectors look at.
//!
//! Damaged records are never fed (the reader skips them and reports each);
//! recorded alerts and gaps are not pipeline inputs and go to the caller,
//! which compares the alerts and reports the gaps.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::detect::CgroupLookup;
use crate::pipeline::Pipeline;
use crate::session::{Entry, Header, Record, SessionError, SessionReader, Verdict};

/// The cgroup names of a replay: the header's, plus those the session
/// learned along the way (`cgroup` records), applied as the replay reaches
/// them. Shared between the engine (which looks names up) and the source
/// (which adds them).
#[derive(Clone, Debug, Default)]
pub struct ReplayNames(Arc<Mutex<BTreeMap<u64, String>>>);

impl ReplayNames {
    /// Names known at the start of the session.
    pub fn new(header: &Header) -> Self {
        ReplayNames(Arc::new(Mutex::new(header.cgroup_paths.clone())))
    }

    fn insert(&self, id: u64, path: String) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(id, path);
        }
    }
}

impl CgroupLookup for ReplayNames {
    fn lookup(&mut self, id: u64) -> Option<String> {
        self.0.lock().ok().and_then(|m| m.get(&id).cloned())
    }
}

/// Reads a session into a pipeline.
pub struct ReplaySource {
    reader: SessionReader,
    line: Arc<AtomicU64>,
    names: ReplayNames,
}

impl ReplaySource {
    /// Open a session (its header is read and checked here).
    pub fn open(path: &Path) -> Result<ReplaySource, SessionError> {
        Ok(ReplaySource::new(SessionReader::open(path)?))
    }

    /// Replay from an already opened reader.
    pub fn new(reader: SessionReader) -> ReplaySource {
        let names = ReplayNames::new(reader.header());
        ReplaySource {
            reader,
            line: Arc::new(AtomicU64::new(0)),
            names,
        }
    }

    /// The session's header: policy, host facts, cgroups.
    pub fn header(&self) -> &Header {
        self.reader.header()
    }

    /// The cgroup names to give the engine: they grow as the replay reads
    /// the names the live run learned.
    pub fn names(&self) -> ReplayNames {
        self.names.clone()
    }

    /// The line number of the event being fed, readable by sinks that want
    /// to say where an alert came from (0 before the first).
    pub fn current_line(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.line)
    }

    /// Feed every intact event to `pipeline`, in order; hand every other
    /// intact record (alerts, gaps, the footer) to `other`, with the line of
    /// the event record before it (damaged or not). Does not call
    /// `pipeline.finish()`. Returns the number of events fed and the
    /// reader's verdict on the file.
    pub fn run(
        mut self,
        pipeline: &mut Pipeline,
        mut other: impl FnMut(&Entry, u64),
    ) -> Result<(u64, Verdict), SessionError> {
        let mut events = 0u64;
        let mut next = self.reader.next_record()?;
        while let Some(entry) = next.take() {
            match entry.record {
                Record::Event(e) => {
                    // Names the live engine learned while handling this
                    // event were written right after it: apply them first.
                    let mut after = self.reader.next_record()?;
                    while let Some(Entry {
                        record: Record::Cgroup(c),
                        ..
                    }) = after
                    {
                        self.names.insert(c.id, c.path);
                        after = self.reader.next_record()?;
                    }
                    self.line.store(entry.line, Ordering::Relaxed);
                    pipeline.handle(&e);
                    events += 1;
                    next = after;
                }
                Record::Cgroup(c) => {
                    self.names.insert(c.id, c.path);
                    next = self.reader.next_record()?;
                }
                _ => {
                    other(&entry, self.reader.last_event_line());
                    next = self.reader.next_record()?;
                }
            }
        }
        Ok((events, self.reader.finish()?))
    }
}
