//! Decoding ring-buffer records (the `monitor-common` wire layout) into
//! owned [`Event`]s.
//!
//! Stateful in one small way: an exec arrives as two records (argv read at
//! syscall entry, result and resolved executable at exit), joined here by
//! thread, so everything downstream sees one [`Exec`] event.

use std::collections::HashMap;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use monitor_common as wire;
use thiserror::Error;

use super::model::{
    Connect, Dns, Event, EventKind, Exec, Exit, Fork, Open, OpenSyscall, Protocol, Task,
};

/// A record that could not be decoded. One bad record never stops the
/// daemon: the caller counts it, warns and goes on.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than its fixed part or than the lengths it announces.
    #[error("{kind} record too short: {len} bytes, need {need}")]
    Short {
        /// Record kind name.
        kind: &'static str,
        /// Bytes received.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The kind field holds no known kind.
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    /// A field holds a value outside its range.
    #[error("{kind} record: bad {field} value {value}")]
    BadField {
        /// Record kind name.
        kind: &'static str,
        /// Field name.
        field: &'static str,
        /// The value seen.
        value: u64,
    },
}

/// Converts the kernel's boot-time clock to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Wall-clock ns at boot: wall = boot_offset + boot_ns.
    pub boot_offset_ns: i128,
}

impl Clock {
    /// Reads CLOCK_REALTIME and CLOCK_BOOTTIME now.
    pub fn from_host() -> Self {
        fn now(clock: libc::clockid_t) -> i128 {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: valid pointer to a timespec.
            unsafe { libc::clock_gettime(clock, &mut ts) };
            ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
        }
        let boot = now(libc::CLOCK_BOOTTIME);
        let real = now(libc::CLOCK_REALTIME);
        Clock {
            boot_offset_ns: real - boot,
        }
    }

    /// Wall-clock ns since the epoch for a kernel boot-time stamp.
    pub fn wall_ns(&self, boot_ns: u64) -> u64 {
        (self.boot_offset_ns + boot_ns as i128).max(0) as u64
    }
}

/// Converts the kernel's `s_dev` (`MAJOR << 20 | MINOR`) to `st_dev`.
pub fn kernel_dev_to_st_dev(kdev: u64) -> u64 {
    if kdev == 0 {
        return 0;
    }
    let major = (kdev >> 20) as u32;
    let minor = (kdev & 0xfffff) as u32;
    libc::makedev(major, minor)
}

/// Turns records into events.
#[derive(Debug)]
pub struct Decoder {
    clock: Clock,
    /// Exec argv records waiting for their result, by tid.
    pending_exec: HashMap<u32, PendingExec>,
}

#[derive(Debug)]
struct PendingExec {
    pid: u32,
    filename: String,
    argv: Vec<String>,
    argv_truncated: bool,
    boot_ns: u64,
}

/// Pending exec entries older than this (by event time) are dropped: their
/// exit record was lost.
const PENDING_EXEC_TTL_NS: u64 = 60_000_000_000;
/// Upper bound on pending execs, against unbounded growth.
const PENDING_EXEC_MAX: usize = 4096;

fn read<T: Copy>(buf: &[u8], kind: &'static str) -> Result<T, DecodeError> {
    if buf.len() < size_of::<T>() {
        return Err(DecodeError::Short {
            kind,
            len: buf.len(),
            need: size_of::<T>(),
        });
    }
    // SAFETY: length checked; T is a repr(C) plain-old-data wire struct.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr() as *const T) })
}

fn tail<'a>(
    buf: &'a [u8],
    start: usize,
    lens: &[u32],
    kind: &'static str,
) -> Result<Vec<&'a [u8]>, DecodeError> {
    let need = start + lens.iter().map(|&l| l as usize).sum::<usize>();
    if buf.len() < need {
        return Err(DecodeError::Short {
            kind,
            len: buf.len(),
            need,
        });
    }
    let mut at = start;
    Ok(lens
        .iter()
        .map(|&l| {
            let s = &buf[at..at + l as usize];
            at += l as usize;
            s
        })
        .collect())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn comm(c: &[u8; wire::COMM_LEN]) -> String {
    let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
    text(&c[..end])
}

