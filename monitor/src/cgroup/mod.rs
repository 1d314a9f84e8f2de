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

mod error;
mod names;
mod resolve;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

pub use error::CgroupError;
pub use names::CgroupNames;
pub use resolve::{resolve, WatchTarget};

/// Where the running process's mount table is read from.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// How many unknown ids [`CgroupNames`] remembers as unknown.
pub const NEGATIVE_CACHE_MAX: usize = 4096;

/// What to tell a user who gave a spec we cannot read.
const SPEC_FORMS: &str = "give a unit name (agent.slice, a-b.slice, x.scope, x.service), a path relative to the cgroup2 root (/agent.slice/x.scope), a path under the cgroup2 mount, or a numeric cgroup id";

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

#[cfg(test)]
mod tests;
