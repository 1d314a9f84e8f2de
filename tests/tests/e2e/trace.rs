//! `agentwatch trace --cgroup CG --json` against the real kernel: real
//! commands in a real cgroup subtree, and the events they must produce.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use agentwatch_e2e::daemon::{agentwatch_bin, agentwatch_bin_for_anyone};
use agentwatch_e2e::events::{self, cgroup_id, is_exec, is_open, kind, mentions, pid, ppid, show};
use agentwatch_e2e::net::closed_port;
use agentwatch_e2e::util::{run_ok, unique, TempDir, PYTHON};
use agentwatch_e2e::{require_root, AgentUser, Cgroup, Daemon, TcpLoopback, UdpLoopback};

/// How long an event may take to show up.
const WAIT: Duration = Duration::from_secs(10);

/// Start `agentwatch trace --cgroup <cg> --json`.
fn trace(cg: &Cgroup) -> Daemon {
    Daemon::start(&["trace", "--cgroup", &cg.rel(), "--json"])
}

/// The checks every open of an existing file must pass: who, where it
/// happened, and the resolved path and identity of the file.
fn assert_open_of(e: &Value, pid_: u32, cg: &Cgroup, file: &Path) {
    let canonical = file.canonicalize().expect("canonicalize");
    let meta = std::fs::metadata(&canonical).expect("stat");
    assert_eq!(pid(e), pid_ as u64, "pid; event {e}");
    assert_eq!(
        ppid(e),
        std::process::id() as u64,
        "ppid (the test spawned it); event {e}"
    );
    assert_eq!(
        e["task"]["tid"].as_u64(),
        Some(pid_ as u64),
        "tid; event {e}"
    );
    assert_eq!(
        cgroup_id(e),
        cg.id(),
        "cgroup_id of {}; event {e}",
        cg.rel()
    );
    assert!(
        e["ret"].as_i64().is_some_and(|r| r >= 0),
        "ret should be an fd; event {e}"
    );
    assert_eq!(
        e["path"].as_str(),
        Some(canonical.to_str().unwrap()),
        "resolved path; event {e}"
    );
    assert_eq!(
        e["dev"].as_u64(),
        Some(meta.dev()),
        "dev (stat says {}); event {e}",
        meta.dev()
    );
    assert_eq!(
        e["ino"].as_u64(),
        Some(meta.ino()),
        "ino (stat says {}); event {e}",
        meta.ino()
    );
    let flags = e["flags"].as_u64().expect("flags");
    assert_eq!(
        flags & libc::O_ACCMODE as u64,
        libc::O_RDONLY as u64,
        "read-only open; event {e}"
    );
}

/// Files for the open tests: `data/file.txt`, `link -> data/file.txt`,
/// `sub/`.
fn files() -> TempDir {
    let dir = TempDir::new("files");
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("data/file.txt"), "contents\n").unwrap();
    std::os::unix::fs::symlink("data/file.txt", dir.path().join("link")).unwrap();
    dir
}

