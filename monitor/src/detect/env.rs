//! `env-dump`: the environment of a process, where API keys live, is read out.
//!
//! Seen through:
//! - an exec of `env` (bare or with only options) or `printenv` (any form),
//!   recognised by resolved path, by the inode of the real binaries (a
//!   renamed or hard-linked one; a host fact), by the inode of a COPY made in
//!   the watched cgroup (a process that read the real binary and wrote a file:
//!   that file is `env` too), or as a busybox/toybox applet; `env VAR=x cmd`
//!   only launches `cmd` and is not a dump;
//! - any open of `/proc/<pid>/environ` (attempts that fail count: `strings
//!   /proc/1/environ` by an unprivileged agent fails, and is still an attempt);
//! - shell builtins in `sh -c '<command>'` argv (see [`super::shell`]);
//! - interpreter one-liners printing the environment or a secret-looking
//!   variable (`python3 -c 'print(os.environ)'`).

use std::collections::HashMap;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::shell;
use crate::event::model::{Exec, Open};
use crate::host::HostFacts;
use crate::policy::Policy;
use crate::proctree::{self, Proc, ProcKey};

/// Which program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvProgram {
    /// `env`
    Env,
    /// `printenv`
    Printenv,
}

impl EnvProgram {
    fn from_name(name: &str) -> Option<EnvProgram> {
        match name {
            "env" => Some(EnvProgram::Env),
            "printenv" => Some(EnvProgram::Printenv),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            EnvProgram::Env => "env",
            EnvProgram::Printenv => "printenv",
        }
    }
}

/// What was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvHit {
    /// Dedup object: what kind of dump (`exec:env`, `/proc/*/environ`, `shell:...`).
    pub object: String,
    /// Why, for the message.
    pub reason: String,
}

#[derive(Default)]
struct CopyState {
    read: Option<(EnvProgram, String)>,
    written: Vec<(u64, u64)>,
}

/// Caps on the copy tracking state.
const WRITTEN_PER_PROC: usize = 32;
const TRACKED_PROCS: usize = 4096;
const TAINTED: usize = 4096;

/// The env-dump detector and its state.
pub struct EnvDetector {
    binaries: Vec<(String, EnvProgram)>,
    multicall: Vec<String>,
    /// (dev, ino) -> program and where it came from
    inodes: HashMap<(u64, u64), (EnvProgram, String)>,
    multicall_inodes: HashMap<(u64, u64), String>,
    tainted: HashMap<(u64, u64), (EnvProgram, String)>,
    copying: HashMap<ProcKey, CopyState>,
    secret_vars: GlobSet,
}

