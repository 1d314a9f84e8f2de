//! The agentwatch daemon under test: started with NOTIFY_SOCKET pointing at
//! a socket this fixture binds, ready when it sends `READY=1`, its stdout
//! (one JSON object per line) collected in the background, stopped with
//! SIGTERM.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{set_mode, TempDir};

/// How long the daemon may take to load and attach its programs.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The agentwatch binary: `AGENTWATCH_BIN`, else the newest of
/// `target/{release,debug}/agentwatch` in the workspace (or
/// `CARGO_TARGET_DIR`).
pub fn agentwatch_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("AGENTWATCH_BIN") {
        return PathBuf::from(p);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    ["release", "debug"]
        .iter()
        .map(|p| target.join(p).join("agentwatch"))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| {
            panic!(
                "no agentwatch binary in {}/{{release,debug}}: build it (`cargo xtask build`) or set AGENTWATCH_BIN",
                target.display()
            )
        })
}

/// A copy of the agentwatch binary that any user may run (the build tree
/// may sit under a directory other users cannot enter).
pub fn agentwatch_bin_for_anyone() -> (TempDir, PathBuf) {
    let dir = TempDir::new("bin");
    let dst = dir.path().join("agentwatch");
    std::fs::copy(agentwatch_bin(), &dst).expect("copy the agentwatch binary");
    set_mode(&dst, 0o755);
    (dir, dst)
}

/// How a daemon run ended.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
    /// Whether it sent READY=1 (a failed start must not).
    pub notified_ready: bool,
    /// How long it ran.
    pub took: Duration,
}

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    args: Vec<String>,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
    _notify_dir: TempDir,
}

impl Daemon {
    /// Start `agentwatch ARGS` and wait until it reports READY=1. Panics
    /// with its output when it exits first or takes too long.
    pub fn start(args: &[&str]) -> Daemon {
        let mut cmd = Command::new(agentwatch_bin());
        cmd.args(args);
        Self::start_command(cmd, args)
    }

