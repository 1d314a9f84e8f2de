//! A real unprivileged user with a home holding decoy secrets and a
//! project, and commands run as that user inside a watched cgroup, the way
//! a coding agent runs them.

use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::cgroup::Cgroup;
use crate::dns::Dns;
use crate::util::{set_mode, unique};

/// The test user's name (reused across runs; its files are rewritten).
pub const USER: &str = "agentwatch-test";

/// The agent's user.
#[derive(Clone, Debug)]
pub struct AgentUser {
    /// Login name.
    pub name: String,
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Home directory (canonical).
    pub home: PathBuf,
}

/// Paths of the decoy secrets written in the user's home.
#[derive(Clone, Debug)]
pub struct Decoys {
    /// `~/.ssh/id_ed25519`
    pub ssh_key: PathBuf,
    /// `~/.ssh/id_ed25519.pub`
    pub ssh_pub: PathBuf,
    /// `~/.aws/credentials`
    pub aws_credentials: PathBuf,
}

/// A project directory in the user's home (`~/project-<unique>`), removed on
/// drop: `.env`, `.env.example`, `Cargo.toml`, `src/main.rs`, `README.md`.
pub struct Project {
    /// The directory.
    pub dir: PathBuf,
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Project {
    /// `.env` (a secret).
    pub fn env(&self) -> PathBuf {
        self.dir.join(".env")
    }
    /// `.env.example` (not a secret).
    pub fn env_example(&self) -> PathBuf {
        self.dir.join(".env.example")
    }
}

impl AgentUser {
    /// The test user, created with a home directory when missing.
    pub fn get() -> AgentUser {
        static LOCK: Mutex<()> = Mutex::new(());
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if lookup(USER).is_none() {
            let out = Command::new("useradd")
                .args([
                    "--create-home",
                    "--shell",
                    "/bin/bash",
                    "--user-group",
                    USER,
                ])
                .output()
                .expect("run useradd");
            // 9: the name is taken (another test process made it meanwhile).
            if !out.status.success() && out.status.code() != Some(9) {
                panic!(
                    "useradd {USER} failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let user = lookup(USER).unwrap_or_else(|| panic!("user {USER} missing after useradd"));
        if !user.home.is_dir() {
            std::fs::create_dir_all(&user.home).expect("create the home directory");
            chown(&user.home, Some(user.uid), Some(user.gid)).expect("chown home");
            set_mode(&user.home, 0o755);
        }
        let home = user.home.canonicalize().expect("canonical home");
        AgentUser { home, ..user }
    }

    /// Write (or rewrite) the decoy secrets: `~/.ssh/id_ed25519` and its
    /// `.pub`, `~/.aws/credentials`. Fake keys, owned by the user.
    pub fn decoys(&self) -> Decoys {
        let ssh = self.mkdir(".ssh", 0o700);
        let aws = self.mkdir(".aws", 0o755);
        let d = Decoys {
            ssh_key: ssh.join("id_ed25519"),
            ssh_pub: ssh.join("id_ed25519.pub"),
            aws_credentials: aws.join("credentials"),
        };
        self.write(
            &d.ssh_key,
            "-----BEGIN OPENSSH PRIVATE KEY-----\nZGVjb3kga2V5IGZvciBhZ2VudHdhdGNoIHRlc3Rz\n-----END OPENSSH PRIVATE KEY-----\n",
            0o600,
        );
        self.write(
            &d.ssh_pub,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRlY295IGtleQ agentwatch-test\n",
            0o644,
        );
        self.write(
            &d.aws_credentials,
            "[default]\naws_access_key_id = AKIADECOYDECOYDECOY0\naws_secret_access_key = decoy/decoy/decoy/decoy/decoy/decoy0000\n",
            0o600,
        );
        d
    }

    /// A fresh project directory with sources, `.env` and `.env.example`.
    pub fn project(&self) -> Project {
        let dir = self.home.join(format!("project-{}", unique()));
        std::fs::create_dir_all(dir.join("src")).expect("create the project");
        let p = Project { dir };
        self.chown(&p.dir);
        self.chown(&p.dir.join("src"));
        self.write(
            &p.env(),
            "ANTHROPIC_API_KEY=sk-ant-decoy\nDATABASE_URL=postgres://decoy\n",
            0o600,
        );
        self.write(
            &p.env_example(),
            "ANTHROPIC_API_KEY=\nDATABASE_URL=\n",
            0o644,
        );
        self.write(
            &p.dir.join("Cargo.toml"),
            "[package]\nname = \"demo\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
            0o644,
        );
        self.write(
            &p.dir.join("src/main.rs"),
            "fn main() {\n    println!(\"hello\");\n}\n",
            0o644,
        );
        self.write(&p.dir.join("README.md"), "# demo\n", 0o644);
        p
    }

    /// The setpriv prefix that drops to this user with no capabilities and
    /// no way back (`--no-new-privs`), as an agent runs.
    pub fn setpriv(&self) -> Vec<String> {
        [
            "setpriv",
            &format!("--reuid={}", self.uid),
            &format!("--regid={}", self.gid),
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// A command running `argv` as this user inside `cg`, with a clean
    /// environment (HOME, USER, LOGNAME, SHELL, PATH) and cwd `~`.
    pub fn command<S: AsRef<str>>(&self, cg: &Cgroup, argv: &[S]) -> Command {
        self.command_with_dns(cg, None, argv)
    }

    /// Like [`AgentUser::command`], seeing `dns` as its resolver.
    pub fn command_with_dns<S: AsRef<str>>(
        &self,
        cg: &Cgroup,
        dns: Option<&Dns>,
        argv: &[S],
    ) -> Command {
        let mut full = self.setpriv();
        full.extend(argv.iter().map(|s| s.as_ref().to_string()));
        if let Some(dns) = dns {
            full = dns.wrap(full);
        }
        let mut cmd = cg.command(&full);
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env("SHELL", "/bin/bash")
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .current_dir(&self.home);
        cmd
    }

    fn mkdir(&self, rel: &str, mode: u32) -> PathBuf {
        let p = self.home.join(rel);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        self.chown(&p);
        set_mode(&p, mode);
        p
    }

    /// Write a file owned by the user with `mode`.
    pub fn write(&self, path: &Path, content: &str, mode: u32) {
        std::fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self.chown(path);
        set_mode(path, mode);
    }

    fn chown(&self, path: &Path) {
        chown(path, Some(self.uid), Some(self.gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

/// The passwd entry of `name`, from `getent passwd` (so NSS is honoured).
fn lookup(name: &str) -> Option<AgentUser> {
    let out = Command::new("getent")
        .args(["passwd", name])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 7 {
        return None;
    }
    Some(AgentUser {
        name: f[0].to_string(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: PathBuf::from(f[5]),
    })
}
