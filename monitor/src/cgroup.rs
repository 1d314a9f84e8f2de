//! cgroup v2: finding the hierarchy, resolving `--cgroup`, naming cgroup ids.
//!
//! The kernel filter keeps a task when `bpf_get_current_ancestor_cgroup_id(level)`
//! equals a watched id, so each `--cgroup` must become an id (the directory's
//! inode number) and a level (its depth below the cgroup2 root). The user names
//! the cgroup the way they know it: a systemd unit (`agent.slice`, `x.scope`), a
//! path relative to the cgroup2 root (`/agent.slice/x.scope`), a path under the
//! mount, or a numeric id.
//!
//! Host access is behind a seam: every function takes the cgroup2 root
//! directory and the mountinfo text, so tests run on temporary directories
//! (whose inode numbers are real ids) and only [`cgroup2_mount_from_host`]
//! reads the host.
//!
//! Levels are counted from the mount's root. Inside a cgroup namespace that is
//! the namespace's root, not the hierarchy's, and the kernel's ancestor levels
//! would not match; agentwatch is meant to run on the host.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use monitor_common::WatchedCgroup;
use serde::{Deserialize, Serialize};

/// Where the running process's mount table is read from.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// How many unknown ids [`CgroupNames`] remembers as unknown.
pub const NEGATIVE_CACHE_MAX: usize = 4096;

/// What to tell a user who gave a spec we cannot read.
const SPEC_FORMS: &str = "give a unit name (agent.slice, a-b.slice, x.scope, x.service), a path relative to the cgroup2 root (/agent.slice/x.scope), a path under the cgroup2 mount, or a numeric cgroup id";

/// Errors finding the cgroup2 hierarchy or resolving a cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A host file or directory could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The path tried.
        path: PathBuf,
        /// What the read returned.
        #[source]
        source: std::io::Error,
    },
    /// No mount of type `cgroup2`.
    #[error("no cgroup2 mount in {mountinfo}: agentwatch needs cgroup v2; mount it with `mkdir -p /sys/fs/cgroup/unified && mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified`, or boot with systemd.unified_cgroup_hierarchy=1")]
    NoCgroup2 {
        /// Where the mount table came from.
        mountinfo: String,
    },
    /// The spec has none of the accepted forms.
    #[error("bad cgroup {spec:?}: {reason}; {SPEC_FORMS}")]
    BadSpec {
        /// What the user gave.
        spec: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A slice's directory does not exist.
    #[error("cgroup {spec} not found: no directory {}; create it (mkdir) or start the agent with systemd-run --slice {spec}", path.display())]
    SliceNotFound {
        /// The slice name given.
        spec: String,
        /// The directory tried.
        path: PathBuf,
    },
    /// A path (relative to the root, or under the mount) does not exist.
    #[error("cgroup {spec} not found: no directory {}; create it (mkdir) or give an existing cgroup", path.display())]
    PathNotFound {
        /// The path given.
        spec: String,
        /// The directory tried.
        path: PathBuf,
    },
    /// No directory of a scope's or service's name anywhere in the tree.
    #[error("cgroup {spec} not found: no directory named {spec} anywhere under {}; is the unit running?", root.display())]
    UnitNotFound {
        /// The unit name given.
        spec: String,
        /// The cgroup2 root searched.
        root: PathBuf,
    },
    /// Several directories have the unit's name.
    #[error("cgroup {spec} is ambiguous: {} directories under {} have that name: {}; give one as a path instead", matches.len(), root.display(), matches.join(", "))]
    Ambiguous {
        /// The unit name given.
        spec: String,
        /// The cgroup2 root searched.
        root: PathBuf,
        /// The matches, as paths relative to the root.
        matches: Vec<String>,
    },
    /// No directory with that inode number.
    #[error("cgroup id {id} not found: no directory under {} has inode {id} (ids are never reused: a removed or recreated cgroup has a new id)", root.display())]
    IdNotFound {
        /// The id given.
        id: u64,
        /// The cgroup2 root searched.
        root: PathBuf,
    },
    /// An absolute path that is not under the cgroup2 mount (a cgroup v1
    /// hierarchy, or not a cgroup at all).
    #[error("{} is not under the cgroup2 mount {}: only cgroup v2 can be watched; give a path under {} or relative to it (/agent.slice)", path.display(), root.display(), root.display())]
    OutsideMount {
        /// The path given.
        path: PathBuf,
        /// The cgroup2 mount.
        root: PathBuf,
    },
    /// The path exists but is a file (like `cgroup.procs`), not a cgroup.
    #[error("{} is not a directory, so not a cgroup", path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
}

