//! Host facts: what the detectors need to know about the machine, looked up
//! ONCE at startup and recorded in the session, so that replay never touches
//! the host and re-derives the same alerts.
//!
//! - the local users and their home directories (`~` in the policy means every
//!   one of them), from `/etc/passwd`;
//! - the system DNS resolvers (allowed on port 53), from `/etc/resolv.conf`;
//! - the identity (device, inode) of files that exist at startup: every
//!   secret in the catalog that can be listed without walking the disk (so a
//!   hard link to it made later, under any name, is still that secret), and the
//!   real `env`/`printenv`/busybox binaries (so a renamed or hard-linked copy is
//!   still `env`).
//!
//! Every lookup goes through a `root` directory (`/` live, a temporary tree in
//! tests).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::{PathPattern, Policy};

/// A local user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Home directory.
    pub home: String,
}

/// A file's identity at startup.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileFact {
    /// The path it was found under (host path, not prefixed by the root).
    pub path: String,
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

/// Everything the detectors know about the host. Serialisable: the session
/// recorder stores it in the header and replay hands it back to the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// Local users (passwd database).
    pub users: Vec<User>,
    /// DNS resolvers from resolv.conf.
    pub resolvers: Vec<IpAddr>,
    /// Identities of existing secret files and of the env binaries. Which is
    /// which is decided by the engine against ITS policy, so replay with a
    /// different policy still uses them where the paths match.
    pub files: Vec<FileFact>,
}

impl HostFacts {
    /// Gather the facts from the host under `root` (`/` live), for `policy`.
    /// Unreadable files are skipped: a missing resolv.conf means no resolvers.
    pub fn gather(root: &Path, policy: &Policy) -> HostFacts {
        let read = |p: &str| std::fs::read_to_string(under(root, p)).unwrap_or_default();
        let users = parse_passwd(&read("/etc/passwd"));
        let resolvers = parse_resolv_conf(&read("/etc/resolv.conf"));
        let homes = homes(&users);
        let mut files = BTreeSet::new();
        for spec in &policy.secrets {
            for pat in &spec.paths {
                let Ok(p) = PathPattern::parse(pat) else {
                    continue;
                };
                if matches!(p, PathPattern::Anywhere(_)) {
                    continue; // would need a walk of the whole disk
                }
                for glob in p.globs(&homes) {
                    for path in expand_simple_glob(root, &glob) {
                        if let Some(f) = stat(root, &path) {
                            files.insert(f);
                        }
                    }
                }
            }
        }
        for path in policy.env.binaries.iter().chain(&policy.env.multicall) {
            for path in expand_simple_glob(root, path) {
                if let Some(f) = stat(root, &path) {
                    files.insert(f);
                }
            }
        }
        HostFacts {
            users,
            resolvers,
            files: files.into_iter().collect(),
        }
    }

    /// The distinct home directories (no empty ones, no `/`).
    pub fn homes(&self) -> Vec<String> {
        homes(&self.users)
    }
}

fn homes(users: &[User]) -> Vec<String> {
    let mut v: Vec<String> = users
        .iter()
        .map(|u| u.home.trim_end_matches('/').to_string())
        .filter(|h| !h.is_empty() && h.starts_with('/'))
        .collect();
    v.sort();
    v.dedup();
    v
}

fn under(root: &Path, host_path: &str) -> PathBuf {
    root.join(host_path.trim_start_matches('/'))
}

fn stat(root: &Path, path: &str) -> Option<FileFact> {
    let md = std::fs::metadata(under(root, path)).ok()?;
    md.is_file().then(|| FileFact {
        path: path.to_string(),
        dev: md.dev(),
        ino: md.ino(),
    })
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// Expand a glob whose wildcards are all in the LAST component by listing
/// that one directory; globs with wildcards in directories (or `**`) yield
/// nothing (they are matched by name when opened).
pub fn expand_simple_glob(root: &Path, glob: &str) -> Vec<String> {
    if !has_glob(glob) {
        return vec![glob.to_string()];
    }
    let Some((dir, last)) = glob.rsplit_once('/') else {
        return vec![];
    };
    if has_glob(dir) || last.contains("**") {
        return vec![];
    }
    let Ok(m) = globset::GlobBuilder::new(last)
        .literal_separator(true)
        .build()
    else {
        return vec![];
    };
    let m = m.compile_matcher();
    let Ok(rd) = std::fs::read_dir(under(root, if dir.is_empty() { "/" } else { dir })) else {
        return vec![];
    };
    let mut out: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| m.is_match(n))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    out.sort();
    out
}

