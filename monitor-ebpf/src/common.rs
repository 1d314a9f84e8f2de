//! What every hook shares: the maps, the load-time constants, the cgroup
//! filter, the record header and the ring-buffer output with loss counting.

use core::ffi::c_void;
use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_probe_read_kernel,
        generated::{
            bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_task,
            bpf_ktime_get_boot_ns, bpf_ringbuf_output,
        },
    },
    macros::map,
    maps::{LruHashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
    EbpfContext,
};
use monitor_common::{
    EventKind, Header, KernelOffsets, WatchedCgroup, COMM_LEN, KIND_SLOTS, MAX_WATCHED,
};

/// Default ring-buffer size; user space may resize it before load.
const RINGBUF_BYTES: u32 = 16 << 20;

/// The one ring buffer to user space.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(RINGBUF_BYTES, 0);

/// Records that did not fit in the ring buffer, per CPU, indexed by raw kind.
/// Counted at reservation time, read (and summed) by the daemon.
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(KIND_SLOTS, 0);

/// Bytes of the per-CPU scratch area where a record is built: the record
/// itself, then room for path building.
pub const EV_BUF: usize = 16384;
/// The path-building area: components are written right to left ending at
/// `PATH_END`, so the finished path is contiguous.
pub const PATH_BUF: usize = 8192;
/// Where the right-to-left path writing starts.
pub const PATH_END: usize = 4096;

/// Per-CPU scratch: records are far larger than the 512-byte BPF stack.
///
/// The state of `bpf_loop` walks lives here too, not on the stack: the
/// verifier tracks stack values precisely, so a position that changes every
/// iteration would make each iteration a new state and the walk would never
/// converge. Values loaded from a map are imprecise, so the states merge.
#[repr(C)]
pub struct Scratch {
    /// The record being built.
    pub ev: [u8; EV_BUF],
    /// The path being built.
    pub path: [u8; PATH_BUF],
    /// The path walk in progress.
    pub walk: WalkState,
    /// The argv copy in progress.
    pub argv: ArgvState,
}

/// State of one path walk (see `path.rs`).
#[repr(C)]
pub struct WalkState {
    pub dentry: u64,
    /// The current `struct mount`.
    pub mnt: u64,
    /// `mnt->mnt.mnt_root`.
    pub mnt_root: u64,
    pub root_dentry: u64,
    pub root_mnt: u64,
    /// Where the path currently starts in the scratch path area.
    pub pos: u64,
    pub flags: u32,
    pub done: u32,
}

/// State of one argv copy (see `exec.rs`).
#[repr(C)]
pub struct ArgvState {
    /// User pointer to the argv array.
    pub argv: u64,
    /// Where the next argument goes, from the start of the record.
    pub off: u64,
    pub argc: u32,
    pub flags: u32,
}

#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Arguments saved at syscall entry for the exit hook, keyed by pid_tgid.
/// LRU, so entries of tasks killed inside a syscall age out on their own.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Inflight {
    /// Which syscall (an `OpenSyscall` value, or `CONNECT`).
    pub what: u32,
    /// dfd for opens, fd for connect.
    pub fd: i32,
    /// User pointer: the path for opens, the sockaddr for connect.
    pub ptr: u64,
    /// Open flags.
    pub flags: u64,
    /// Open mode, or sockaddr length for connect.
    pub mode: u64,
}

/// `Inflight::what` for connect.
pub const CONNECT: u32 = 100;

#[map]
pub static INFLIGHT: LruHashMap<u64, Inflight> = LruHashMap::with_max_entries(16384, 0);

/// At syscall exit: the arguments the entry hook saved for this thread, if
/// the thread is watched and has some; the entry is removed either way.
/// The cheap cgroup check comes first: most tasks are not watched.
#[inline(always)]
pub fn take_inflight() -> Option<Inflight> {
    if !watched() {
        return None;
    }
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let saved = unsafe { INFLIGHT.get(&key) }.copied()?;
    let _ = INFLIGHT.remove(&key);
    Some(saved)
}

// Load-time constants (.rodata), set by the loader with override_global. The
// verifier sees them as constants, so dead branches and unused slots vanish.

/// The watched subtrees.
#[unsafe(no_mangle)]
static WATCHED: [WatchedCgroup; MAX_WATCHED as usize] =
    [WatchedCgroup::EMPTY; MAX_WATCHED as usize];
/// How many WATCHED slots are used.
#[unsafe(no_mangle)]
static WATCHED_COUNT: u32 = 0;
/// The daemon's own pid.
#[unsafe(no_mangle)]
static SELF_PID: u32 = 0;
/// Pending ring-buffer bytes above which a batched record wakes user space.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 65536;
/// Kernel structure offsets from BTF.
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = unsafe { core::mem::zeroed() };

