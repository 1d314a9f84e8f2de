//! Resolving a `--cgroup` spec (unit name, path or id) to the id and level
//! the kernel filter compares ([`WatchTarget`]).

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use monitor_common::WatchedCgroup;
use serde::{Deserialize, Serialize};

use super::{rel_path, walk, CgroupError};

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