/// The mount point of the cgroup2 hierarchy, from mountinfo text
/// (`/sys/fs/cgroup/unified` on a hybrid host, `/sys/fs/cgroup` on a unified one).
///
/// Never assume a fixed path: hybrid and unified hosts differ. If there are
/// several cgroup2 mounts (bind mounts), the first one wins.
pub fn cgroup2_mount(mountinfo: &str) -> Result<PathBuf, CgroupError> {
    mountinfo
        .lines()
        .find_map(|line| {
            // id parent major:minor root mount-point options [optional...] - fstype source super-options
            let fields: Vec<&str> = line.split_whitespace().collect();
            let sep = fields.iter().skip(6).position(|&f| f == "-")? + 6;
            (fields.get(sep + 1) == Some(&"cgroup2")).then(|| unescape(fields.get(4)?))?
        })
        .ok_or_else(|| CgroupError::NoCgroup2 {
            mountinfo: "mountinfo".to_owned(),
        })
}

/// [`cgroup2_mount`] of the host, from [`MOUNTINFO`].
pub fn cgroup2_mount_from_host() -> Result<PathBuf, CgroupError> {
    let text = std::fs::read_to_string(MOUNTINFO).map_err(|source| CgroupError::Read {
        path: MOUNTINFO.into(),
        source,
    })?;
    cgroup2_mount(&text).map_err(|e| match e {
        CgroupError::NoCgroup2 { .. } => CgroupError::NoCgroup2 {
            mountinfo: MOUNTINFO.to_owned(),
        },
        other => other,
    })
}

/// Undoes mountinfo's octal escapes (`\040` space, `\011` tab, `\012`
/// newline, `\134` backslash). Mount points need not be UTF-8.
fn unescape(field: &str) -> Option<PathBuf> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).ok()?);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(PathBuf::from(OsString::from_vec(out)))
}

/// One cgroup to watch, resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchTarget {
    /// cgroup id: the directory's inode number, what
    /// `bpf_get_current_cgroup_id()` returns for a task in it.
    pub id: u64,
    /// Number of path components below the cgroup2 root (the root is 0).
    pub level: u32,
    /// Path relative to the cgroup2 root, starting with `/` (`/agent.slice`).
    pub rel_path: String,
    /// Path on this host (`/sys/fs/cgroup/unified/agent.slice`).
    pub abs_path: PathBuf,
}

impl WatchTarget {
    /// What the kernel filter is given.
    pub fn to_wire(&self) -> WatchedCgroup {
        WatchedCgroup {
            id: self.id,
            level: self.level,
            _pad: 0,
        }
    }
}

/// Resolves a `--cgroup` spec under the cgroup2 root `root`.
///
/// Accepted forms, tried in this order:
/// - a number: the cgroup id (a directory whose inode number it is);
/// - a path starting with `/`: under `root` if it starts with it
///   (`/sys/fs/cgroup/unified/agent.slice`), otherwise relative to `root`
///   (`/agent.slice/x.scope`, `/` for the root itself);
/// - a relative path with a `/` (`agent.slice/x.scope`): relative to `root`;
/// - `NAME.slice`: systemd's slice nesting (`a-b.slice` is
///   `a.slice/a-b.slice`; `-.slice` is the root);
/// - `NAME.scope` or `NAME.service`: the one directory of that name anywhere
///   in the tree;
/// - anything else: a directory directly under `root` (`agent` for `/agent`).
pub fn resolve(root: &Path, spec: &str) -> Result<WatchTarget, CgroupError> {
    let bad = |reason| CgroupError::BadSpec {
        spec: spec.to_owned(),
        reason,
    };
    if spec.is_empty() {
        return Err(bad("it is empty"));
    }
    if Path::new(spec)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err(bad("'..' is not allowed"));
    }
    if spec.bytes().all(|b| b.is_ascii_digit()) {
        let id: u64 = spec
            .parse()
            .map_err(|_| bad("the id does not fit in 64 bits"))?;
        return resolve_id(root, id);
    }
    if spec.starts_with('/') {
        return resolve_absolute(root, spec);
    }
    if spec.contains('/') {
        return resolve_path(root, spec, root.join(spec));
    }
    if let Some(stem) = spec.strip_suffix(".slice") {
        let rel = slice_path(stem).ok_or_else(|| {
            bad("the dash-separated parts of a slice name must not be empty (a-b.slice, not a--b.slice)")
        })?;
        let path = root.join(rel);
        if !path.exists() {
            return Err(CgroupError::SliceNotFound {
                spec: spec.to_owned(),
                path,
            });
        }
        return target(root, path);
    }
    if spec.ends_with(".scope") || spec.ends_with(".service") {
        return resolve_unit(root, spec);
    }
    resolve_path(root, spec, root.join(spec))
}

