//! What a replay found ([`ReplayReport`]), how its alerts differ from the
//! recorded ones ([`Difference`]) and the summary replay prints on stderr.

use std::path::Path;
use std::time::Duration;

use crate::detect::alert::Alert;
use crate::session::{exit, Gap, Integrity, Verdict};

/// An alert and the line of the event that raised it.
pub type Located = (u64, Alert);

/// What a replay found.
#[derive(Debug)]
pub struct ReplayReport {
    /// The reader's verdict on the file.
    pub verdict: Verdict,
    /// Events fed to the pipeline.
    pub events: u64,
    /// Alerts recorded live, with the line of the event before them.
    pub recorded: Vec<Located>,
    /// Alerts the replay raised, with the line of the event that raised them.
    pub replayed: Vec<Located>,
    /// Recorder gaps, with their lines.
    pub gaps: Vec<(u64, Gap)>,
    /// The line of the last event fed.
    pub last_event_line: u64,
    /// Wall time spent.
    pub elapsed: Duration,
}

/// One way the replayed alerts differ from the recorded ones.
#[derive(Clone, Debug, PartialEq)]
pub enum Difference {
    /// Recorded live, not raised by the replay.
    Missing(Located),
    /// Raised by the replay, not recorded live.
    Extra(Located),
    /// The same alert, raised after a different event (a repeat summary the
    /// live run emitted on a timer tick comes out at the next event or at
    /// the end in a replay). Not counted as a difference.
    Moved {
        /// The line of the event before it, live.
        recorded_line: u64,
        /// The line of the event that raised it, replayed.
        replayed_line: u64,
        /// The alert.
        alert: Box<Alert>,
    },
    /// Raised for the last event of a session that was cut short (or at
    /// its end): the live run died before writing it. Not counted.
    Unrecorded(Located),
    /// Both raised one for the same event, but not the same.
    Changed {
        /// The line of the triggering event.
        line: u64,
        /// As recorded.
        recorded: Box<Alert>,
        /// As replayed.
        replayed: Box<Alert>,
    },
}

impl Difference {
    /// Whether it is explained (moved by a timer tick, or cut off by the
    /// end of a truncated session) rather than a real difference.
    pub fn expected(&self) -> bool {
        matches!(self, Difference::Moved { .. } | Difference::Unrecorded(_))
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing((l, a)) => write!(
                f,
                "event at line {l}: recorded {} (pid {}) was not raised by the replay",
                a.rule, a.pid
            ),
            Difference::Extra((l, a)) => write!(
                f,
                "event at line {l}: replay raised {} (pid {}), not in the recording",
                a.rule, a.pid
            ),
            Difference::Unrecorded((l, a)) => write!(
                f,
                "event at line {l}: replay raised {} (pid {}); the session ends there, before \
                 the live run could record it",
                a.rule, a.pid
            ),
            Difference::Moved {
                recorded_line,
                replayed_line,
                alert,
            } => write!(
                f,
                "{} (pid {}) came after the event at line {recorded_line} live and at line \
                 {replayed_line} in the replay",
                alert.rule, alert.pid
            ),
            Difference::Changed {
                line,
                recorded,
                replayed,
            } => {
                let r = serde_json::to_value(recorded).unwrap_or_default();
                let p = serde_json::to_value(replayed).unwrap_or_default();
                let fields: Vec<String> = r
                    .as_object()
                    .into_iter()
                    .flatten()
                    .chain(p.as_object().into_iter().flatten())
                    .filter(|(k, _)| r.get(k.as_str()) != p.get(k.as_str()))
                    .map(|(k, _)| k.clone())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                write!(
                    f,
                    "event at line {line}: {} differs in {}",
                    recorded.rule,
                    fields.join(", ")
                )
            }
        }
    }
}

impl ReplayReport {
    /// How the replayed alerts differ from the recorded ones, in file order
    /// ([`Difference::Moved`] included).
    pub fn differences(&self) -> Vec<Difference> {
        let mut diffs = self.positional_differences();
        // Pair a missing alert with an identical extra one: moved, not lost.
        let mut k = 0;
        while k < diffs.len() {
            if let Difference::Missing((rl, a)) = diffs[k].clone() {
                let twin = diffs
                    .iter()
                    .position(|d| matches!(d, Difference::Extra((_, b)) if *b == a));
                if let Some(t) = twin {
                    let pl = match diffs.remove(t) {
                        Difference::Extra((pl, _)) => pl,
                        _ => unreachable!("matched above"),
                    };
                    if t < k {
                        k -= 1;
                    }
                    diffs[k] = Difference::Moved {
                        recorded_line: rl,
                        replayed_line: pl,
                        alert: Box::new(a),
                    };
                }
            }
            k += 1;
        }
        if self.verdict.footer.is_none() {
            for d in &mut diffs {
                if let Difference::Extra((l, a)) = d {
                    if *l >= self.last_event_line {
                        *d = Difference::Unrecorded((*l, a.clone()));
                    }
                }
            }
        }
        diffs
    }

