//! File opens: `openat`, `openat2`, `open`, `creat`.
//!
//! Entry saves the arguments (only for watched tasks); exit, where the fd is
//! known and the user's path page is certainly resident, reads the path as
//! passed and resolves the file actually opened through fd -> file -> path.
//!
//! Tracepoint formats (`/sys/kernel/tracing/events/syscalls/*/format`), each
//! argument an 8-byte slot from offset 16:
//! - `sys_enter_openat`:  dfd@16, filename@24, flags@32, mode@40
//! - `sys_enter_openat2`: dfd@16, filename@24, how@32 (`struct open_how *`: flags u64, mode u64)
//! - `sys_enter_open`:    filename@16, flags@24, mode@32
//! - `sys_enter_creat`:   pathname@16, mode@24
//! - `sys_exit_*`:        ret@16 (long)

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, generated::bpf_probe_read_kernel},
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{EventKind, OpenRecord, OpenSyscall, PATH_MAX, REQ_PATH_MAX, REQ_TRUNCATED};

use crate::common::{
    current_task, fill_header, output, scratch, take_inflight, tp_arg, watched, Inflight, INFLIGHT,
    PATH_END,
};
use crate::path::{fd_file, resolve_file};

const AT_FDCWD: i32 = -100;
const O_CREAT: u64 = 0o100;
const O_WRONLY_TRUNC: u64 = 0o1 | 0o1000;

/// Saves the arguments for the exit hook. Callers check `watched()` FIRST:
/// every open on the machine runs the entry hook, and reading arguments
/// before the cheap cgroup check cost ~150 ns per open outside.
#[inline(always)]
fn save(what: OpenSyscall, dfd: i32, ptr: u64, flags: u64, mode: u64) {
    let rec = Inflight {
        what: what as u32,
        fd: dfd,
        ptr,
        flags,
        mode,
    };
    let _ = INFLIGHT.insert(bpf_get_current_pid_tgid(), rec, 0);
}

#[tracepoint]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    if !watched() {
        return 0;
    }
    save(
        OpenSyscall::Openat,
        tp_arg(&ctx, 16) as i32,
        tp_arg(&ctx, 24),
        tp_arg(&ctx, 32),
        tp_arg(&ctx, 40),
    );
    0
}

#[tracepoint]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    if !watched() {
        return 0;
    }
    let how = tp_arg(&ctx, 32);
    // SAFETY: bpf_probe_read_user checks the address.
    let flags = unsafe { bpf_probe_read_user(how as *const u64) }.unwrap_or(0);
    let mode = unsafe { bpf_probe_read_user((how + 8) as *const u64) }.unwrap_or(0);
    save(
        OpenSyscall::Openat2,
        tp_arg(&ctx, 16) as i32,
        tp_arg(&ctx, 24),
        flags,
        mode,
    );
    0
}

#[tracepoint]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    if !watched() {
        return 0;
    }
    save(
        OpenSyscall::Open,
        AT_FDCWD,
        tp_arg(&ctx, 16),
        tp_arg(&ctx, 24),
        tp_arg(&ctx, 32),
    );
    0
}

#[tracepoint]
pub fn sys_enter_creat(ctx: TracePointContext) -> u32 {
    if !watched() {
        return 0;
    }
    // creat(path, mode) is open(path, O_CREAT|O_WRONLY|O_TRUNC, mode).
    save(
        OpenSyscall::Creat,
        AT_FDCWD,
        tp_arg(&ctx, 16),
        O_CREAT | O_WRONLY_TRUNC,
        tp_arg(&ctx, 24),
    );
    0
}

#[tracepoint]
pub fn sys_exit_openat(ctx: TracePointContext) -> u32 {
    on_exit(&ctx)
}

#[tracepoint]
pub fn sys_exit_openat2(ctx: TracePointContext) -> u32 {
    on_exit(&ctx)
}

#[tracepoint]
pub fn sys_exit_open(ctx: TracePointContext) -> u32 {
    on_exit(&ctx)
}

#[tracepoint]
pub fn sys_exit_creat(ctx: TracePointContext) -> u32 {
    on_exit(&ctx)
}

#[inline(always)]
fn on_exit(ctx: &TracePointContext) -> u32 {
    let Some(saved) = take_inflight() else {
        return 0;
    };
    if saved.what > OpenSyscall::Creat as u32 {
        return 0;
    }
    let _ = try_exit(ctx, &saved);
    0
}

#[inline(always)]
fn try_exit(ctx: &TracePointContext, saved: &Inflight) -> Result<(), i32> {
    let ret = tp_arg(ctx, 16) as i64;
    let sc = scratch().ok_or(-12)?;
    const FIXED: usize = core::mem::size_of::<OpenRecord>();
    // SAFETY: sc is this CPU's scratch value; every offset below is clamped
    // within EV_BUF (16 KiB): FIXED + 511 + 4095 < 16384.
    unsafe {
        let rec = &mut *((*sc).ev.as_mut_ptr() as *mut OpenRecord);
        fill_header(&mut rec.hdr, EventKind::Open);
        rec.ret = ret;
        rec.flags = saved.flags as u32;
        rec.mode = saved.mode as u32;
        rec.dfd = saved.fd;
        rec.syscall = saved.what;
        rec.dev = 0;
        rec.ino = 0;

        // The path as passed (user memory is resident: the kernel just read it).
        let req_dst = (*sc).ev.as_mut_ptr().add(FIXED);
        let n = aya_ebpf::helpers::generated::bpf_probe_read_user_str(
            req_dst as *mut c_void,
            REQ_PATH_MAX as u32,
            saved.ptr as *const c_void,
        );
        let mut req_len = if n > 0 { (n - 1) as u64 } else { 0 };
        if req_len >= REQ_PATH_MAX as u64 - 1 {
            rec.hdr.flags |= REQ_TRUNCATED;
        }
        req_len &= (REQ_PATH_MAX as u64) - 1;
        rec.req_len = req_len as u32;

        let mut path_len = 0u64;
        if ret >= 0 {
            let task = current_task();
            let r = match fd_file(task, ret as u64) {
                Ok(file) => resolve_file(task, file),
                Err(_) => return emit_unresolved(sc, rec, req_len),
            };
            rec.hdr.flags |= r.flags;
            rec.dev = r.dev;
            rec.ino = r.ino;
            path_len = r.len() & (PATH_MAX as u64 - 1);
            let dst = (*sc).ev.as_mut_ptr().add(FIXED + (req_len as usize & 511));
            let src = (*sc).path.as_ptr().add((r.pos as usize) & (PATH_END - 1));
            if bpf_probe_read_kernel(dst as *mut c_void, path_len as u32, src as *const c_void) != 0
            {
                path_len = 0;
            }
        } else {
            rec.hdr.flags |= monitor_common::PATH_UNRESOLVED;
        }
        rec.path_len = path_len as u32;
        let total = FIXED as u64 + req_len + path_len;
        output((*sc).ev.as_ptr(), (total & 8191) as usize, EventKind::Open);
    }
    Ok(())
}

#[inline(always)]
unsafe fn emit_unresolved(
    sc: *mut crate::common::Scratch,
    rec: &mut OpenRecord,
    req_len: u64,
) -> Result<(), i32> {
    rec.hdr.flags |= monitor_common::PATH_UNRESOLVED;
    rec.path_len = 0;
    let total = core::mem::size_of::<OpenRecord>() as u64 + req_len;
    // SAFETY: total <= FIXED + 255, inside the scratch record area.
    unsafe { output((*sc).ev.as_ptr(), (total & 1023) as usize, EventKind::Open) };
    Ok(())
}
