//! Wire types shared by agentwatch's kernel programs (`monitor-ebpf`) and its
//! daemon (`monitor`).
//!
//! Every record the kernel puts in the ring buffer starts with a [`Header`]; the
//! header's `kind` (an [`EventKind`] as a raw `u32`) says which fixed part
//! follows, and the fixed part says how many variable bytes (paths, argv)
//! follow it. Records are sized to what they carry: a 20-byte path costs 20
//! bytes, not 4 KiB.
//!
//! All structs are `#[repr(C)]` with explicit padding fields, so the kernel and
//! user space agree on the layout byte for byte and no uninitialised padding
//! leaks kernel stack into the ring buffer. Integers are in host byte order,
//! except where a field says otherwise.
#![no_std]
#![deny(missing_docs)]

/// Maximum bytes of a path copied from user memory (the path as passed).
pub const REQ_PATH_MAX: usize = 256;
/// Maximum bytes of a path the kernel resolves from its own structures
/// (`PATH_MAX`). Longer paths are cut and flagged with [`PATH_TRUNCATED`].
pub const PATH_MAX: usize = 4096;
/// Maximum bytes of argv copied at exec (NUL-separated arguments). Enough for
/// a real `bash -c '...'` command line of several KiB.
pub const ARGV_MAX: usize = 8192;
/// Maximum number of argv entries read.
pub const ARGC_MAX: u32 = 128;
/// Maximum DNS payload bytes copied from an answer packet.
pub const DNS_MAX: usize = 512;
/// Maximum number of cgroup subtrees watched at once.
pub const MAX_WATCHED: u32 = 8;
/// Length of a task's `comm`.
pub const COMM_LEN: usize = 16;

/// The resolved path was longer than [`PATH_MAX`] (or deeper than the walk
/// limit) and was cut; the bytes kept are the end of the path.
pub const PATH_TRUNCATED: u32 = 1 << 0;
/// No resolved path: the open failed, or the kernel structures could not be read.
pub const PATH_UNRESOLVED: u32 = 1 << 1;
/// The path as passed was longer than [`REQ_PATH_MAX`] and was cut.
pub const REQ_TRUNCATED: u32 = 1 << 2;
/// argv had more than [`ARGC_MAX`] entries or [`ARGV_MAX`] bytes and was cut.
pub const ARGV_TRUNCATED: u32 = 1 << 3;
/// The file has no name any more (unlinked, or opened with `O_TMPFILE`).
pub const PATH_UNLINKED: u32 = 1 << 4;

/// What a ring-buffer record is. Sent as a raw `u32` and checked with
/// `TryFrom` in user space, so an unknown kind is an error, not UB.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A file open: [`OpenRecord`].
    Open = 1,
    /// The start of an exec (path as passed and argv): [`ExecArgsRecord`].
    ExecArgs = 2,
    /// The result of an exec and the resolved executable: [`ExecRecord`].
    Exec = 3,
    /// An IPv4 or IPv6 connect: [`ConnectRecord`].
    Connect = 4,
    /// A new process (not a new thread): [`ForkRecord`].
    Fork = 5,
    /// A process (its thread-group leader) exited: [`ExitRecord`].
    Exit = 6,
    /// A DNS answer received by a watched process: [`DnsRecord`].
    Dns = 7,
}

/// Number of [`EventKind`] values plus one; the size of the lost-event counter
/// array, indexed by the raw kind.
pub const KIND_SLOTS: u32 = 8;

impl TryFrom<u32> for EventKind {
    type Error = u32;

    fn try_from(v: u32) -> Result<Self, u32> {
        Ok(match v {
            1 => Self::Open,
            2 => Self::ExecArgs,
            3 => Self::Exec,
            4 => Self::Connect,
            5 => Self::Fork,
            6 => Self::Exit,
            7 => Self::Dns,
            other => return Err(other),
        })
    }
}

impl EventKind {
    /// Every kind, in wire order.
    pub const ALL: [EventKind; 7] = [
        Self::Open,
        Self::ExecArgs,
        Self::Exec,
        Self::Connect,
        Self::Fork,
        Self::Exit,
        Self::Dns,
    ];

