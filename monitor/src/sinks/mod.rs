//! Sinks: where events and alerts go. Named after their destination.
//!
//! Every sink sees every event (most ignore them; the recorder and the trace
//! printer do not) and every alert, in order, from the one pipeline.

pub mod console;
pub mod journald;
pub mod json;
pub mod recorder;
pub mod trace;

use crate::detect::alert::Alert;
use crate::event::model::Event;

/// A destination for events and alerts. Synchronous: a sink that does slow
/// I/O (the recorder) hands the work to its own thread through a bounded queue.
pub trait Sink: Send {
    /// Called for every event, before detection sees it.
    fn event(&mut self, _event: &Event) {}
    /// Called for every alert the detectors raise.
    fn alert(&mut self, alert: &Alert);
    /// Called periodically (and before exit): push out anything buffered.
    fn flush(&mut self) {}
    /// Called once at shutdown, after the last event.
    fn finish(&mut self) {
        self.flush();
    }
}
