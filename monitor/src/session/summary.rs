//! A session at a glance, for `agentwatch sessions`: the header from the
//! start of the file and the footer from its END, so listing a directory of
//! large sessions does not read them whole. Only a session without a footer
//! (not closed) is read through to count its records. This does not verify
//! anything; `agentwatch verify` does.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::format::{split_line, Counts, Footer, Header, ZSTD_MAGIC};
use super::reader::SessionReader;
use super::writer::MAX_BUFFERED;
use super::SessionError;

/// A session's header and totals.
#[derive(Clone, Debug)]
pub struct SessionSummary {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// The header.
    pub header: Header,
    /// The footer, if the session was closed.
    pub footer: Option<Footer>,
    /// The footer's totals, or (not closed) the records counted.
    pub counts: Counts,
}

impl SessionSummary {
    /// End time: the footer's; for a session not closed, `None`.
    pub fn end_ns(&self) -> Option<u64> {
        self.footer.as_ref().map(|f| f.end_time_ns)
    }
}

#[derive(Deserialize)]
struct FooterLine {
    footer: Footer,
}

/// The tail we look at for the footer: the last frame holds at most
/// `MAX_BUFFERED` bytes of records plus the footer, compressed.
const TAIL: u64 = (MAX_BUFFERED as u64) * 2 + 64 * 1024;

/// Summarise the session at `path`.
pub fn summarize(path: &Path) -> Result<SessionSummary, SessionError> {
    let reader = SessionReader::open(path)?;
    let header = reader.header().clone();
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if let Some(footer) = tail_footer(path, size, reader.compressed()) {
        let counts = Counts {
            events: footer.events,
            alerts: footer.alerts,
            gaps: footer.gaps,
            dropped_events: footer.dropped_events,
            dropped_alerts: footer.dropped_alerts,
            lost_events: footer.lost_events,
            alerts_by_rule: footer.alerts_by_rule.clone(),
        };
        return Ok(SessionSummary {
            path: path.to_path_buf(),
            size,
            header,
            footer: Some(footer),
            counts,
        });
    }
    let v = reader.verify()?;
    Ok(SessionSummary {
        path: path.to_path_buf(),
        size,
        header,
        footer: v.footer,
        counts: v.counts,
    })
}

fn tail_footer(path: &Path, size: u64, compressed: bool) -> Option<Footer> {
    let mut f = File::open(path).ok()?;
    let start = size.saturating_sub(TAIL);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).ok()?;
    if !compressed {
        return last_line_footer(&tail);
    }
    // The last frame starts at one of the magic numbers in the tail; try
    // them from the end (a false match inside compressed data fails to
    // decode, or does not end in a footer).
    let mut tries = 0;
    let mut at = tail.len();
    while let Some(pos) = tail[..at].windows(4).rposition(|w| w == ZSTD_MAGIC) {
        tries += 1;
        if tries > 64 {
            break;
        }
        if let Ok(text) = zstd::decode_all(&tail[pos..]) {
            if let Some(footer) = last_line_footer(&text) {
                return Some(footer);
            }
        }
        at = pos;
    }
    None
}

fn last_line_footer(text: &[u8]) -> Option<Footer> {
    let text = text.strip_suffix(b"\n")?;
    let line = match text.iter().rposition(|b| *b == b'\n') {
        Some(i) => &text[i + 1..],
        None => text,
    };
    split_line(line).ok()?;
    serde_json::from_slice::<FooterLine>(line)
        .ok()
        .map(|l| l.footer)
}
