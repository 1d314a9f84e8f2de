//! Reading a session back: header and version first, then records in order,
//! each one checked against the hash chain as it goes by, with every kind of
//! damage reported by line number rather than stopping at the first.
//!
//! What counts as what (see [`Integrity`] and the exit codes in
//! [`super::exit`]):
//!
//! | found | problem | integrity |
//! |---|---|---|
//! | a line that is not JSON or not a record | [`ProblemKind::Corrupt`] | tampered |
//! | a record whose hash does not chain (edited, or the one before it removed or edited) | [`ProblemKind::HashMismatch`] | tampered |
//! | `seq` not one more than the line before (removed, inserted or reordered) | [`ProblemKind::OutOfSequence`] | tampered |
//! | a second header, a record after the footer, a footer that disagrees with the file | [`ProblemKind::UnexpectedHeader`], [`ProblemKind::AfterFooter`], [`ProblemKind::FooterMismatch`] | tampered |
//! | compressed data that does not decode | [`ProblemKind::CompressedCorrupt`] | tampered |
//! | a last line without its `\n` | [`ProblemKind::PartialLine`] | truncated |
//! | compressed data ending inside a frame | [`ProblemKind::CompressedTruncated`] | truncated |
//! | no footer | [`ProblemKind::MissingFooter`] | truncated |
//! | not a session, unknown major version, damaged header, unreadable file | [`SessionError`] | unreadable |
//!
//! Damaged records are skipped (never fed to the engine); every other record
//! is yielded, so replay works on whatever is intact. After a damaged line the
//! chain continues from the hash that line CLAIMS, so one edited record is
//! reported once, not as every record after it.

mod lines;
mod verdict;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::format::{
    chain_hash, split_line, Counts, Footer, FormatVersion, HashHex, Header, Record, FORMAT_NAME,
    FORMAT_VERSION, GENESIS_HASH, ZSTD_MAGIC,
};
use super::SessionError;
use lines::{full, one_kind, FullLine, HeaderLine, LightLine, Parsed, ProbeLine};
pub use verdict::{Entry, Integrity, Problem, ProblemKind, Verdict};

/// Problems kept in full; past this they are only counted, so a file of
/// garbage cannot exhaust memory.
pub const MAX_PROBLEMS_KEPT: usize = 1000;

/// Read buffer: large, so a million-record replay makes few syscalls.
const READ_BUFFER: usize = 256 * 1024;

/// Reads one session, verifying as it goes.
pub struct SessionReader {
    path: PathBuf,
    input: Box<dyn BufRead + Send>,
    compressed: bool,
    header: Header,
    line: u64,
    prev: HashHex,
    next_seq: u64,
    buf: Vec<u8>,
    footer: Option<Footer>,
    problems: Vec<Problem>,
    problems_total: u64,
    problems_before_footer: u64,
    counts: Counts,
    skipped: u64,
    unknown: u64,
    last_event_line: u64,
    done: bool,
}

impl SessionReader {
    /// Open a session file (plain or zstd) and read its header.
    pub fn open(path: &Path) -> Result<SessionReader, SessionError> {
        let file = File::open(path).map_err(|source| SessionError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        SessionReader::from_reader(path, file)
    }

    /// Read a session from any byte stream; `path` names it in messages.
    pub fn from_reader<R: Read + Send + 'static>(
        path: &Path,
        raw: R,
    ) -> Result<SessionReader, SessionError> {
        let path = path.to_path_buf();
        let mut raw = BufReader::with_capacity(READ_BUFFER, raw);
        let start = raw.fill_buf().map_err(|source| SessionError::Read {
            path: path.clone(),
            line: 0,
            source,
        })?;
        if start.is_empty() {
            return Err(SessionError::NotASession {
                path,
                reason: "the file is empty".into(),
            });
        }
        let compressed = start.starts_with(&ZSTD_MAGIC);
        let input: Box<dyn BufRead + Send> = if compressed {
            let dec = zstd::stream::read::Decoder::with_buffer(raw).map_err(|source| {
                SessionError::Read {
                    path: path.clone(),
                    line: 0,
                    source,
                }
            })?;
            Box::new(BufReader::with_capacity(READ_BUFFER, dec))
        } else {
            Box::new(raw)
        };
        let mut r = SessionReader {
            path,
            input,
            compressed,
            header: placeholder_header(),
            line: 0,
            prev: GENESIS_HASH,
            next_seq: 0,
            buf: Vec::with_capacity(4096),
            footer: None,
            problems: Vec::new(),
            problems_total: 0,
            problems_before_footer: 0,
            counts: Counts::default(),
            skipped: 0,
            unknown: 0,
            last_event_line: 0,
            done: false,
        };
        r.read_header()?;
        Ok(r)
    }

