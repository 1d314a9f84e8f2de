//! Loading and attaching the kernel programs, and handing out their maps.
//!
//! Everything that can be checked is checked before anything is attached, so
//! a bad start leaves nothing half-running: privileges, the cgroup2 targets,
//! BTF, tracefs. Each failure names what was missing and what to do.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, RawTracePoint, TracePoint};
use aya::{Ebpf, EbpfLoader};
use monitor_common::{self as wire, EventKind, KernelOffsets, WatchedCgroup, MAX_WATCHED};
use thiserror::Error;

use crate::cgroup::WatchTarget;

use super::btf::{self, Btf};

/// The kernel object built by build.rs from monitor-ebpf.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));

/// Tracepoints attached, as (category, name, program name).
const TRACEPOINTS: &[(&str, &str)] = &[
    ("syscalls", "sys_enter_openat"),
    ("syscalls", "sys_exit_openat"),
    ("syscalls", "sys_enter_openat2"),
    ("syscalls", "sys_exit_openat2"),
    ("syscalls", "sys_enter_open"),
    ("syscalls", "sys_exit_open"),
    ("syscalls", "sys_enter_creat"),
    ("syscalls", "sys_exit_creat"),
    ("syscalls", "sys_enter_execve"),
    ("syscalls", "sys_exit_execve"),
    ("syscalls", "sys_enter_execveat"),
    ("syscalls", "sys_exit_execveat"),
    ("syscalls", "sys_enter_connect"),
    ("syscalls", "sys_exit_connect"),
    ("sched", "sched_process_exit"),
];

/// Why the programs could not be loaded or attached.
#[derive(Debug, Error)]
pub enum ProbeError {
    /// Not root and missing the capabilities.
    #[error(
        "agentwatch needs root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN) to load eBPF programs; \
         run it with sudo"
    )]
    NotPrivileged,
    /// The binary was built with AYA_BUILD_SKIP=1.
    #[error(
        "this agentwatch binary was built without its eBPF programs (AYA_BUILD_SKIP=1); \
         rebuild with `cargo xtask build`"
    )]
    NoObject,
    /// More watched cgroups than the kernel side has slots for.
    #[error("too many --cgroup targets: {0}, at most {MAX_WATCHED}")]
    TooManyTargets(usize),
    /// BTF missing or unusable.
    #[error(transparent)]
    Btf(#[from] btf::BtfError),
    /// The tracing filesystem is not available.
    #[error(
        "tracefs is not mounted at /sys/kernel/tracing and mounting it failed ({0}); \
         mount it with `mount -t tracefs tracefs /sys/kernel/tracing`"
    )]
    NoTracefs(std::io::Error),
    /// A tracepoint is missing from this kernel.
    #[error(
        "tracepoint {category}/{name} is not available in this kernel \
         (/sys/kernel/tracing/events/{category}/{name} missing); agentwatch needs \
         CONFIG_FTRACE_SYSCALLS and the sched tracepoints"
    )]
    MissingTracepoint {
        /// Tracepoint category.
        category: &'static str,
        /// Tracepoint name.
        name: &'static str,
    },
    /// The object could not be loaded (the verifier's log is in the source).
    #[error("loading the eBPF object failed")]
    Load(#[source] aya::EbpfError),
    /// A program could not be loaded or attached.
    #[error("loading or attaching {program} failed")]
    Program {
        /// Program name.
        program: String,
        /// Cause.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A map is missing or of the wrong type.
    #[error("map {name}: {source}")]
    Map {
        /// Map name.
        name: &'static str,
        /// Cause.
        #[source]
        source: aya::maps::MapError,
    },
    /// The cgroup directory could not be opened for attaching.
    #[error("opening cgroup {path} to attach the DNS program failed")]
    CgroupOpen {
        /// The directory.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Options for loading.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Ring-buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Pending bytes above which batched records wake the daemon.
    pub wakeup_bytes: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            ring_bytes: 8 << 20,
            wakeup_bytes: 256 << 10,
        }
    }
}

/// The loaded, attached programs. Dropping it detaches everything.
pub struct Probes {
    ebpf: Ebpf,
}

/// Whether the process may load BPF programs: root, or CAP_BPF + CAP_PERFMON
/// + CAP_NET_ADMIN, or CAP_SYS_ADMIN, in the effective set.
pub fn privileged() -> bool {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| caps & (1u64 << bit) != 0;
    has(21) || (has(39) && has(38) && has(12))
}

/// Mounts tracefs at /sys/kernel/tracing if nothing is there yet.
fn ensure_tracefs() -> Result<(), ProbeError> {
    let events = Path::new("/sys/kernel/tracing/events");
    if events.exists() || Path::new("/sys/kernel/debug/tracing/events").exists() {
        return Ok(());
    }
    let target = c"/sys/kernel/tracing";
    let fstype = c"tracefs";
    // SAFETY: valid NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(ProbeError::NoTracefs(std::io::Error::last_os_error()));
    }
    Ok(())
}

fn tracefs_root() -> &'static str {
    if Path::new("/sys/kernel/tracing/events").exists() {
        "/sys/kernel/tracing"
    } else {
        "/sys/kernel/debug/tracing"
    }
}

/// Raises RLIMIT_MEMLOCK; failure is only a warning (on 5.11+ BPF memory is
/// charged to the cgroup and the limit does not apply).
fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        tracing::warn!(
            "could not raise RLIMIT_MEMLOCK ({}); continuing (kernels >= 5.11 do not need it)",
            std::io::Error::last_os_error()
        );
    }
}

