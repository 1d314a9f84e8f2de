//! `env-dump`: environment dumps in every form, and launches that must
//! stay silent.

use super::*;

fn mkdir_for(user: &AgentUser, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
}

#[test]
fn detection_environment_dumps_are_caught_in_every_form_and_launches_stay_silent() {
    require_root!();
    let s = Scene::new();
    let j = Journald::ensure();
    let scratch = s.user.project();
    let bin = scratch.dir.join("bin");
    mkdir_for(&s.user, &bin);
    let copy = bin.join("xyz");
    // A hard link of the real env under another name (root may link a file
    // it does not own; the agent user may not). Same filesystem as /usr?
    let env_real = Path::new("/usr/bin/env").canonicalize().unwrap();
    let hard = bin.join("hl-tool");
    let hard_ok = match std::fs::hard_link(&env_real, &hard) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            eprintln!(
                "note: {} and /usr/bin are on different filesystems: no hard-linked env case",
                bin.display()
            );
            false
        }
        Err(e) => panic!(
            "hard link {} -> {}: {e}",
            hard.display(),
            env_real.display()
        ),
    };
    let busybox = Path::new("/usr/bin/busybox").exists();
    if !busybox {
        eprintln!("note: busybox is not installed: no `busybox env` case");
    }

    let mark = j.mark();
    let d = s.daemon(&[]);

    // Positives, each its own process.
    let (p_env, _) = run_ok(&mut s.cmd(&["env"]));
    let (p_env0, _) = run_ok(&mut s.cmd(&["env", "-0"]));
    let (p_printenv, _) = run_ok(&mut s.cmd(&["printenv"]));
    let (p_printenv_name, _) = run_ok(&mut s.cmd(&["printenv", "HOME"]));
    // A copy made by the agent, then run under another name.
    run_ok(&mut s.cmd(&["cp", "/usr/bin/env", copy.to_str().unwrap()]));
    let (p_copy, _) = run_ok(&mut s.cmd(&[copy.to_str().unwrap()]));
    let p_hard = hard_ok.then(|| run_ok(&mut s.cmd(&[hard.to_str().unwrap()])).0);
    let p_busybox = busybox.then(|| run_ok(&mut s.cmd(&["busybox", "env"])).0);
    // The parent's environment through /proc: bash forks cat, so $$ is
    // cat's parent.
    let (p_proc_parent, _) =
        run_ok(&mut s.cmd(&["/bin/bash", "-c", "cat /proc/$$/environ >/dev/null; true"]));
    // /proc/$PPID/environ where the parent is root's (the test): refused
    // by the kernel, and still an attempt to dump it.
    let (p_proc_refused, _) = run(&mut s.cmd(&[
        "/bin/bash",
        "-c",
        "cat /proc/$PPID/environ >/dev/null; true",
    ]));
    let (p_ps, _) = run(&mut s.cmd(&["ps", "eww"]));
    let (p_export, _) = run_ok(&mut s.cmd(&["/bin/bash", "-c", "export -p"]));
    let (p_echo_key, _) = run_ok(&mut s.cmd(&["/bin/bash", "-c", "echo \"$ANTHROPIC_API_KEY\""]));
    let (p_python, _) = run_ok(&mut s.cmd(&[PYTHON, "-c", "import os; print(os.environ)"]));

    // Negatives: launching a command through env, plain shell commands,
    // testing a secret variable without printing it.
    let (n_launch, _) = run_ok(&mut s.cmd(&["env", "FOO=bar", "true"]));
    let (n_shell, _) = run_ok(&mut s.cmd(&["/bin/bash", "-c", "echo hello; ls >/dev/null"]));
    let (n_test, _) = run_ok(&mut s.cmd(&[
        "/bin/bash",
        "-c",
        "[ -n \"$ANTHROPIC_API_KEY\" ] || echo unset",
    ]));

    // Sync point.
    let (p_sync, _) = run_ok(&mut s.cmd(&["printenv"]));
    let a = wait_alert(&d, "the sync printenv", "env-dump", p_sync);
    let mut checked = vec![a];

    let exec_dump = |what: &str, pid: u32, comm: &str, exe: &str, argv: &[&str]| -> Value {
        let a = wait_alert(&d, what, "env-dump", pid);
        assert_basics(&a, "env-dump", "high", &s);
        assert_eq!(a["comm"], comm, "{what}: comm; alert {a}");
        assert_eq!(a["exe"].as_str(), Some(exe), "{what}: exe; alert {a}");
        assert_eq!(
            a["argv"],
            serde_json::json!(argv),
            "{what}: argv; alert {a}"
        );
        assert_eq!(
            a["ppid"].as_u64(),
            Some(std::process::id() as u64),
            "{what}: ppid; alert {a}"
        );
        a
    };
    let env_exe = exe_of("env");
    let printenv_exe = exe_of("printenv");
    checked.push(exec_dump("env", p_env, "env", &env_exe, &["env"]));
    checked.push(exec_dump("env -0", p_env0, "env", &env_exe, &["env", "-0"]));
    checked.push(exec_dump(
        "printenv",
        p_printenv,
        "printenv",
        &printenv_exe,
        &["printenv"],
    ));
    checked.push(exec_dump(
        "printenv HOME",
        p_printenv_name,
        "printenv",
        &printenv_exe,
        &["printenv", "HOME"],
    ));
    let c = copy.to_str().unwrap();
    checked.push(exec_dump("a renamed copy of env", p_copy, "xyz", c, &[c]));
    if let Some(p) = p_hard {
        let h = hard.to_str().unwrap();
        checked.push(exec_dump("a hard link of env", p, "hl-tool", h, &[h]));
    }
    if let Some(p) = p_busybox {
        checked.push(exec_dump(
            "busybox env",
            p,
            "busybox",
            &exe_of("busybox"),
            &["busybox", "env"],
        ));
    }

    let want = format!("/proc/{p_proc_parent}/environ");
    let a = d.wait_for(&format!("env-dump for cat reading {want}"), WAIT, |a| {
        a["rule"] == "env-dump" && a["ppid"].as_u64() == Some(p_proc_parent as u64)
    });
    assert_basics(&a, "env-dump", "high", &s);
    assert_eq!(a["comm"], "cat", "comm; alert {a}");
    assert_eq!(a["path"].as_str(), Some(want.as_str()), "path; alert {a}");
    assert_eq!(
        a["path_requested"].as_str(),
        Some(want.as_str()),
        "path_requested; alert {a}"
    );
    checked.push(a);

    let want = format!("/proc/{}/environ", std::process::id());
    let a = d.wait_for(
        &format!("env-dump for cat trying {want} (refused)"),
        WAIT,
        |a| a["rule"] == "env-dump" && a["ppid"].as_u64() == Some(p_proc_refused as u64),
    );
    assert_basics(&a, "env-dump", "high", &s);
    assert_eq!(a["comm"], "cat", "comm; alert {a}");
    assert_eq!(
        a["path_requested"].as_str(),
        Some(want.as_str()),
        "path_requested; alert {a}"
    );
    checked.push(a);

    let a = wait_alert(&d, "ps eww", "env-dump", p_ps);
    assert_basics(&a, "env-dump", "high", &s);
    assert_eq!(a["comm"], "ps", "comm; alert {a}");
    checked.push(a);

    for (what, pid, argv) in [
        (
            "bash -c 'export -p'",
            p_export,
            vec!["/bin/bash", "-c", "export -p"],
        ),
        (
            "bash -c 'echo $ANTHROPIC_API_KEY'",
            p_echo_key,
            vec!["/bin/bash", "-c", "echo \"$ANTHROPIC_API_KEY\""],
        ),
        (
            "python3 -c 'print(os.environ)'",
            p_python,
            vec![PYTHON, "-c", "import os; print(os.environ)"],
        ),
    ] {
        let a = wait_alert(&d, what, "env-dump", pid);
        assert_basics(&a, "env-dump", "high", &s);
        assert_eq!(
            a["argv"],
            serde_json::json!(argv),
            "{what}: argv; alert {a}"
        );
        checked.push(a);
    }

    let quiet = leaked(&d, &[n_launch, n_shell, n_test], &["FOO=bar"]);
    assert!(
        quiet.is_empty(),
        "alerts for commands that must stay silent (env FOO=bar true, echo, [ -n ... ]):\n{}",
        show(&quiet)
    );
    assert_only_rule(&d, "env-dump", "only environment dumps happened here");
    for a in &checked {
        assert_in_journal(&j, &mark, a);
    }
    d.stop_ok();
}
