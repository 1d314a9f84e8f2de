//! `exfiltration`: a `secret-read` or `env-dump` followed, within the window,
//! by an `unexpected-egress` in the same process tree (see
//! [`crate::proctree`] for what a tree is). Times are event times.

use std::collections::{HashMap, VecDeque};

use super::alert::Alert;
use crate::proctree::TreeId;

/// Causes kept per tree.
const CAUSES_PER_TREE: usize = 16;
/// Trees tracked at once.
const TREES: usize = 4096;

#[derive(Clone, Debug)]
struct Cause {
    time_ns: u64,
    alert: Alert,
}

/// Remembers recent causes per tree.
#[derive(Debug)]
pub struct Correlator {
    window_ns: u64,
    causes: HashMap<TreeId, VecDeque<Cause>>,
}

impl Correlator {
    /// A correlator with the given window.
    pub fn new(window_ns: u64) -> Self {
        Correlator {
            window_ns,
            causes: HashMap::new(),
        }
    }

    /// Record a secret-read or env-dump (before deduplication, so a repeated
    /// read still refreshes the window).
    pub fn cause(&mut self, tree: TreeId, time_ns: u64, alert: &Alert) {
        if self.causes.len() >= TREES && !self.causes.contains_key(&tree) {
            self.expire(time_ns);
            if self.causes.len() >= TREES {
                // drop the tree with the oldest latest cause
                if let Some(old) = self
                    .causes
                    .iter()
                    .min_by_key(|(_, q)| q.back().map(|c| c.time_ns))
                    .map(|(t, _)| *t)
                {
                    self.causes.remove(&old);
                }
            }
        }
        let q = self.causes.entry(tree).or_default();
        if q.len() >= CAUSES_PER_TREE {
            q.pop_front();
        }
        q.push_back(Cause {
            time_ns,
            alert: alert.clone(),
        });
    }

    /// An unexpected egress at `time_ns` in `tree`: the most recent cause
    /// within the window, and how many causes are in it.
    pub fn egress(&mut self, tree: TreeId, time_ns: u64) -> Option<(Alert, usize)> {
        let q = self.causes.get_mut(&tree)?;
        let w = self.window_ns;
        q.retain(|c| time_ns.saturating_sub(c.time_ns) <= w);
        let n = q.iter().filter(|c| c.time_ns <= time_ns).count();
        let last = q.iter().rev().find(|c| c.time_ns <= time_ns)?;
        Some((last.alert.clone(), n))
    }

    /// Forget causes older than the window.
    pub fn expire(&mut self, now_ns: u64) {
        let w = self.window_ns;
        self.causes.retain(|_, q| {
            q.retain(|c| now_ns.saturating_sub(c.time_ns) <= w);
            !q.is_empty()
        });
    }
}