/// `a-b-c` -> `a.slice/a-b.slice/a-b-c.slice`; `-` (from `-.slice`) -> the root.
fn slice_path(stem: &str) -> Option<PathBuf> {
    if stem == "-" {
        return Some(PathBuf::new());
    }
    let parts: Vec<&str> = stem.split('-').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    Some(
        (1..=parts.len())
            .map(|n| format!("{}.slice", parts[..n].join("-")))
            .collect(),
    )
}

/// A spec starting with `/`: a host path under the mount, a host path outside
/// it (an error naming the mount), or a path relative to the root.
fn resolve_absolute(root: &Path, spec: &str) -> Result<WatchTarget, CgroupError> {
    let given = Path::new(spec);
    if given.starts_with(root) {
        return resolve_path(root, spec, given.to_path_buf());
    }
    let relative = root.join(spec.trim_start_matches('/'));
    if relative.exists() {
        return target(root, relative);
    }
    // Not under the root as a relative path: if it names something on the host
    // (or starts like a host path: /sys/..., /home/...), the user meant a host
    // path; it may still be the mount reached through a symlink.
    if let (Ok(real), Ok(real_root)) = (given.canonicalize(), root.canonicalize()) {
        if let Ok(rest) = real.strip_prefix(&real_root) {
            return target(root, root.join(rest));
        }
    }
    let first = given.components().nth(1);
    let host_like = given.exists()
        || first.is_some_and(|c| Path::new("/").join(c).exists() && !root.join(c).exists());
    if host_like {
        return Err(CgroupError::OutsideMount {
            path: given.to_path_buf(),
            root: root.to_path_buf(),
        });
    }
    resolve_path(root, spec, relative)
}

fn resolve_path(root: &Path, spec: &str, path: PathBuf) -> Result<WatchTarget, CgroupError> {
    if !path.exists() {
        return Err(CgroupError::PathNotFound {
            spec: spec.to_owned(),
            path,
        });
    }
    target(root, path)
}

/// A scope or service: systemd puts it under some slice, so search the tree.
fn resolve_unit(root: &Path, spec: &str) -> Result<WatchTarget, CgroupError> {
    let mut matches: Vec<PathBuf> = walk(root)?
        .into_iter()
        .filter(|(p, _)| p.file_name().is_some_and(|n| n == spec))
        .map(|(p, _)| p)
        .collect();
    match matches.len() {
        0 => Err(CgroupError::UnitNotFound {
            spec: spec.to_owned(),
            root: root.to_path_buf(),
        }),
        1 => target(root, matches.remove(0)),
        _ => Err(CgroupError::Ambiguous {
            spec: spec.to_owned(),
            root: root.to_path_buf(),
            matches: matches.iter().map(|p| rel_path(root, p)).collect(),
        }),
    }
}

fn resolve_id(root: &Path, id: u64) -> Result<WatchTarget, CgroupError> {
    match walk(root)?.into_iter().find(|&(_, ino)| ino == id) {
        Some((path, _)) => target(root, path),
        None => Err(CgroupError::IdNotFound {
            id,
            root: root.to_path_buf(),
        }),
    }
}