/// Parse passwd(5) lines `name:pw:uid:gid:gecos:home:shell`; bad lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<User> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(User {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

/// Parse resolv.conf(5) `nameserver` lines (IPv6 zone ids are dropped).
pub fn parse_resolv_conf(text: &str) -> Vec<IpAddr> {
    let mut v = Vec::new();
    for l in text.lines() {
        let mut w = l.split_whitespace();
        if w.next() != Some("nameserver") {
            continue;
        }
        let Some(a) = w.next() else { continue };
        let a = a.split('%').next().unwrap_or(a);
        if let Ok(ip) = a.parse::<IpAddr>() {
            if !v.contains(&ip) {
                v.push(ip);
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_parsing_keeps_good_lines() {
        let t = "root:x:0:0:root:/root:/bin/bash\n# comment\nbad line\nalice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nweird:x:notanumber:0::/x:/bin/sh\n";
        let u = parse_passwd(t);
        assert_eq!(u.len(), 3);
        assert_eq!(
            u[1],
            User {
                name: "alice".into(),
                uid: 1000,
                home: "/home/alice".into()
            }
        );
        assert_eq!(homes(&u), vec!["/home/alice", "/nonexistent", "/root"]);
    }

    #[test]
    fn resolv_conf_parsing() {
        let t = "# generated\nsearch example.com\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver   1.1.1.1 # x\nnameserver bogus\nnameserver 10.0.0.2\noptions edns0\n";
        let r = parse_resolv_conf(t);
        assert_eq!(
            r,
            vec![
                "10.0.0.2".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap(),
                "1.1.1.1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn gather_finds_secret_and_env_inodes_under_a_fake_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let w = |p: &str, s: &str| {
            let p = under(root, p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        w(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n",
        );
        w("/etc/resolv.conf", "nameserver 192.0.2.53\n");
        w("/home/alice/.ssh/id_ed25519", "k");
        w("/home/alice/.ssh/id_ed25519.pub", "p");
        w("/home/alice/.ssh/known_hosts", "h");
        w("/root/.aws/credentials", "c");
        w("/usr/bin/env", "ELF");
        w("/srv/app/.env", "A=1"); // `.env` matches anywhere: not walked at startup
        let policy = Policy::default_policy();
        let f = HostFacts::gather(root, &policy);
        assert_eq!(f.resolvers, vec!["192.0.2.53".parse::<IpAddr>().unwrap()]);
        assert_eq!(f.homes(), vec!["/home/alice", "/root"]);
        let paths: Vec<&str> = f.files.iter().map(|f| f.path.as_str()).collect();
        assert!(paths.contains(&"/home/alice/.ssh/id_ed25519"), "{paths:?}");
        // gathered by listing ~/.ssh for id_*; exclusion is the engine's job
        assert!(
            paths.contains(&"/home/alice/.ssh/id_ed25519.pub"),
            "{paths:?}"
        );
        assert!(
            !paths.contains(&"/home/alice/.ssh/known_hosts"),
            "{paths:?}"
        );
        assert!(paths.contains(&"/root/.aws/credentials"), "{paths:?}");
        assert!(paths.contains(&"/usr/bin/env"), "{paths:?}");
        assert!(!paths.iter().any(|p| p.ends_with("/.env")), "{paths:?}");
        let json = serde_json::to_string(&f).unwrap();
        let back: HostFacts = serde_json::from_str(&json).unwrap();
        assert_eq!(back, f);
    }
}
