//! The owned, typed event model: what every source produces and everything
//! downstream (process tree, DNS map, detectors, sinks, recorder) consumes.
//!
//! The live source decodes ring-buffer records into [`Event`]s; the replay
//! source deserialises the very same [`Event`]s from a session file. Nothing
//! after the source knows which one it is reading. The serde form of
//! [`Event`] is part of the session file format: change it only by adding
//! optional fields (see `session::format`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Who did something: the task as the kernel saw it when the event happened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Parent process id (0 where unknown).
    pub ppid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// The task's `comm` (at most 15 bytes, lossy UTF-8).
    pub comm: String,
    /// cgroup v2 id of the task's own cgroup.
    pub cgroup_id: u64,
}

/// One thing that happened in a watched cgroup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock time of the event, nanoseconds since the Unix epoch (UTC).
    /// Detectors use this, never the wall clock, so replay reproduces them.
    pub time_ns: u64,
    /// Who.
    pub task: Task,
    /// What.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A file open (successful or not).
    Open(Open),
    /// A program execution (successful or not).
    Exec(Exec),
    /// An outbound IPv4/IPv6 connect.
    Connect(Connect),
    /// A new process; `task` is the parent.
    Fork(Fork),
    /// A process exited; `task` is the process.
    Exit(Exit),
    /// A DNS answer received in the watched cgroup. `task` carries only
    /// `cgroup_id` (the kernel hook has no current task).
    Dns(Dns),
    /// A process that already existed when watching began (a host fact,
    /// recorded so replay needs no /proc); `task` is the process.
    ProcSnapshot(ProcSnapshot),
    /// Events the kernel could not deliver because the ring buffer was full.
    /// Emitted at the point the loss was noticed: a gap marker.
    Lost(Lost),
}

/// Which syscall opened the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenSyscall {
    /// `openat(2)`
    Openat,
    /// `openat2(2)`
    Openat2,
    /// `open(2)`
    Open,
    /// `creat(2)`
    Creat,
}

/// A file open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Open {
    /// The syscall.
    pub syscall: OpenSyscall,
    /// The fd on success, `-errno` on failure.
    pub ret: i64,
    /// `O_*` flags.
    pub flags: u32,
    /// Creation mode.
    pub mode: u32,
    /// Directory fd the requested path is relative to (-100 is `AT_FDCWD`).
    pub dfd: i32,
    /// The path as the process passed it (lossy UTF-8).
    pub requested: String,
    /// The absolute path of the file the kernel opened, resolved from its own
    /// structures (relative paths, dirfds, `..` and symlinks already resolved).
    /// `None` when the open failed or the path could not be read.
    pub path: Option<String>,
    /// Device of the opened file, in `stat(2)`'s `st_dev` encoding; 0 if unknown.
    pub dev: u64,
    /// Inode of the opened file; 0 if unknown.
    pub ino: u64,
    /// `path` was cut (over PATH_MAX); the end is kept.
    #[serde(default, skip_serializing_if = "is_false")]
    pub path_truncated: bool,
    /// `requested` was cut.
    #[serde(default, skip_serializing_if = "is_false")]
    pub requested_truncated: bool,
    /// The file has no name any more (unlinked or `O_TMPFILE`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub unlinked: bool,
}

impl Open {
    /// Whether the open asked for read access (`O_RDONLY` or `O_RDWR`).
    pub fn reads(&self) -> bool {
        let acc = self.flags & (libc::O_ACCMODE as u32);
        acc == libc::O_RDONLY as u32 || acc == libc::O_RDWR as u32
    }

    /// Whether the open succeeded.
    pub fn ok(&self) -> bool {
        self.ret >= 0
    }
}

/// A program execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exec {
    /// 0 on success, `-errno` on failure.
    pub ret: i64,
    /// The filename as passed to `execve`.
    pub filename: String,
    /// The resolved absolute path of the executable now running (on success).
    pub exe: Option<String>,
    /// Arguments (lossy UTF-8).
    pub argv: Vec<String>,
    /// argv was cut to fit.
    #[serde(default, skip_serializing_if = "is_false")]
    pub argv_truncated: bool,
    /// Device of the executable (`st_dev` encoding); 0 if unknown.
    pub dev: u64,
    /// Inode of the executable; 0 if unknown.
    pub ino: u64,
}

/// Transport of a connect, from the socket's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// A stream socket (TCP).
    Tcp,
    /// A datagram socket (UDP).
    Udp,
    /// Anything else (raw, SCTP, ...).
    Other,
}

/// An outbound connect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connect {
    /// 0, or `-errno` (`-115` is `EINPROGRESS`, a non-blocking connect under way).
    pub ret: i64,
    /// Destination address.
    pub daddr: IpAddr,
    /// Destination port.
    pub dport: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The socket's fd.
    pub fd: i32,
}

/// A new process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fork {
    /// The child's pid.
    pub child_pid: u32,
}

/// A process exit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// The wait status (`exit code << 8`, or the terminating signal).
    pub exit_code: u32,
}

/// A DNS answer seen by the watched cgroup: the raw message, so that replay
/// parses it with the same code as live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// The DNS message (UDP payload), hex-encoded in JSON.
    #[serde(with = "hex_bytes")]
    pub payload: Vec<u8>,
}

/// A process that existed before watching began.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcSnapshot {
    /// Resolved executable path (`/proc/PID/exe`), if readable.
    pub exe: Option<String>,
    /// Command line (`/proc/PID/cmdline`).
    pub argv: Vec<String>,
}

/// Events lost in the kernel since the previous marker, per kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    /// Kind name (`open`, `exec`, ...) to count lost since the last marker.
    pub counts: std::collections::BTreeMap<String, u64>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            use std::fmt::Write;
            let _ = write!(out, "{b:02x}");
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() % 2 != 0 {
            return Err(serde::de::Error::custom("hex string of odd length"));
        }
        (0..s.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(s.get(i..i + 2).unwrap_or("zz"), 16)
                    .map_err(|_| serde::de::Error::custom("invalid hex digit"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        Event {
            time_ns: 1_764_000_000_123_456_789,
            task: Task {
                pid: 10,
                tid: 10,
                ppid: 1,
                uid: 1000,
                gid: 1000,
                comm: "cat".into(),
                cgroup_id: 42,
            },
            kind: EventKind::Dns(Dns {
                payload: vec![0, 1, 0xab, 0xff],
            }),
        }
    }

    #[test]
    fn event_round_trips_through_json() {
        let ev = sample();
        let line = serde_json::to_string(&ev).unwrap();
        assert!(line.contains(r#""type":"dns""#), "{line}");
        assert!(line.contains(r#""payload":"0001abff""#), "{line}");
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn open_access_mode() {
        let mut o = Open {
            syscall: OpenSyscall::Openat,
            ret: 3,
            flags: libc::O_RDONLY as u32,
            mode: 0,
            dfd: -100,
            requested: "x".into(),
            path: None,
            dev: 0,
            ino: 0,
            path_truncated: false,
            requested_truncated: false,
            unlinked: false,
        };
        assert!(o.reads());
        o.flags = (libc::O_WRONLY | libc::O_CREAT) as u32;
        assert!(!o.reads());
        o.flags = libc::O_RDWR as u32;
        assert!(o.reads());
    }
}