/// The target for an existing path under `root`.
fn target(root: &Path, abs_path: PathBuf) -> Result<WatchTarget, CgroupError> {
    // Rebuilt from components to drop a trailing `/` (`/` resolves to the root itself).
    let abs_path: PathBuf = abs_path.components().collect();
    let meta = std::fs::metadata(&abs_path).map_err(|source| CgroupError::Read {
        path: abs_path.clone(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(CgroupError::NotADirectory { path: abs_path });
    }
    let level = abs_path
        .strip_prefix(root)
        .map(|rest| rest.components().count() as u32)
        .unwrap_or(0);
    Ok(WatchTarget {
        id: meta.ino(),
        level,
        rel_path: rel_path(root, &abs_path),
        abs_path,
    })
}

/// `/sys/fs/cgroup/unified/a/b` under `/sys/fs/cgroup/unified` -> `/a/b`; the root -> `/`.
fn rel_path(root: &Path, path: &Path) -> String {
    let rest = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<String> = rest
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    format!("/{}", parts.join("/"))
}

/// Every directory under `root` (itself included) with its inode number, in
/// path order. Symlinks are not followed. A subdirectory that cannot be read
/// (removed while walking: cgroups come and go) is skipped; only an
/// unreadable root is an error.
fn walk(root: &Path) -> Result<Vec<(PathBuf, u64)>, CgroupError> {
    let read_err = |source| CgroupError::Read {
        path: root.to_path_buf(),
        source,
    };
    let root_ino = std::fs::metadata(root).map_err(read_err)?.ino();
    let mut out = vec![(root.to_path_buf(), root_ino)];
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(source) if dir == root => return Err(read_err(source)),
            Err(_) => continue,
        };
        let mut subdirs: Vec<(PathBuf, u64)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                // stat rather than d_ino: they differ on some filesystems.
                let ino = e.metadata().ok()?.ino();
                Some((e.path(), ino))
            })
            .collect();
        subdirs.sort();
        stack.extend(subdirs.iter().rev().map(|(p, _)| p.clone()));
        out.extend(subdirs);
    }
    out.sort();
    Ok(out)
}

/// Names of cgroup ids (paths relative to the cgroup2 root), for events that
/// carry only the id.
///
/// A miss walks the tree once and remembers every directory it saw, so the
/// next unknown id from the same tree is usually a hit. An id that is still
/// unknown after a walk goes in a bounded negative cache: ids are never
/// reused and a cgroup's directory exists before any task can run in it, so an
/// id not found once will never be found, and a storm of events from a removed
/// cgroup walks the tree once, not once per event.
///
/// Serialized as a map from id to path holding only the ids looked up (not the
/// whole host tree), so a recorded session carries the names its events
/// used; deserialized, it has no root and never touches the host: replay sees
/// exactly the names the live run saw.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CgroupNames {
    /// Ids looked up (or inserted), with their paths: what a recording keeps.
    known: BTreeMap<u64, String>,
    /// The cgroup2 root to walk on a miss; `None` after deserializing.
    #[serde(skip)]
    root: Option<PathBuf>,
    /// Every directory the last walk saw.
    #[serde(skip)]
    seen: HashMap<u64, String>,
    /// Ids a walk did not find.
    #[serde(skip)]
    missing: HashSet<u64>,
    /// `missing` in insertion order, to evict the oldest.
    #[serde(skip)]
    missing_order: VecDeque<u64>,
    /// Number of walks so far.
    #[serde(skip)]
    walks: u64,
}

impl CgroupNames {
    /// Names looked up live, under the cgroup2 root `root`.
    pub fn new(root: PathBuf) -> Self {
        Self {
            root: Some(root),
            ..Self::default()
        }
    }

    /// The path of cgroup `id` relative to the root (`/agent.slice/x.scope`),
    /// or `None` if it does not exist (any more), or without a root (replay)
    /// when it was not recorded.
    pub fn lookup(&mut self, id: u64) -> Option<String> {
        if let Some(p) = self.known.get(&id) {
            return Some(p.clone());
        }
        if let Some(p) = self.seen.get(&id) {
            let p = p.clone();
            self.known.insert(id, p.clone());
            return Some(p);
        }
        if self.missing.contains(&id) {
            return None;
        }
        let root = self.root.as_ref()?;
        self.walks += 1;
        // An unreadable root makes every id unknown; caching that keeps a
        // storm of events from retrying the failing walk.
        self.seen = walk(root)
            .unwrap_or_default()
            .into_iter()
            .map(|(path, ino)| (ino, rel_path(root, &path)))
            .collect();
        if let Some(p) = self.seen.get(&id) {
            let p = p.clone();
            self.known.insert(id, p.clone());
            return Some(p);
        }
        if self.missing_order.len() >= NEGATIVE_CACHE_MAX {
            if let Some(old) = self.missing_order.pop_front() {
                self.missing.remove(&old);
            }
        }
        self.missing.insert(id);
        self.missing_order.push_back(id);
        None
    }

    /// Records a name known another way (the targets resolved at start).
    pub fn insert(&mut self, id: u64, rel_path: String) {
        self.known.insert(id, rel_path);
    }

