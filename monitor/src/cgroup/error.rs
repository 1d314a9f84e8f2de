//! What can go wrong finding the cgroup2 hierarchy or resolving a cgroup.

use std::path::PathBuf;

use super::SPEC_FORMS;

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