    /// Short lowercase name, used in logs and loss reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::ExecArgs => "exec_args",
            Self::Exec => "exec",
            Self::Connect => "connect",
            Self::Fork => "fork",
            Self::Exit => "exit",
            Self::Dns => "dns",
        }
    }
}

/// The part every record starts with: who did it, when, and in which cgroup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// [`EventKind`] as a raw value.
    pub kind: u32,
    /// Kind-specific flags (`PATH_*`, `ARGV_TRUNCATED`, ...).
    pub flags: u32,
    /// `bpf_ktime_get_boot_ns()`: nanoseconds since boot, suspend included.
    pub boot_ns: u64,
    /// Process id (the kernel's tgid).
    pub pid: u32,
    /// Thread id (the kernel's pid).
    pub tid: u32,
    /// Parent's process id (`real_parent->tgid`); 0 where unknown.
    pub ppid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Explicit padding, always zero.
    pub _pad: u32,
    /// cgroup v2 id of the task's own cgroup (the directory's inode number).
    pub cgroup_id: u64,
    /// The task's `comm`, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// Which syscall an [`OpenRecord`] came from.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenSyscall {
    /// `openat(2)`.
    Openat = 1,
    /// `openat2(2)`.
    Openat2 = 2,
    /// Legacy `open(2)`.
    Open = 3,
    /// Legacy `creat(2)`.
    Creat = 4,
}

impl TryFrom<u32> for OpenSyscall {
    type Error = u32;
    fn try_from(v: u32) -> Result<Self, u32> {
        Ok(match v {
            1 => Self::Openat,
            2 => Self::Openat2,
            3 => Self::Open,
            4 => Self::Creat,
            other => return Err(other),
        })
    }
}

/// A file open, seen at syscall exit. Followed by `req_len` bytes of the path
/// as passed, then `path_len` bytes of the absolute path the kernel opened
/// (neither NUL-terminated).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenRecord {
    /// Common header.
    pub hdr: Header,
    /// Syscall return: the fd, or `-errno`.
    pub ret: i64,
    /// Device of the opened file (kernel encoding `MAJOR << 20 | MINOR`); 0 if unresolved.
    pub dev: u64,
    /// Inode number of the opened file; 0 if unresolved.
    pub ino: u64,
    /// Open flags (`O_*`).
    pub flags: u32,
    /// Creation mode.
    pub mode: u32,
    /// Directory fd the path is relative to (`AT_FDCWD` is -100).
    pub dfd: i32,
    /// [`OpenSyscall`] as a raw value.
    pub syscall: u32,
    /// Bytes of the path as passed that follow.
    pub req_len: u32,
    /// Bytes of the resolved path that follow the requested path.
    pub path_len: u32,
}

/// The start of an exec, seen at syscall entry (argv lives in the old image,
/// so it must be read before the exec replaces it). Followed by `filename_len`
/// bytes of the path as passed, then `argv_len` bytes of NUL-terminated
/// arguments.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecArgsRecord {
    /// Common header.
    pub hdr: Header,
    /// Bytes of the filename as passed.
    pub filename_len: u32,
    /// Bytes of argv (each argument NUL-terminated).
    pub argv_len: u32,
    /// Number of arguments copied.
    pub argc: u32,
    /// Directory fd for `execveat`, `AT_FDCWD` for `execve`.
    pub dfd: i32,
}

/// The result of an exec, seen at syscall exit. On success the header is the
/// new image's (new `comm`), and `exe_len` bytes of the resolved executable path
/// (`mm->exe_file`) follow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecRecord {
    /// Common header.
    pub hdr: Header,
    /// Syscall return: 0, or `-errno`.
    pub ret: i64,
    /// Device of the executable (kernel encoding).
    pub dev: u64,
    /// Inode of the executable.
    pub ino: u64,
    /// Bytes of resolved executable path that follow.
    pub exe_len: u32,
    /// Explicit padding, always zero.
    pub _pad: u32,
}

