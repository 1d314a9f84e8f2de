//! What reading a session found: how intact it is ([`Integrity`]), each
//! problem and where ([`Problem`]), the records yielded ([`Entry`]) and the
//! outcome of the whole file ([`Verdict`]).

use std::path::PathBuf;

use crate::session::exit;
use crate::session::format::{Counts, Footer, HashHex, Record};

/// How intact a session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Integrity {
    /// Every record chains, the footer is there and agrees.
    Intact,
    /// The file ends early (crash, power loss, `SIGKILL`, disk full): what
    /// is there is intact.
    Truncated,
    /// Something in the file is not what was written.
    Tampered,
}

impl Integrity {
    /// The process exit code for this outcome (see [`crate::session::exit`]).
    pub fn exit_code(self) -> u8 {
        match self {
            Integrity::Intact => exit::OK,
            Integrity::Truncated => exit::TRUNCATED,
            Integrity::Tampered => exit::TAMPERED,
        }
    }

    /// One word, for tables and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Integrity::Intact => "intact",
            Integrity::Truncated => "truncated",
            Integrity::Tampered => "tampered",
        }
    }
}

/// What is wrong at a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not valid JSON, not a record, or no hash at the end.
    Corrupt {
        /// What the parser said.
        reason: String,
    },
    /// The hash does not chain.
    HashMismatch {
        /// The record's `seq`.
        seq: u64,
    },
    /// `seq` does not follow the line before.
    OutOfSequence {
        /// What it should have been.
        expected: u64,
        /// What it is.
        found: u64,
    },
    /// A header after line 1.
    UnexpectedHeader,
    /// A record after the footer.
    AfterFooter,
    /// The footer disagrees with the records before it.
    FooterMismatch {
        /// Which numbers differ.
        what: String,
    },
    /// Compressed data that cannot be decoded (the lines before are kept;
    /// nothing after can be read).
    CompressedCorrupt {
        /// What zstd said.
        reason: String,
    },
    /// The last line has no end: the file was cut while it was written.
    PartialLine,
    /// The compressed stream ends inside a frame.
    CompressedTruncated,
    /// No footer: the recorder never closed the session.
    MissingFooter,
}

/// One problem, where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number (of the decompressed text). For problems at the
    /// end of the file, the line after the last one read.
    pub line: u64,
    /// What.
    pub kind: ProblemKind,
}

impl Problem {
    /// Which kind of damage this is.
    pub fn integrity(&self) -> Integrity {
        match self.kind {
            ProblemKind::PartialLine
            | ProblemKind::CompressedTruncated
            | ProblemKind::MissingFooter => Integrity::Truncated,
            _ => Integrity::Tampered,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = self.line;
        match &self.kind {
            ProblemKind::Corrupt { reason } => write!(f, "line {line}: corrupted record: {reason}"),
            ProblemKind::HashMismatch { seq } => write!(
                f,
                "line {line}: hash mismatch at record seq {seq}: this record was edited, or the one \
                 before it was removed or altered"
            ),
            ProblemKind::OutOfSequence { expected, found } => write!(
                f,
                "line {line}: record seq {found} where seq {expected} was expected: records were \
                 removed, inserted or reordered"
            ),
            ProblemKind::UnexpectedHeader => write!(f, "line {line}: a second header"),
            ProblemKind::AfterFooter => write!(f, "line {line}: record after the footer"),
            ProblemKind::FooterMismatch { what } => {
                write!(f, "line {line}: footer does not match the file: {what}")
            }
            ProblemKind::CompressedCorrupt { reason } => write!(
                f,
                "line {line}: compressed data is damaged ({reason}); nothing after line {} can be read",
                line.saturating_sub(1)
            ),
            ProblemKind::PartialLine => write!(
                f,
                "line {line}: incomplete last line (the file was cut short while it was written)"
            ),
            ProblemKind::CompressedTruncated => write!(
                f,
                "line {line}: compressed data ends inside a frame (the file was cut short while it \
                 was written)"
            ),
            ProblemKind::MissingFooter => write!(
                f,
                "no footer after line {}: the session was not closed (crash, power loss or kill); \
                 everything up to there is readable",
                line.saturating_sub(1)
            ),
        }
    }
}

/// A record and where it was.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// 1-based line number.
    pub line: u64,
    /// The record's `seq`.
    pub seq: u64,
    /// The record.
    pub record: Record,
}

/// The outcome of reading a whole session.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The file.
    pub path: PathBuf,
    /// Lines read (header included; a partial last line included).
    pub lines: u64,
    /// Records present by kind, damaged ones included where they parsed.
    pub counts: Counts,
    /// Records not yielded because they were damaged.
    pub skipped: u64,
    /// Records of kinds this version does not know (from a newer minor),
    /// checked and skipped.
    pub unknown: u64,
    /// The footer, if the session was closed.
    pub footer: Option<Footer>,
    /// The first [`MAX_PROBLEMS_KEPT`](super::MAX_PROBLEMS_KEPT) problems, in file order.
    pub problems: Vec<Problem>,
    /// All problems, counted.
    pub problems_total: u64,
    /// The hash of the last line read.
    pub last_hash: HashHex,
}

impl Verdict {
    /// The worst damage found.
    pub fn integrity(&self) -> Integrity {
        self.problems
            .iter()
            .map(Problem::integrity)
            .max()
            .unwrap_or(Integrity::Intact)
    }

    /// The first problem that makes the file tampered, else the first one.
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems
            .iter()
            .find(|p| p.integrity() == Integrity::Tampered)
            .or_else(|| self.problems.first())
    }
}
