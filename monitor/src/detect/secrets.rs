//! `secret-read`: a process opens a file of the secret catalog for reading.
//!
//! Matching uses the RESOLVED absolute path the kernel reports (so relative
//! paths, dirfds, `..` and symlinks are already resolved), with `~/` expanded
//! to every local user's home, and the file's identity (device, inode) for
//! hard links: the identities of catalog files found at startup are a host
//! fact, and every later open of a catalog path (by anyone, allowed or not,
//! even for writing) teaches the catalog that file's identity.

use std::collections::HashMap;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::event::model::Open;
use crate::host::HostFacts;
use crate::policy::{PathPattern, Policy};

/// Build a matcher for policy path patterns, `~/` expanded to `homes`.
pub fn path_set(patterns: &[String], homes: &[String]) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let Ok(pp) = PathPattern::parse(p) else {
            continue;
        };
        for g in pp.globs(homes) {
            if let Ok(g) = GlobBuilder::new(&g).literal_separator(true).build() {
                b.add(g);
            }
        }
    }
    b.build().unwrap_or_else(|_| GlobSet::empty())
}

struct Entry {
    name: String,
    description: String,
    exclude: GlobSet,
    allow: GlobSet,
}

/// How the file was recognised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatchedBy {
    /// Its resolved path matches the catalog.
    Path,
    /// Its identity is that of a catalog file known under this path.
    Inode(String),
}

/// A catalog match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretHit {
    /// Catalog entry name.
    pub secret: String,
    /// Its description.
    pub description: String,
    /// The resolved path opened.
    pub path: String,
    /// Path or inode.
    pub by: MatchedBy,
    /// An entry's `allow-exe` lets this process read it.
    pub allowed: bool,
}

/// Most identities learned at run time (beyond the startup facts).
const LEARNED_CAP: usize = 16_384;

/// The compiled catalog and the identities of known secret files.
pub struct SecretCatalog {
    entries: Vec<Entry>,
    /// Every entry's path globs in one set (one pass per open), and which
    /// entry each glob belongs to.
    all: GlobSet,
    owner: Vec<usize>,
    inodes: HashMap<(u64, u64), (usize, String)>,
    learned: usize,
}

impl SecretCatalog {
    /// Compile the policy's catalog for the host's homes, and take the
    /// startup identities of the files that match it.
    pub fn new(policy: &Policy, facts: &HostFacts) -> Self {
        let homes = facts.homes();
        let entries: Vec<Entry> = policy
            .secrets
            .iter()
            .map(|s| Entry {
                name: s.name.clone(),
                description: s.description.clone(),
                exclude: path_set(&s.exclude, &homes),
                allow: path_set(&s.allow_exe, &homes),
            })
            .collect();
        let mut all = GlobSetBuilder::new();
        let mut owner = Vec::new();
        for (i, s) in policy.secrets.iter().enumerate() {
            for p in &s.paths {
                let Ok(pp) = PathPattern::parse(p) else {
                    continue;
                };
                for g in pp.globs(&homes) {
                    if let Ok(g) = GlobBuilder::new(&g).literal_separator(true).build() {
                        all.add(g);
                        owner.push(i);
                    }
                }
            }
        }
        let mut c = SecretCatalog {
            entries,
            all: all.build().unwrap_or_else(|_| GlobSet::empty()),
            owner,
            inodes: HashMap::new(),
            learned: 0,
        };
        for f in &facts.files {
            if let Some(i) = c.matching(&f.path).first() {
                if (f.dev, f.ino) != (0, 0) {
                    c.inodes.insert((f.dev, f.ino), (*i, f.path.clone()));
                }
            }
        }
        c
    }