/// An IPv4 or IPv6 `connect(2)`, seen at syscall exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectRecord {
    /// Common header.
    pub hdr: Header,
    /// Syscall return: 0, or `-errno` (`-EINPROGRESS` for a non-blocking connect).
    pub ret: i64,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
    /// Destination port, host byte order.
    pub port: u16,
    /// Socket type (`SOCK_STREAM` 1, `SOCK_DGRAM` 2, ...); 0 if unknown.
    pub sock_type: u16,
    /// Socket protocol (`IPPROTO_TCP` 6, `IPPROTO_UDP` 17, ...); 0 if unknown.
    pub protocol: u16,
    /// Destination address in network byte order; IPv4 uses the first 4 bytes.
    pub addr: [u8; 16],
    /// The socket fd.
    pub fd: i32,
    /// Explicit padding, always zero.
    pub _pad: u32,
}

/// A new process. The header describes the parent (the task that forked).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkRecord {
    /// Common header (the parent).
    pub hdr: Header,
    /// The child's process id.
    pub child_pid: u32,
    /// Explicit padding, always zero.
    pub _pad: u32,
}

/// A process exit (its thread-group leader). The header describes the exiting task.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitRecord {
    /// Common header.
    pub hdr: Header,
    /// `task->exit_code` (the wait status: exit code << 8, or the signal).
    pub exit_code: u32,
    /// Explicit padding, always zero.
    pub _pad: u32,
}

/// A DNS answer (UDP, source port 53) delivered to a socket in a watched
/// cgroup, seen by a `cgroup_skb/ingress` program. There is no current task in
/// that context: the header's pid, tid, ppid, uid, gid and comm are zero and
/// `cgroup_id` is the receiving socket's cgroup. Followed by `len` bytes of
/// the DNS message (UDP payload).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsRecord {
    /// Common header.
    pub hdr: Header,
    /// Bytes of DNS payload that follow.
    pub len: u32,
    /// `AF_INET` or `AF_INET6` of the packet.
    pub family: u32,
}

/// One watched cgroup subtree, as the kernel filter sees it: a task belongs
/// to it when `bpf_get_current_ancestor_cgroup_id(level) == id`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchedCgroup {
    /// cgroup id (inode number of the directory).
    pub id: u64,
    /// Depth below the cgroup2 root (the root is level 0).
    pub level: u32,
    /// Explicit padding, always zero.
    pub _pad: u32,
}

/// Names of the kernel programs' maps, used by the loader.
pub mod maps {
    /// The ring buffer of events.
    pub const EVENTS: &str = "EVENTS";
    /// Per-CPU lost-event counters, indexed by raw [`crate::EventKind`].
    pub const LOST: &str = "LOST";
}

/// Names of the `.rodata` globals the loader sets before load. The kernel
/// structure offsets come from the running kernel's BTF, so one object file
/// works across kernel builds.
pub mod globals {
    /// `[WatchedCgroup; MAX_WATCHED]`: the watched subtrees. A `.rodata`
    /// constant rather than a map, so the check costs no map lookup.
    pub const WATCHED: &str = "WATCHED";
    /// Number of used slots in WATCHED.
    pub const WATCHED_COUNT: &str = "WATCHED_COUNT";
    /// The daemon's own pid, skipped in the kernel.
    pub const SELF_PID: &str = "SELF_PID";
    /// Ring-buffer bytes pending above which a record wakes user space.
    pub const WAKEUP_BYTES: &str = "WAKEUP_BYTES";
    /// The [`crate::KernelOffsets`] struct.
    pub const OFFSETS: &str = "OFFSETS";
}

impl WatchedCgroup {
    /// An unused slot.
    pub const EMPTY: Self = Self {
        id: 0,
        level: 0,
        _pad: 0,
    };
}

