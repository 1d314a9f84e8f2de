//! Engine scenarios for `env-dump`: executed env/printenv (by identity, so
//! renamed copies count), copies made in the cgroup, `/proc/*/environ` opens.

use super::*;
#[test]
fn env_dump_exec_table() {
    // (argv, exe, dev, ino) -> dump?
    let cases: &[(&[&str], &str, u64, u64, bool)] = &[
        (&["env"], "/usr/bin/env", 2049, 900, true),
        (&["env", "-0"], "/usr/bin/env", 2049, 900, true),
        (&["printenv"], "/usr/bin/printenv", 2049, 901, true),
        (
            &["printenv", "ANTHROPIC_API_KEY"],
            "/usr/bin/printenv",
            2049,
            901,
            true,
        ),
        (&["env", "FOO=1", "make"], "/usr/bin/env", 2049, 900, false),
        (
            &["env", "-i", "PATH=/bin", "sh"],
            "/usr/bin/env",
            2049,
            900,
            false,
        ),
        (&["myenv"], "/tmp/myenv", 2049, 900, true), // renamed/hard-linked: same inode
        (&["busybox", "env"], "/usr/bin/busybox", 2049, 902, true), // applet as argument
        (&["printenv"], "/tmp/bb", 2049, 902, true), // applet via argv[0], renamed busybox
        (&["busybox", "ls"], "/usr/bin/busybox", 2049, 902, false),
        (&["git", "status"], "/usr/bin/git", 2049, 5, false),
        (&["bash", "-c", "export -p"], "/usr/bin/bash", 2049, 6, true),
        (&["sh", "-c", "git status"], "/usr/bin/dash", 2049, 7, false),
        (
            &["bash", "-c", "echo $ANTHROPIC_API_KEY"],
            "/usr/bin/bash",
            2049,
            6,
            true,
        ),
        (
            &["python3", "-c", "import os; print(os.environ)"],
            "/usr/bin/python3.11",
            2049,
            8,
            true,
        ),
        (
            &["python3", "manage.py", "test"],
            "/usr/bin/python3.11",
            2049,
            8,
            false,
        ),
        // scripts starting `#!/usr/bin/env bash` run env with the script's argv
        (&["pyenv-version-file"], "/usr/bin/env", 2049, 900, false),
        (
            &["python3", "-c", "print(1)"],
            "/usr/bin/env",
            2049,
            900,
            false,
        ),
    ];
    for (argv, exe, dev, ino, want) in cases {
        let mut w = W::new();
        let mut evs = agent_and_tool_call(&mut w, "x");
        evs.push(w.fork(200, 201));
        let mut x = w.exec_ino(201, 200, exe, argv, *dev, *ino);
        if let EventKind::Exec(x) = &mut x.kind {
            if *exe == "/usr/bin/env" && argv[0] != "env" {
                x.filename = format!("/root/.pyenv/shims/{}", argv[0]); // the script executed
            }
        }
        evs.push(x);
        let a = run(&mut engine(), &evs);
        assert_eq!(
            rules(&a) == vec!["env-dump"],
            *want,
            "{argv:?} via {exe}: {a:#?}"
        );
    }
}

#[test]
fn a_copy_of_env_made_in_the_cgroup_is_env() {
    let mut w = W::new();
    let mut evs = agent_and_tool_call(&mut w, "cp /usr/bin/env /tmp/e && /tmp/e");
    evs.push(w.fork(200, 201));
    evs.push(w.exec(201, 200, "/usr/bin/cp", &["cp", "/usr/bin/env", "/tmp/e"]));
    evs.push(w.read(201, "cp", "/usr/bin/env", 900));
    evs.push(w.open(
        201,
        "cp",
        "/tmp/e",
        Some("/tmp/e"),
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        4,
        2049,
        4242,
    ));
    evs.push(w.exit(201));
    evs.push(w.fork(200, 202));
    evs.push(w.exec_ino(202, 200, "/tmp/e", &["/tmp/e"], 2049, 4242));
    let a = run(&mut engine(), &evs);
    assert_eq!(rules(&a), vec!["env-dump"], "{a:#?}");
    assert!(
        a[0].message.contains("copy of /usr/bin/env"),
        "{}",
        a[0].message
    );
    // and `cat /usr/bin/env > /tmp/f` (write opened first, by the shell) too
    let mut w = W::new();
    let mut evs = agent_and_tool_call(&mut w, "cat /usr/bin/env > /tmp/f");
    evs.push(w.fork(200, 201));
    evs.push(w.open(
        201,
        "bash",
        "/tmp/f",
        Some("/tmp/f"),
        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        1,
        2049,
        4343,
    ));
    evs.push(w.exec(201, 200, "/usr/bin/cat", &["cat", "/usr/bin/env"]));
    evs.push(w.read(201, "cat", "/usr/bin/env", 900));
    evs.push(w.fork(200, 202));
    evs.push(w.exec_ino(202, 200, "/tmp/f", &["f"], 2049, 4343));
    assert_eq!(rules(&run(&mut engine(), &evs)), vec!["env-dump"]);
}

#[test]
fn proc_environ_opens_and_dedup() {
    let mut w = W::new();
    let mut evs = agent_and_tool_call(&mut w, "ps e");
    evs.push(w.fork(200, 201));
    evs.push(w.exec(201, 200, "/usr/bin/ps", &["ps", "e"]));
    // ps reads every process's environ; most fail for other users' processes
    for pid in 1..50u32 {
        let p = format!("/proc/{pid}/environ");
        let ok = pid % 3 == 0;
        evs.push(w.open(
            201,
            "ps",
            &p,
            ok.then_some(p.as_str()),
            libc::O_RDONLY,
            if ok { 3 } else { -13 },
            0,
            0,
        ));
    }
    let mut e = engine();
    let a = run(&mut e, &evs);
    assert_eq!(rules(&a), vec!["env-dump"], "one alert, not 49");
    assert!(a[0].message.contains("/proc/1/environ"), "{}", a[0].message);
    assert!(
        a[0].message.contains("failed"),
        "the first attempt failed: {}",
        a[0].message
    );
    let s = e.finish();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].count, 49);
    assert_eq!(e.stats().suppressed, 48);
}
