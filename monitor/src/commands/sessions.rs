//! `agentwatch sessions [--dir DIR]`: the recorded sessions, oldest first,
//! one row each: start, end, duration, cgroup, events, alerts by rule, lost
//! events. Reads each file's header and footer only (a session that was not
//! closed is read through to count it). Does not verify: `verify` does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use comfy_table::{presets, CellAlignment, Table};
use serde_json::json;

use crate::session::store::{self, DEFAULT_DIR};
use crate::session::summary::{summarize, SessionSummary};
use crate::session::SessionError;

/// Options of `agentwatch sessions`.
#[derive(Debug, Clone, Args)]
pub struct SessionsArgs {
    /// The session directory.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// One JSON object per session per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One row: a summary, or why the file could not be read.
pub type Row = Result<SessionSummary, SessionError>;

/// Summarise every session in `dir`, oldest first.
pub fn list(dir: &Path) -> anyhow::Result<Vec<Row>> {
    Ok(store::list(dir)?
        .into_iter()
        .map(|f| summarize(&f.path))
        .collect())
}

/// `1h02m03s`, `4m05s`, `12.3s`.
pub fn duration(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, (s / 60) % 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", ns as f64 / 1e9)
    }
}

fn short_time(rfc3339: &str) -> String {
    // 2026-12-04T21:04:55.123456789Z -> 2026-12-04 21:04:55
    rfc3339
        .get(..19)
        .map(|s| s.replace('T', " "))
        .unwrap_or_else(|| rfc3339.to_string())
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// The table `agentwatch sessions` prints.
pub fn table(rows: &[Row]) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(vec![
        "SESSION",
        "START (UTC)",
        "END (UTC)",
        "DURATION",
        "CGROUP",
        "EVENTS",
        "ALERTS",
        "LOST",
    ]);
    for row in rows {
        match row {
            Ok(s) => {
                let c = &s.counts;
                let cgroups: Vec<&str> = s.header.cgroups.iter().map(|c| c.path.as_str()).collect();
                let (end, dur) = match &s.footer {
                    Some(f) => (
                        short_time(&f.end_time),
                        duration(f.end_time_ns.saturating_sub(s.header.start_time_ns)),
                    ),
                    None => ("(not closed)".to_string(), "-".to_string()),
                };
                let alerts = if c.alerts == 0 {
                    "0".to_string()
                } else {
                    let by: Vec<String> = c
                        .alerts_by_rule
                        .iter()
                        .map(|(r, n)| format!("{r} {n}"))
                        .collect();
                    format!("{} ({})", c.alerts, by.join(", "))
                };
                let lost = match (c.lost_events, c.dropped_events) {
                    (0, 0) => "0".to_string(),
                    (k, 0) => format!("{k} kernel"),
                    (0, r) => format!("{r} recorder"),
                    (k, r) => format!("{k} kernel, {r} recorder"),
                };
                t.add_row(vec![
                    name(&s.path),
                    short_time(&s.header.start_time),
                    end,
                    dur,
                    cgroups.join(", "),
                    c.events.to_string(),
                    alerts,
                    lost,
                ]);
            }
            Err(e) => {
                let path = match e {
                    SessionError::Open { path, .. }
                    | SessionError::NotASession { path, .. }
                    | SessionError::UnsupportedVersion { path, .. }
                    | SessionError::BadHeader { path, .. }
                    | SessionError::Read { path, .. } => path,
                };
                t.add_row(vec![name(path), format!("unreadable: {e}")]);
            }
        }
    }
    for col in [5, 7] {
        if let Some(c) = t.column_mut(col) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut s = t.to_string();
    s.push('\n');
    s
}

/// One JSON object per row.
pub fn json_lines(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        let v = match row {
            Ok(s) => {
                let c = &s.counts;
                json!({
                    "file": s.path,
                    "start_time": s.header.start_time,
                    "end_time": s.footer.as_ref().map(|f| f.end_time.clone()),
                    "duration_s": s.end_ns().map(|e| e.saturating_sub(s.header.start_time_ns) as f64 / 1e9),
                    "closed": s.footer.is_some(),
                    "host": s.header.host,
                    "cgroups": s.header.cgroups.iter().map(|c| c.path.clone()).collect::<Vec<_>>(),
                    "events": c.events,
                    "alerts": c.alerts,
                    "alerts_by_rule": c.alerts_by_rule,
                    "lost_events": c.lost_events,
                    "dropped_events": c.dropped_events,
                    "dropped_alerts": c.dropped_alerts,
                    "size": s.size,
                })
            }
            Err(e) => json!({ "error": e.to_string() }),
        };
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

/// Run `agentwatch sessions`.
pub fn run(args: SessionsArgs) -> anyhow::Result<ExitCode> {
    let rows = list(&args.dir)?;
    if args.json {
        print!("{}", json_lines(&rows));
    } else if rows.is_empty() {
        eprintln!("agentwatch: no sessions in {}", args.dir.display());
    } else {
        print!("{}", table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::tests::{alert, event, header};
    use crate::session::SessionWriter;

    fn write(dir: &Path, name: &str, n: u64, close: bool) {
        let f = std::fs::File::create(dir.join(name)).unwrap();
        let mut w = SessionWriter::new(f, name.ends_with(".zst"), &header()).unwrap();
        for i in 0..n {
            w.event(&event(i)).unwrap();
            if i % 100 == 0 {
                w.alert(&alert(
                    i,
                    if i % 200 == 0 {
                        "secret-read"
                    } else {
                        "exfiltration"
                    },
                ))
                .unwrap();
            }
            if i % 1000 == 0 {
                w.flush().unwrap();
            }
        }
        if close {
            w.finish(header().start_time_ns + 3_723_000_000_000)
                .unwrap();
        } else {
            w.flush().unwrap();
        }
    }

    #[test]
    fn lists_closed_open_and_broken_sessions_oldest_first() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "20261204T210455Z-agent.slice.jsonl.zst",
            5000,
            true,
        );
        write(tmp.path(), "20261205T000000Z-agent.slice.jsonl", 10, false);
        std::fs::write(tmp.path().join("20261206T000000Z-x.jsonl"), "junk\n").unwrap();
        std::fs::write(tmp.path().join("notes.txt"), "not listed\n").unwrap();
        let rows = list(tmp.path()).unwrap();
        assert_eq!(rows.len(), 3);
        let s = rows[0].as_ref().unwrap();
        assert!(s.footer.is_some(), "footer found from the tail");
        assert_eq!(s.counts.events, 5000);
        assert_eq!(s.counts.alerts_by_rule["secret-read"], 25);
        let open = rows[1].as_ref().unwrap();
        assert!(open.footer.is_none());
        assert_eq!(open.counts.events, 10);
        assert!(rows[2].is_err());

        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].contains("SESSION") && lines[0].contains("LOST"),
            "{t}"
        );
        assert!(
            lines[1].contains("20261204T210455Z-agent.slice.jsonl.zst"),
            "{t}"
        );
        assert!(lines[1].contains("2026-12-04 21:04:55"), "{t}");
        assert!(lines[1].contains("1h02m03s"), "{t}");
        assert!(
            lines[1].contains("50 (exfiltration 25, secret-read 25)"),
            "{t}"
        );
        assert!(lines[2].contains("(not closed)"), "{t}");
        assert!(lines[3].contains("unreadable"), "{t}");

        let j = json_lines(&rows);
        let first: serde_json::Value = serde_json::from_str(j.lines().next().unwrap()).unwrap();
        assert_eq!(first["events"], 5000);
        assert_eq!(first["duration_s"], 3723.0);
        assert_eq!(first["cgroups"][0], "agent.slice");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(12_300_000_000), "12.3s");
        assert_eq!(duration(245_000_000_000), "4m05s");
        assert_eq!(duration(3_723_000_000_000), "1h02m03s");
    }
}