#[test]
fn trace_open_through_relative_path_symlink_and_dirfd_is_resolved() {
    require_root!();
    let cg = Cgroup::new();
    let dir = files();
    let file = dir.path().join("data/file.txt");
    let d = trace(&cg);

    // A relative path with `..`, from the cwd.
    let (p1, _) = run_ok(
        cg.command(&["cat", "data/../data/file.txt"])
            .current_dir(dir.path()),
    );
    let e = d.wait_for("open of data/../data/file.txt by cat", WAIT, |e| {
        is_open(e, p1, "data/../data/file.txt")
    });
    assert_open_of(&e, p1, &cg, &file);
    assert_eq!(e["task"]["comm"], "cat", "comm; event {e}");
    assert_eq!(e["task"]["uid"], 0, "uid; event {e}");
    assert_eq!(e["dfd"], -100, "AT_FDCWD; event {e}");

    // Through a symlink: the file the kernel opened, not the link.
    let (p2, _) = run_ok(cg.command(&["cat", "link"]).current_dir(dir.path()));
    let e = d.wait_for("open of link by cat", WAIT, |e| is_open(e, p2, "link"));
    assert_open_of(&e, p2, &cg, &file);

    // openat with a directory fd.
    let script = "import os, sys\n\
                  d = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)\n\
                  f = os.open('file.txt', os.O_RDONLY, dir_fd=d)\n\
                  print(d, f)\n";
    let data = dir.path().join("data");
    let (p3, out) = run_ok(&mut cg.command(&[PYTHON, "-c", script, data.to_str().unwrap()]));
    let printed = String::from_utf8_lossy(&out.stdout);
    let fds: Vec<i64> = printed
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    let e = d.wait_for("open of file.txt relative to a dirfd", WAIT, |e| {
        is_open(e, p3, "file.txt")
    });
    assert_open_of(&e, p3, &cg, &file);
    assert_eq!(
        e["dfd"].as_i64(),
        Some(fds[0]),
        "dfd (python printed {printed}); event {e}"
    );
    assert_eq!(
        e["ret"].as_i64(),
        Some(fds[1]),
        "fd (python printed {printed}); event {e}"
    );

    // A failed open is an event too, with -errno and no resolved path.
    let missing = dir.path().join("missing-file");
    let st = cg
        .command(&["cat", missing.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p4 = st.id();
    let _ = st.wait_with_output();
    let e = d.wait_for("failed open of a missing file", WAIT, |e| {
        is_open(e, p4, missing.to_str().unwrap())
    });
    assert_eq!(e["ret"], -(libc::ENOENT as i64), "ret; event {e}");
    assert!(
        e["path"].is_null(),
        "no resolved path for a failed open; event {e}"
    );
    d.stop();
}

#[test]
fn trace_exec_reports_long_bash_argv_exactly() {
    require_root!();
    let cg = Cgroup::new();
    let d = trace(&cg);
    // A command line like a coding agent's: several KiB in one argument.
    let mut script = String::from("set -e; for f in ");
    while script.len() < 2600 {
        script.push_str(&format!("src/module_{}.rs ", script.len()));
    }
    script.push_str("; do :; done; exit 0");
    let argv = [
        "/bin/bash",
        "-c",
        &script,
        "agentwatch-argv0",
        "an arg with spaces",
        "",
    ];
    let total: usize = argv.iter().map(|a| a.len() + 1).sum();
    assert!(total > 2048, "argv is only {total} bytes");
    let (p, _) = run_ok(&mut cg.command(&argv));
    let e = d.wait_for("exec of bash", WAIT, |e| is_exec(e, p) && e["ret"] == 0);
    let want: Vec<Value> = argv.iter().map(|a| Value::from(*a)).collect();
    assert_eq!(
        e["argv"].as_array(),
        Some(&want),
        "argv ({total} bytes) must come through exactly; event {e}"
    );
    assert!(
        !e["argv_truncated"].as_bool().unwrap_or(false),
        "argv_truncated; event {e}"
    );
    assert_eq!(e["filename"], "/bin/bash", "filename as passed; event {e}");
    let exe = Path::new("/bin/bash").canonicalize().unwrap();
    assert_eq!(
        e["exe"].as_str(),
        Some(exe.to_str().unwrap()),
        "resolved exe; event {e}"
    );
    let meta = std::fs::metadata(&exe).unwrap();
    assert_eq!(e["ino"].as_u64(), Some(meta.ino()), "exe inode; event {e}");
    assert_eq!(e["dev"].as_u64(), Some(meta.dev()), "exe dev; event {e}");
    assert_eq!(ppid(&e), std::process::id() as u64, "ppid; event {e}");
    assert_eq!(cgroup_id(&e), cg.id(), "cgroup_id; event {e}");

    // A failed exec is an event too.
    let missing = format!("/nonexistent-{}/agentwatch-missing", unique());
    let err = cg
        .command(&[&missing])
        .spawn()
        .expect_err("exec of a missing file");
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    let e = d.wait_for("failed exec", WAIT, |e| {
        kind(e) == "exec" && e["filename"] == missing.as_str()
    });
    assert_eq!(e["ret"], -(libc::ENOENT as i64), "ret; event {e}");
    d.stop();
}

/// Connects from python inside the cgroup; prints JSON with the fd and
/// errno of each.
const CONNECTS: &str = r#"
import json, socket, sys
a = sys.argv[1:]
out, keep = {}, []
def go(key, fam, typ, host, port, block=True):
    s = socket.socket(fam, typ)
    keep.append(s)
    s.setblocking(block)
    out[key] = [s.fileno(), s.connect_ex((host, int(port)))]
go("tcp4", socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1", a[0])
go("tcp6", socket.AF_INET6, socket.SOCK_STREAM, "::1", a[1])
go("udp4", socket.AF_INET, socket.SOCK_DGRAM, "127.0.0.1", a[2])
go("udp6", socket.AF_INET6, socket.SOCK_DGRAM, "::1", a[3])
go("tcp4_nonblocking", socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1", a[0], block=False)
go("tcp4_refused", socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1", a[4])
print(json.dumps(out))
"#;

#[test]
fn trace_connects_over_tcp_udp_ipv4_ipv6_with_results() {
    require_root!();
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let (t4, t6, u4, u6) = (
        TcpLoopback::new(v4),
        TcpLoopback::new(v6),
        UdpLoopback::new(v4),
        UdpLoopback::new(v6),
    );
    let refused = closed_port(v4);
    let cg = Cgroup::new();
    let d = trace(&cg);
    let ports = [t4.addr(), t6.addr(), u4.addr(), u6.addr(), refused].map(|a| a.port().to_string());
    let mut argv = vec![PYTHON.to_string(), "-c".into(), CONNECTS.into()];
    argv.extend(ports.iter().cloned());
    let (p, out) = run_ok(&mut cg.command(&argv));
    let results: Value = serde_json::from_slice(&out.stdout).expect("python's JSON");
    let cases = [
        ("tcp4", t4.addr(), "tcp"),
        ("tcp6", t6.addr(), "tcp"),
        ("udp4", u4.addr(), "udp"),
        ("udp6", u6.addr(), "udp"),
        ("tcp4_nonblocking", t4.addr(), "tcp"),
        ("tcp4_refused", refused, "tcp"),
    ];
    assert_eq!(
        results["tcp4_nonblocking"][1],
        libc::EINPROGRESS,
        "python: {results}"
    );
    assert_eq!(
        results["tcp4_refused"][1],
        libc::ECONNREFUSED,
        "python: {results}"
    );
    for (key, addr, proto) in cases {
        let fd = results[key][0].as_i64().unwrap();
        let errno = results[key][1].as_i64().unwrap();
        let e = d.wait_for(&format!("{key} connect to {addr}"), WAIT, |e| {
            kind(e) == "connect" && pid(e) == p as u64 && e["fd"].as_i64() == Some(fd)
        });
        assert_eq!(
            e["daddr"].as_str().and_then(|s| s.parse::<IpAddr>().ok()),
            Some(addr.ip()),
            "{key}: daddr; event {e}"
        );
        assert_eq!(
            e["dport"].as_u64(),
            Some(addr.port() as u64),
            "{key}: dport; event {e}"
        );
        assert_eq!(e["protocol"], proto, "{key}: protocol; event {e}");
        assert_eq!(
            e["ret"].as_i64(),
            Some(-errno),
            "{key}: ret (python saw errno {errno}); event {e}"
        );
        assert_eq!(
            ppid(&e),
            std::process::id() as u64,
            "{key}: ppid; event {e}"
        );
        assert_eq!(cgroup_id(&e), cg.id(), "{key}: cgroup_id; event {e}");
    }
    d.stop();
}

#[test]
fn trace_ignores_processes_outside_the_subtree() {
    require_root!();
    let cg = Cgroup::new();
    let sibling = Cgroup::new();
    let dir = files();
    let marker = dir.path().join(format!("outside-marker-{}", unique()));
    std::fs::write(&marker, "x").unwrap();
    let sync = dir.path().join("sync-point");
    std::fs::write(&sync, "x").unwrap();
    let d = trace(&cg);
    // The same command, outside: in the test's own cgroup and in a sibling.
    run_ok(Command::new("cat").arg(&marker));
    run_ok(&mut sibling.command(&["cat", marker.to_str().unwrap()]));
    run_ok(
        Command::new("/bin/bash")
            .args(["-c", &format!("cat {} >/dev/null; true", marker.display())]),
    );
    // Then one inside: once its event is out, anything from before is too.
    let (p, _) = run_ok(&mut cg.command(&["cat", sync.to_str().unwrap()]));
    d.wait_for("the sync point's open", WAIT, |e| {
        is_open(e, p, sync.to_str().unwrap())
    });
    let evs = d.events();
    let leaked: Vec<Value> = evs
        .iter()
        .filter(|e| mentions(e, marker.to_str().unwrap()) || cgroup_id(e) != cg.id())
        .cloned()
        .collect();
    assert!(
        leaked.is_empty(),
        "events from outside {} (id {}):\n{}",
        cg.rel(),
        cg.id(),
        show(&leaked)
    );
    d.stop();
}

#[test]
fn trace_includes_processes_in_nested_child_cgroups() {
    require_root!();
    let cg = Cgroup::new();
    let scope = cg.child("run-agentwatch.scope");
    let inner = scope.child("inner");
    let dir = files();
    let file = dir.path().join("data/file.txt");
    let d = trace(&cg);
    let (p, _) = run_ok(
        inner
            .command(&["cat", "data/file.txt"])
            .current_dir(dir.path()),
    );
    let e = d.wait_for("open in a grandchild cgroup", WAIT, |e| {
        is_open(e, p, "data/file.txt")
    });
    assert_open_of(&e, p, &inner, &file);
    let (p, _) = run_ok(scope.command(&["cat", "link"]).current_dir(dir.path()));
    let e = d.wait_for("open in a child cgroup", WAIT, |e| is_open(e, p, "link"));
    assert_open_of(&e, p, &scope, &file);
    d.stop();
}

#[test]
fn trace_reports_fork_and_exit_of_spawned_processes() {
    require_root!();
    let cg = Cgroup::new();
    let d = trace(&cg);
    // bash forks for /bin/true (it is not the last command), then exits 3.
    let child = cg
        .command(&["/bin/bash", "-c", "/bin/true; exit 3"])
        .spawn()
        .unwrap();
    let bash = child.id();
    let status = child.wait_with_output().unwrap().status;
    assert_eq!(status.code(), Some(3));
    let fork = d.wait_for("fork by bash", WAIT, |e| {
        kind(e) == "fork" && pid(e) == bash as u64
    });
    let kid = fork["child_pid"].as_u64().expect("child_pid");
    assert_ne!(kid, bash as u64, "fork event {fork}");
    let exec = d.wait_for("exec of /bin/true in the forked child", WAIT, |e| {
        is_exec(e, kid as u32) && e["ret"] == 0
    });
    assert_eq!(
        ppid(&exec),
        bash as u64,
        "the child's parent is bash; event {exec}"
    );
    assert_eq!(exec["filename"], "/bin/true", "event {exec}");
    let exit_kid = d.wait_for("exit of /bin/true", WAIT, |e| {
        kind(e) == "exit" && pid(e) == kid
    });
    assert_eq!(exit_kid["exit_code"], 0, "event {exit_kid}");
    let exit_bash = d.wait_for("exit of bash", WAIT, |e| {
        kind(e) == "exit" && pid(e) == bash as u64
    });
    assert_eq!(
        exit_bash["exit_code"],
        3 << 8,
        "wait status of `exit 3`; event {exit_bash}"
    );
    d.stop();
}

#[test]
fn trace_reports_the_uid_of_an_unprivileged_agent() {
    require_root!();
    let user = AgentUser::get();
    let project = user.project();
    let cg = Cgroup::new();
    let d = trace(&cg);
    let readme = project.dir.join("README.md");
    let (p, _) = run_ok(
        user.command(&cg, &["cat", "README.md"])
            .current_dir(&project.dir),
    );
    let e = d.wait_for("the agent user's open", WAIT, |e| {
        is_open(e, p, "README.md")
    });
    assert_eq!(
        e["task"]["uid"].as_u64(),
        Some(user.uid as u64),
        "uid; event {e}"
    );
    assert_eq!(
        e["task"]["gid"].as_u64(),
        Some(user.gid as u64),
        "gid; event {e}"
    );
    assert_eq!(
        e["path"].as_str(),
        Some(readme.to_str().unwrap()),
        "path; event {e}"
    );
    d.stop();
}

#[test]
fn trace_accepts_every_cgroup_form() {
    require_root!();
    let cg = Cgroup::new();
    let dir = files();
    let forms = [
        ("absolute path", cg.path().display().to_string()),
        ("path relative to the cgroup2 root", cg.rel()),
        ("systemd unit name", cg.name()),
        ("numeric id", cg.id().to_string()),
    ];
    for (what, form) in forms {
        let d = Daemon::start(&["trace", "--cgroup", &form, "--json"]);
        let (p, _) = run_ok(cg.command(&["cat", "link"]).current_dir(dir.path()));
        d.wait_for(
            &format!("an open, with --cgroup as {what} ({form})"),
            WAIT,
            |e| is_open(e, p, "link"),
        );
        d.stop();
    }
}

#[test]
fn trace_nonexistent_cgroup_is_a_clear_error() {
    require_root!();
    let mount = agentwatch_e2e::cgroup::cgroup2_mount();
    let name = format!("agentwatch_missing_{}.slice", unique());
    for form in [format!("/{name}"), name.clone()] {
        let mut cmd = Command::new(agentwatch_bin());
        cmd.args(["trace", "--cgroup", &form, "--json"]);
        let f = Daemon::run(cmd, Duration::from_secs(30));
        assert!(
            !f.status.success(),
            "--cgroup {form}: exit status {}; stderr:\n{}",
            f.status,
            f.stderr
        );
        let looked_for = mount.join(&name);
        assert!(
            f.stderr.contains(looked_for.to_str().unwrap()),
            "--cgroup {form}: stderr should name the path looked for ({}):\n{}",
            looked_for.display(),
            f.stderr
        );
        assert!(
            !f.notified_ready,
            "--cgroup {form}: it said READY=1 before failing"
        );
        assert!(
            f.stdout.trim().is_empty(),
            "--cgroup {form}: stdout:\n{}",
            f.stdout
        );
    }
}

#[test]
fn trace_without_root_is_a_clear_error() {
    require_root!();
    let user = AgentUser::get();
    let (_bin_dir, bin) = agentwatch_bin_for_anyone();
    let cg = Cgroup::new();
    let mut argv = user.setpriv();
    argv.extend([
        bin.display().to_string(),
        "trace".into(),
        "--cgroup".into(),
        cg.rel(),
        "--json".into(),
    ]);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    let f = Daemon::run(cmd, Duration::from_secs(30));
    assert!(
        !f.status.success(),
        "exit status {}; stderr:\n{}",
        f.status,
        f.stderr
    );
    let err = f.stderr.to_lowercase();
    assert!(
        err.contains("root") || err.contains("cap_bpf"),
        "stderr should say root (or CAP_BPF/CAP_PERFMON) is needed:\n{}",
        f.stderr
    );
    assert!(
        !err.contains("panicked"),
        "a panic is not a clear error:\n{}",
        f.stderr
    );
    assert!(!f.notified_ready, "it said READY=1");
    assert!(f.stdout.trim().is_empty(), "stdout:\n{}", f.stdout);
}

#[test]
fn trace_sigterm_exits_zero_and_reports_lost_events() {
    require_root!();
    let cg = Cgroup::new();
    let d = trace(&cg);
    // READY=1 comes first; the line on stderr says the same to a person.
    d.wait_for_stderr("ready", Duration::from_secs(5));
    let (p, _) = run_ok(&mut cg.command(&["true"]));
    d.wait_for("exec of true", WAIT, |e| is_exec(e, p));
    let f = d.stop_ok();
    assert!(
        f.stderr.to_lowercase().contains("lost"),
        "stderr should report lost-event counts:\n{}",
        f.stderr
    );
    // Every stdout line is one JSON event.
    let types: BTreeSet<String> = f
        .stdout
        .lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            events::kind(&v).to_string()
        })
        .collect();
    assert!(types.contains("exec"), "types seen: {types:?}");
}
