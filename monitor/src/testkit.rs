//! Test support shared by the unit tests: builders for the parts of an
//! [`Event`](crate::event::model::Event) most tests repeat, and an in-memory
//! writer for sinks that own theirs.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use crate::event::model::{EventKind, Exec, Open, OpenSyscall, Task};
use crate::session::writer::SessionOutput;

/// A task of uid and gid 1000 that is its own thread (`tid == pid`).
pub(crate) fn task(pid: u32, ppid: u32, comm: &str, cgroup_id: u64) -> Task {
    Task {
        pid,
        tid: pid,
        ppid,
        uid: 1000,
        gid: 1000,
        comm: comm.into(),
        cgroup_id,
    }
}

/// A successful exec of `exe`, passed and resolved as the same path.
pub(crate) fn exec(exe: &str, argv: &[&str], dev: u64, ino: u64) -> EventKind {
    EventKind::Exec(Exec {
        ret: 0,
        filename: exe.into(),
        exe: Some(exe.into()),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        argv_truncated: false,
        dev,
        ino,
    })
}

/// A successful read-only `openat` of `path` relative to the working
/// directory, resolved to the same path.
pub(crate) fn open(path: &str, dev: u64, ino: u64) -> EventKind {
    EventKind::Open(Open {
        syscall: OpenSyscall::Openat,
        ret: 3,
        flags: 0,
        mode: 0,
        dfd: -100,
        requested: path.into(),
        path: Some(path.into()),
        dev,
        ino,
        path_truncated: false,
        requested_truncated: false,
        unlinked: false,
    })
}

/// A writer into a buffer the test keeps a handle on (clones share it).
#[derive(Clone, Default)]
pub(crate) struct SharedBuf(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SessionOutput for SharedBuf {}
