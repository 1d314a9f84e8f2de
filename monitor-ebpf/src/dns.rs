//! DNS answers received by the watched cgroups, so user space can tie a
//! connect to an address back to the name the process resolved.
//!
//! A `cgroup_skb/ingress` program, attached to each watched cgroup (it covers
//! the cgroup's descendants too), sees every packet delivered to their
//! sockets. It copies the payload of UDP packets from source port 53 and lets
//! every packet through: it observes, never filters. The skb data starts at
//! the IP header. There is no current task in this context (softirq), so the
//! record carries only the socket's cgroup, and it has its own scratch area:
//! a softirq may interrupt a syscall hook that is using the shared one.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::{bpf_ktime_get_boot_ns, bpf_skb_cgroup_id, bpf_skb_load_bytes},
    macros::{cgroup_skb, map},
    maps::PerCpuArray,
    programs::SkBuffContext,
};
use monitor_common::{DnsRecord, EventKind, DNS_MAX};

use crate::common::output;

const FIXED: usize = core::mem::size_of::<DnsRecord>();
const IPPROTO_UDP: u8 = 17;

#[repr(C)]
pub struct DnsScratch {
    buf: [u8; FIXED + 1024],
}

#[map]
static DNS_SCRATCH: PerCpuArray<DnsScratch> = PerCpuArray::with_max_entries(1, 0);

#[cgroup_skb(ingress)]
pub fn dns_ingress(ctx: SkBuffContext) -> i32 {
    let _ = try_dns(&ctx);
    1 // always let the packet through
}

#[inline(always)]
fn try_dns(ctx: &SkBuffContext) -> Result<(), i64> {
    let first: u8 = ctx.load(0)?;
    let (udp_off, family) = match first >> 4 {
        4 => {
            let proto: u8 = ctx.load(9)?;
            if proto != IPPROTO_UDP {
                return Ok(());
            }
            (((first & 0x0f) as usize) * 4, 2u32)
        }
        6 => {
            let next: u8 = ctx.load(6)?;
            if next != IPPROTO_UDP {
                return Ok(()); // extension headers before UDP are not followed
            }
            (40usize, 10u32)
        }
        _ => return Ok(()),
    };
    let sport: u16 = ctx.load(udp_off & 63)?;
    if u16::from_be(sport) != 53 {
        return Ok(());
    }
    let payload_off = (udp_off & 63) + 8;
    let total = ctx.len() as usize;
    if total <= payload_off {
        return Ok(());
    }
    let mut len = total - payload_off;
    if len > DNS_MAX {
        len = DNS_MAX;
    }
    let sc = DNS_SCRATCH.get_ptr_mut(0).ok_or(-12i64)?;
    // SAFETY: FIXED + 1023 is inside the scratch value.
    unsafe {
        let rec = &mut *((*sc).buf.as_mut_ptr() as *mut DnsRecord);
        rec.hdr = Default::default();
        rec.hdr.kind = EventKind::Dns as u32;
        rec.hdr.boot_ns = bpf_ktime_get_boot_ns();
        rec.hdr.cgroup_id = bpf_skb_cgroup_id(ctx.skb.skb);
        rec.family = family;
        // len is 1..=512 here; written so the verifier sees a non-zero size.
        let len = ((((len as u32).wrapping_sub(1)) & 511) + 1) as u32;
        let dst = (*sc).buf.as_mut_ptr().add(FIXED);
        if bpf_skb_load_bytes(
            ctx.skb.skb as *const c_void,
            payload_off as u32,
            dst as *mut c_void,
            len,
        ) != 0
        {
            return Ok(());
        }
        rec.len = len;
        output((*sc).buf.as_ptr(), FIXED + len as usize, EventKind::Dns);
    }
    Ok(())
}
