//! Program execution: `execve`, `execveat`.
//!
//! argv lives in the old image, so it is read at entry into an
//! `ExecArgsRecord`; the exit hook sends an `ExecRecord` with the result and,
//! on success, the resolved path of the new executable (`mm->exe_file`). User
//! space joins the two by thread.
//!
//! Tracepoint formats:
//! - `sys_enter_execve`:   filename@16, argv@24, envp@32
//! - `sys_enter_execveat`: fd@16, filename@24, argv@32, envp@40, flags@48
//! - `sys_exit_execve`, `sys_exit_execveat`: ret@16

use core::ffi::c_void;
use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::{
    helpers::{
        bpf_probe_read_user,
        generated::{bpf_loop, bpf_probe_read_kernel, bpf_probe_read_user_str},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{
    EventKind, ExecArgsRecord, ExecRecord, ARGC_MAX, ARGV_MAX, ARGV_TRUNCATED, PATH_MAX,
    REQ_PATH_MAX,
};

use crate::common::{
    current_task, fill_header, kptr, off, output, scratch, tp_arg, watched, PATH_END,
};
use crate::path::resolve_file;

const AT_FDCWD: i32 = -100;
/// Largest single argument copied; longer ones are cut and flagged.
const ARG_CHUNK: u32 = 4096;

#[tracepoint]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    if watched() {
        let _ = try_enter(AT_FDCWD, tp_arg(&ctx, 16), tp_arg(&ctx, 24));
    }
    0
}

#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    if watched() {
        let _ = try_enter(tp_arg(&ctx, 16) as i32, tp_arg(&ctx, 24), tp_arg(&ctx, 32));
    }
    0
}

#[inline(always)]
fn try_enter(dfd: i32, filename: u64, argv: u64) -> Result<(), i32> {
    let sc = scratch().ok_or(-12)?;
    const FIXED: usize = core::mem::size_of::<ExecArgsRecord>();
    // SAFETY: sc is this CPU's scratch value; offsets are clamped below.
    unsafe {
        let rec = &mut *((*sc).ev.as_mut_ptr() as *mut ExecArgsRecord);
        fill_header(&mut rec.hdr, EventKind::ExecArgs);
        rec.dfd = dfd;
        let n = bpf_probe_read_user_str(
            (*sc).ev.as_mut_ptr().add(FIXED) as *mut c_void,
            REQ_PATH_MAX as u32,
            filename as *const c_void,
        );
        let fname_len = if n > 0 {
            (n - 1) as u64 & (REQ_PATH_MAX as u64 - 1)
        } else {
            0
        };
        rec.filename_len = fname_len as u32;

        let base = FIXED as u64 + fname_len;
        // The copy state lives in the map, not on the stack (see Scratch).
        let st = addr_of_mut!((*sc).argv);
        write_volatile(addr_of_mut!((*st).argv), argv);
        write_volatile(addr_of_mut!((*st).off), base);
        write_volatile(addr_of_mut!((*st).argc), 0);
        write_volatile(addr_of_mut!((*st).flags), 0);
        bpf_loop(ARGC_MAX, argv_step as *mut c_void, core::ptr::null_mut(), 0);
        let end = read_volatile(addr_of!((*st).off));
        let rec = &mut *((*sc).ev.as_mut_ptr() as *mut ExecArgsRecord);
        rec.argc = read_volatile(addr_of!((*st).argc));
        rec.hdr.flags |= read_volatile(addr_of!((*st).flags));
        rec.argv_len = end.saturating_sub(base) as u32;
        output(
            (*sc).ev.as_ptr(),
            (end & 16383) as usize,
            EventKind::ExecArgs,
        );
    }
    Ok(())
}