    /// Indices of the entries whose paths match (and exclusions do not).
    pub fn matching(&self, path: &str) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .all
            .matches(path)
            .into_iter()
            .map(|g| self.owner[g])
            .collect();
        v.sort_unstable();
        v.dedup();
        v.retain(|&i| !self.entries[i].exclude.is_match(path));
        v
    }

    /// Number of file identities known (startup + learned).
    pub fn known_identities(&self) -> usize {
        self.inodes.len()
    }

    /// Check one open. `identities` are the opener's resolved executable and
    /// script paths (for `allow-exe`). Returns a hit for a successful read of
    /// a secret (allowed or not); learns identities from every successful open
    /// of a catalog path.
    pub fn check(&mut self, open: &Open, identities: &[&str]) -> Option<SecretHit> {
        self.check_with(open, || identities.iter().map(|s| s.to_string()).collect())
    }

    /// [`SecretCatalog::check`], asking for the opener's identities only
    /// when a secret was opened (most opens are not).
    pub fn check_with(
        &mut self,
        open: &Open,
        identities: impl FnOnce() -> Vec<String>,
    ) -> Option<SecretHit> {
        if !open.ok() {
            return None;
        }
        let path = open.path.as_deref().filter(|p| p.starts_with('/'))?;
        let id = (open.dev, open.ino);
        let by_path = self.matching(path);
        let (idx, by): (Vec<usize>, MatchedBy) = if !by_path.is_empty() {
            if id != (0, 0) && !self.inodes.contains_key(&id) && self.learned < LEARNED_CAP {
                self.inodes.insert(id, (by_path[0], path.to_string()));
                self.learned += 1;
            }
            (by_path, MatchedBy::Path)
        } else if let Some((i, known)) = (id != (0, 0)).then(|| self.inodes.get(&id)).flatten() {
            (vec![*i], MatchedBy::Inode(known.clone()))
        } else {
            return None;
        };
        let o_path = libc::O_PATH as u32;
        let o_dir = libc::O_DIRECTORY as u32;
        if !open.reads() || open.flags & (o_path | o_dir) != 0 {
            return None;
        }
        let ids = identities();
        let allowed = idx
            .iter()
            .any(|&i| ids.iter().any(|x| self.entries[i].allow.is_match(x)));
        let e = &self.entries[idx[0]];
        Some(SecretHit {
            secret: e.name.clone(),
            description: e.description.clone(),
            path: path.to_string(),
            by,
            allowed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::model::OpenSyscall;
    use crate::host::{FileFact, User};

    fn facts() -> HostFacts {
        HostFacts {
            users: vec![
                User {
                    name: "root".into(),
                    uid: 0,
                    home: "/root".into(),
                },
                User {
                    name: "alice".into(),
                    uid: 1000,
                    home: "/home/alice".into(),
                },
            ],
            resolvers: vec![],
            files: vec![
                FileFact {
                    path: "/home/alice/.aws/credentials".into(),
                    dev: 2049,
                    ino: 777,
                },
                FileFact {
                    path: "/home/alice/.ssh/id_ed25519.pub".into(),
                    dev: 2049,
                    ino: 778,
                },
            ],
        }
    }

    fn open(requested: &str, path: &str, flags: i32, dev: u64, ino: u64) -> Open {
        Open {
            syscall: OpenSyscall::Openat,
            ret: 3,
            flags: flags as u32,
            mode: 0,
            dfd: -100,
            requested: requested.into(),
            path: Some(path.into()),
            dev,
            ino,
            path_truncated: false,
            requested_truncated: false,
            unlinked: false,
        }
    }

    #[test]
    fn matching_table() {
        let p = Policy::default_policy();
        let mut c = SecretCatalog::new(&p, &facts());
        let r = libc::O_RDONLY;
        let cat = ["/usr/bin/cat"];
        // (what, open, identities, want secret name or None, allowed)
        type Case<'a> = (&'a str, Open, &'a [&'a str], Option<&'a str>, bool);
        let cases: Vec<Case> = vec![
            (
                "ssh key by absolute path",
                open(
                    "/home/alice/.ssh/id_ed25519",
                    "/home/alice/.ssh/id_ed25519",
                    r,
                    1,
                    1,
                ),
                &cat,
                Some("ssh-private-key"),
                false,
            ),
            (
                "relative path arrives resolved",
                open("../.ssh/id_rsa", "/home/alice/.ssh/id_rsa", r, 1, 2),
                &cat,
                Some("ssh-private-key"),
                false,
            ),
            (
                "symlink arrives resolved",
                open("/tmp/link", "/root/.kube/config", r, 1, 3),
                &cat,
                Some("kubeconfig"),
                false,
            ),
            (
                "hard link by inode",
                open("/tmp/innocent", "/tmp/innocent", r, 2049, 777),
                &cat,
                Some("aws"),
                false,
            ),
            (
                "public key is not a secret",
                open(
                    "id_ed25519.pub",
                    "/home/alice/.ssh/id_ed25519.pub",
                    r,
                    2049,
                    778,
                ),
                &cat,
                None,
                false,
            ),
            (
                "known_hosts is not a secret",
                open(
                    "/home/alice/.ssh/known_hosts",
                    "/home/alice/.ssh/known_hosts",
                    r,
                    1,
                    4,
                ),
                &cat,
                None,
                false,
            ),
            (
                "ssh config is not a secret",
                open("/root/.ssh/config", "/root/.ssh/config", r, 1, 5),
                &cat,
                None,
                false,
            ),
            (
                ".env anywhere",
                open(".env", "/srv/project/.env", r, 1, 6),
                &cat,
                Some("dotenv"),
                false,
            ),
            (
                ".env.local",
                open(".env.local", "/srv/project/.env.local", r, 1, 7),
                &cat,
                Some("dotenv"),
                false,
            ),
            (
                ".env.example is not",
                open(".env.example", "/srv/project/.env.example", r, 1, 8),
                &cat,
                None,
                false,
            ),
            (
                ".env.template is not",
                open(".env.template", "/srv/p/.env.template", r, 1, 9),
                &cat,
                None,
                false,
            ),
            (
                "project sources are not",
                open("src/main.rs", "/srv/p/src/main.rs", r, 1, 10),
                &cat,
                None,
                false,
            ),
            (
                "write-only open is not a read",
                open(
                    "/root/.netrc",
                    "/root/.netrc",
                    libc::O_WRONLY | libc::O_CREAT,
                    1,
                    11,
                ),
                &cat,
                None,
                false,
            ),
            (
                "git may read its credentials",
                open(
                    "/home/alice/.git-credentials",
                    "/home/alice/.git-credentials",
                    r,
                    1,
                    12,
                ),
                &["/usr/lib/git-core/git-credential-store"],
                Some("git-credentials"),
                true,
            ),
            (
                "cat may not",
                open(
                    "/home/alice/.git-credentials",
                    "/home/alice/.git-credentials",
                    r,
                    1,
                    12,
                ),
                &cat,
                Some("git-credentials"),
                false,
            ),
            (
                "ssh may read keys",
                open("/root/.ssh/id_rsa", "/root/.ssh/id_rsa", r, 1, 13),
                &["/usr/bin/ssh"],
                Some("ssh-private-key"),
                true,
            ),
            (
                "npm by script path",
                open("/home/alice/.npmrc", "/home/alice/.npmrc", r, 1, 14),
                &["/usr/bin/node", "/usr/bin/npm"],
                Some("npmrc"),
                true,
            ),
            (
                "node alone may not read .npmrc",
                open("/home/alice/.npmrc", "/home/alice/.npmrc", r, 1, 14),
                &["/usr/bin/node"],
                Some("npmrc"),
                false,
            ),
            (
                "a fake git in /tmp may not",
                open("/root/.git-credentials", "/root/.git-credentials", r, 1, 15),
                &["/tmp/git"],
                Some("git-credentials"),
                false,
            ),
            (
                "shadow",
                open("/etc/shadow", "/etc/shadow", r, 1, 16),
                &cat,
                Some("shadow"),
                false,
            ),
            (
                "claude credentials",
                open(
                    "/home/alice/.claude/.credentials.json",
                    "/home/alice/.claude/.credentials.json",
                    r,
                    1,
                    17,
                ),
                &cat,
                Some("claude-code"),
                false,
            ),
            (
                "codex auth",
                open("/root/.codex/auth.json", "/root/.codex/auth.json", r, 1, 18),
                &cat,
                Some("codex"),
                false,
            ),
            (
                "gemini oauth",
                open(
                    "/home/alice/.gemini/oauth_creds.json",
                    "/home/alice/.gemini/oauth_creds.json",
                    r,
                    1,
                    19,
                ),
                &cat,
                Some("gemini-cli"),
                false,
            ),
            (
                "secrets folder",
                open(
                    "/home/alice/.secrets/agent-keys.env",
                    "/home/alice/.secrets/agent-keys.env",
                    r,
                    1,
                    20,
                ),
                &cat,
                Some("secrets-dir"),
                false,
            ),
            (
                "gnupg private key",
                open(
                    "/root/.gnupg/private-keys-v1.d/AB.key",
                    "/root/.gnupg/private-keys-v1.d/AB.key",
                    r,
                    1,
                    21,
                ),
                &cat,
                Some("gnupg"),
                false,
            ),
            (
                "tls key file",
                open("server.key", "/srv/tls/server.key", r, 1, 22),
                &cat,
                Some("private-key-file"),
                false,
            ),
            (
                "cert is not",
                open("server.crt", "/srv/tls/server.crt", r, 1, 23),
                &cat,
                None,
                false,
            ),
            (
                "directory listing is not a read",
                open(
                    "/root/.secrets",
                    "/root/.secrets/x",
                    libc::O_RDONLY | libc::O_DIRECTORY,
                    1,
                    24,
                ),
                &cat,
                None,
                false,
            ),
            (
                "other user's home",
                open("/root/.aws/config", "/root/.aws/config", r, 1, 25),
                &cat,
                Some("aws"),
                false,
            ),
            (
                "home of a user not in passwd",
                open(
                    "/home/bob/.aws/credentials",
                    "/home/bob/.aws/credentials",
                    r,
                    1,
                    26,
                ),
                &cat,
                None,
                false,
            ),
        ];
        for (what, o, ids, want, allowed) in cases {
            let got = c.check(&o, ids);
            assert_eq!(got.as_ref().map(|h| h.secret.as_str()), want, "{what}");
            if let Some(h) = got {
                assert_eq!(h.allowed, allowed, "{what}");
            }
        }
    }

    #[test]
    fn identities_are_learned_from_opens() {
        let p = Policy::default_policy();
        let mut c = SecretCatalog::new(
            &p,
            &HostFacts {
                users: facts().users,
                ..Default::default()
            },
        );
        // created after startup, first opened (written) under its own name...
        let w = open(
            "/root/.pypirc",
            "/root/.pypirc",
            libc::O_WRONLY | libc::O_CREAT,
            5,
            500,
        );
        assert!(c.check(&w, &["/usr/bin/vi"]).is_none());
        // ...then read through a hard link elsewhere
        let r = open("/tmp/x", "/tmp/x", libc::O_RDONLY, 5, 500);
        let h = c.check(&r, &["/usr/bin/cat"]).unwrap();
        assert_eq!(h.secret, "pypirc");
        assert_eq!(h.by, MatchedBy::Inode("/root/.pypirc".into()));
    }

    #[test]
    fn failed_opens_are_not_reads() {
        let p = Policy::default_policy();
        let mut c = SecretCatalog::new(&p, &facts());
        let mut o = open("/etc/shadow", "/etc/shadow", libc::O_RDONLY, 1, 1);
        o.ret = -13;
        o.path = None;
        assert!(c.check(&o, &["/usr/bin/cat"]).is_none());
    }
}
