//! A standalone systemd-journald (the project's machines have no systemd
//! PID 1) and reading entries back with `journalctl -o json`.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use crate::util::{poll, sh};

const SOCKET: &str = "/run/systemd/journal/socket";

/// A running journald.
pub struct Journald(());

/// A point in the journal: entries after it are "new".
#[derive(Clone, Debug)]
pub struct Mark(Option<String>);

impl Journald {
    /// Make sure journald runs, starting a standalone one when nothing
    /// answers on its socket (idempotent; safe from several tests).
    pub fn ensure() -> Journald {
        static LOCK: Mutex<()> = Mutex::new(());
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if alive() {
            return Journald(());
        }
        for dir in ["/run/systemd/journal", "/run/log/journal"] {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {dir}: {e}"));
        }
        if std::fs::read_to_string("/etc/machine-id")
            .unwrap_or_default()
            .trim()
            .is_empty()
        {
            sh(&["systemd-machine-id-setup"]);
        }
        for name in ["socket", "stdout", "dev-log", "io.systemd.journal"] {
            let _ = std::fs::remove_file(Path::new("/run/systemd/journal").join(name));
        }
        let log = std::fs::File::create("/tmp/journald.log").expect("create /tmp/journald.log");
        // `setsid --fork`: journald outlives the test process, re-parented
        // away from it; only the short-lived setsid is waited for here.
        let st = Command::new("setsid")
            .args(["--fork", "/lib/systemd/systemd-journald"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .status()
            .expect("start systemd-journald");
        assert!(st.success(), "setsid --fork systemd-journald: {st}");
        poll(Duration::from_secs(10), || alive().then_some(())).unwrap_or_else(|| {
            panic!("journald did not open {SOCKET} within 10 s; see /tmp/journald.log")
        });
        Journald(())
    }

    /// The current end of the journal.
    pub fn mark(&self) -> Mark {
        let out = Command::new("journalctl")
            .args(["-o", "json", "-n", "1", "--no-pager"])
            .output()
            .expect("run journalctl");
        let cursor = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .next_back()
            .and_then(|v| v["__CURSOR"].as_str().map(str::to_string));
        Mark(cursor)
    }

    /// Entries after `mark` matching every `FIELD=value` in `matches`.
    ///
    /// The matching is done here, not by journalctl: systemd 252's
    /// `journalctl --after-cursor=C FIELD=value` finds nothing when the
    /// entry at C does not itself match (seen on the project's machines).
    pub fn entries_since(&self, mark: &Mark, matches: &[&str]) -> Vec<Value> {
        let mut cmd = Command::new("journalctl");
        cmd.args(["-o", "json", "--no-pager", "--all"]);
        if let Some(c) = &mark.0 {
            cmd.arg(format!("--after-cursor={c}"));
        }
        let out = cmd.output().expect("run journalctl");
        let wanted: Vec<(&str, &str)> = matches
            .iter()
            .map(|m| {
                m.split_once('=')
                    .unwrap_or_else(|| panic!("match {m:?} is not FIELD=value"))
            })
            .collect();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| wanted.iter().all(|(k, want)| v[*k].as_str() == Some(*want)))
            .collect()
    }

    /// Poll (entries can take tens of ms to appear) until at least one entry
    /// after `mark` matches; panics after `timeout` with what the journal
    /// holds since the mark.
    pub fn wait_for(&self, mark: &Mark, matches: &[&str], timeout: Duration) -> Vec<Value> {
        poll(timeout, || {
            let v = self.entries_since(mark, matches);
            (!v.is_empty()).then_some(v)
        })
        .unwrap_or_else(|| {
            let all = self.entries_since(mark, &[]);
            panic!(
                "no journal entry with {matches:?} within {timeout:?}; {} entries since the mark:\n{}",
                all.len(),
                all.iter()
                    .rev()
                    .take(30)
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
    }
}

/// Whether something is listening on journald's socket (a stale socket
/// file refuses the connection).
fn alive() -> bool {
    UnixDatagram::unbound()
        .and_then(|s| s.connect(SOCKET))
        .is_ok()
}