/// Copies one argument, a `bpf_loop` callback; returns 1 to stop.
#[inline(never)]
extern "C" fn argv_step(index: u64, _ctx: *mut c_void) -> i64 {
    let Some(sc) = scratch() else { return 1 };
    // SAFETY: sc is this CPU's scratch value; volatile because the state is
    // shared with try_enter across the opaque bpf_loop call.
    unsafe {
        let st = addr_of_mut!((*sc).argv);
        let cur = read_volatile(addr_of!((*st).off));
        // Room check: each argument may take ARG_CHUNK of the 16 KiB area.
        if cur >= ARGV_MAX as u64 {
            let f = read_volatile(addr_of!((*st).flags));
            write_volatile(addr_of_mut!((*st).flags), f | ARGV_TRUNCATED);
            return 1;
        }
        let argv = read_volatile(addr_of!((*st).argv));
        let ptr = match bpf_probe_read_user((argv + index * 8) as *const u64) {
            Ok(p) => p,
            Err(_) => return 1,
        };
        if ptr == 0 {
            return 1;
        }
        let off = cur & (ARGV_MAX as u64 - 1);
        // off < 8192 and ARG_CHUNK = 4096 stay inside the 16 KiB record area.
        let n = bpf_probe_read_user_str(
            (*sc).ev.as_mut_ptr().add(off as usize) as *mut c_void,
            ARG_CHUNK,
            ptr as *const c_void,
        );
        if n <= 0 {
            return 1;
        }
        let mut flags = read_volatile(addr_of!((*st).flags));
        if n as u32 >= ARG_CHUNK || index + 1 >= ARGC_MAX as u64 {
            flags |= ARGV_TRUNCATED;
        }
        write_volatile(addr_of_mut!((*st).flags), flags);
        // n counts the NUL, which stays as the separator.
        write_volatile(addr_of_mut!((*st).off), off + (n as u64 & 8191));
        let argc = read_volatile(addr_of!((*st).argc));
        write_volatile(addr_of_mut!((*st).argc), argc + 1);
    }
    0
}

#[tracepoint]
pub fn sys_exit_execve(ctx: TracePointContext) -> u32 {
    if watched() {
        let _ = try_exit(tp_arg(&ctx, 16) as i64);
    }
    0
}

#[tracepoint]
pub fn sys_exit_execveat(ctx: TracePointContext) -> u32 {
    if watched() {
        let _ = try_exit(tp_arg(&ctx, 16) as i64);
    }
    0
}

#[inline(always)]
fn try_exit(ret: i64) -> Result<(), i32> {
    let sc = scratch().ok_or(-12)?;
    const FIXED: usize = core::mem::size_of::<ExecRecord>();
    // SAFETY: as in open.rs: FIXED + 4095 is inside the record area.
    unsafe {
        let rec = &mut *((*sc).ev.as_mut_ptr() as *mut ExecRecord);
        fill_header(&mut rec.hdr, EventKind::Exec);
        rec.ret = ret;
        rec.dev = 0;
        rec.ino = 0;
        rec._pad = 0;
        let mut exe_len = 0u64;
        if ret == 0 {
            let task = current_task();
            let mm = kptr(task, off(|o| &o.task_mm))?;
            let file = kptr(mm, off(|o| &o.mm_exe_file))?;
            if file != 0 {
                let r = resolve_file(task, file);
                rec.hdr.flags |= r.flags;
                rec.dev = r.dev;
                rec.ino = r.ino;
                exe_len = r.len() & (PATH_MAX as u64 - 1);
                let src = (*sc).path.as_ptr().add((r.pos as usize) & (PATH_END - 1));
                let dst = (*sc).ev.as_mut_ptr().add(FIXED);
                if bpf_probe_read_kernel(dst as *mut c_void, exe_len as u32, src as *const c_void)
                    != 0
                {
                    exe_len = 0;
                }
            }
        }
        let rec = &mut *((*sc).ev.as_mut_ptr() as *mut ExecRecord);
        rec.exe_len = exe_len as u32;
        output(
            (*sc).ev.as_ptr(),
            ((FIXED as u64 + exe_len) & 8191) as usize,
            EventKind::Exec,
        );
    }
    Ok(())
}