    /// The ids looked up so far, with their paths: what a recording carries.
    pub fn known(&self) -> &BTreeMap<u64, String> {
        &self.known
    }

    /// How many times the tree was walked (for tests and diagnostics).
    pub fn walks(&self) -> u64 {
        self.walks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A cgroup-like tree:
    /// agent.slice/run-r1.scope, a.slice/a-b.slice/a-b-c.slice,
    /// x.slice/dup.scope, y.slice/z.slice/dup.scope, plain, a file cgroup.procs.
    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for d in [
            "agent.slice/run-r1.scope",
            "a.slice/a-b.slice/a-b-c.slice",
            "x.slice/dup.scope",
            "y.slice/z.slice/dup.scope",
            "plain",
            "with space",
            "svc.slice/web.service",
        ] {
            fs::create_dir_all(t.path().join(d)).unwrap();
        }
        fs::write(t.path().join("cgroup.procs"), "").unwrap();
        t
    }

    fn ino(p: &Path) -> u64 {
        fs::metadata(p).unwrap().ino()
    }

    #[test]
    fn finds_cgroup2_in_hybrid_and_unified_mountinfo() {
        let hybrid = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount(hybrid).unwrap(),
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        // Optional fields (shared:, master:) before the separator.
        let unified = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
26 22 0:23 / /sys rw,nosuid shared:2 - sysfs sysfs rw
30 26 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 master:3 - cgroup2 cgroup2 rw,nsdelegate
";
        assert_eq!(
            cgroup2_mount(unified).unwrap(),
            PathBuf::from("/sys/fs/cgroup")
        );
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        let text = "50 22 0:40 / /mnt/my\\040cgroups\\011tab\\134back rw - cgroup2 none rw\n";
        assert_eq!(
            cgroup2_mount(text).unwrap(),
            PathBuf::from("/mnt/my cgroups\ttab\\back")
        );
        // A backslash not followed by three octal digits stays as it is.
        assert_eq!(unescape("a\\9b\\04").unwrap(), PathBuf::from("a\\9b\\04"));
    }

