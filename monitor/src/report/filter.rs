//! What a replay shows: `--pid` (with its descendants), `--rule`,
//! `--since`/`--until`. A sink wrapper: the engine still sees EVERY event
//! (its state, the process tree, the DNS map and the correlation window need
//! them), only what reaches the outputs is narrowed.

use std::collections::HashSet;

use crate::detect::alert::Alert;
use crate::event::model::{Event, EventKind};
use crate::sinks::Sink;

/// What to let through. Empty means everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// This process and its descendants.
    pub pid: Option<u32>,
    /// Only these rules' alerts (events are not filtered by rule).
    pub rules: Vec<String>,
    /// Only from this time on (ns since the epoch, inclusive).
    pub since_ns: Option<u64>,
    /// Only until this time (ns since the epoch, inclusive).
    pub until_ns: Option<u64>,
}

impl Filter {
    /// Whether it lets everything through.
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    fn in_time(&self, t: u64) -> bool {
        self.since_ns.is_none_or(|s| t >= s) && self.until_ns.is_none_or(|u| t <= u)
    }
}

/// Passes to `inner` only what `filter` selects.
pub struct Filtered {
    inner: Box<dyn Sink>,
    filter: Filter,
    subtree: HashSet<u32>,
    exited: Option<u32>,
    last_time_ns: u64,
}

impl Filtered {
    /// Wrap `inner`.
    pub fn new(inner: Box<dyn Sink>, filter: Filter) -> Self {
        let subtree = filter.pid.into_iter().collect();
        Filtered {
            inner,
            filter,
            subtree,
            exited: None,
            last_time_ns: 0,
        }
    }

    fn track(&mut self, ev: &Event) {
        if self.filter.pid.is_none() {
            return;
        }
        let t = &ev.task;
        match &ev.kind {
            EventKind::Fork(f) if self.subtree.contains(&t.pid) => {
                self.subtree.insert(f.child_pid);
            }
            EventKind::Dns(_) | EventKind::Lost(_) => {}
            // A process first seen without its fork (lost, or it predates
            // watching) is still a descendant if its parent is.
            _ if t.ppid != 0 && self.subtree.contains(&t.ppid) => {
                self.subtree.insert(t.pid);
            }
            _ => {}
        }
    }

    fn shows_pid(&self, pid: u32) -> bool {
        self.filter.pid.is_none() || self.subtree.contains(&pid)
    }
}

impl Sink for Filtered {
    fn event(&mut self, ev: &Event) {
        self.last_time_ns = ev.time_ns;
        if let Some(pid) = self.exited.take() {
            // A later process reusing the pid is not a descendant. (Removed
            // only now, so alerts raised by the exit itself still show.)
            self.subtree.remove(&pid);
        }
        self.track(ev);
        let pid_ok = match ev.kind {
            // DNS answers and kernel losses have no process: keep them in a
            // --pid view, they explain the connects around them.
            EventKind::Dns(_) | EventKind::Lost(_) => true,
            _ => self.shows_pid(ev.task.pid),
        };
        if pid_ok && self.filter.in_time(ev.time_ns) {
            self.inner.event(ev);
        }
        if let EventKind::Exit(_) = ev.kind {
            if Some(ev.task.pid) != self.filter.pid {
                self.exited = Some(ev.task.pid);
            }
        }
    }

    fn alert(&mut self, a: &Alert) {
        let rule_ok = self.filter.rules.is_empty() || self.filter.rules.contains(&a.rule);
        // Alerts are raised by the event just seen: its time is theirs.
        if rule_ok && self.shows_pid(a.pid) && self.filter.in_time(self.last_time_ns) {
            self.inner.alert(a);
        }
    }

    fn flush(&mut self) {
        self.inner.flush();
    }

    fn finish(&mut self) {
        self.inner.finish();
    }
}

