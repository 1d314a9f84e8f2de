//! Host plumbing for the benchmark: the cgroups it creates, starting a
//! workload inside one under a given uid, sysctls, process CPU and memory
//! figures from /proc, and the kernel's per-program BPF run-time counters.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The cgroup2 mount point, from /proc/self/mountinfo (the entry whose type
/// is cgroup2; /sys/fs/cgroup/unified on a hybrid host, /sys/fs/cgroup on a
/// unified one).
pub fn cgroup2_mount() -> Result<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo")?;
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() == Some("cgroup2") {
            if let Some(dir) = left.split_whitespace().nth(4) {
                return Ok(PathBuf::from(dir));
            }
        }
    }
    bail!("no cgroup2 filesystem in /proc/self/mountinfo; mount one (mount -t cgroup2 none /sys/fs/cgroup/unified)")
}

/// The benchmark's own cgroups: `<root>/agentwatch-bench-<pid>/{watched,outside}`.
/// Removed on drop (processes left in them are killed first).
pub struct Cgroups {
    pub base: PathBuf,
    /// The cgroup the monitors watch.
    pub watched: PathBuf,
    /// A sibling nobody watches: "every other process on the machine".
    pub outside: PathBuf,
}

impl Cgroups {
    pub fn create() -> Result<Self> {
        let root = cgroup2_mount()?;
        let base = root.join(format!("agentwatch-bench-{}", std::process::id()));
        let watched = base.join("watched");
        let outside = base.join("outside");
        for dir in [&base, &watched, &outside] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create cgroup {}", dir.display()))?;
        }
        Ok(Self {
            base,
            watched,
            outside,
        })
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in [&self.watched, &self.outside, &self.base] {
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::remove_dir(dir).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Where and as whom a workload runs.
#[derive(Clone, Debug)]
pub struct Placement {
    pub cgroup: PathBuf,
    /// uid and gid (equal), or None to stay root.
    pub uid: Option<u32>,
    /// Run under SCHED_FIFO at this priority: the loop then never waits for
    /// a CPU behind other users' work (compiles on a shared machine), so its
    /// time is its own system calls plus what the monitor adds to them.
    pub fifo: Option<i32>,
}

/// Makes `cmd` start inside `place.cgroup` and drop to `place.uid`: the child
/// writes itself into cgroup.procs (through an fd opened here, as root), then
/// drops its groups, gid and uid, before exec.
pub fn place(cmd: &mut Command, place: &Placement) -> Result<()> {
    let procs = place.cgroup.join("cgroup.procs");
    let file = OpenOptions::new()
        .write(true)
        .open(&procs)
        .with_context(|| format!("cannot open {}", procs.display()))?;
    let uid = place.uid;
    let fifo = place.fifo;
    // SAFETY: the closure only makes async-signal-safe system calls (write,
    // sched_setscheduler, setgroups, setresgid, setresuid) on values
    // prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fd = file.as_raw_fd();
            let zero = b"0";
            if libc::write(fd, zero.as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(prio) = fifo {
                let param = libc::sched_param {
                    sched_priority: prio,
                };
                if libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(id) = uid {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setresgid(id, id, id) != 0
                    || libc::setresuid(id, id, id) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(())
}

/// Reads a sysctl under /proc/sys (`kernel/bpf_stats_enabled`).
pub fn sysctl(name: &str) -> Option<String> {
    std::fs::read_to_string(Path::new("/proc/sys").join(name))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Sets a sysctl; returns the previous value, restored by the guard's drop.
pub struct SysctlGuard {
    name: String,
    old: Option<String>,
}

impl SysctlGuard {
    pub fn set(name: &str, value: &str) -> Result<Self> {
        let old = sysctl(name);
        if old.as_deref() != Some(value) {
            std::fs::write(Path::new("/proc/sys").join(name), value)
                .with_context(|| format!("cannot set sysctl {name}={value}"))?;
        }
        Ok(Self {
            name: name.to_string(),
            old,
        })
    }
}

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        if let Some(old) = &self.old {
            if sysctl(&self.name).as_deref() != Some(old.as_str()) {
                let _ = std::fs::write(Path::new("/proc/sys").join(&self.name), old);
            }
        }
    }
}

/// Clock ticks per second for /proc/PID/stat times.
fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU seconds (user + system, all threads) a live process has used.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may hold spaces: state is field 3,
    // utime 14 and stime 15 (1-based), so 11 and 12 after the state.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_sec())
}

/// Machine-wide CPU seconds spent busy (everything but idle and iowait),
/// summed over CPUs, from /proc/stat.
pub fn busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: f64 = f
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    busy / ticks_per_sec()
}

/// Waits until the processes `pids` stop using CPU (less than two clock
/// ticks per 100 ms), at most `max`: so a monitor's backlog from one loop is
/// not charged to the next. Returns how long it waited.
pub fn wait_idle(pids: &[u32], max: Duration) -> Duration {
    let start = Instant::now();
    let total = || -> f64 { pids.iter().filter_map(|p| cpu_secs(*p)).sum() };
    let tick = 1.0 / ticks_per_sec();
    let mut last = total();
    while start.elapsed() < max {
        std::thread::sleep(Duration::from_millis(100));
        let now = total();
        if now - last < 1.5 * tick {
            break;
        }
        last = now;
    }
    start.elapsed()
}

/// The pid of the kernel thread named `comm` (e.g. kauditd), if any.
pub fn kthread(comm: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let c = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (c.trim() == comm).then_some(pid)
    })
}