    #[test]
    fn no_cgroup2_says_v2_is_needed() {
        let text = "\
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
garbage line
41 31 0:38 / /mnt/cgroup2 rw - tmpfs cgroup2 rw
";
        let err = cgroup2_mount(text).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("no cgroup2 mount in mountinfo: agentwatch needs cgroup v2"),
            "{msg}"
        );
        assert!(msg.contains("mount -t cgroup2"), "{msg}");
        assert!(cgroup2_mount("").is_err());
    }

    #[test]
    fn slices_follow_systemd_nesting() {
        let t = tree();
        let root = t.path();
        let a = resolve(root, "agent.slice").unwrap();
        assert_eq!(a.level, 1);
        assert_eq!(a.rel_path, "/agent.slice");
        assert_eq!(a.abs_path, root.join("agent.slice"));
        assert_eq!(a.id, ino(&root.join("agent.slice")));
        let abc = resolve(root, "a-b-c.slice").unwrap();
        assert_eq!(abc.rel_path, "/a.slice/a-b.slice/a-b-c.slice");
        assert_eq!(abc.level, 3);
        assert_eq!(resolve(root, "a-b.slice").unwrap().level, 2);
        let r = resolve(root, "-.slice").unwrap();
        assert_eq!((r.level, r.rel_path.as_str(), r.id), (0, "/", ino(root)));
    }

    #[test]
    fn missing_slice_says_where_and_how() {
        let t = tree();
        let root = t.path();
        let err = resolve(root, "nope.slice").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cgroup nope.slice not found: no directory {}/nope.slice; create it (mkdir) or start the agent with systemd-run --slice nope.slice",
                root.display()
            )
        );
        let err = resolve(root, "a-x.slice").unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("{}/a.slice/a-x.slice;", root.display())),
            "{err}"
        );
    }

    #[test]
    fn scopes_and_services_are_searched() {
        let t = tree();
        let root = t.path();
        let s = resolve(root, "run-r1.scope").unwrap();
        assert_eq!(s.rel_path, "/agent.slice/run-r1.scope");
        assert_eq!(s.level, 2);
        assert_eq!(
            resolve(root, "web.service").unwrap().rel_path,
            "/svc.slice/web.service"
        );
        match resolve(root, "dup.scope") {
            Err(e @ CgroupError::Ambiguous { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("2 directories"), "{msg}");
                assert!(
                    msg.contains("/x.slice/dup.scope, /y.slice/z.slice/dup.scope"),
                    "{msg}"
                );
            }
            other => panic!("expected ambiguous, got {other:?}"),
        }
        let err = resolve(root, "gone.scope").unwrap_err();
        assert!(matches!(err, CgroupError::UnitNotFound { .. }));
        assert!(err
            .to_string()
            .contains(&format!("anywhere under {}", root.display())));
    }

    #[test]
    fn paths_relative_to_the_root_and_under_the_mount() {
        let t = tree();
        let root = t.path();
        let rel = resolve(root, "/agent.slice/run-r1.scope").unwrap();
        assert_eq!(rel.level, 2);
        let abs = resolve(
            root,
            root.join("agent.slice/run-r1.scope").to_str().unwrap(),
        )
        .unwrap();
        assert_eq!(rel, abs);
        assert_eq!(resolve(root, "agent.slice/run-r1.scope").unwrap(), rel);
        assert_eq!(
            resolve(root, "/agent.slice/").unwrap().rel_path,
            "/agent.slice"
        );
        let r = resolve(root, "/").unwrap();
        assert_eq!((r.level, r.rel_path.as_str()), (0, "/"));
        assert_eq!(r.abs_path.as_os_str(), root.as_os_str());
        assert_eq!(resolve(root, root.to_str().unwrap()).unwrap(), r);
        assert_eq!(resolve(root, "plain").unwrap().rel_path, "/plain");
        assert_eq!(
            resolve(root, "/with space").unwrap().rel_path,
            "/with space"
        );
        let err = resolve(root, "/agent.slice/nope").unwrap_err();
        assert!(err.to_string().contains(&format!(
            "no directory {}/agent.slice/nope;",
            root.display()
        )));
        let under = format!("{}/nope", root.display());
        assert!(matches!(
            resolve(root, &under),
            Err(CgroupError::PathNotFound { .. })
        ));
    }

    #[test]
    fn a_path_outside_the_mount_names_the_mount() {
        let t = tree();
        let other = tempfile::tempdir().unwrap();
        let root = t.path();
        for spec in [
            other.path().to_str().unwrap().to_owned(),
            "/sys/fs/cgroup/memory/agent.slice".to_owned(),
        ] {
            let err = resolve(root, &spec).unwrap_err();
            assert!(
                matches!(err, CgroupError::OutsideMount { .. }),
                "{spec}: {err:?}"
            );
            assert!(
                err.to_string()
                    .contains(&format!("not under the cgroup2 mount {}", root.display())),
                "{err}"
            );
        }
    }

    #[test]
    fn the_mount_through_a_symlink_is_still_under_it() {
        let t = tree();
        let links = tempfile::tempdir().unwrap();
        let link = links.path().join("cg");
        std::os::unix::fs::symlink(t.path(), &link).unwrap();
        let spec = format!("{}/agent.slice", link.display());
        let got = resolve(t.path(), &spec).unwrap();
        assert_eq!((got.rel_path.as_str(), got.level), ("/agent.slice", 1));
    }

    #[test]
    fn numeric_ids_are_found_by_inode() {
        let t = tree();
        let root = t.path();
        let scope = root.join("y.slice/z.slice/dup.scope");
        let got = resolve(root, &ino(&scope).to_string()).unwrap();
        assert_eq!(got.rel_path, "/y.slice/z.slice/dup.scope");
        assert_eq!(got.level, 3);
        assert_eq!(got.abs_path, scope);
        assert_eq!(resolve(root, &ino(root).to_string()).unwrap().level, 0);
        // A file's inode is not a cgroup.
        let file_ino = ino(&root.join("cgroup.procs"));
        assert!(matches!(
            resolve(root, &file_ino.to_string()),
            Err(CgroupError::IdNotFound { .. })
        ));
        assert!(matches!(
            resolve(root, "99999999999999999999"),
            Err(CgroupError::BadSpec { .. })
        ));
    }

    #[test]
    fn bad_specs_are_explained() {
        let t = tree();
        let root = t.path();
        for spec in [
            "",
            "a--b.slice",
            "-a.slice",
            "a-.slice",
            ".slice",
            "/agent.slice/../x",
            "../etc",
        ] {
            let err = resolve(root, spec).unwrap_err();
            assert!(
                matches!(err, CgroupError::BadSpec { .. }),
                "{spec:?}: {err:?}"
            );
            assert!(err.to_string().contains("give a unit name"), "{err}");
        }
        let err = resolve(root, "/cgroup.procs").unwrap_err();
        assert!(matches!(err, CgroupError::NotADirectory { .. }), "{err:?}");
        let err = resolve(t.path().join("missing-root").as_path(), "x.scope").unwrap_err();
        assert!(matches!(err, CgroupError::Read { .. }), "{err:?}");
    }

    #[test]
    fn to_wire_carries_id_and_level() {
        let t = tree();
        let w = resolve(t.path(), "a-b.slice").unwrap();
        assert_eq!(
            w.to_wire(),
            WatchedCgroup {
                id: w.id,
                level: 2,
                _pad: 0
            }
        );
    }

    #[test]
    fn names_are_cached_and_misses_walk_once() {
        let t = tree();
        let root = t.path();
        let mut names = CgroupNames::new(root.to_path_buf());
        let scope = ino(&root.join("agent.slice/run-r1.scope"));
        assert_eq!(
            names.lookup(scope).as_deref(),
            Some("/agent.slice/run-r1.scope")
        );
        assert_eq!(names.walks(), 1);
        // A sibling seen in the same walk needs no new walk.
        let plain = ino(&root.join("plain"));
        assert_eq!(names.lookup(plain).as_deref(), Some("/plain"));
        assert_eq!(
            names.lookup(scope).as_deref(),
            Some("/agent.slice/run-r1.scope")
        );
        assert_eq!(names.walks(), 1);
        // A storm of one unknown id walks once.
        for _ in 0..1000 {
            assert_eq!(names.lookup(u64::MAX), None);
        }
        assert_eq!(names.walks(), 2);
        // A cgroup created later is found by a new walk.
        fs::create_dir(root.join("agent.slice/run-r2.scope")).unwrap();
        let new = ino(&root.join("agent.slice/run-r2.scope"));
        assert_eq!(
            names.lookup(new).as_deref(),
            Some("/agent.slice/run-r2.scope")
        );
        assert_eq!(names.walks(), 3);
        // Only what was looked up is kept for a recording.
        assert_eq!(names.known().len(), 3);
    }

    #[test]
    fn negative_cache_is_bounded() {
        let t = tree();
        let mut names = CgroupNames::new(t.path().to_path_buf());
        for id in 0..(NEGATIVE_CACHE_MAX as u64 + 10) {
            names.lookup(u64::MAX - id);
        }
        assert_eq!(names.missing.len(), NEGATIVE_CACHE_MAX);
        assert_eq!(names.missing_order.len(), NEGATIVE_CACHE_MAX);
        // The oldest were evicted, the newest kept.
        assert!(!names.missing.contains(&u64::MAX));
        assert!(names
            .missing
            .contains(&(u64::MAX - NEGATIVE_CACHE_MAX as u64 - 9)));
    }

    #[test]
    fn names_round_trip_as_a_map_and_replay_never_walks() {
        let t = tree();
        let root = t.path();
        let mut names = CgroupNames::new(root.to_path_buf());
        let scope = ino(&root.join("agent.slice/run-r1.scope"));
        names.lookup(scope).unwrap();
        names.insert(1, "/".to_owned());
        let json = serde_json::to_string(&names).unwrap();
        assert_eq!(
            json,
            format!(r#"{{"1":"/","{scope}":"/agent.slice/run-r1.scope"}}"#)
        );
        let mut replayed: CgroupNames = serde_json::from_str(&json).unwrap();
        assert_eq!(
            replayed.lookup(scope).as_deref(),
            Some("/agent.slice/run-r1.scope")
        );
        let plain = ino(&root.join("plain"));
        assert_eq!(replayed.lookup(plain), None);
        assert_eq!(replayed.walks(), 0);
    }

    /// The real host: the cgroup2 mount is found and its root resolves to level 0.
    #[test]
    fn host_cgroup2_root() {
        let root = cgroup2_mount_from_host()
            .unwrap_or_else(|e| panic!("this machine kind has cgroup2 mounted: {e}"));
        let r = resolve(&root, "/")
            .unwrap_or_else(|e| panic!("resolving / under {}: {e}", root.display()));
        assert_eq!(r.level, 0);
        assert_eq!(r.rel_path, "/");
        eprintln!("cgroup2 at {}, root id {}", root.display(), r.id);
    }
}