fn base(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

impl EnvDetector {
    /// Compile from the policy and host facts.
    pub fn new(policy: &Policy, facts: &HostFacts) -> Self {
        let binaries: Vec<(String, EnvProgram)> = policy
            .env
            .binaries
            .iter()
            .map(|b| {
                (
                    b.clone(),
                    if base(b).contains("printenv") {
                        EnvProgram::Printenv
                    } else {
                        EnvProgram::Env
                    },
                )
            })
            .collect();
        let mut inodes = HashMap::new();
        let mut multicall_inodes = HashMap::new();
        for f in &facts.files {
            if f.dev == 0 && f.ino == 0 {
                continue;
            }
            if let Some((_, prog)) = binaries.iter().find(|(b, _)| *b == f.path) {
                inodes.insert((f.dev, f.ino), (*prog, f.path.clone()));
            } else if policy.env.multicall.contains(&f.path) {
                multicall_inodes.insert((f.dev, f.ino), f.path.clone());
            }
        }
        let mut b = GlobSetBuilder::new();
        for v in &policy.env.secret_vars {
            if let Ok(g) = GlobBuilder::new(v).case_insensitive(true).build() {
                b.add(g);
            }
        }
        EnvDetector {
            binaries,
            multicall: policy.env.multicall.clone(),
            inodes,
            multicall_inodes,
            tainted: HashMap::new(),
            copying: HashMap::new(),
            secret_vars: b.build().unwrap_or_else(|_| GlobSet::empty()),
        }
    }

    /// Whether a variable name looks like a secret.
    pub fn secret_var(&self, name: &str) -> bool {
        !name.is_empty() && self.secret_vars.is_match(name)
    }

    /// Which env program an executable is, and how it was recognised.
    fn program_of(
        &self,
        exe: Option<&str>,
        dev: u64,
        ino: u64,
    ) -> Option<(EnvProgram, Option<String>)> {
        if let Some(exe) = exe {
            if let Some((_, p)) = self.binaries.iter().find(|(b, _)| b == exe) {
                return Some((*p, None));
            }
        }
        if dev == 0 && ino == 0 {
            return None;
        }
        if let Some((p, path)) = self.inodes.get(&(dev, ino)) {
            return Some((*p, Some(format!("same file as {path}"))));
        }
        if let Some((p, path)) = self.tainted.get(&(dev, ino)) {
            return Some((
                *p,
                Some(format!("copy of {path} made in the watched cgroup")),
            ));
        }
        None
    }

    fn is_multicall(&self, exe: Option<&str>, dev: u64, ino: u64) -> bool {
        exe.is_some_and(|e| self.multicall.iter().any(|m| m == e))
            || ((dev, ino) != (0, 0) && self.multicall_inodes.contains_key(&(dev, ino)))
    }

    /// A successful exec, with the process already updated.
    pub fn on_exec(&mut self, proc: Option<&Proc>, exec: &Exec) -> Option<EnvHit> {
        if exec.ret != 0 {
            return None;
        }
        let exe = exec.exe.as_deref().or_else(|| {
            exec.filename
                .starts_with('/')
                .then_some(exec.filename.as_str())
        });
        let argv = &exec.argv;
        // env / printenv, direct or renamed
        let mut found = self
            .program_of(exe, exec.dev, exec.ino)
            .map(|(p, how)| (p, how, 1usize));
        // A script starting `#!/usr/bin/env bash` runs env too, with the
        // script's own argv in the event: env then only launches the
        // interpreter. Told apart by the name executed: a copy, rename or
        // hard link is executed under its own name (exe and filename agree),
        // a script under the script's. (A SYMLINK to env under another name
        // looks the same and is missed: the event carries no flag for `#!`.)
        if let (Some((_, None, _)), Some(exe)) = (&found, exe) {
            let fname = base(&exec.filename);
            if fname != base(exe) && EnvProgram::from_name(fname).is_none() {
                found = None;
            }
        }
        if found.is_none() && self.is_multicall(exe, exec.dev, exec.ino) {
            let a0 = argv.first().map(|a| base(a)).unwrap_or("");
            if let Some(p) = EnvProgram::from_name(a0) {
                found = Some((
                    p,
                    Some(format!("{a0} applet of {}", exe.unwrap_or("busybox"))),
                    1,
                ));
            } else if let Some(p) = argv.get(1).and_then(|a| EnvProgram::from_name(a)) {
                found = Some((
                    p,
                    Some(format!(
                        "{} applet of {}",
                        p.name(),
                        exe.unwrap_or("busybox")
                    )),
                    2,
                ));
            }
        }
        if let Some((prog, how, skip)) = found {
            let args: Vec<&str> = argv.iter().skip(skip).map(String::as_str).collect();
            let dump = match prog {
                EnvProgram::Env => env_args_dump(&args),
                EnvProgram::Printenv => !args.iter().any(|a| matches!(*a, "--help" | "--version")),
            };
            if dump {
                let shown = std::iter::once(prog.name())
                    .chain(args.iter().copied())
                    .collect::<Vec<_>>()
                    .join(" ");
                let reason = match how {
                    Some(h) => format!("ran `{shown}` ({h})"),
                    None => format!("ran `{shown}`"),
                };
                return Some(EnvHit {
                    object: format!("exec:{}", prog.name()),
                    reason,
                });
            }
        }
        let sv = |n: &str| self.secret_var(n);
        if let Some(cmd) = proctree::shell_command(argv, exe) {
            if let Some(reason) = shell::shell_dump(cmd, &sv) {
                return Some(EnvHit {
                    object: format!("shell:{reason}"),
                    reason: format!("shell command {reason}"),
                });
            }
        }
        if let Some((lang, code)) = shell::interpreter_code(argv, exe) {
            if let Some(reason) = shell::code_dump(lang, &code, &sv) {
                return Some(EnvHit {
                    object: format!("{lang}:{reason}"),
                    reason: format!("{lang} one-liner {reason}"),
                });
            }
        }
        let _ = proc;
        None
    }

    /// An open (successful or not). Tracks copies of the env binaries and
    /// reports `/proc/<pid>/environ`.
    pub fn on_open(&mut self, key: Option<ProcKey>, open: &Open) -> Option<EnvHit> {
        if let Some(key) = key {
            self.track_copy(key, open);
        }
        let path = open
            .path
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(&open.requested);
        if is_proc_environ(path) || is_proc_environ(&open.requested) {
            let how = if open.ok() {
                String::new()
            } else {
                format!(" (failed: errno {})", -open.ret)
            };
            return Some(EnvHit {
                object: "/proc/*/environ".into(),
                reason: format!("opened {path}{how}"),
            });
        }
        None
    }

    fn track_copy(&mut self, key: ProcKey, open: &Open) {
        if !open.ok() || (open.dev, open.ino) == (0, 0) {
            return;
        }
        let id = (open.dev, open.ino);
        let acc = open.flags & libc::O_ACCMODE as u32;
        let writes = acc == libc::O_WRONLY as u32 || acc == libc::O_RDWR as u32;
        let source = self
            .inodes
            .get(&id)
            .or_else(|| self.tainted.get(&id))
            .cloned()
            .or_else(|| {
                let p = open.path.as_deref()?;
                self.binaries
                    .iter()
                    .find(|(b, _)| b == p)
                    .map(|(b, prog)| (*prog, b.clone()))
            });
        if source.is_none() && !writes && !self.copying.contains_key(&key) {
            return;
        }
        if self.copying.len() >= TRACKED_PROCS && !self.copying.contains_key(&key) {
            self.copying.clear(); // crude but bounded; copies are rare
        }
        let st = self.copying.entry(key).or_default();
        if let Some(src) = source {
            if open.reads() && !writes {
                st.read = Some(src);
            }
        } else if writes && st.written.len() < WRITTEN_PER_PROC && !st.written.contains(&id) {
            st.written.push(id);
        }
        if let Some(src) = st.read.clone() {
            let written = std::mem::take(&mut st.written);
            if self.tainted.len() + written.len() > TAINTED {
                self.tainted.clear();
            }
            for w in written {
                self.tainted.insert(w, src.clone());
            }
        }
    }

    /// A process exited: forget its copy state.
    pub fn on_exit(&mut self, key: ProcKey) {
        self.copying.remove(&key);
    }
}

/// `/proc/<pid|self|thread-self>/environ` and `/proc/<pid>/task/<tid>/environ`.
pub fn is_proc_environ(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/proc/") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let pidish = |s: &str| {
        s == "self"
            || s == "thread-self"
            || (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
    };
    match parts.as_slice() {
        [p, "environ"] => pidish(p),
        [p, "task", t, "environ"] => pidish(p) && pidish(t),
        _ => false,
    }
}

/// Whether `env` with these arguments prints the environment (rather than
/// running a command or printing nothing).
pub fn env_args_dump(args: &[&str]) -> bool {
    let mut i = 0;
    let mut ignore_env = false;
    let mut assigned = false;
    while i < args.len() {
        let a = args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if a == "-" || a == "-i" || a == "--ignore-environment" {
            ignore_env = true;
        } else if matches!(a, "--help" | "--version") {
            return false;
        } else if a == "-S"
            || a.starts_with("--split-string")
            || (a.starts_with("-S") && a.len() > 2)
        {
            return false; // runs a command line
        } else if matches!(a, "-u" | "--unset" | "-C" | "--chdir") {
            i += 1; // takes an argument
        } else if let Some(long) = a.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or(long);
            const LONG: &[&str] = &[
                "null",
                "unset",
                "chdir",
                "debug",
                "block-signal",
                "default-signal",
                "ignore-signal",
                "list-signal-handling",
                "argv0",
            ];
            if !LONG.contains(&name) {
                return false; // env would refuse it: nothing printed
            }
        } else if a.starts_with('-') && a.len() > 1 {
            // clustered short options: -0, -iv, -uNAME, -C DIR
            let flags = &a[1..];
            let opts_end = flags.find(['u', 'C']).map(|p| p + 1).unwrap_or(flags.len());
            if !flags[..opts_end].chars().all(|c| "0iuCSva".contains(c)) {
                return false; // not an env option (`-c` of a script run through `#!/usr/bin/env`)
            }
            if flags.contains('i') {
                ignore_env = true;
            }
            if let Some(pos) = flags.find(['u', 'C']) {
                if pos == flags.len() - 1 {
                    i += 1; // argument is the next word
                }
            }
            if flags.contains('S') {
                return false;
            }
        } else {
            break;
        }
        i += 1;
    }
    while i < args.len() && args[i].contains('=') && !args[i].starts_with('=') {
        assigned = true;
        i += 1;
    }
    if i < args.len() {
        return false; // a command follows: env only launches it
    }
    // `env -i` prints nothing; `env -i A=1` prints only what it was given
    let _ = assigned;
    !ignore_env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_argv_table() {
        let cases: &[(&[&str], bool)] = &[
            (&[], true),
            (&["-0"], true),
            (&["--null"], true),
            (&["-u", "HOME"], true),
            (&["-uHOME"], true),
            (&["--unset=HOME"], true),
            (&["-v"], true),
            (&["FOO=1"], true), // prints the environment plus FOO
            (&["FOO=1", "make"], false),
            (&["make"], false),
            (&["-i"], false),
            (&["-i", "A=1"], false),
            (&["-i", "PATH=/bin", "sh", "-c", "x"], false),
            (&["-S", "sh -c x"], false),
            (&["-C", "/tmp"], true),
            (&["-C", "/tmp", "ls"], false),
            (&["--", "ls"], false),
            (&["--help"], false),
            (&["-c", "print(1)"], false), // not env options: a `#!/usr/bin/env` script's argv
            (&["-f"], false),
            (&["--frobnicate"], false),
            (&["-a", "name", "ls"], false),
        ];
        for (args, want) in cases {
            assert_eq!(env_args_dump(args), *want, "env {args:?}");
        }
    }

    #[test]
    fn proc_environ_paths() {
        for (p, want) in [
            ("/proc/self/environ", true),
            ("/proc/1/environ", true),
            ("/proc/4242/task/4243/environ", true),
            ("/proc/thread-self/environ", true),
            ("/proc/1/cmdline", false),
            ("/proc/sys/environ", false),
            ("/home/a/proc/1/environ", false),
            ("/proc/1/environ/x", false),
        ] {
            assert_eq!(is_proc_environ(p), want, "{p}");
        }
    }
}
