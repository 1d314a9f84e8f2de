//! The replay source: a recorded session's events, in their recorded order,
//! into the same [`Pipeline`] the live source feeds. Nothing downstream
//! knows it is a replay; the events carry their own timestamps, which is all
//! the detectors look at.
//!
//! Damaged records are never fed (the reader skips them and reports each);
//! recorded alerts and gaps are not pipeline inputs and go to the caller,
//! which compares the alerts and reports the gaps.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::pipeline::Pipeline;
use crate::session::{Entry, Header, Record, SessionError, SessionReader, Verdict};

/// Reads a session into a pipeline.
pub struct ReplaySource {
    reader: SessionReader,
    line: Arc<AtomicU64>,
}

impl ReplaySource {
    /// Open a session (its header is read and checked here).
    pub fn open(path: &Path) -> Result<ReplaySource, SessionError> {
        Ok(ReplaySource::new(SessionReader::open(path)?))
    }

    /// Replay from an already opened reader.
    pub fn new(reader: SessionReader) -> ReplaySource {
        ReplaySource {
            reader,
            line: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The session's header: policy, host facts, cgroups.
    pub fn header(&self) -> &Header {
        self.reader.header()
    }

    /// The line number of the event being fed, readable by sinks that want
    /// to say where an alert came from (0 before the first).
    pub fn current_line(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.line)
    }

    /// Feed every intact event to `pipeline`, in order; hand every other
    /// intact record (alerts, gaps, the footer) to `other`. Does not call
    /// `pipeline.finish()`. Returns the reader's verdict on the file.
    pub fn run(
        mut self,
        pipeline: &mut Pipeline,
        mut other: impl FnMut(&Entry),
    ) -> Result<(u64, Verdict), SessionError> {
        let mut events = 0u64;
        while let Some(entry) = self.reader.next_record()? {
            match &entry.record {
                Record::Event(e) => {
                    self.line.store(entry.line, Ordering::Relaxed);
                    pipeline.handle(e);
                    events += 1;
                }
                _ => other(&entry),
            }
        }
        Ok((events, self.reader.finish()?))
    }
}
