//! The only path an event takes, live or replayed:
//! sinks see the event (the recorder stores it) -> state is updated ->
//! detectors run -> sinks get the alerts.

use crate::detect::alert::Alert;
use crate::event::model::Event;
use crate::sinks::Sink;

/// Drives one stream of events through detection into the sinks.
pub struct Pipeline {
    sinks: Vec<Box<dyn Sink>>,
    detector: Box<dyn FnMut(&Event) -> Vec<Alert> + Send>,
}

impl Pipeline {
    /// A pipeline with the given detector and sinks.
    pub fn new(
        detector: Box<dyn FnMut(&Event) -> Vec<Alert> + Send>,
        sinks: Vec<Box<dyn Sink>>,
    ) -> Self {
        Self { sinks, detector }
    }

    /// Push one event through.
    pub fn handle(&mut self, event: &Event) {
        for s in &mut self.sinks {
            s.event(event);
        }
        let alerts = (self.detector)(event);
        for a in &alerts {
            for s in &mut self.sinks {
                s.alert(a);
            }
        }
    }

    /// Flush every sink.
    pub fn flush(&mut self) {
        for s in &mut self.sinks {
            s.flush();
        }
    }

    /// Finish every sink (end of stream).
    pub fn finish(&mut self) {
        for s in &mut self.sinks {
            s.finish();
        }
    }
}