    /// Start an already prepared command (e.g. wrapped by another fixture).
    pub fn start_command(mut cmd: Command, args: &[&str]) -> Daemon {
        let notify_dir = TempDir::new("notify");
        let sock_path = notify_dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&sock_path).expect("bind the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set a read timeout");
        let (started, child, lines, stderr, readers) = spawn_notified(&mut cmd, &sock_path);
        let mut d = Daemon {
            child: Some(child),
            args: args.iter().map(|s| s.to_string()).collect(),
            lines,
            stderr,
            readers,
            started,
            _notify_dir: notify_dir,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]);
                if msg.lines().any(|l| l == "READY=1") {
                    return d;
                }
            }
            if let Some(status) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                d.join_readers();
                panic!(
                    "agentwatch {:?} exited ({status}) before READY=1\nstderr:\n{}\nstdout:\n{}",
                    d.args,
                    d.stderr(),
                    d.lines().join("\n")
                );
            }
            if Instant::now() > deadline {
                let _ = d.child.as_mut().map(|c| c.kill());
                d.join_readers();
                panic!(
                    "agentwatch {:?} sent no READY=1 within {READY_TIMEOUT:?}\nstderr:\n{}",
                    d.args,
                    d.stderr()
                );
            }
        }
    }

    /// Run `agentwatch ARGS` to completion (at most `timeout`), for runs
    /// that must fail. Records whether it ever sent READY=1.
    pub fn run(cmd: Command, timeout: Duration) -> Finished {
        let mut cmd = cmd;
        let notify_dir = TempDir::new("notify");
        let sock_path = notify_dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&sock_path).expect("bind the notify socket");
        // The daemon may run as another user: let it reach the socket.
        set_mode(&sock_path, 0o777);
        sock.set_nonblocking(true)
            .expect("non-blocking notify socket");
        let (started, mut child, lines, stderr, readers) = spawn_notified(&mut cmd, &sock_path);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait for agentwatch") {
                break s;
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                for r in readers {
                    let _ = r.join();
                }
                panic!(
                    "{cmd:?} still ran after {timeout:?}; it should have exited\nstderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = started.elapsed();
        for r in readers {
            let _ = r.join();
        }
        let mut notified_ready = false;
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            notified_ready |= String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1");
        }
        let stdout = lines.lock().unwrap().join("\n");
        let stderr = stderr.lock().unwrap().clone();
        Finished {
            status,
            stdout,
            stderr,
            notified_ready,
            took,
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Stdout lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Stdout lines so far, parsed as JSON. Panics on a line that is not
    /// JSON: with `--json`, stdout carries JSON objects and nothing else.
    pub fn events(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// Wait until some output object satisfies `pred`, and return it. On
    /// timeout, panics naming `what` and showing everything seen.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.events().into_iter().find(|v| pred(v)) {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "no {what} within {timeout:?} from agentwatch {:?}\n{} lines seen:\n{}\nstderr:\n{}",
                    self.args,
                    self.lines().len(),
                    tail(&self.lines(), 200),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until stderr contains `needle` (case-insensitive); panics after
    /// `timeout` with the stderr seen.
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> String {
        let needle = needle.to_lowercase();
        crate::util::poll(timeout, || {
            let e = self.stderr();
            e.to_lowercase().contains(&needle).then_some(e)
        })
        .unwrap_or_else(|| {
            panic!(
                "agentwatch {:?}: no {needle:?} on stderr within {timeout:?}; stderr:\n{}",
                self.args,
                self.stderr()
            )
        })
    }

    /// Stop with SIGTERM and wait (at most 30 s) for it to exit.
    pub fn stop(mut self) -> Finished {
        let mut child = self.child.take().expect("daemon running");
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait for agentwatch") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.join_readers();
                panic!(
                    "agentwatch {:?} did not exit within 30 s of SIGTERM\nstderr:\n{}",
                    self.args,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.join_readers();
        Finished {
            status,
            stdout: self.lines().join("\n"),
            stderr: self.stderr(),
            notified_ready: true,
            took: self.started.elapsed(),
        }
    }

    /// [`Daemon::stop`], asserting that it exited 0 (what SIGTERM must give).
    pub fn stop_ok(self) -> Finished {
        let f = self.stop();
        assert_eq!(
            f.status.code(),
            Some(0),
            "exit after SIGTERM; stderr:\n{}",
            f.stderr
        );
        f
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The parts of a spawned daemon: when it started, the child, its stdout
/// lines and stderr as the reader threads collect them, and those threads.
type Spawned = (
    Instant,
    Child,
    Arc<Mutex<Vec<String>>>,
    Arc<Mutex<String>>,
    Vec<JoinHandle<()>>,
);

/// Spawn `cmd` (stdin from /dev/null) with NOTIFY_SOCKET at `sock_path`,
/// its output collected in the background.
fn spawn_notified(cmd: &mut Command, sock_path: &Path) -> Spawned {
    cmd.env("NOTIFY_SOCKET", sock_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let readers = spawn_readers(&mut child, &lines, &stderr);
    (started, child, lines, stderr, readers)
}

fn spawn_readers(
    child: &mut Child,
    lines: &Arc<Mutex<Vec<String>>>,
    stderr: &Arc<Mutex<String>>,
) -> Vec<JoinHandle<()>> {
    let out = child.stdout.take().expect("piped stdout");
    let err = child.stderr.take().expect("piped stderr");
    let lines = Arc::clone(lines);
    let errbuf = Arc::clone(stderr);
    vec![
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                match line {
                    Ok(l) => lines.lock().unwrap().push(l),
                    Err(_) => break,
                }
            }
        }),
        std::thread::spawn(move || {
            let mut r = BufReader::new(err);
            let mut chunk = [0u8; 4096];
            loop {
                match r.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => errbuf
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk[..n])),
                }
            }
        }),
    ]
}

/// The last `n` lines, for panic messages.
pub fn tail(lines: &[String], n: usize) -> String {
    let skip = lines.len().saturating_sub(n);
    let mut s = String::new();
    if skip > 0 {
        s.push_str(&format!("... ({skip} earlier lines)\n"));
    }
    for l in &lines[skip..] {
        s.push_str(l);
        s.push('\n');
    }
    s
}
