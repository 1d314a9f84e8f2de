//! Process lifecycle: fork (new processes, not threads) and exit, so user
//! space can keep a process tree.
//!
//! - `raw_tracepoint/sched_process_fork`: args (parent, child) as
//!   `struct task_struct *`; current is the parent. A raw tracepoint gives the
//!   child task itself, whose `pid != tgid` tells a new thread from a new process.
//! - `tracepoint/sched/sched_process_exit`: comm@8, pid@24, prio@28,
//!   group_dead@32 (bool: the last thread of the process is exiting).

use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use monitor_common::{EventKind, ExitRecord, ForkRecord};

use crate::common::{current_task, fill_header, kread, off, output, scratch, watched};

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    if watched() {
        let _ = try_fork(&ctx);
    }
    0
}

#[inline(always)]
fn try_fork(ctx: &RawTracePointContext) -> Result<(), i32> {
    let child: u64 = ctx.arg(1);
    let pid = kread::<u32>(child, off(|o| &o.task_pid))?;
    let tgid = kread::<u32>(child, off(|o| &o.task_tgid))?;
    if pid != tgid {
        return Ok(()); // a new thread
    }
    let sc = scratch().ok_or(-12)?;
    // SAFETY: the record is far smaller than the scratch area.
    unsafe {
        let rec = &mut *((*sc).ev.as_mut_ptr() as *mut ForkRecord);
        fill_header(&mut rec.hdr, EventKind::Fork);
        rec.child_pid = tgid;
        rec._pad = 0;
        output(
            (*sc).ev.as_ptr(),
            core::mem::size_of::<ForkRecord>(),
            EventKind::Fork,
        );
    }
    Ok(())
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    if watched() {
        let _ = try_exit(&ctx);
    }
    0
}

#[inline(always)]
fn try_exit(ctx: &TracePointContext) -> Result<(), i32> {
    // SAFETY: offset from the tracepoint format above.
    let group_dead = unsafe { ctx.read_at::<u8>(32) }?;
    if group_dead == 0 {
        return Ok(()); // other threads of the process live on
    }
    let exit_code = kread::<u32>(current_task(), off(|o| &o.task_exit_code)).unwrap_or(0);
    let sc = scratch().ok_or(-12)?;
    // SAFETY: the record is far smaller than the scratch area.
    unsafe {
        let rec = &mut *((*sc).ev.as_mut_ptr() as *mut ExitRecord);
        fill_header(&mut rec.hdr, EventKind::Exit);
        rec.exit_code = exit_code;
        rec._pad = 0;
        output(
            (*sc).ev.as_ptr(),
            core::mem::size_of::<ExitRecord>(),
            EventKind::Exit,
        );
    }
    Ok(())
}