/// A `VmXxx:` figure of /proc/PID/status, in KiB.
pub fn vm_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Run-time counters of one BPF program, from /proc/PID/fdinfo.
#[derive(Clone, Debug, Default)]
pub struct ProgStats {
    pub id: u32,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// The counters of every BPF program `pid` holds open, by program id.
pub fn prog_stats(pid: u32) -> Vec<ProgStats> {
    let mut out: Vec<ProgStats> = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |name: &str| -> Option<u64> {
            text.lines().find_map(|l| {
                let v = l.strip_prefix(name)?.strip_prefix(':')?;
                v.trim().parse().ok()
            })
        };
        let (Some(id), Some(t), Some(c)) =
            (field("prog_id"), field("run_time_ns"), field("run_cnt"))
        else {
            continue;
        };
        if !out.iter().any(|p| p.id as u64 == id) {
            out.push(ProgStats {
                id: id as u32,
                run_time_ns: t,
                run_cnt: c,
            });
        }
    }
    out.sort_by_key(|p| p.id);
    out
}

/// Program names by id (`bpftool prog show -j`); empty without bpftool.
pub fn prog_names() -> Vec<(u32, String)> {
    let Ok(out) = Command::new("bpftool")
        .args(["prog", "show", "-j"])
        .stderr(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return Vec::new();
    };
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    Some((
                        p.get("id")?.as_u64()? as u32,
                        p.get("name")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Turns on the kernel's per-program run-time statistics for as long as the
/// returned fd is open (`BPF_ENABLE_STATS`), without touching the sysctl.
pub struct BpfStats(libc::c_int);

impl BpfStats {
    pub fn enable() -> Result<Self> {
        const BPF_ENABLE_STATS: libc::c_long = 32;
        // union bpf_attr { struct { __u32 type; } enable_stats; }, padded.
        let attr = [0u32; 32]; // BPF_STATS_RUN_TIME = 0
                               // SAFETY: attr is a valid, zeroed bpf_attr of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_ENABLE_STATS,
                attr.as_ptr(),
                std::mem::size_of_val(&attr),
            )
        };
        if fd < 0 {
            bail!(
                "BPF_ENABLE_STATS failed: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(Self(fd as libc::c_int))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.0) };
    }
}

/// A child process whose stderr is collected line by line in a thread.
pub struct Spawned {
    pub child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Spawned {
    /// Starts `cmd` with stderr piped and collected.
    pub fn start(cmd: &mut Command) -> Result<Self> {
        cmd.stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start `{}`", crate::util::display(cmd)))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("lines lock").push(line);
            }
        });
        Ok(Self {
            child,
            lines,
            reader: Some(reader),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stderr lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }

    /// Waits until a stderr line satisfies `pred`; fails if the process
    /// exits first or `timeout` passes.
    pub fn wait_line(&mut self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.lines().iter().any(|l| pred(l)) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                std::thread::sleep(Duration::from_millis(50));
                bail!(
                    "exited ({status}) before it was ready: {}",
                    self.lines().join(" | ")
                );
            }
            if Instant::now() > deadline {
                bail!("not ready within {timeout:?}: {}", self.lines().join(" | "));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `sig`, waits for the exit (SIGKILL after `timeout`) and returns
    /// every stderr line.
    pub fn stop(mut self, sig: libc::c_int, timeout: Duration) -> Result<Vec<String>> {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        let deadline = Instant::now() + timeout;
        let mut killed = false;
        loop {
            if self.child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline && !killed {
                let _ = self.child.kill();
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let lines = self.lines();
        if killed {
            bail!(
                "did not stop within {timeout:?} and was killed: {}",
                lines.join(" | ")
            );
        }
        Ok(lines)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The first `n` bytes of a file (lossy UTF-8), empty when missing.
pub fn read_head(path: &Path, n: u64) -> String {
    let mut buf = Vec::new();
    if let Ok(f) = File::open(path) {
        let _ = f.take(n).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The last `n` bytes of a file (lossy UTF-8), empty when missing.
pub fn read_tail(path: &Path, n: u64) -> String {
    use std::io::{Seek, SeekFrom};
    let mut buf = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(n)));
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The Debian packages of `wanted` that are not installed (dpkg-query), or
/// None without dpkg.
pub fn missing_packages(wanted: &[&str]) -> Option<Vec<String>> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package}\t${db:Status-Abbrev}\n"])
        .args(wanted)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let listed = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, st)| st.starts_with("ii"))
        .map(|(n, _)| n.split(':').next().unwrap_or(n))
        .collect();
    Some(
        wanted
            .iter()
            .filter(|p| !installed.contains(p))
            .map(|p| p.to_string())
            .collect(),
    )
}
