//! Mount discovery, spec resolution and id naming on temporary trees.

use super::*;
use std::fs;

use monitor_common::WatchedCgroup;

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
    let r =
        resolve(&root, "/").unwrap_or_else(|e| panic!("resolving / under {}: {e}", root.display()));
    assert_eq!(r.level, 0);
    assert_eq!(r.rel_path, "/");
    eprintln!("cgroup2 at {}, root id {}", root.display(), r.id);
}
