//! The trace printer: every event, one line each, human-readable or JSON.
//! What `agentwatch trace` prints: opensnoop, execsnoop and tcpconnect in one,
//! scoped to the watched cgroups.

use std::io::Write;

use crate::detect::alert::Alert;
use crate::event::model::{Event, EventKind};

use super::Sink;

/// Writes each event to `W`.
pub struct TracePrinter<W: Write + Send> {
    out: W,
    json: bool,
    /// Set when the writer failed (e.g. a closed pipe): stop writing.
    broken: bool,
}

impl<W: Write + Send> TracePrinter<W> {
    /// A printer writing JSON lines (`json`) or readable lines.
    pub fn new(out: W, json: bool) -> Self {
        Self {
            out,
            json,
            broken: false,
        }
    }

    /// Whether writing failed (the reader went away).
    pub fn broken(&self) -> bool {
        self.broken
    }
}

/// One readable line for an event.
pub fn human_line(ev: &Event) -> String {
    let t = &ev.task;
    let secs = ev.time_ns / 1_000_000_000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let us = (ev.time_ns % 1_000_000_000) / 1000;
    let who = format!(
        "{h:02}:{m:02}:{s:02}.{us:06} pid={} ppid={} uid={} comm={:?}",
        t.pid, t.ppid, t.uid, t.comm
    );
    let what = match &ev.kind {
        EventKind::Open(o) => format!(
            "open    {} (as {:?}) flags={:#o} ret={}",
            o.path.as_deref().unwrap_or("?"),
            o.requested,
            o.flags,
            o.ret
        ),
        EventKind::Exec(e) => format!(
            "exec    {} argv={:?} ret={}",
            e.exe.as_deref().unwrap_or(&e.filename),
            e.argv,
            e.ret
        ),
        EventKind::Connect(c) => format!(
            "connect {:?} {} port {} ret={}",
            c.protocol, c.daddr, c.dport, c.ret
        ),
        EventKind::Fork(f) => format!("fork    child={}", f.child_pid),
        EventKind::Exit(x) => format!("exit    status={}", x.exit_code),
        EventKind::Dns(d) => format!("dns     answer of {} bytes", d.payload.len()),
        EventKind::ProcSnapshot(p) => format!(
            "running {} argv={:?}",
            p.exe.as_deref().unwrap_or("?"),
            p.argv
        ),
        EventKind::Lost(l) => format!("LOST    {:?}", l.counts),
    };
    format!("{who} {what}")
}

impl<W: Write + Send> Sink for TracePrinter<W> {
    fn event(&mut self, ev: &Event) {
        if self.broken {
            return;
        }
        let res = if self.json {
            serde_json::to_writer(&mut self.out, ev)
                .map_err(std::io::Error::from)
                .and_then(|()| self.out.write_all(b"\n"))
        } else {
            writeln!(self.out, "{}", human_line(ev))
        };
        if res.and_then(|()| self.out.flush()).is_err() {
            self.broken = true;
        }
    }

    fn alert(&mut self, _alert: &Alert) {}

    fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::model::{Fork, Task};

    #[test]
    fn json_lines_round_trip() {
        let ev = Event {
            time_ns: 3_723_000_001_000,
            task: Task {
                pid: 5,
                comm: "sh".into(),
                ..Default::default()
            },
            kind: EventKind::Fork(Fork { child_pid: 6 }),
        };
        let mut p = TracePrinter::new(Vec::new(), true);
        p.event(&ev);
        p.event(&ev);
        let text = String::from_utf8(p.out).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let back: Event = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(back, ev);

        let mut p = TracePrinter::new(Vec::new(), false);
        p.event(&ev);
        let text = String::from_utf8(p.out).unwrap();
        assert_eq!(
            text,
            "01:02:03.000001 pid=5 ppid=0 uid=0 comm=\"sh\" fork    child=6\n"
        );
    }
}