    fn not_a_session(&self, reason: impl Into<String>) -> SessionError {
        SessionError::NotASession {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn read_header(&mut self) -> Result<(), SessionError> {
        self.buf.clear();
        if let Err(e) = self.input.read_until(b'\n', &mut self.buf) {
            return Err(if self.compressed {
                self.not_a_session(format!("zstd data that does not decode: {e}"))
            } else {
                SessionError::Read {
                    path: self.path.clone(),
                    line: 1,
                    source: e,
                }
            });
        }
        self.line = 1;
        let complete = self.buf.last() == Some(&b'\n');
        if complete {
            self.buf.pop();
        }
        let probe: ProbeLine = match serde_json::from_slice(&self.buf) {
            Ok(p) => p,
            Err(_)
                if !complete
                    && self
                        .buf
                        .starts_with(br#"{"seq":0,"header":{"format":"agentwatch-session""#) =>
            {
                return Err(SessionError::BadHeader {
                    path: self.path.clone(),
                    reason: "the header is incomplete: the file was cut short while it was \
                             being created"
                        .into(),
                })
            }
            Err(_) => return Err(self.not_a_session("line 1 is not a JSON object")),
        };
        let Some(ph) = probe
            .header
            .filter(|h| h.format.as_deref() == Some(FORMAT_NAME))
        else {
            return Err(self.not_a_session(format!(
                "line 1 is not a session header (no \"header\" with \"format\":\"{FORMAT_NAME}\")"
            )));
        };
        let found: FormatVersion = match ph.version.as_deref().map(str::parse) {
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                return Err(SessionError::BadHeader {
                    path: self.path.clone(),
                    reason: e,
                })
            }
            None => {
                return Err(SessionError::BadHeader {
                    path: self.path.clone(),
                    reason: "no format version".into(),
                })
            }
        };
        if found.major != FORMAT_VERSION.major {
            return Err(SessionError::UnsupportedVersion {
                path: self.path.clone(),
                found,
                supported: FORMAT_VERSION,
            });
        }
        let hl: HeaderLine =
            serde_json::from_slice(&self.buf).map_err(|e| SessionError::BadHeader {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        self.header = hl.header;
        // The header is usable; whether it is intact is a problem like any other.
        if !complete {
            self.problem(ProblemKind::PartialLine);
            self.done = true;
        }
        match split_line(&self.buf) {
            Ok((body, stored)) => {
                if chain_hash(&GENESIS_HASH, body) != stored {
                    self.problem(ProblemKind::HashMismatch { seq: 0 });
                }
                self.prev = stored;
            }
            Err(e) => self.problem(ProblemKind::Corrupt {
                reason: e.to_string(),
            }),
        }
        if probe.seq != Some(0) {
            self.problem(ProblemKind::OutOfSequence {
                expected: 0,
                found: probe.seq.unwrap_or(u64::MAX),
            });
        }
        self.next_seq = 1;
        if self.done {
            self.at_end();
        }
        Ok(())
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is zstd-compressed.
    pub fn compressed(&self) -> bool {
        self.compressed
    }

    /// The line of the last event record read, damaged ones (and lines too
    /// damaged to tell) included: the event a recorded alert after it
    /// belongs to.
    pub fn last_event_line(&self) -> u64 {
        self.last_event_line
    }

    /// Problems found so far.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The next intact record, or `None` at the end. Damaged records are
    /// skipped and recorded as [`Problem`]s. Errors only for a failing disk.
    pub fn next_record(&mut self) -> Result<Option<Entry>, SessionError> {
        self.next(false)
    }

    fn next(&mut self, light: bool) -> Result<Option<Entry>, SessionError> {
        loop {
            if self.done {
                return Ok(None);
            }
            self.buf.clear();
            match self.input.read_until(b'\n', &mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    self.at_end();
                    return Ok(None);
                }
                Ok(_) => {}
                Err(e) if self.compressed => {
                    // Lines decoded before the bad spot were already yielded;
                    // a partial one in `buf` is dropped with the rest.
                    self.line += 1;
                    let kind = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        ProblemKind::CompressedTruncated
                    } else {
                        ProblemKind::CompressedCorrupt {
                            reason: e.to_string(),
                        }
                    };
                    self.problem(kind);
                    if !self.buf.is_empty() {
                        self.skipped += 1;
                    }
                    self.done = true;
                    self.at_end();
                    return Ok(None);
                }
                Err(source) => {
                    return Err(SessionError::Read {
                        path: self.path.clone(),
                        line: self.line,
                        source,
                    })
                }
            }
            self.line += 1;
            if self.buf.last() != Some(&b'\n') {
                self.problem(ProblemKind::PartialLine);
                self.skipped += 1;
                self.done = true;
                self.at_end();
                return Ok(None);
            }
            self.buf.pop();
            if let Some(e) = self.process_line(light) {
                return Ok(Some(e));
            }
        }
    }

    fn process_line(&mut self, light: bool) -> Option<Entry> {
        let prev = self.prev;
        let problems_before = self.problems_total;
        // A line that does not parse may well have been an event.
        let event_line_before = self.last_event_line;
        self.last_event_line = self.line;
        let (body, stored) = match split_line(&self.buf) {
            Ok(x) => x,
            Err(e) => {
                self.problem(ProblemKind::Corrupt {
                    reason: e.to_string(),
                });
                self.skipped += 1;
                return None;
            }
        };
        let hash_ok = chain_hash(&prev, body) == stored;
        // Continue from the hash this line claims, so that one edit is
        // reported once and not as every line after it.
        self.prev = stored;

        let parsed = if light {
            serde_json::from_slice::<LightLine>(&self.buf).map(|l| (l.seq, self.light(l)))
        } else {
            serde_json::from_slice::<FullLine>(&self.buf).map(|l| (l.seq, full(l)))
        };
        let (seq, parsed) = match parsed {
            Ok((seq, Ok(p))) => (seq, p),
            Ok((_, Err(reason))) => {
                self.problem(ProblemKind::Corrupt { reason });
                self.skipped += 1;
                return None;
            }
            Err(e) => {
                self.problem(ProblemKind::Corrupt {
                    reason: e.to_string(),
                });
                self.skipped += 1;
                return None;
            }
        };

        if seq != self.next_seq {
            self.problem(ProblemKind::OutOfSequence {
                expected: self.next_seq,
                found: seq,
            });
        } else if !hash_ok {
            self.problem(ProblemKind::HashMismatch { seq });
        }
        self.next_seq = seq.wrapping_add(1);

        if self.footer.is_some() {
            self.problem(ProblemKind::AfterFooter);
        }
        if !matches!(parsed, Parsed::Event(_)) {
            self.last_event_line = event_line_before;
        }
        if !light {
            match &parsed {
                Parsed::Event(Some(e)) => self.counts.event(e),
                Parsed::Alert(Some(a)) => self.counts.alert(a),
                _ => {}
            }
        }
        let record = match parsed {
            Parsed::Header => {
                self.problem(ProblemKind::UnexpectedHeader);
                None
            }
            Parsed::Event(e) => e.map(Record::Event),
            Parsed::Alert(a) => a.map(Record::Alert),
            Parsed::Gap(g) => {
                self.counts.gap(&g);
                Some(Record::Gap(g))
            }
            Parsed::Cgroup(c) => c.map(Record::Cgroup),
            Parsed::Footer(f) => {
                if self.footer.is_none() {
                    if f.final_hash.as_bytes() != prev.0 {
                        self.problem(ProblemKind::FooterMismatch {
                            what: "its final_hash is not the hash of the record before it".into(),
                        });
                    }
                    self.problems_before_footer = problems_before;
                    self.footer = Some(f.clone());
                }
                Some(Record::Footer(f))
            }
            Parsed::Unknown => {
                self.unknown += 1;
                None
            }
        };
        if self.problems_total != problems_before {
            self.skipped += 1;
            return None;
        }
        record.map(|record| Entry {
            line: self.line,
            seq,
            record,
        })
    }

    fn light(&mut self, l: LightLine) -> Result<Parsed, String> {
        one_kind(&[
            l.header.is_some(),
            l.event.is_some(),
            l.alert.is_some(),
            l.gap.is_some(),
            l.cgroup.is_some(),
            l.footer.is_some(),
        ])?;
        Ok(if l.header.is_some() {
            Parsed::Header
        } else if let Some(e) = l.event {
            let lost = match (e.kind.as_deref(), e.counts) {
                (Some("lost"), Some(c)) => c.values().sum(),
                _ => 0,
            };
            self.counts.add_event(lost);
            Parsed::Event(None)
        } else if let Some(a) = l.alert {
            self.counts.add_alert(&a.rule);
            Parsed::Alert(None)
        } else if let Some(g) = l.gap {
            Parsed::Gap(g)
        } else if l.cgroup.is_some() {
            Parsed::Cgroup(None)
        } else if let Some(f) = l.footer {
            Parsed::Footer(f)
        } else {
            Parsed::Unknown
        })
    }

    fn problem(&mut self, kind: ProblemKind) {
        self.problems_total += 1;
        if self.problems.len() < MAX_PROBLEMS_KEPT {
            self.problems.push(Problem {
                line: self.line,
                kind,
            });
        }
    }

    fn at_end(&mut self) {
        match &self.footer {
            None => {
                let line = self.line + 1;
                self.problems_total += 1;
                if self.problems.len() < MAX_PROBLEMS_KEPT {
                    self.problems.push(Problem {
                        line,
                        kind: ProblemKind::MissingFooter,
                    });
                }
            }
            Some(f) => {
                // Only when the file was clean up to the footer: otherwise the
                // counts differ for a reason already reported.
                if self.problems_before_footer == 0 {
                    let d = self.counts.differences(f);
                    if !d.is_empty() {
                        let line = self.line;
                        self.problems_total += 1;
                        self.problems.push(Problem {
                            line,
                            kind: ProblemKind::FooterMismatch { what: d.join("; ") },
                        });
                    }
                }
            }
        }
    }

    /// Read (and check) whatever is left, and say how it went.
    pub fn finish(mut self) -> Result<Verdict, SessionError> {
        while self.next(false)?.is_some() {}
        Ok(self.into_verdict())
    }

    /// Check the whole file without building events (faster than reading
    /// every record: `verify`, `sessions`).
    pub fn verify(mut self) -> Result<Verdict, SessionError> {
        while self.next(true)?.is_some() {}
        Ok(self.into_verdict())
    }

    fn into_verdict(self) -> Verdict {
        Verdict {
            path: self.path,
            lines: self.line,
            counts: self.counts,
            skipped: self.skipped,
            unknown: self.unknown,
            footer: self.footer,
            problems: self.problems,
            problems_total: self.problems_total,
            last_hash: self.prev,
        }
    }
}

fn placeholder_header() -> Header {
    Header {
        format: String::new(),
        version: FORMAT_VERSION,
        agentwatch_version: String::new(),
        host: String::new(),
        kernel: String::new(),
        start_time: String::new(),
        start_time_ns: 0,
        cgroups: Vec::new(),
        policy: String::new(),
        policy_source: None,
        host_facts: serde_json::Value::Null,
        cgroup_paths: Default::default(),
    }
}
