//! Naming the cgroup ids events carry ([`CgroupNames`]), live by walking the
//! tree and in replay from the recording.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{rel_path, walk, NEGATIVE_CACHE_MAX};

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
    pub(super) missing: HashSet<u64>,
    /// `missing` in insertion order, to evict the oldest.
    #[serde(skip)]
    pub(super) missing_order: VecDeque<u64>,
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
