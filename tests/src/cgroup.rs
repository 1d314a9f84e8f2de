//! Real cgroup v2 subtrees for the tests, and commands run inside them.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

use crate::util::{owner_pid, pid_alive, poll, unique};

/// Top-level test cgroups are named `agentwatch_test_<pid>_<n>.slice`: no
/// dash inside, so the systemd unit name maps to a directory at the root.
const PREFIX: &str = "agentwatch_test_";

/// The cgroup2 mount point, from /proc/self/mountinfo (never a fixed path:
/// it is /sys/fs/cgroup/unified on the project's hybrid machines).
pub fn cgroup2_mount() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() == Some("cgroup2") {
            if let Some(point) = left.split_whitespace().nth(4) {
                return PathBuf::from(unescape_mountinfo(point));
            }
        }
    }
    panic!("no cgroup2 mount in /proc/self/mountinfo:\n{info}");
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A cgroup directory. The top-level one (from [`Cgroup::new`]) removes its
/// whole subtree on drop, killing whatever still runs in it; children (from
/// [`Cgroup::child`]) are removed with it, or earlier when dropped first.
pub struct Cgroup {
    path: PathBuf,
    mount: PathBuf,
}

impl Cgroup {
    /// Create a new, uniquely named cgroup at the cgroup2 root.
    #[expect(
        clippy::new_without_default,
        reason = "creating kernel objects is not a default value"
    )]
    pub fn new() -> Cgroup {
        static CLEAN: Once = Once::new();
        let mount = cgroup2_mount();
        CLEAN.call_once(|| remove_leftovers(&mount));
        let path = mount.join(format!("{PREFIX}{}.slice", unique()));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Cgroup { path, mount }
    }

    /// Create a child cgroup `name` (e.g. `x.scope`) inside this one.
    pub fn child(&self, name: &str) -> Cgroup {
        let path = self.path.join(name);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Cgroup {
            path,
            mount: self.mount.clone(),
        }
    }

    /// Absolute path of the directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path relative to the cgroup2 root, with a leading `/`, as in
    /// /proc/PID/cgroup (`/agentwatch_test_1_0.slice/x.scope`).
    pub fn rel(&self) -> String {
        format!(
            "/{}",
            self.path
                .strip_prefix(&self.mount)
                .expect("cgroup under its mount")
                .display()
        )
    }

    /// The directory's name (`agentwatch_test_1_0.slice`): the systemd unit
    /// name of a top-level test cgroup.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The cgroup id: the directory's inode number, which is what
    /// bpf_get_current_cgroup_id() returns.
    pub fn id(&self) -> u64 {
        std::fs::metadata(&self.path)
            .unwrap_or_else(|e| panic!("stat {}: {e}", self.path.display()))
            .ino()
    }

    /// A command that runs `argv` inside this cgroup.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> Command {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        self.enter(&mut cmd);
        cmd
    }

    /// Make `cmd` move itself into this cgroup between fork and exec (so
    /// the exec and everything after it happen inside).
    pub fn enter<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        let procs = CString::new(self.path.join("cgroup.procs").as_os_str().as_bytes())
            .expect("cgroup path without NUL");
        // SAFETY: the closure only calls async-signal-safe functions (open,
        // write, close) on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" moves the writing process itself.
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(err);
                }
                Ok(())
            })
        };
        cmd
    }

    /// Pids directly in this cgroup.
    pub fn procs(&self) -> Vec<u32> {
        read_procs(&self.path)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.path) {
            // Never panic in drop (a panicking test would abort); say it.
            eprintln!("warning: cannot remove cgroup {}: {e}", self.path.display());
        }
    }
}

fn read_procs(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Kill everything in the subtree and remove it, children first.
pub fn remove_tree(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    // cgroup.kill (5.14+) kills the whole subtree at once; else by pid.
    if std::fs::write(dir.join("cgroup.kill"), "1").is_err() {
        kill_by_pid(dir);
    }
    remove_dirs(dir)
}

fn kill_by_pid(dir: &Path) {
    for pid in read_procs(dir) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                kill_by_pid(&e.path());
            }
        }
    }
}

fn remove_dirs(dir: &Path) -> std::io::Result<()> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dirs(&e.path())?;
            }
        }
    }
    // Killed tasks leave the cgroup asynchronously: retry EBUSY briefly.
    let mut last = None;
    let gone = poll(Duration::from_secs(5), || match std::fs::remove_dir(dir) {
        Ok(()) => Some(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(()),
        Err(e) => {
            kill_by_pid(dir);
            last = Some(e);
            None
        }
    });
    match (gone, last) {
        (Some(()), _) => Ok(()),
        (None, Some(e)) => Err(e),
        (None, None) => Ok(()),
    }
}

/// Remove test cgroups left by test processes that no longer run.
fn remove_leftovers(mount: &Path) {
    let Ok(rd) = std::fs::read_dir(mount) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = owner_pid(&name, PREFIX) {
            if !pid_alive(pid) {
                let _ = remove_tree(&e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape_mountinfo("/sys/fs/cgroup"), "/sys/fs/cgroup");
    }

    #[test]
    fn leftover_names_carry_their_owner() {
        assert_eq!(
            owner_pid("agentwatch_test_1234_7.slice", PREFIX),
            Some(1234)
        );
        assert_eq!(owner_pid("agent.slice", PREFIX), None);
    }
}
