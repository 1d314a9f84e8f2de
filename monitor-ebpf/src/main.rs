//! agentwatch's kernel programs.
//!
//! They copy facts only (ids, cgroup, comm, paths, argv, addresses) about the
//! processes of the watched cgroup subtrees into one ring buffer; all judgement
//! happens in user space. The cgroup check comes first in every hook, so a
//! process outside the watched subtrees pays one helper call and leaves.
//!
//! Only tracepoints, raw tracepoints and cgroup hooks are used: kprobes,
//! fentry and LSM programs do not load on every machine agentwatch runs on.
#![no_std]
#![no_main]

mod common;
mod connect;
mod dns;
mod exec;
mod open;
mod path;
mod sched;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects programs that can reach a panic; this is never called.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
