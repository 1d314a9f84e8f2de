//! JSON Lines alerts (`--json`): one [`Alert`] object per line, nothing else,
//! each line written whole and flushed at once.
//!
//! The object is the [`Alert`]'s serde form, a public interface documented
//! in the README ("Alert JSON schema"): fields are added, never renamed.

use std::io::{self, Write};

use super::Sink;
use crate::detect::alert::Alert;

/// Writes alerts as JSON Lines to any writer (stdout live, a `Vec<u8>` in tests).
pub struct JsonSink<W: Write + Send> {
    out: W,
    broken: bool,
    errors: u64,
}

impl<W: Write + Send> JsonSink<W> {
    /// A sink writing to `out`.
    pub fn new(out: W) -> Self {
        JsonSink {
            out,
            broken: false,
            errors: 0,
        }
    }

    /// The reader went away (broken pipe): nothing more is written; the
    /// caller may exit quietly.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Write errors other than a broken pipe.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// The writer back (tests).
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// One alert as its JSON line, newline included.
pub fn alert_line(alert: &Alert) -> Vec<u8> {
    let mut line = serde_json::to_vec(alert).unwrap_or_else(|e| {
        format!(
            r#"{{"rule":{:?},"message":"cannot encode alert: {e}"}}"#,
            alert.rule
        )
        .into_bytes()
    });
    line.push(b'\n');
    line
}

impl<W: Write + Send> Sink for JsonSink<W> {
    fn alert(&mut self, alert: &Alert) {
        if self.broken {
            return;
        }
        let line = alert_line(alert);
        let r = self.out.write_all(&line).and_then(|_| self.out.flush());
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => self.broken = true,
            Err(e) => {
                if self.errors == 0 {
                    eprintln!("agentwatch: cannot write JSON alerts: {e}");
                }
                self.errors += 1;
            }
        }
    }

    fn flush(&mut self) {
        if !self.broken {
            let _ = self.out.flush();
        }
    }
}

/// A filled-in alert for sink tests.
#[cfg(test)]
pub(crate) fn test_alert() -> Alert {
    Alert {
        time: "2026-12-01T10:00:00.123456789Z".into(),
        rule: "secret-read".into(),
        severity: crate::detect::alert::Severity::High,
        message: "cat (pid 4) read AWS CLI credentials /home/a/.aws/credentials".into(),
        pid: 4,
        ppid: 3,
        uid: 1000,
        comm: "cat".into(),
        exe: Some("/usr/bin/cat".into()),
        argv: Some(vec!["cat".into(), "/home/a/.aws/credentials".into()]),
        cgroup_id: 77,
        cgroup: Some("/agent.slice".into()),
        path: Some("/home/a/.aws/credentials".into()),
        path_requested: Some("../.aws/credentials".into()),
        detail: Some("secret: aws".into()),
        ..Alert::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_per_line() {
        let mut s = JsonSink::new(Vec::new());
        let a = test_alert();
        s.alert(&a);
        let mut b = test_alert();
        b.rule = "unexpected-egress".into();
        b.message = "line\nbreak".into();
        s.alert(&b);
        let out = String::from_utf8(s.into_inner()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["rule"], "secret-read");
        assert_eq!(v["severity"], "high");
        assert_eq!(v["argv"][0], "cat");
        let back: Alert = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(back, b);
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_broken_pipe_stops_quietly() {
        let mut s = JsonSink::new(Broken);
        s.alert(&test_alert());
        s.alert(&test_alert());
        assert!(s.is_broken());
        assert_eq!(s.errors(), 0);
    }
}