/// Parse a `--since`/`--until` value: an RFC 3339 time
/// (`2026-12-04T21:05:00Z`), a UTC time of day on the session's start day
/// (`21:05`, `21:05:30.5`), or an offset from the session's start (`+90s`,
/// `+5m`, `+1h30m`).
pub fn parse_time(s: &str, session_start_ns: u64) -> Result<u64, String> {
    let s = s.trim();
    let bad = |why: &str| {
        format!(
            "{s:?} is not a time ({why}): use RFC 3339 (2026-12-04T21:05:00Z), a UTC time of day \
             (21:05:00) or an offset from the session start (+5m)"
        )
    };
    if let Some(off) = s.strip_prefix('+') {
        let d: jiff::SignedDuration = off.parse().map_err(|e| bad(&format!("{e}")))?;
        let ns = u64::try_from(d.as_nanos()).map_err(|_| bad("negative offset"))?;
        return Ok(session_start_ns.saturating_add(ns));
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return u64::try_from(t.as_nanosecond()).map_err(|_| bad("before 1970"));
    }
    if let Ok(tod) = s.parse::<jiff::civil::Time>() {
        let start = jiff::Timestamp::from_nanosecond(session_start_ns as i128)
            .map_err(|e| bad(&e.to_string()))?;
        let day = start.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
        let t = jiff::civil::DateTime::from_parts(day, tod)
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .map_err(|e| bad(&e.to_string()))?
            .timestamp();
        return u64::try_from(t.as_nanosecond()).map_err(|_| bad("before 1970"));
    }
    Err(bad("unrecognised"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::model::{Exit, Fork, Task};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);
    impl Sink for Seen {
        fn event(&mut self, e: &Event) {
            self.0.lock().unwrap().push(format!("e{}", e.task.pid));
        }
        fn alert(&mut self, a: &Alert) {
            self.0
                .lock()
                .unwrap()
                .push(format!("a{}:{}", a.pid, a.rule));
        }
    }

    fn ev(t: u64, pid: u32, ppid: u32, kind: EventKind) -> Event {
        Event {
            time_ns: t,
            task: Task {
                pid,
                ppid,
                ..Task::default()
            },
            kind,
        }
    }

    fn alert(pid: u32, rule: &str) -> Alert {
        let mut a = crate::session::tests::alert(0, rule);
        a.pid = pid;
        a
    }

    fn exit() -> EventKind {
        EventKind::Exit(Exit { exit_code: 0 })
    }

    #[test]
    fn pid_keeps_the_process_and_its_descendants_only() {
        let seen = Seen::default();
        let mut f = Filtered::new(
            Box::new(seen.clone()),
            Filter {
                pid: Some(10),
                ..Filter::default()
            },
        );
        f.event(&ev(1, 10, 1, EventKind::Fork(Fork { child_pid: 11 })));
        f.event(&ev(2, 11, 10, EventKind::Fork(Fork { child_pid: 12 })));
        f.event(&ev(3, 12, 11, exit()));
        f.alert(&alert(12, "secret-read"));
        f.event(&ev(4, 20, 1, exit())); // unrelated
        f.alert(&alert(20, "secret-read"));
        f.event(&ev(5, 13, 11, exit())); // fork not seen, parent is ours
        f.event(&ev(6, 12, 1, exit())); // pid 12 reused by a stranger
        assert_eq!(
            *seen.0.lock().unwrap(),
            vec!["e10", "e11", "e12", "a12:secret-read", "e13"]
        );
    }

    #[test]
    fn rule_and_time_windows() {
        let seen = Seen::default();
        let mut f = Filtered::new(
            Box::new(seen.clone()),
            Filter {
                rules: vec!["exfiltration".into()],
                since_ns: Some(2),
                until_ns: Some(3),
                ..Filter::default()
            },
        );
        for t in 1..=4 {
            f.event(&ev(t, t as u32, 1, exit()));
            f.alert(&alert(t as u32, "secret-read"));
            f.alert(&alert(t as u32, "exfiltration"));
        }
        assert_eq!(
            *seen.0.lock().unwrap(),
            vec!["e2", "a2:exfiltration", "e3", "a3:exfiltration"]
        );
    }

    #[test]
    fn times_parse_in_three_forms() {
        let start = 1_796_418_295_000_000_000; // 2026-12-04T21:04:55Z
        assert_eq!(parse_time("+90s", start).unwrap(), start + 90_000_000_000);
        assert_eq!(
            parse_time("+1h30m", start).unwrap(),
            start + 5_400_000_000_000
        );
        assert_eq!(
            parse_time("2026-12-04T21:05:00Z", start).unwrap(),
            start + 5_000_000_000
        );
        assert_eq!(parse_time("21:05", start).unwrap(), start + 5_000_000_000);
        assert_eq!(
            parse_time("21:05:00.5", start).unwrap(),
            start + 5_500_000_000
        );
        let e = parse_time("yesterday", start).unwrap_err();
        assert!(e.contains("RFC 3339"), "{e}");
    }
}
