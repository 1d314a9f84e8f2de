//! `agentwatch verify SESSION...`: check each session's hash chain and
//! footer and report the first broken record by line number. Exit codes in
//! [`crate::session::exit`]: 0 intact, 3 tampered, 4 truncated, 5 unreadable
//! (the most serious over all files given).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::session::{exit, Integrity, SessionReader, Verdict};

/// Options of `agentwatch verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Session files (plain or .zst).
    #[arg(value_name = "SESSION", required = true)]
    pub sessions: Vec<PathBuf>,
    /// List every problem found, not only the first few.
    #[arg(long)]
    pub all: bool,
}

/// Problems listed per file without `--all`.
const SHOWN: usize = 10;

/// Check one file: the report text and the exit code.
pub fn verify_file(path: &Path, all: bool) -> (String, u8) {
    let verdict = SessionReader::open(path).and_then(SessionReader::verify);
    match verdict {
        Err(e) => (
            format!("{}: UNREADABLE: {e}\n", path.display()),
            e.exit_code(),
        ),
        Ok(v) => (report(path, &v, all), v.integrity().exit_code()),
    }
}

/// The text for a verdict.
pub fn report(path: &Path, v: &Verdict, all: bool) -> String {
    let mut s = String::new();
    let p = path.display();
    let c = &v.counts;
    match v.integrity() {
        Integrity::Intact => {
            let _ = writeln!(
                s,
                "{p}: intact: {} lines ({} events, {} alerts, {} gaps), footer matches, last hash {}",
                v.lines, c.events, c.alerts, c.gaps, v.last_hash
            );
            if c.dropped_events + c.dropped_alerts > 0 {
                let _ = writeln!(
                    s,
                    "{p}: note: the recorder dropped {} events and {} alerts (recorded as gaps)",
                    c.dropped_events, c.dropped_alerts
                );
            }
        }
        bad => {
            let word = if bad == Integrity::Tampered {
                "TAMPERED"
            } else {
                "TRUNCATED"
            };
            let first = v
                .first_problem()
                .map(ToString::to_string)
                .unwrap_or_default();
            let _ = writeln!(s, "{p}: {word}: {first}");
            let shown = if all { usize::MAX } else { SHOWN };
            if v.problems_total > 1 {
                let _ = writeln!(
                    s,
                    "{p}: {} problems in {} lines:",
                    v.problems_total, v.lines
                );
                for pr in v.problems.iter().take(shown) {
                    let _ = writeln!(s, "  {pr}");
                }
                let listed = v.problems.len().min(shown) as u64;
                if v.problems_total > listed {
                    let _ = writeln!(
                        s,
                        "  ... and {} more{}",
                        v.problems_total - listed,
                        if all { "" } else { " (--all lists them)" }
                    );
                }
            }
            if v.skipped > 0 {
                let _ = writeln!(
                    s,
                    "{p}: {} record(s) cannot be trusted; replay skips them and uses the rest",
                    v.skipped
                );
            }
        }
    }
    s
}

/// Run `agentwatch verify`.
pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut code = exit::OK;
    for path in &args.sessions {
        let (text, c) = verify_file(path, args.all);
        print!("{text}");
        code = exit::worst(code, c);
    }
    Ok(ExitCode::from(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::tests::{event, header};
    use crate::session::SessionWriter;

    fn write_session(dir: &Path, name: &str, n: u64, close: bool) -> PathBuf {
        let path = dir.join(name);
        let f = std::fs::File::create(&path).unwrap();
        let mut w = SessionWriter::new(f, name.ends_with(".zst"), &header()).unwrap();
        for i in 0..n {
            w.event(&event(i)).unwrap();
        }
        if close {
            w.finish(1).unwrap();
        } else {
            w.flush().unwrap();
        }
        path
    }

    #[test]
    fn reports_intact_tampered_truncated_and_unreadable() {
        let tmp = tempfile::tempdir().unwrap();
        let ok = write_session(tmp.path(), "ok.jsonl.zst", 10, true);
        let (t, c) = verify_file(&ok, false);
        assert_eq!(c, exit::OK, "{t}");
        assert!(
            t.contains("intact: 12 lines (10 events, 0 alerts, 0 gaps)"),
            "{t}"
        );

        let bad = write_session(tmp.path(), "bad.jsonl", 10, true);
        let text = std::fs::read_to_string(&bad).unwrap();
        std::fs::write(&bad, text.replacen("file-3", "file-9", 1)).unwrap();
        let (t, c) = verify_file(&bad, false);
        assert_eq!(c, exit::TAMPERED);
        assert!(
            t.contains("TAMPERED: line 5: hash mismatch at record seq 4"),
            "{t}"
        );

        let cut = write_session(tmp.path(), "cut.jsonl", 10, false);
        let (t, c) = verify_file(&cut, false);
        assert_eq!(c, exit::TRUNCATED);
        assert!(t.contains("TRUNCATED: no footer after line 11"), "{t}");

        let junk = tmp.path().join("junk");
        std::fs::write(&junk, "hello\n").unwrap();
        let (t, c) = verify_file(&junk, false);
        assert_eq!(c, exit::UNREADABLE);
        assert!(t.contains("UNREADABLE"), "{t}");
        let (_, c) = verify_file(&tmp.path().join("missing"), false);
        assert_eq!(c, exit::UNREADABLE);

        assert_eq!(exit::worst(exit::TRUNCATED, exit::TAMPERED), exit::TAMPERED);
        assert_eq!(
            exit::worst(exit::UNREADABLE, exit::TAMPERED),
            exit::UNREADABLE
        );
        assert_eq!(
            exit::worst(exit::OK, exit::REPLAY_DIFFERS),
            exit::REPLAY_DIFFERS
        );
    }
}
