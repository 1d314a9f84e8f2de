//! Where sessions live: the directory (created root-only), file names that
//! sort by time, listing, and retention (oldest removed first).
//!
//! The directory must be out of the watched agent's reach, since the agent
//! is what the session records: it is created mode 0700, must be owned by
//! the user agentwatch runs as (root), must not be a symlink, and is
//! tightened to 0700 if found looser. Files are created mode 0600 with
//! `O_EXCL | O_NOFOLLOW`, never overwriting an older session.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Where sessions go unless `--record` says otherwise.
pub const DEFAULT_DIR: &str = "/var/lib/agentwatch/sessions";

/// Why the session directory or file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Creating the directory failed.
    #[error("cannot create session directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The directory is reachable by others.
    #[error("session directory {path} is not safe: {reason}")]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Creating the file failed.
    #[error("cannot create session file {path}")]
    CreateFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Listing the directory failed.
    #[error("cannot list session directory {path}")]
    List {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// How much history to keep. `None` means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Remove the oldest sessions while all of them together exceed this.
    pub max_total_bytes: Option<u64>,
    /// Remove sessions last written longer ago than this.
    pub max_age: Option<Duration>,
}

impl Default for Retention {
    /// 1 GiB and 30 days: a month of a busy agent's sessions, compressed, on
    /// a small VPS disk.
    fn default() -> Self {
        Retention {
            max_total_bytes: Some(1 << 30),
            max_age: Some(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

/// A session file in the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionFile {
    /// Full path.
    pub path: PathBuf,
    /// Size on disk in bytes.
    pub size: u64,
    /// Last written.
    pub modified: SystemTime,
}

/// Why a session was pruned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneReason {
    /// Older than `max_age`.
    Age,
    /// All sessions together were over `max_total_bytes`.
    Size,
}

/// A session that retention removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pruned {
    /// The file that was removed.
    pub file: SessionFile,
    /// Why.
    pub reason: PruneReason,
}

impl std::fmt::Display for Pruned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = match self.reason {
            PruneReason::Age => "older than the retention age",
            PruneReason::Size => "sessions over the retention size",
        };
        write!(
            f,
            "pruned session {} ({} bytes): {why}",
            self.file.path.display(),
            self.file.size
        )
    }
}

