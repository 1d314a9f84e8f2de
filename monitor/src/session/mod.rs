//! Recorded sessions: the file format ([`format`](mod@format)), writing ([`writer`], used
//! by the recorder sink), reading and verifying ([`reader`], used by replay,
//! `verify` and `sessions`), and the directory they live in ([`store`]:
//! naming, permissions, listing, retention).
//!
//! A session stores the pipeline's INPUTS (every event, plus the host facts
//! and policy of the run), so replay re-derives the alerts without touching
//! the host; the live alerts are stored alongside only to compare.

pub mod format;
pub mod reader;
pub mod store;
pub mod summary;
pub mod synth;
pub mod writer;

use std::path::PathBuf;

pub use format::{Footer, Gap, Header, Record, WatchedCgroup};
pub use reader::{Entry, Integrity, Problem, ProblemKind, SessionReader, Verdict};
pub use writer::SessionWriter;

/// Exit codes of the commands that read sessions (`replay`, `verify`,
/// `sessions`), in one place. 1 and 2 keep their usual meaning (an error, a
/// usage or policy error); these say what is wrong with a session file.
///
/// | code | meaning |
/// |---|---|
/// | 0 | the session is intact (and replay reproduced the recorded alerts) |
/// | 3 | [`TAMPERED`]: some record is not what was written (edited, removed, inserted, reordered, corrupted) |
/// | 4 | [`TRUNCATED`]: the file ends early (no footer, incomplete last line); everything before is intact |
/// | 5 | [`UNREADABLE`]: not a session, an unknown format version, a damaged header, or the file cannot be read |
/// | 6 | [`REPLAY_DIFFERS`]: replay with the recorded policy raised different alerts than the live run |
///
/// When several apply, the most serious wins: unreadable, then tampered,
/// then truncated, then replay-differs.
///
/// [`TAMPERED`]: exit::TAMPERED
/// [`TRUNCATED`]: exit::TRUNCATED
/// [`UNREADABLE`]: exit::UNREADABLE
/// [`REPLAY_DIFFERS`]: exit::REPLAY_DIFFERS
pub mod exit {
    /// Intact.
    pub const OK: u8 = 0;
    /// Some record is not what was written.
    pub const TAMPERED: u8 = 3;
    /// The file ends early; what is there is intact.
    pub const TRUNCATED: u8 = 4;
    /// Not a session, unknown major version, damaged header, or unreadable.
    pub const UNREADABLE: u8 = 5;
    /// Replay with the recorded policy did not reproduce the recorded alerts.
    pub const REPLAY_DIFFERS: u8 = 6;

    /// The more serious of two codes (for a command checking several files):
    /// unreadable, then tampered, then truncated, then replay-differs, then
    /// intact. Codes not defined here (1, 2) count as the most serious.
    pub fn worst(a: u8, b: u8) -> u8 {
        let rank = |c: u8| match c {
            OK => 0,
            REPLAY_DIFFERS => 1,
            TRUNCATED => 2,
            TAMPERED => 3,
            UNREADABLE => 4,
            _ => 5,
        };
        if rank(b) > rank(a) {
            b
        } else {
            a
        }
    }
}

/// Why a session cannot be read at all (exit code [`exit::UNREADABLE`]).
/// Damage INSIDE a readable session is not an error but a
/// [`reader::Problem`]: the rest is still read.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The file cannot be opened.
    #[error("cannot open session {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a session.
    #[error("{path} is not an agentwatch session: {reason}")]
    NotASession {
        /// The file.
        path: PathBuf,
        /// What it lacks.
        reason: String,
    },
    /// A session in a format version this build does not read.
    #[error(
        "{path}: session format version {found} cannot be read by this agentwatch (reads \
         {}.x); use a newer agentwatch",
        supported.major
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: format::FormatVersion,
        /// What this build reads.
        supported: format::FormatVersion,
    },
    /// The header is damaged, so nothing can be interpreted.
    #[error("{path}: line 1: damaged session header: {reason}")]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The disk failed while reading.
    #[error("{path}: read error after line {line}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Last line read.
        line: u64,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl SessionError {
    /// The exit code: always [`exit::UNREADABLE`].
    pub fn exit_code(&self) -> u8 {
        exit::UNREADABLE
    }
}

#[cfg(test)]
pub(crate) mod tests;