/// Reads one of the kernel offsets (a load-time constant).
#[inline(always)]
pub fn off(f: fn(&KernelOffsets) -> &u32) -> u64 {
    // SAFETY: OFFSETS is a plain static; volatile keeps the compiler from
    // folding the pre-load zero value.
    unsafe { read_volatile(f(&*addr_of!(OFFSETS))) as u64 }
}

/// Whether the current task is in a watched subtree (and is not the daemon).
#[inline(always)]
pub fn watched() -> bool {
    let count = unsafe { read_volatile(addr_of!(WATCHED_COUNT)) };
    let mut i = 0;
    let mut hit = false;
    while i < MAX_WATCHED {
        if i >= count {
            break;
        }
        let w = unsafe { read_volatile(addr_of!(WATCHED[i as usize])) };
        // SAFETY: plain helper call.
        if unsafe { bpf_get_current_ancestor_cgroup_id(w.level as i32) } == w.id {
            hit = true;
            break;
        }
        i += 1;
    }
    if !hit {
        return false;
    }
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    pid != unsafe { read_volatile(addr_of!(SELF_PID)) }
}

/// Reads a kernel value of type T at `base + offset`; zero on failure.
#[inline(always)]
pub fn kread<T: Copy>(base: u64, offset: u64) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_kernel checks the address.
    unsafe { bpf_probe_read_kernel((base + offset) as *const T) }
}

/// Reads a kernel pointer at `base + offset`.
#[inline(always)]
pub fn kptr(base: u64, offset: u64) -> Result<u64, i32> {
    kread::<u64>(base, offset)
}

/// Argument `offset` of a tracepoint record (`/sys/kernel/tracing/events/*/*/format`),
/// read with a direct context load, which the verifier allows for
/// tracepoints, instead of a `bpf_probe_read_kernel` helper call (~40 ns
/// here) per argument.
#[inline(always)]
pub fn tp_arg(ctx: &TracePointContext, offset: usize) -> u64 {
    // SAFETY: the callers' offsets come from the tracepoint formats noted
    // next to each hook: 8-byte aligned and inside the record.
    unsafe { read_volatile((ctx.as_ptr() as *const u8).add(offset) as *const u64) }
}

/// The current task_struct.
#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: plain helper call.
    unsafe { bpf_get_current_task() }
}

/// Fills the common header for the current task.
#[inline(always)]
pub fn fill_header(hdr: &mut Header, kind: EventKind) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    hdr.kind = kind as u32;
    hdr.flags = 0;
    // SAFETY: plain helper calls.
    hdr.boot_ns = unsafe { bpf_ktime_get_boot_ns() };
    hdr.pid = (pid_tgid >> 32) as u32;
    hdr.tid = pid_tgid as u32;
    hdr.uid = uid_gid as u32;
    hdr.gid = (uid_gid >> 32) as u32;
    hdr._pad = 0;
    hdr.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    hdr.comm = bpf_get_current_comm().unwrap_or([0u8; COMM_LEN]);
    hdr.ppid = parent_tgid(current_task());
}

/// `task->real_parent->tgid`, 0 when unreadable.
#[inline(always)]
pub fn parent_tgid(task: u64) -> u32 {
    match kptr(task, off(|o| &o.task_real_parent)) {
        Ok(parent) if parent != 0 => kread::<u32>(parent, off(|o| &o.task_tgid)).unwrap_or(0),
        _ => 0,
    }
}

/// The scratch area of this CPU.
#[inline(always)]
pub fn scratch() -> Option<*mut Scratch> {
    SCRATCH.get_ptr_mut(0)
}

/// Copies `len` bytes starting at `data` to the ring buffer. On failure (ring
/// buffer full) counts one lost record of `kind`.
///
/// Records do not wake user space unless much is pending: a wake-up is an
/// irq_work self-IPI, which in a VM costs a VM exit (2.5-10 us per record
/// measured here, more than the rest of the hook). The daemon drains on a
/// 5 ms timer, which bounds the delay.
#[inline(always)]
pub fn output(data: *const u8, len: usize, kind: EventKind) {
    let pending = EVENTS.query(aya_ebpf::bindings::BPF_RB_AVAIL_DATA as u64);
    // SAFETY: WAKEUP_BYTES is a plain static.
    let flags = if pending >= unsafe { read_volatile(addr_of!(WAKEUP_BYTES)) } {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    };
    // SAFETY: data points to `len` readable bytes of the scratch map value;
    // the callers clamp len below the scratch size.
    let ret = unsafe {
        bpf_ringbuf_output(
            addr_of!(EVENTS) as *mut c_void,
            data as *mut c_void,
            len as u64,
            flags,
        )
    };
    if ret != 0 {
        if let Some(c) = LOST.get_ptr_mut(kind as u32) {
            // SAFETY: per-CPU slot, no concurrent writer on this CPU.
            unsafe { *c += 1 };
        }
    }
}