/// Byte offsets of the kernel structure members the programs read, taken from
/// `/sys/kernel/btf/vmlinux` at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.real_parent`
    pub task_real_parent: u32,
    /// `task_struct.tgid`
    pub task_tgid: u32,
    /// `task_struct.pid`
    pub task_pid: u32,
    /// `task_struct.files`
    pub task_files: u32,
    /// `task_struct.fs`
    pub task_fs: u32,
    /// `task_struct.mm`
    pub task_mm: u32,
    /// `task_struct.exit_code`
    pub task_exit_code: u32,
    /// `task_struct.cred` (the subjective credentials)
    pub task_cred: u32,
    /// `cred.uid`
    pub cred_uid: u32,
    /// `cred.gid`
    pub cred_gid: u32,
    /// `files_struct.fdt`
    pub files_fdt: u32,
    /// `fdtable.max_fds`
    pub fdt_max_fds: u32,
    /// `fdtable.fd`
    pub fdt_fd: u32,
    /// `file.f_path`
    pub file_path: u32,
    /// `file.f_inode`
    pub file_inode: u32,
    /// `file.private_data`
    pub file_private_data: u32,
    /// `path.mnt`
    pub path_mnt: u32,
    /// `path.dentry`
    pub path_dentry: u32,
    /// `inode.i_ino`
    pub inode_ino: u32,
    /// `inode.i_sb`
    pub inode_sb: u32,
    /// `inode.i_nlink` (0 for an unlinked file)
    pub inode_nlink: u32,
    /// `super_block.s_dev`
    pub sb_dev: u32,
    /// `dentry.d_parent`
    pub dentry_parent: u32,
    /// `dentry.d_name`
    pub dentry_name: u32,
    /// `qstr.len` (inside `hash_len`)
    pub qstr_len: u32,
    /// `qstr.name`
    pub qstr_name: u32,
    /// `mount.mnt` (the embedded `vfsmount`)
    pub mount_mnt: u32,
    /// `mount.mnt_parent`
    pub mount_parent: u32,
    /// `mount.mnt_mountpoint`
    pub mount_mountpoint: u32,
    /// `vfsmount.mnt_root`
    pub vfsmount_root: u32,
    /// `fs_struct.root`
    pub fs_root: u32,
    /// `mm_struct.exe_file`
    pub mm_exe_file: u32,
    /// `socket.type`
    pub socket_type: u32,
    /// `socket.sk`
    pub socket_sk: u32,
    /// `sock.sk_protocol`
    pub sock_protocol: u32,
    /// Explicit padding, always zero.
    pub _pad: u32,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C), made only of integers and byte
    // arrays, with explicit padding fields, so every bit pattern is valid.
    unsafe impl aya::Pod for super::WatchedCgroup {}
    unsafe impl aya::Pod for super::KernelOffsets {}
}

/// Size in bytes of each fixed record part, for decoders.
pub mod sizes {
    use core::mem::size_of;
    /// `size_of::<Header>()`
    pub const HEADER: usize = size_of::<super::Header>();
    /// `size_of::<OpenRecord>()`
    pub const OPEN: usize = size_of::<super::OpenRecord>();
    /// `size_of::<ExecArgsRecord>()`
    pub const EXEC_ARGS: usize = size_of::<super::ExecArgsRecord>();
    /// `size_of::<ExecRecord>()`
    pub const EXEC: usize = size_of::<super::ExecRecord>();
    /// `size_of::<ConnectRecord>()`
    pub const CONNECT: usize = size_of::<super::ConnectRecord>();
    /// `size_of::<ForkRecord>()`
    pub const FORK: usize = size_of::<super::ForkRecord>();
    /// `size_of::<ExitRecord>()`
    pub const EXIT: usize = size_of::<super::ExitRecord>();
    /// `size_of::<DnsRecord>()`
    pub const DNS: usize = size_of::<super::DnsRecord>();
}

// Layout checks: the kernel and user space must agree, and no implicit padding.
const _: () = {
    assert!(sizes::HEADER == 64);
    assert!(sizes::OPEN == 64 + 48);
    assert!(sizes::EXEC_ARGS == 64 + 16);
    assert!(sizes::EXEC == 64 + 32);
    assert!(sizes::CONNECT == 64 + 40);
    assert!(sizes::FORK == 64 + 8);
    assert!(sizes::EXIT == 64 + 8);
    assert!(sizes::DNS == 64 + 8);
    assert!(core::mem::size_of::<KernelOffsets>().is_multiple_of(8));
};
