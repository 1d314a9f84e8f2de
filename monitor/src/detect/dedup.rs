//! No alert storms: the same rule, process and object within the window is
//! reported once, AT ONCE; the repeats are counted and, when the window
//! closes (by event time), summarised in one more alert whose `count` is the
//! number of occurrences in the window, the first included.

use std::collections::{HashMap, VecDeque};

use super::alert::Alert;
use crate::proctree::ProcKey;

/// What makes two alerts "the same".
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DedupKey {
    /// Rule id.
    pub rule: &'static str,
    /// Process instance (or pid where unknown).
    pub process: ProcKey,
    /// The object: a path, a destination, a kind of dump.
    pub object: String,
}

#[derive(Debug)]
struct Slot {
    start_ns: u64,
    count: u64,
    last: Alert,
}

/// Open windows, at most this many (oldest closed early beyond).
const OPEN_CAP: usize = 65_536;

/// The suppression state.
#[derive(Debug)]
pub struct Dedup {
    window_ns: u64,
    open: HashMap<DedupKey, Slot>,
    order: VecDeque<(u64, DedupKey)>,
    pending: Vec<Alert>,
}

impl Dedup {
    /// Suppress repeats within `window_ns` (0: report everything).
    pub fn new(window_ns: u64) -> Self {
        Dedup {
            window_ns,
            open: HashMap::new(),
            order: VecDeque::new(),
            pending: Vec::new(),
        }
    }

    /// Offer an alert at event time `time_ns`: returned if it is the first of
    /// its window, counted otherwise.
    pub fn admit(&mut self, key: DedupKey, alert: Alert, time_ns: u64) -> Option<Alert> {
        if self.window_ns == 0 {
            return Some(alert);
        }
        if let Some(slot) = self.open.get_mut(&key) {
            if time_ns < slot.start_ns.saturating_add(self.window_ns) {
                slot.count += 1;
                slot.last = alert;
                return None;
            }
        }
        // (a stale slot for this key is summarised by the next tick; replace it
        // only after taking its summary)
        let mut out = None;
        if let Some(old) = self.open.remove(&key) {
            out = summary(old);
        }
        self.pending.extend(out);
        self.open.insert(
            key.clone(),
            Slot {
                start_ns: time_ns,
                count: 1,
                last: alert.clone(),
            },
        );
        self.order.push_back((time_ns, key));
        if self.open.len() > OPEN_CAP {
            if let Some((_, k)) = self.order.pop_front() {
                if let Some(s) = self.open.remove(&k) {
                    self.pending.extend(summary(s));
                }
            }
        }
        Some(alert)
    }

    /// Summaries of the windows closed by `now_ns`, oldest first.
    pub fn tick(&mut self, now_ns: u64) -> Vec<Alert> {
        let mut out: Vec<Alert> = std::mem::take(&mut self.pending);
        while let Some((start, _)) = self.order.front() {
            if now_ns < start.saturating_add(self.window_ns) {
                break;
            }
            let (start, key) = self.order.pop_front().expect("front exists");
            if self.open.get(&key).is_some_and(|s| s.start_ns == start) {
                if let Some(s) = self.open.remove(&key) {
                    out.extend(summary(s));
                }
            }
        }
        out
    }

    /// Summaries of every open window (end of stream).
    pub fn flush(&mut self) -> Vec<Alert> {
        let mut out: Vec<Alert> = std::mem::take(&mut self.pending);
        while let Some((start, key)) = self.order.pop_front() {
            if self.open.get(&key).is_some_and(|s| s.start_ns == start) {
                if let Some(s) = self.open.remove(&key) {
                    out.extend(summary(s));
                }
            }
        }
        out
    }
}

fn summary(s: Slot) -> Option<Alert> {
    (s.count > 1).then(|| {
        let mut a = s.last;
        a.count = s.count;
        a.message = format!("{} (repeated: {} times in this window)", a.message, s.count);
        a
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::alert::Severity;

    const S: u64 = 1_000_000_000;

    fn alert(msg: &str) -> Alert {
        Alert {
            time: String::new(),
            rule: "secret-read".into(),
            severity: Severity::High,
            message: msg.into(),
            pid: 1,
            ppid: 0,
            uid: 0,
            comm: "cat".into(),
            cgroup_id: 1,
            ..Alert::default()
        }
    }
    fn key(p: u64, o: &str) -> DedupKey {
        DedupKey {
            rule: "secret-read",
            process: p,
            object: o.into(),
        }
    }

    #[test]
    fn first_is_immediate_repeats_are_summarised() {
        let mut d = Dedup::new(10 * S);
        assert!(
            d.admit(key(1, "/a"), alert("a"), 0).is_some(),
            "first never delayed"
        );
        for i in 1..5 {
            assert!(d.admit(key(1, "/a"), alert("a"), i * S).is_none());
        }
        assert!(
            d.admit(key(1, "/b"), alert("b"), S).is_some(),
            "other object"
        );
        assert!(
            d.admit(key(2, "/a"), alert("a2"), S).is_some(),
            "other process"
        );
        assert!(d.tick(9 * S).is_empty());
        let s = d.tick(10 * S);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].count, 5);
        assert!(s[0].message.contains("5 times"));
        // /b and pid 2 /a had no repeats: no summary
        assert!(d.tick(20 * S).is_empty());
        // a new window opens with an immediate alert again
        assert!(d.admit(key(1, "/a"), alert("a"), 21 * S).is_some());
    }

    #[test]
    fn a_late_repeat_opens_a_new_window_and_flush_summarises() {
        let mut d = Dedup::new(10 * S);
        assert!(d.admit(key(1, "/a"), alert("a"), 0).is_some());
        assert!(d.admit(key(1, "/a"), alert("a"), S).is_none());
        // no tick between: the next occurrence after the window is immediate...
        assert!(d.admit(key(1, "/a"), alert("a"), 11 * S).is_some());
        // ...and the old window's summary is not lost
        let s = d.tick(11 * S);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].count, 2);
        assert!(d.admit(key(1, "/a"), alert("a"), 12 * S).is_none());
        let f = d.flush();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].count, 2);
    }

    #[test]
    fn zero_window_reports_everything() {
        let mut d = Dedup::new(0);
        for _ in 0..3 {
            assert!(d.admit(key(1, "/a"), alert("a"), 0).is_some());
        }
        assert!(d.flush().is_empty());
    }
}
