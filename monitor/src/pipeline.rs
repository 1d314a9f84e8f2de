//! The only path an event takes, live or replayed:
//! sinks see the event (the recorder stores it) -> state is updated ->
//! detectors run -> sinks get the alerts.

use crate::detect::alert::Alert;
use crate::detect::Detect;
use crate::event::model::Event;
use crate::sinks::Sink;

/// A detector that is a plain function of the event.
pub type DetectFn = Box<dyn FnMut(&Event) -> Vec<Alert> + Send>;

/// Drives one stream of events through detection into the sinks.
pub struct Pipeline {
    sinks: Vec<Box<dyn Sink>>,
    detector: Box<dyn Detect>,
}

impl Pipeline {
    /// A pipeline with the given detector function and sinks.
    pub fn new(detector: DetectFn, sinks: Vec<Box<dyn Sink>>) -> Self {
        Self::with_detector(Box::new(detector), sinks)
    }

    /// A pipeline with a detector that also emits summaries on
    /// [`Pipeline::tick`] and [`Pipeline::finish`] (the [`crate::detect::Engine`]).
    pub fn with_detector(detector: Box<dyn Detect>, sinks: Vec<Box<dyn Sink>>) -> Self {
        Self { sinks, detector }
    }

    fn emit(&mut self, alerts: &[Alert]) {
        for a in alerts {
            for s in &mut self.sinks {
                s.alert(a);
            }
        }
    }

    /// Event time is now `now_ns` though no event came (live: from a timer,
    /// so repeat summaries do not wait for the next event). Emits the
    /// summaries of the suppression windows that closed.
    pub fn tick(&mut self, now_ns: u64) {
        let alerts = self.detector.tick(now_ns);
        self.emit(&alerts);
    }

    /// Push one event through.
    pub fn handle(&mut self, event: &Event) {
        for s in &mut self.sinks {
            s.event(event);
        }
        let alerts = self.detector.on_event(event);
        self.emit(&alerts);
    }

    /// Flush every sink.
    pub fn flush(&mut self) {
        for s in &mut self.sinks {
            s.flush();
        }
    }

    /// End of stream: the detector's pending summaries, then finish every sink.
    pub fn finish(&mut self) {
        let alerts = self.detector.finish();
        self.emit(&alerts);
        for s in &mut self.sinks {
            s.finish();
        }
    }
}