impl Probes {
    /// Loads the programs, restricted to `targets`, and attaches them.
    pub fn load(targets: &[WatchTarget], opts: &LoadOptions) -> Result<Self, ProbeError> {
        if !privileged() {
            return Err(ProbeError::NotPrivileged);
        }
        if OBJECT.is_empty() {
            return Err(ProbeError::NoObject);
        }
        if targets.len() > MAX_WATCHED as usize {
            return Err(ProbeError::TooManyTargets(targets.len()));
        }
        let kbtf = Btf::from_sys()?;
        let offsets: KernelOffsets = btf::kernel_offsets(&kbtf)?;
        ensure_tracefs()?;
        for (category, name) in TRACEPOINTS {
            let p = format!("{}/events/{category}/{name}", tracefs_root());
            if !Path::new(&p).exists() {
                return Err(ProbeError::MissingTracepoint { category, name });
            }
        }
        raise_memlock();

        let mut watched = [WatchedCgroup::EMPTY; MAX_WATCHED as usize];
        for (slot, t) in watched.iter_mut().zip(targets) {
            *slot = t.to_wire();
        }
        let count = targets.len() as u32;
        // SAFETY: getpid has no preconditions.
        let self_pid = unsafe { libc::getpid() } as u32;
        let mut ebpf = EbpfLoader::new()
            .override_global(wire::globals::WATCHED, &watched, true)
            .override_global(wire::globals::WATCHED_COUNT, &count, true)
            .override_global(wire::globals::SELF_PID, &self_pid, true)
            .override_global(wire::globals::WAKEUP_BYTES, &opts.wakeup_bytes, true)
            .override_global(wire::globals::OFFSETS, &offsets, true)
            .map_max_entries(wire::maps::EVENTS, opts.ring_bytes)
            .load(OBJECT)
            .map_err(ProbeError::Load)?;

        for (category, name) in TRACEPOINTS {
            let prog: &mut TracePoint = program(&mut ebpf, name)?;
            prog.load().map_err(|e| prog_err(name, e))?;
            prog.attach(category, name).map_err(|e| prog_err(name, e))?;
        }
        let fork: &mut RawTracePoint = program(&mut ebpf, "sched_process_fork")?;
        fork.load().map_err(|e| prog_err("sched_process_fork", e))?;
        fork.attach("sched_process_fork")
            .map_err(|e| prog_err("sched_process_fork", e))?;

        let dns: &mut CgroupSkb = program(&mut ebpf, "dns_ingress")?;
        dns.load().map_err(|e| prog_err("dns_ingress", e))?;
        for t in targets {
            let dir = File::open(&t.abs_path).map_err(|source| ProbeError::CgroupOpen {
                path: t.abs_path.display().to_string(),
                source,
            })?;
            // Through a BPF link (kernel >= 5.7) the program coexists with
            // others on the cgroup whatever the mode; the link API rejects any
            // mode flag, so the default is passed.
            dns.attach(
                dir.as_fd(),
                CgroupSkbAttachType::Ingress,
                CgroupAttachMode::default(),
            )
            .map_err(|e| prog_err("dns_ingress", e))?;
        }
        Ok(Self { ebpf })
    }

    /// Takes the ring buffer (once).
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        let map = self
            .ebpf
            .take_map(wire::maps::EVENTS)
            .ok_or(ProbeError::Map {
                name: wire::maps::EVENTS,
                source: aya::maps::MapError::InvalidName {
                    name: wire::maps::EVENTS.into(),
                },
            })?;
        RingBuf::try_from(map).map_err(|source| ProbeError::Map {
            name: wire::maps::EVENTS,
            source,
        })
    }

    /// Takes the lost-event counters (once).
    pub fn take_lost(&mut self) -> Result<LostCounters, ProbeError> {
        let map = self
            .ebpf
            .take_map(wire::maps::LOST)
            .ok_or(ProbeError::Map {
                name: wire::maps::LOST,
                source: aya::maps::MapError::InvalidName {
                    name: wire::maps::LOST.into(),
                },
            })?;
        let arr = PerCpuArray::try_from(map).map_err(|source| ProbeError::Map {
            name: wire::maps::LOST,
            source,
        })?;
        Ok(LostCounters { arr })
    }
}

/// The kernel's per-kind lost-record counters.
pub struct LostCounters {
    arr: PerCpuArray<MapData, u64>,
}

impl LostCounters {
    /// Totals so far per kind (summed over CPUs), in `EventKind::ALL` order.
    pub fn totals(&self) -> Vec<(EventKind, u64)> {
        EventKind::ALL
            .iter()
            .map(|&k| {
                let n = self
                    .arr
                    .get(&(k as u32), 0)
                    .map(|v| v.iter().sum())
                    .unwrap_or(0);
                (k, n)
            })
            .collect()
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, ProbeError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf.program_mut(name).ok_or_else(|| ProbeError::Program {
        program: name.to_string(),
        source: aya::programs::ProgramError::UnexpectedProgramType,
    })?;
    prog.try_into().map_err(|e| prog_err(name, e))
}

fn prog_err(name: &str, source: aya::programs::ProgramError) -> ProbeError {
    ProbeError::Program {
        program: name.to_string(),
        source,
    }
}