    /// Differences that count: everything but [`Difference::Moved`] and
    /// [`Difference::Unrecorded`].
    pub fn real_differences(&self) -> Vec<Difference> {
        self.differences()
            .into_iter()
            .filter(|d| !d.expected())
            .collect()
    }

    fn positional_differences(&self) -> Vec<Difference> {
        let (rec, rep) = (&self.recorded, &self.replayed);
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < rec.len() || j < rep.len() {
            let li = rec.get(i).map_or(u64::MAX, |x| x.0);
            let lj = rep.get(j).map_or(u64::MAX, |x| x.0);
            if li < lj {
                out.push(Difference::Missing(rec[i].clone()));
                i += 1;
            } else if lj < li {
                out.push(Difference::Extra(rep[j].clone()));
                j += 1;
            } else {
                if rec[i].1 != rep[j].1 {
                    out.push(Difference::Changed {
                        line: li,
                        recorded: Box::new(rec[i].1.clone()),
                        replayed: Box::new(rep[j].1.clone()),
                    });
                }
                i += 1;
                j += 1;
            }
        }
        out
    }

    /// Events per second.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The exit code: the file's integrity first, then (when the recorded
    /// policy was used) whether the alerts were reproduced.
    pub fn exit_code(&self, compared: bool) -> u8 {
        match self.verdict.integrity() {
            Integrity::Intact if compared && !self.real_differences().is_empty() => {
                exit::REPLAY_DIFFERS
            }
            i => i.exit_code(),
        }
    }
}

/// What replay says on stderr after the alerts: speed, damage skipped,
/// gaps, and the comparison with the recording.
pub fn summary(path: &Path, r: &ReplayReport, policy: Option<&Path>) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let v = &r.verdict;
    let _ = writeln!(
        s,
        "agentwatch: replayed {} events from {} in {:.2}s ({:.0} events/s): {} alerts",
        r.events,
        path.display(),
        r.elapsed.as_secs_f64(),
        r.events_per_second(),
        r.replayed.len()
    );
    if v.skipped > 0 {
        let _ = writeln!(
            s,
            "agentwatch: skipped {} damaged record(s) (not fed to the engine):",
            v.skipped
        );
    }
    for p in v.problems.iter().take(20) {
        let _ = writeln!(s, "agentwatch:   {}: {p}", path.display());
    }
    if v.problems_total > 20 {
        let _ = writeln!(s, "agentwatch:   ... and {} more", v.problems_total - 20);
    }
    match v.integrity() {
        Integrity::Intact => {}
        Integrity::Truncated => {
            let _ = writeln!(
                s,
                "agentwatch: the session is TRUNCATED: everything up to the damage was replayed"
            );
        }
        Integrity::Tampered => {
            let _ = writeln!(
                s,
                "agentwatch: the session is TAMPERED: records that fail the hash chain were skipped"
            );
        }
    }
    for (line, g) in &r.gaps {
        let _ = writeln!(
            s,
            "agentwatch: line {line}: the recorder lost {} events and {} alerts here ({}); alerts \
             after it may differ from the live run",
            g.dropped_events, g.dropped_alerts, g.reason
        );
    }
    let all = r.differences();
    let moved: Vec<&Difference> = all.iter().filter(|d| d.expected()).collect();
    let diffs: Vec<&Difference> = all.iter().filter(|d| !d.expected()).collect();
    match policy {
        None if diffs.is_empty() => {
            let _ = writeln!(
                s,
                "agentwatch: the {} recorded alerts were reproduced exactly{}",
                r.recorded.len(),
                if moved.is_empty() {
                    String::new()
                } else {
                    format!(" (with {} explained difference(s):)", moved.len())
                }
            );
            for d in moved.iter().take(5) {
                let _ = writeln!(s, "agentwatch:   {d}");
            }
        }
        None => {
            let _ = writeln!(
                s,
                "agentwatch: REPLAY DIFFERS from the recording ({} recorded alerts, {} replayed, \
                 {} differences):",
                r.recorded.len(),
                r.replayed.len(),
                diffs.len()
            );
            for d in diffs.iter().take(20) {
                let _ = writeln!(s, "agentwatch:   {d}");
            }
        }
        Some(p) => {
            let new = diffs
                .iter()
                .filter(|d| matches!(d, Difference::Extra(_)))
                .count();
            let gone = diffs
                .iter()
                .filter(|d| matches!(d, Difference::Missing(_)))
                .count();
            let changed = diffs.len() - new - gone;
            let _ = writeln!(
                s,
                "agentwatch: with policy {}: {} alerts against {} recorded: {new} new, {gone} no \
                 longer raised, {changed} changed",
                p.display(),
                r.replayed.len(),
                r.recorded.len()
            );
        }
    }
    s
}
