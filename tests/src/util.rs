//! Helpers every fixture uses: unique names, the root check, polling.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name part unique in this machine at this moment: `<pid>_<n>`.
pub fn unique() -> String {
    format!(
        "{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether we run with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `true` when root. Otherwise prints why the current test is skipped and
/// returns `false`; under CI (`CI=true`) panics instead, since CI runs as
/// root and a skipped end-to-end test there would hide a broken set-up.
pub fn root_or_skip() -> bool {
    if is_root() {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test} needs root, and CI=true: CI must run the end-to-end tests as root");
    }
    // Straight to fd 2: libtest captures print!/eprint!, which would hide it.
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIP {test}: needs root (loads eBPF programs, creates cgroups); run `sudo -E cargo xtask test`"
    );
    false
}

/// Whether a process with this pid exists.
pub fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// The pid embedded in a fixture name `<prefix><pid>_<n>...`, if any.
pub fn owner_pid(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?
        .split(['_', 'x', '.'])
        .next()?
        .parse()
        .ok()
}

/// Poll `f` every 10 ms until it returns `Some`, or `None` after `timeout`.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A fresh directory under the system temp dir (canonical, so paths the
/// kernel resolves compare equal), removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Create `<tmp>/agentwatch-test-<label>-<unique>`, world-traversable
    /// (mode 0755) so the agent user can reach files placed in it.
    pub fn new(label: &str) -> TempDir {
        let base = std::env::temp_dir()
            .canonicalize()
            .expect("canonicalize the temp dir");
        let path = base.join(format!("agentwatch-test-{label}-{}", unique()));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        set_mode(&path, 0o755);
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// chmod, panicking with the path on failure.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Spawn `cmd` (stdin from /dev/null), wait, return its pid and output.
pub fn run(cmd: &mut std::process::Command) -> (u32, std::process::Output) {
    use std::process::Stdio;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    (pid, out)
}

/// [`run`], panicking with the output when the command fails.
pub fn run_ok(cmd: &mut std::process::Command) -> (u32, std::process::Output) {
    let (pid, out) = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (pid, out)
}

/// Run a command to completion, panicking with its output if it fails.
pub fn sh(argv: &[&str]) -> String {
    let out = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{argv:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a command, ignoring how it ends (for best-effort clean-up).
pub fn sh_quiet(argv: &[&str]) {
    let _ = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Where Debian's python3 is: the agent user cannot reach a per-user
/// interpreter such as one under /root/.pyenv.
pub const PYTHON: &str = "/usr/bin/python3";
