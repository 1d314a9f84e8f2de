//! The processes already running in the watched cgroups when watching
//! begins, read once from /proc and turned into `ProcSnapshot` events, so the
//! process tree knows them and a recorded session carries them (replay never
//! reads /proc).

use std::fs;
use std::path::Path;

use crate::event::model::{Event, EventKind, ProcSnapshot, Task};

/// One process found in /proc.
fn snapshot(
    proc_root: &Path,
    pid: u32,
    cgroup_root: &Path,
    watched: &[String],
    now_ns: u64,
) -> Option<Event> {
    let dir = proc_root.join(pid.to_string());
    // cgroup v2 line: "0::/agent.slice/x.scope"
    let cg = fs::read_to_string(dir.join("cgroup")).ok()?;
    let rel = cg.lines().find_map(|l| l.strip_prefix("0::"))?.to_string();
    let inside = watched.iter().any(|w| {
        w == "/" || rel == *w || rel.starts_with(&format!("{}/", w.trim_end_matches('/')))
    });
    if !inside {
        return None;
    }
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    // comm may contain spaces and parens: split at the last ')'.
    let close = stat.rfind(')')?;
    let comm = stat.get(stat.find('(')? + 1..close)?.to_string();
    let ppid = stat[close + 1..].split_whitespace().nth(1)?.parse().ok()?;
    let status = fs::read_to_string(dir.join("status")).unwrap_or_default();
    let ids = |key: &str| -> (u32, u32) {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| {
                let mut it = v.split_whitespace().filter_map(|x| x.parse().ok());
                (it.next().unwrap_or(0), it.next().unwrap_or(0))
            })
            .unwrap_or((0, 0))
    };
    let (uid, _) = ids("Uid:");
    let (gid, _) = ids("Gid:");
    let cgroup_id = {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(cgroup_root.join(rel.trim_start_matches('/')))
            .map(|m| m.ino())
            .unwrap_or(0)
    };
    let exe = fs::read_link(dir.join("exe"))
        .ok()
        .map(|p| p.display().to_string());
    let argv = fs::read(dir.join("cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default();
    Some(Event {
        time_ns: now_ns,
        task: Task {
            pid,
            tid: pid,
            ppid,
            uid,
            gid,
            comm,
            cgroup_id,
        },
        kind: EventKind::ProcSnapshot(ProcSnapshot { exe, argv }),
    })
}

/// Snapshots of every process whose cgroup is one of `watched` (paths
/// relative to the cgroup2 root, like `/agent.slice`) or below it.
pub fn scan(proc_root: &Path, cgroup_root: &Path, watched: &[String], now_ns: u64) -> Vec<Event> {
    let Ok(entries) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut out: Vec<Event> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| snapshot(proc_root, pid, cgroup_root, watched, now_ns))
        .collect();
    out.sort_by_key(|e| e.task.pid);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_reads_a_fake_proc() {
        let proc_root = tempfile::tempdir().unwrap();
        let cg_root = tempfile::tempdir().unwrap();
        fs::create_dir_all(cg_root.path().join("agent.slice/x.scope")).unwrap();
        let mk = |pid: u32, cg: &str, comm: &str, ppid: u32| {
            let d = proc_root.path().join(pid.to_string());
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("cgroup"), format!("0::{cg}\n")).unwrap();
            fs::write(
                d.join("stat"),
                format!("{pid} ({comm}) S {ppid} 1 1 0 -1 0"),
            )
            .unwrap();
            fs::write(
                d.join("status"),
                "Uid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\n",
            )
            .unwrap();
            fs::write(d.join("cmdline"), b"bash\0-c\0x\0").unwrap();
        };
        mk(10, "/agent.slice/x.scope", "my (odd) comm", 1);
        mk(11, "/other.slice", "nope", 1);
        mk(12, "/agent.slicex", "nope", 1);
        let evs = scan(
            proc_root.path(),
            cg_root.path(),
            &["/agent.slice".into()],
            5,
        );
        assert_eq!(evs.len(), 1, "{evs:?}");
        let e = &evs[0];
        assert_eq!(e.task.pid, 10);
        assert_eq!(e.task.ppid, 1);
        assert_eq!(e.task.uid, 1000);
        assert_eq!(e.task.gid, 100);
        assert_eq!(e.task.comm, "my (odd) comm");
        assert_ne!(e.task.cgroup_id, 0);
        let EventKind::ProcSnapshot(s) = &e.kind else {
            panic!()
        };
        assert_eq!(s.argv, vec!["bash", "-c", "x"]);
    }
}
