//! Writing a session file: the synchronous half of the recorder (its thread
//! owns one of these), also used by tests and benchmarks to make sessions.
//!
//! Records are encoded into a memory buffer; [`SessionWriter::flush`] hands
//! the buffer to the output in one piece: as plain bytes, or as ONE complete
//! zstd frame. That is what makes a compressed session readable after a
//! crash: the file is always a run of complete frames, plus at worst the
//! partial frame being written when the machine stopped (see the reader,
//! which keeps every complete line before it, and the
//! `crash_at_any_byte_keeps_every_complete_frame` test, which cuts a file at
//! every byte offset and checks exactly that).

use std::io::{self, Write};

use super::format::{
    encode_line, Counts, Footer, Gap, HashHex, Header, WatchedCgroup, GENESIS_HASH,
};
use crate::detect::alert::Alert;
use crate::event::model::Event;

/// zstd level 1: the fastest. The recorder thread is most of the daemon's CPU
/// per event and zstd most of that; level 1 cut the daemon's CPU per million
/// events by about 20 % against level 3 (zstd's default) in `cargo xtask
/// bench`, for files a little larger.
const ZSTD_LEVEL: i32 = 1;

/// Flush on our own once this much is buffered, so a busy second never
/// makes a huge frame nor holds much in memory.
pub const MAX_BUFFERED: usize = 1 << 20;

/// Where a session goes. `sync` makes written data durable (fdatasync for a
/// file); other outputs (tests) need not do anything.
pub trait SessionOutput: Write + Send {
    /// Make everything written so far durable.
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SessionOutput for std::fs::File {
    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

impl SessionOutput for Vec<u8> {}

/// Writes records, keeping the chain and the counts.
pub struct SessionWriter<W: SessionOutput> {
    out: W,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    /// Encoded lines not yet handed to `out`.
    buf: Vec<u8>,
    /// Compressed frame scratch, reused.
    zbuf: Vec<u8>,
    seq: u64,
    prev: HashHex,
    counts: Counts,
}

impl<W: SessionOutput> SessionWriter<W> {
    /// Start a session on `out` with `header` as its first record. The header
    /// is only buffered: call [`flush`](Self::flush) to put it out.
    pub fn new(out: W, compress: bool, header: &Header) -> io::Result<Self> {
        let compressor = if compress {
            Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?)
        } else {
            None
        };
        let mut w = SessionWriter {
            out,
            compressor,
            buf: Vec::with_capacity(64 * 1024),
            zbuf: Vec::new(),
            seq: 0,
            prev: GENESIS_HASH,
            counts: Counts::default(),
        };
        w.record("header", header)?;
        Ok(w)
    }

    fn record<T: serde::Serialize + ?Sized>(&mut self, kind: &str, payload: &T) -> io::Result<()> {
        self.prev = encode_line(&mut self.buf, self.seq, kind, payload, &self.prev)?;
        self.seq += 1;
        if self.buf.len() >= MAX_BUFFERED {
            self.write_out()?;
        }
        Ok(())
    }

    /// Record an event.
    pub fn event(&mut self, e: &Event) -> io::Result<()> {
        self.record("event", e)?;
        self.counts.event(e);
        Ok(())
    }

    /// Record an alert.
    pub fn alert(&mut self, a: &Alert) -> io::Result<()> {
        self.record("alert", a)?;
        self.counts.alert(a);
        Ok(())
    }

    /// Record a gap (records the recorder lost).
    pub fn gap(&mut self, g: &Gap) -> io::Result<()> {
        self.record("gap", g)?;
        self.counts.gap(g);
        Ok(())
    }

    /// Record a cgroup name learned during the run.
    pub fn cgroup(&mut self, c: &WatchedCgroup) -> io::Result<()> {
        self.record("cgroup", c)
    }

    /// Hand buffered records to the output (one zstd frame if compressed)
    /// and flush it. Does not sync; see [`sync`](Self::sync).
    pub fn flush(&mut self) -> io::Result<()> {
        self.write_out()?;
        self.out.flush()
    }

    /// Make everything flushed so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.out.sync()
    }

    fn write_out(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        match &mut self.compressor {
            Some(c) => {
                self.zbuf.clear();
                self.zbuf
                    .reserve(zstd::zstd_safe::compress_bound(self.buf.len()));
                c.compress_to_buffer(&self.buf, &mut self.zbuf)?;
                self.out.write_all(&self.zbuf)?;
            }
            None => self.out.write_all(&self.buf)?,
        }
        self.buf.clear();
        Ok(())
    }

    /// Whether records are buffered and not yet flushed.
    pub fn dirty(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The totals so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The hash of the last record written.
    pub fn last_hash(&self) -> HashHex {
        self.prev
    }

    /// Records written so far, header included.
    pub fn records(&self) -> u64 {
        self.seq
    }

    /// The output.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Write the footer, flush and sync; return the output, the footer and
    /// the footer's own hash (the session's last hash).
    pub fn finish(mut self, end_time_ns: u64) -> io::Result<(W, Footer, HashHex)> {
        let footer = self.counts.footer(end_time_ns, self.prev);
        self.record("footer", &footer)?;
        self.flush()?;
        self.sync()?;
        Ok((self.out, footer, self.prev))
    }
}
