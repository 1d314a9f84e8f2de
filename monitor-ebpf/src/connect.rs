//! Outbound connections: `connect(2)` for IPv4 and IPv6, any socket type.
//!
//! Entry saves fd and the sockaddr pointer; exit reads the address (the
//! result is known then, including `-EINPROGRESS` for a non-blocking connect)
//! and the socket's type and protocol from `file->private_data` (a `struct
//! socket`). Other families (AF_UNIX, AF_UNSPEC disconnects) are dropped here,
//! in the kernel, because nothing in user space wants them.
//!
//! Tracepoint formats:
//! - `sys_enter_connect`: fd@16, uservaddr@24, addrlen@32
//! - `sys_exit_connect`:  ret@16

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{ConnectRecord, EventKind};

use crate::common::{
    current_task, fill_header, kptr, kread, off, output, scratch, take_inflight, tp_arg, watched,
    Inflight, CONNECT, INFLIGHT,
};
use crate::path::fd_file;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    if !watched() {
        return 0;
    }
    let rec = Inflight {
        what: CONNECT,
        fd: tp_arg(&ctx, 16) as i32,
        ptr: tp_arg(&ctx, 24),
        flags: 0,
        mode: tp_arg(&ctx, 32),
    };
    let _ = INFLIGHT.insert(bpf_get_current_pid_tgid(), rec, 0);
    0
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    let Some(saved) = take_inflight() else {
        return 0;
    };
    if saved.what == CONNECT {
        let _ = try_exit(tp_arg(&ctx, 16) as i64, &saved);
    }
    0
}

#[inline(always)]
fn try_exit(ret: i64, saved: &Inflight) -> Result<(), i32> {
    // SAFETY: bpf_probe_read_user checks the address.
    let family = unsafe { bpf_probe_read_user(saved.ptr as *const u16) }?;
    if family != AF_INET && family != AF_INET6 {
        return Ok(());
    }
    let port_be = unsafe { bpf_probe_read_user((saved.ptr + 2) as *const u16) }?;
    let mut addr = [0u8; 16];
    if family == AF_INET {
        let a = unsafe { bpf_probe_read_user((saved.ptr + 4) as *const [u8; 4]) }?;
        addr[..4].copy_from_slice(&a);
    } else {
        addr = unsafe { bpf_probe_read_user((saved.ptr + 8) as *const [u8; 16]) }?;
    }

    let mut sock_type = 0u16;
    let mut protocol = 0u16;
    let task = current_task();
    if let Ok(file) = fd_file(task, saved.fd as u64) {
        if let Ok(sock) = kptr(file, off(|o| &o.file_private_data)) {
            sock_type = kread::<u16>(sock, off(|o| &o.socket_type)).unwrap_or(0);
            if let Ok(sk) = kptr(sock, off(|o| &o.socket_sk)) {
                protocol = kread::<u16>(sk, off(|o| &o.sock_protocol)).unwrap_or(0);
            }
        }
    }

    let sc = scratch().ok_or(-12)?;
    // SAFETY: the record is far smaller than the scratch area.
    unsafe {
        let rec = &mut *((*sc).ev.as_mut_ptr() as *mut ConnectRecord);
        fill_header(&mut rec.hdr, EventKind::Connect);
        rec.ret = ret;
        rec.family = family;
        rec.port = u16::from_be(port_be);
        rec.sock_type = sock_type;
        rec.protocol = protocol;
        rec.addr = addr;
        rec.fd = saved.fd;
        rec._pad = 0;
        output(
            (*sc).ev.as_ptr(),
            core::mem::size_of::<ConnectRecord>(),
            EventKind::Connect,
        );
    }
    Ok(())
}
