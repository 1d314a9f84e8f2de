//! Console alerts (the default when stdout is a terminal): one readable line
//! per alert, coloured by severity when asked to.
//!
//! `2026-12-01T10:00:00.123Z CRITICAL exfiltration  curl (pid 42) connected ... [detail] (x3)`

use std::io::Write;

use anstyle::{AnsiColor, Effects, Style};

use super::Sink;
use crate::detect::alert::{Alert, Severity};

/// Writes one line per alert to any writer.
pub struct ConsoleSink<W: Write + Send> {
    out: W,
    color: bool,
}

impl<W: Write + Send> ConsoleSink<W> {
    /// A sink writing to `out`, with ANSI colours if `color`.
    pub fn new(out: W, color: bool) -> Self {
        ConsoleSink { out, color }
    }

    /// The writer back (tests).
    pub fn into_inner(self) -> W {
        self.out
    }
}

fn severity_style(s: Severity) -> Style {
    match s {
        Severity::Critical => Style::new()
            .fg_color(Some(AnsiColor::BrightWhite.into()))
            .bg_color(Some(AnsiColor::Red.into()))
            .effects(Effects::BOLD),
        Severity::High => Style::new()
            .fg_color(Some(AnsiColor::Red.into()))
            .effects(Effects::BOLD),
        Severity::Medium => Style::new().fg_color(Some(AnsiColor::Yellow.into())),
        Severity::Low => Style::new().fg_color(Some(AnsiColor::Cyan.into())),
    }
}

/// The line for one alert (no newline).
pub fn alert_line(a: &Alert, color: bool) -> String {
    // millisecond precision is enough for a person; JSON keeps nanoseconds
    let time = match (a.time.find('.'), a.time.len()) {
        (Some(dot), n) if n > dot + 4 => format!("{}Z", &a.time[..dot + 4]),
        _ => a.time.clone(),
    };
    let sev = a.severity.as_str().to_uppercase();
    let mut line = if color {
        let st = severity_style(a.severity);
        let dim = Style::new().effects(Effects::DIMMED);
        let bold = Style::new().effects(Effects::BOLD);
        format!(
            "{}{time}{} {}{sev:<8}{} {}{:<17}{} {}",
            dim.render(),
            dim.render_reset(),
            st.render(),
            st.render_reset(),
            bold.render(),
            a.rule,
            bold.render_reset(),
            a.message
        )
    } else {
        format!("{time} {sev:<8} {:<17} {}", a.rule, a.message)
    };
    if let Some(d) = &a.detail {
        line.push_str(&format!(" [{d}]"));
    }
    if let Some(c) = &a.cgroup {
        line.push_str(&format!(" cgroup={c}"));
    }
    if a.count > 1 {
        line.push_str(&format!(" (x{})", a.count));
    }
    // one line, whatever the message holds
    line.replace(['\n', '\r'], " ")
}

impl<W: Write + Send> Sink for ConsoleSink<W> {
    fn alert(&mut self, alert: &Alert) {
        let mut line = alert_line(alert, self.color);
        line.push('\n');
        if self
            .out
            .write_all(line.as_bytes())
            .and_then(|_| self.out.flush())
            .is_err()
        {
            // a console that went away is not worth stopping for
        }
    }

    fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::json::test_alert;

    #[test]
    fn plain_and_coloured_lines() {
        let mut a = test_alert();
        a.count = 3;
        a.message = "cat (pid 4) read a\nsecret".into();
        let plain = alert_line(&a, false);
        assert_eq!(
            plain,
            "2026-12-01T10:00:00.123Z HIGH     secret-read       cat (pid 4) read a secret [secret: aws] cgroup=/agent.slice (x3)"
        );
        let mut s = ConsoleSink::new(Vec::new(), true);
        s.alert(&a);
        let out = String::from_utf8(s.into_inner()).unwrap();
        assert!(out.contains("\u{1b}["), "coloured: {out:?}");
        assert!(out.ends_with('\n') && out.matches('\n').count() == 1);
    }
}