/// Create `dir` (and parents) if needed and make sure only its owner, who
/// must be us, can enter it.
pub fn prepare_dir(dir: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    let meta = fs::symlink_metadata(dir).map_err(|source| StoreError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let unsafe_ = |reason: String| StoreError::Unsafe {
        path: dir.to_path_buf(),
        reason,
    };
    if !meta.is_dir() {
        return Err(unsafe_("it is not a directory (a symlink?)".into()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return Err(unsafe_(format!(
            "it is owned by uid {}, not by uid {euid} that agentwatch runs as (chown it or \
             choose another with --record)",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| {
            unsafe_(format!(
                "it has mode {:o} and could not be changed to 700: {e}",
                meta.mode() & 0o777
            ))
        })?;
    }
    Ok(())
}

/// The file name for a session: UTC start time first, so `ls` sorts by
/// time, then what was watched: `20261204T210455Z-agent.slice.jsonl.zst`.
pub fn file_name(start_ns: u64, label: &str, compressed: bool) -> String {
    let stamp = jiff::Timestamp::from_nanosecond(start_ns as i128)
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|_| "19700101T000000Z".into());
    let ext = if compressed { "jsonl.zst" } else { "jsonl" };
    format!("{stamp}-{}.{ext}", sanitize_label(label))
}

/// A label for file names from watched cgroup paths: safe characters only,
/// `/` as `_`, several joined with `+`.
pub fn label_for_cgroups<S: AsRef<str>>(paths: &[S]) -> String {
    let joined = paths
        .iter()
        .map(|p| p.as_ref().trim_matches('/'))
        .collect::<Vec<_>>()
        .join("+");
    sanitize_label(&joined)
}

fn sanitize_label(label: &str) -> String {
    let mut s: String = label
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '+' => c,
            _ => '_',
        })
        .collect();
    let s2 = s.trim_matches(|c| c == '_' || c == '.').to_string();
    s = s2;
    if s.len() > 64 {
        // Keep the end: the leaf cgroup says the most.
        s = s[s.len() - 64..].to_string();
    }
    if s.is_empty() {
        "session".into()
    } else {
        s
    }
}

/// Whether a name looks like one of ours (`YYYYmmddTHHMMSSZ-*.jsonl[.zst]`):
/// retention never touches anything else in the directory.
pub fn is_session_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > 17
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
        && b[16] == b'-'
        && (name.ends_with(".jsonl") || name.ends_with(".jsonl.zst"))
}

fn open_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Create a new session file in `dir` (prepared with [`prepare_dir`]); if
/// the name is taken (two runs in one second), add `-1`, `-2`, ...
pub fn create_in_dir(
    dir: &Path,
    start_ns: u64,
    label: &str,
    compressed: bool,
) -> Result<(PathBuf, File), StoreError> {
    let base = file_name(start_ns, label, compressed);
    let ext = if compressed { ".jsonl.zst" } else { ".jsonl" };
    let stem = base.strip_suffix(ext).unwrap_or(&base).to_string();
    for n in 0..1000 {
        let name = if n == 0 {
            base.clone()
        } else {
            format!("{stem}-{n}{ext}")
        };
        let path = dir.join(name);
        match open_new(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(StoreError::CreateFile { path, source }),
        }
    }
    let path = dir.join(base);
    Err(StoreError::CreateFile {
        path,
        source: io::Error::from(io::ErrorKind::AlreadyExists),
    })
}

/// Create a session file at exactly `path` (`--record FILE`), mode 0600.
/// Refuses to overwrite: an old session is evidence.
pub fn create_at(path: &Path) -> Result<File, StoreError> {
    open_new(path).map_err(|source| StoreError::CreateFile {
        path: path.to_path_buf(),
        source,
    })
}

/// The session files in `dir`, oldest first (by name, which starts with the
/// start time).
pub fn list(dir: &Path) -> Result<Vec<SessionFile>, StoreError> {
    let err = |source| StoreError::List {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_session_name(name) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        out.push(SessionFile {
            path: entry.path(),
            size: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        });
    }
    out.sort_by(|a, b| a.path.file_name().cmp(&b.path.file_name()));
    Ok(out)
}

/// Which of `files` (oldest first) retention removes, never `current`: first
/// everything older than `max_age`, then the oldest until the total (the
/// current file included) fits in `max_total_bytes`.
pub fn plan_prune(
    files: &[SessionFile],
    current: Option<&Path>,
    retention: &Retention,
    now: SystemTime,
) -> Vec<(usize, PruneReason)> {
    let mut out = Vec::new();
    let mut removed = vec![false; files.len()];
    let is_current = |f: &SessionFile| current.is_some_and(|c| c == f.path);
    if let Some(max_age) = retention.max_age {
        for (i, f) in files.iter().enumerate() {
            let age = now.duration_since(f.modified).unwrap_or_default();
            if !is_current(f) && age > max_age {
                removed[i] = true;
                out.push((i, PruneReason::Age));
            }
        }
    }
    if let Some(max) = retention.max_total_bytes {
        let mut total: u64 = files
            .iter()
            .zip(&removed)
            .filter(|(_, r)| !**r)
            .map(|(f, _)| f.size)
            .sum();
        for (i, f) in files.iter().enumerate() {
            if total <= max {
                break;
            }
            if removed[i] || is_current(f) {
                continue;
            }
            removed[i] = true;
            total -= f.size;
            out.push((i, PruneReason::Size));
        }
    }
    out
}

/// Apply retention to `dir`, never removing `current`. Returns what was
/// removed; the caller says so on stderr. A file that cannot be removed is
/// skipped (and not returned).
pub fn prune(
    dir: &Path,
    current: Option<&Path>,
    retention: &Retention,
    now: SystemTime,
) -> Result<Vec<Pruned>, StoreError> {
    let files = list(dir)?;
    let mut out = Vec::new();
    for (i, reason) in plan_prune(&files, current, retention, now) {
        if fs::remove_file(&files[i].path).is_ok() {
            out.push(Pruned {
                file: files[i].clone(),
                reason,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_796_418_295_000_000_000; // 2026-12-04T21:04:55Z

    #[test]
    fn names_sort_by_time_and_are_recognised() {
        let a = file_name(T0, "agent.slice", true);
        assert_eq!(a, "20261204T210455Z-agent.slice.jsonl.zst");
        let b = file_name(T0 + 3_600_000_000_000, "a", false);
        assert!(a < b);
        assert!(is_session_name(&a) && is_session_name(&b));
        assert!(!is_session_name("notes.txt"));
        assert!(!is_session_name("20261204T210455Z-x.json"));
    }

    #[test]
    fn labels_are_safe_for_file_names() {
        assert_eq!(
            label_for_cgroups(&["/user.slice/user-1000.slice/agent scope"]),
            "user.slice_user-1000.slice_agent_scope"
        );
        assert_eq!(
            label_for_cgroups(&["a.slice", "b.slice"]),
            "a.slice+b.slice"
        );
        assert_eq!(label_for_cgroups(&["../.."]), "session");
        let long = "x/".repeat(100) + "leaf";
        assert!(label_for_cgroups(&[long]).ends_with("leaf"));
    }

    #[test]
    fn dir_is_created_private_and_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("var/lib/agentwatch/sessions");
        prepare_dir(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        prepare_dir(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(matches!(prepare_dir(&link), Err(StoreError::Unsafe { .. })));
    }

    #[test]
    fn files_are_0600_and_never_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let (p1, _) = create_in_dir(tmp.path(), T0, "a", true).unwrap();
        let (p2, _) = create_in_dir(tmp.path(), T0, "a", true).unwrap();
        assert_ne!(p1, p2);
        assert!(p2.to_str().unwrap().ends_with("-a-1.jsonl.zst"), "{p2:?}");
        assert!(is_session_name(p2.file_name().unwrap().to_str().unwrap()));
        assert_eq!(fs::metadata(&p1).unwrap().mode() & 0o777, 0o600);
        assert!(create_at(&p1).is_err());
    }

    fn sf(name: &str, size: u64, age_days: u64, now: SystemTime) -> SessionFile {
        SessionFile {
            path: PathBuf::from("/s").join(name),
            size,
            modified: now - Duration::from_secs(age_days * 86400),
        }
    }

    #[test]
    fn retention_removes_oldest_first_and_never_the_current_file() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let files = vec![
            sf("20260101T000000Z-a.jsonl.zst", 100, 40, now),
            sf("20260201T000000Z-a.jsonl.zst", 100, 20, now),
            sf("20260301T000000Z-a.jsonl.zst", 100, 10, now),
            sf("20260401T000000Z-a.jsonl.zst", 100, 1, now),
            sf("20260501T000000Z-a.jsonl.zst", 100, 0, now),
        ];
        let r = Retention {
            max_total_bytes: Some(250),
            max_age: Some(Duration::from_secs(30 * 86400)),
        };
        let current = files[4].path.clone();
        let plan = plan_prune(&files, Some(&current), &r, now);
        assert_eq!(
            plan,
            vec![
                (0, PruneReason::Age),
                (1, PruneReason::Size),
                (2, PruneReason::Size)
            ]
        );
        // Current file alone over the limit: it stays.
        let r = Retention {
            max_total_bytes: Some(10),
            max_age: None,
        };
        let plan = plan_prune(&files[4..], Some(&current), &r, now);
        assert!(plan.is_empty());
        // No limits: nothing.
        let none = Retention {
            max_total_bytes: None,
            max_age: None,
        };
        assert!(plan_prune(&files, None, &none, now).is_empty());
    }

    #[test]
    fn prune_removes_only_session_files() {
        let tmp = tempfile::tempdir().unwrap();
        for (i, name) in ["20260101T000000Z-a.jsonl", "20260102T000000Z-a.jsonl.zst"]
            .iter()
            .enumerate()
        {
            fs::write(tmp.path().join(name), vec![b'x'; 100 + i]).unwrap();
        }
        fs::write(tmp.path().join("README"), vec![b'x'; 1000]).unwrap();
        let r = Retention {
            max_total_bytes: Some(150),
            max_age: None,
        };
        let pruned = prune(tmp.path(), None, &r, SystemTime::now()).unwrap();
        assert_eq!(pruned.len(), 1);
        assert!(pruned[0].to_string().contains("20260101T000000Z-a.jsonl"));
        assert!(tmp.path().join("README").exists());
        assert!(tmp.path().join("20260102T000000Z-a.jsonl.zst").exists());
    }
}