impl Decoder {
    /// A decoder converting times with `clock`.
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            pending_exec: HashMap::new(),
        }
    }

    fn task(&self, h: &wire::Header) -> Task {
        Task {
            pid: h.pid,
            tid: h.tid,
            ppid: h.ppid,
            uid: h.uid,
            gid: h.gid,
            comm: comm(&h.comm),
            cgroup_id: h.cgroup_id,
        }
    }

    /// Decodes one record. `Ok(None)` for a record that only completes later
    /// (exec argv, joined with the exec result).
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<Event>, DecodeError> {
        let hdr: wire::Header = read(buf, "header")?;
        let kind = wire::EventKind::try_from(hdr.kind).map_err(DecodeError::UnknownKind)?;
        let time_ns = self.clock.wall_ns(hdr.boot_ns);
        let task = self.task(&hdr);
        let kind = match kind {
            wire::EventKind::Open => {
                let r: wire::OpenRecord = read(buf, "open")?;
                let parts = tail(buf, wire::sizes::OPEN, &[r.req_len, r.path_len], "open")?;
                let syscall = match wire::OpenSyscall::try_from(r.syscall) {
                    Ok(wire::OpenSyscall::Openat) => OpenSyscall::Openat,
                    Ok(wire::OpenSyscall::Openat2) => OpenSyscall::Openat2,
                    Ok(wire::OpenSyscall::Open) => OpenSyscall::Open,
                    Ok(wire::OpenSyscall::Creat) => OpenSyscall::Creat,
                    Err(v) => {
                        return Err(DecodeError::BadField {
                            kind: "open",
                            field: "syscall",
                            value: v as u64,
                        })
                    }
                };
                let resolved = r.hdr.flags & wire::PATH_UNRESOLVED == 0 && r.path_len > 0;
                EventKind::Open(Open {
                    syscall,
                    ret: r.ret,
                    flags: r.flags,
                    mode: r.mode,
                    dfd: r.dfd,
                    requested: text(parts[0]),
                    path: resolved.then(|| text(parts[1])),
                    dev: kernel_dev_to_st_dev(r.dev),
                    ino: r.ino,
                    path_truncated: r.hdr.flags & wire::PATH_TRUNCATED != 0,
                    requested_truncated: r.hdr.flags & wire::REQ_TRUNCATED != 0,
                    unlinked: r.hdr.flags & wire::PATH_UNLINKED != 0,
                })
            }
            wire::EventKind::ExecArgs => {
                let r: wire::ExecArgsRecord = read(buf, "exec_args")?;
                let parts = tail(
                    buf,
                    wire::sizes::EXEC_ARGS,
                    &[r.filename_len, r.argv_len],
                    "exec_args",
                )?;
                let mut argv: Vec<String> =
                    parts[1].split(|&b| b == 0).map(text).collect::<Vec<_>>();
                // Arguments are NUL-terminated: the split leaves one empty tail.
                if parts[1].last() == Some(&0) || parts[1].is_empty() {
                    argv.pop();
                }
                self.expire_pending(hdr.boot_ns);
                self.pending_exec.insert(
                    hdr.tid,
                    PendingExec {
                        pid: hdr.pid,
                        filename: text(parts[0]),
                        argv,
                        argv_truncated: r.hdr.flags & wire::ARGV_TRUNCATED != 0,
                        boot_ns: hdr.boot_ns,
                    },
                );
                return Ok(None);
            }
            wire::EventKind::Exec => {
                let r: wire::ExecRecord = read(buf, "exec")?;
                let parts = tail(buf, wire::sizes::EXEC, &[r.exe_len], "exec")?;
                // A non-leader thread that execs takes over the leader's id,
                // so fall back to any pending entry of the same process.
                let pending = self.pending_exec.remove(&hdr.tid).or_else(|| {
                    let tid = self
                        .pending_exec
                        .iter()
                        .find(|(_, p)| p.pid == hdr.pid)
                        .map(|(t, _)| *t)?;
                    self.pending_exec.remove(&tid)
                });
                let (filename, argv, argv_truncated) = match pending {
                    Some(p) => (p.filename, p.argv, p.argv_truncated),
                    None => (String::new(), Vec::new(), true),
                };
                let resolved = r.hdr.flags & wire::PATH_UNRESOLVED == 0 && r.exe_len > 0;
                EventKind::Exec(Exec {
                    ret: r.ret,
                    filename,
                    exe: resolved.then(|| text(parts[0])),
                    argv,
                    argv_truncated,
                    dev: kernel_dev_to_st_dev(r.dev),
                    ino: r.ino,
                })
            }
            wire::EventKind::Connect => {
                let r: wire::ConnectRecord = read(buf, "connect")?;
                let daddr = match r.family {
                    2 => IpAddr::V4(Ipv4Addr::new(r.addr[0], r.addr[1], r.addr[2], r.addr[3])),
                    10 => IpAddr::V6(Ipv6Addr::from(r.addr)),
                    f => {
                        return Err(DecodeError::BadField {
                            kind: "connect",
                            field: "family",
                            value: f as u64,
                        })
                    }
                };
                let protocol = match (r.sock_type, r.protocol) {
                    (_, 6) | (1, 0) => Protocol::Tcp,
                    (_, 17) | (2, 0) => Protocol::Udp,
                    _ => Protocol::Other,
                };
                EventKind::Connect(Connect {
                    ret: r.ret,
                    daddr,
                    dport: r.port,
                    protocol,
                    fd: r.fd,
                })
            }
            wire::EventKind::Fork => {
                let r: wire::ForkRecord = read(buf, "fork")?;
                EventKind::Fork(Fork {
                    child_pid: r.child_pid,
                })
            }
            wire::EventKind::Exit => {
                let r: wire::ExitRecord = read(buf, "exit")?;
                self.pending_exec.remove(&hdr.tid);
                EventKind::Exit(Exit {
                    exit_code: r.exit_code,
                })
            }
            wire::EventKind::Dns => {
                let r: wire::DnsRecord = read(buf, "dns")?;
                let parts = tail(buf, wire::sizes::DNS, &[r.len], "dns")?;
                EventKind::Dns(Dns {
                    payload: parts[0].to_vec(),
                })
            }
        };
        Ok(Some(Event {
            time_ns,
            task,
            kind,
        }))
    }

    fn expire_pending(&mut self, now_boot_ns: u64) {
        if self.pending_exec.len() < PENDING_EXEC_MAX / 2 {
            return;
        }
        self.pending_exec
            .retain(|_, p| now_boot_ns.saturating_sub(p.boot_ns) < PENDING_EXEC_TTL_NS);
        if self.pending_exec.len() >= PENDING_EXEC_MAX {
            self.pending_exec.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    //! Records are laid out exactly as the kernel lays them out (the shared
    //! `monitor-common` structs followed by their variable bytes) and decoded.

    use super::*;

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: wire structs are repr(C) with explicit padding.
        unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()).to_vec() }
    }

    fn header(kind: wire::EventKind) -> wire::Header {
        let mut comm = [0u8; 16];
        comm[..3].copy_from_slice(b"cat");
        wire::Header {
            kind: kind as u32,
            flags: 0,
            boot_ns: 1_000,
            pid: 100,
            tid: 101,
            ppid: 99,
            uid: 1000,
            gid: 1001,
            _pad: 0,
            cgroup_id: 4242,
            comm,
        }
    }

    fn clock() -> Clock {
        Clock {
            boot_offset_ns: 1_700_000_000_000_000_000,
        }
    }

    #[test]
    fn open_record_with_both_paths() {
        let rec = wire::OpenRecord {
            hdr: header(wire::EventKind::Open),
            ret: 3,
            dev: (8 << 20) | 1,
            ino: 77,
            flags: 0,
            mode: 0,
            dfd: -100,
            syscall: wire::OpenSyscall::Openat as u32,
            req_len: 9,
            path_len: 14,
        };
        let mut buf = bytes_of(&rec);
        buf.extend_from_slice(b"../secret");
        buf.extend_from_slice(b"/home/u/secret");
        let ev = Decoder::new(clock()).decode(&buf).unwrap().unwrap();
        assert_eq!(ev.time_ns, 1_700_000_000_000_001_000);
        assert_eq!(ev.task.pid, 100);
        assert_eq!(ev.task.tid, 101);
        assert_eq!(ev.task.ppid, 99);
        assert_eq!(ev.task.comm, "cat");
        assert_eq!(ev.task.cgroup_id, 4242);
        let EventKind::Open(o) = ev.kind else {
            panic!("not an open: {ev:?}")
        };
        assert_eq!(o.requested, "../secret");
        assert_eq!(o.path.as_deref(), Some("/home/u/secret"));
        assert_eq!(o.dev, libc::makedev(8, 1));
        assert_eq!(o.ino, 77);
        assert_eq!(o.syscall, OpenSyscall::Openat);
    }

    #[test]
    fn failed_open_has_no_resolved_path() {
        let mut rec = wire::OpenRecord {
            hdr: header(wire::EventKind::Open),
            ret: -2,
            req_len: 4,
            syscall: 1,
            ..Default::default()
        };
        rec.hdr.flags = wire::PATH_UNRESOLVED;
        let mut buf = bytes_of(&rec);
        buf.extend_from_slice(b"nope");
        let ev = Decoder::new(clock()).decode(&buf).unwrap().unwrap();
        let EventKind::Open(o) = ev.kind else {
            panic!()
        };
        assert_eq!(o.ret, -2);
        assert_eq!(o.path, None);
        assert_eq!(o.requested, "nope");
    }

    #[test]
    fn short_records_are_errors_not_panics() {
        let rec = wire::OpenRecord {
            hdr: header(wire::EventKind::Open),
            req_len: 100,
            syscall: 1,
            ..Default::default()
        };
        let buf = bytes_of(&rec);
        let mut d = Decoder::new(clock());
        assert!(matches!(d.decode(&buf), Err(DecodeError::Short { .. })));
        assert!(matches!(
            d.decode(&buf[..10]),
            Err(DecodeError::Short { .. })
        ));
        let mut h = header(wire::EventKind::Open);
        h.kind = 99;
        assert_eq!(d.decode(&bytes_of(&h)), Err(DecodeError::UnknownKind(99)));
    }

    #[test]
    fn exec_args_and_result_are_joined() {
        let mut d = Decoder::new(clock());
        let argv = b"bash\0-c\0echo hi | cat\0";
        let rec = wire::ExecArgsRecord {
            hdr: header(wire::EventKind::ExecArgs),
            filename_len: 9,
            argv_len: argv.len() as u32,
            argc: 3,
            dfd: -100,
        };
        let mut buf = bytes_of(&rec);
        buf.extend_from_slice(b"/bin/bash");
        buf.extend_from_slice(argv);
        assert_eq!(d.decode(&buf).unwrap(), None);

        let mut res = wire::ExecRecord {
            hdr: header(wire::EventKind::Exec),
            ret: 0,
            exe_len: 14,
            ..Default::default()
        };
        res.hdr.comm[..4].copy_from_slice(b"bash");
        let mut buf = bytes_of(&res);
        buf.extend_from_slice(b"/usr/bin/bash\0"[..14].as_ref());
        let ev = d.decode(&buf).unwrap().unwrap();
        let EventKind::Exec(e) = ev.kind else {
            panic!()
        };
        assert_eq!(e.filename, "/bin/bash");
        assert_eq!(e.argv, vec!["bash", "-c", "echo hi | cat"]);
        assert_eq!(e.ret, 0);
        assert!(!e.argv_truncated);
        assert!(d.pending_exec.is_empty());
    }

    #[test]
    fn exec_result_without_args_is_marked_truncated() {
        let mut d = Decoder::new(clock());
        let res = wire::ExecRecord {
            hdr: header(wire::EventKind::Exec),
            ret: -2,
            ..Default::default()
        };
        let ev = d.decode(&bytes_of(&res)).unwrap().unwrap();
        let EventKind::Exec(e) = ev.kind else {
            panic!()
        };
        assert_eq!(e.ret, -2);
        assert!(e.argv.is_empty());
        assert!(e.argv_truncated);
        assert_eq!(e.exe, None);
    }

    #[test]
    fn connect_v4_and_v6() {
        let mut d = Decoder::new(clock());
        let mut rec = wire::ConnectRecord {
            hdr: header(wire::EventKind::Connect),
            ret: -115,
            family: 2,
            port: 443,
            sock_type: 1,
            protocol: 6,
            fd: 5,
            ..Default::default()
        };
        rec.addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let ev = d.decode(&bytes_of(&rec)).unwrap().unwrap();
        let EventKind::Connect(c) = ev.kind else {
            panic!()
        };
        assert_eq!(c.daddr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(c.dport, 443);
        assert_eq!(c.protocol, Protocol::Tcp);
        assert_eq!(c.ret, -115);

        rec.family = 10;
        rec.sock_type = 2;
        rec.protocol = 17;
        rec.addr = "::1".parse::<Ipv6Addr>().unwrap().octets();
        let ev = d.decode(&bytes_of(&rec)).unwrap().unwrap();
        let EventKind::Connect(c) = ev.kind else {
            panic!()
        };
        assert_eq!(c.daddr, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(c.protocol, Protocol::Udp);

        rec.family = 1;
        assert!(matches!(
            d.decode(&bytes_of(&rec)),
            Err(DecodeError::BadField {
                field: "family",
                ..
            })
        ));
    }

    #[test]
    fn dns_payload_is_kept_raw() {
        let rec = wire::DnsRecord {
            hdr: header(wire::EventKind::Dns),
            len: 3,
            family: 2,
        };
        let mut buf = bytes_of(&rec);
        buf.extend_from_slice(&[1, 2, 3]);
        let ev = Decoder::new(clock()).decode(&buf).unwrap().unwrap();
        assert_eq!(
            ev.kind,
            EventKind::Dns(Dns {
                payload: vec![1, 2, 3]
            })
        );
    }

    #[test]
    fn kernel_dev_encoding() {
        assert_eq!(kernel_dev_to_st_dev((259 << 20) | 3), libc::makedev(259, 3));
        assert_eq!(kernel_dev_to_st_dev(0), 0);
    }
}
