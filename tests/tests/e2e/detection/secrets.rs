//! `secret-read`: reads of decoy secrets through every kind of path, and
//! the harmless reads that must stay silent.

use super::*;

/// A secret-read: who, which file, and the path as passed.
fn assert_secret_read(a: &Value, s: &Scene, comm: &str, path: &Path, requested: &str) {
    assert_basics(a, "secret-read", "high", s);
    assert_eq!(a["comm"], comm, "comm; alert {a}");
    assert_eq!(
        a["exe"].as_str(),
        Some(exe_of(comm).as_str()),
        "exe; alert {a}"
    );
    assert_eq!(
        a["path"].as_str(),
        Some(path.to_str().unwrap()),
        "resolved path; alert {a}"
    );
    assert_eq!(
        a["path_requested"].as_str(),
        Some(requested),
        "path as passed; alert {a}"
    );
    assert!(a.get("daddr").is_none(), "no network fields; alert {a}");
}

/// A git repository of the agent user's (`.env` ignored, the rest
/// committed), made before the daemon starts.
fn git_repo(s: &Scene) -> Project {
    let repo = s.user.project();
    s.user.write(&repo.dir.join(".gitignore"), ".env\n", 0o644);
    run_ok(
        s.cmd(&[
            "/bin/sh",
            "-c",
            "git init -q && git add -A && git -c user.name=agent -c user.email=agent@example.invalid commit -qm init",
        ])
        .current_dir(&repo.dir),
    );
    repo
}

#[test]
fn detection_secret_reads_are_caught_through_every_path_and_harmless_reads_stay_silent() {
    require_root!();
    let s = Scene::new();
    let j = Journald::ensure();
    let project = s.user.project();
    let repo = git_repo(&s);
    // A symlink and a hard link to the AWS credentials, in the same home
    // (a hard link cannot cross filesystems).
    let links = s.user.project();
    let symlink = links.dir.join("creds-symlink");
    let hardlink = links.dir.join("notes.txt");
    std::os::unix::fs::symlink(&s.decoys.aws_credentials, &symlink).expect("symlink");
    std::fs::hard_link(&s.decoys.aws_credentials, &hardlink).expect("hard link");
    let aws = s.decoys.aws_credentials.clone();
    let aws_s = aws.to_str().unwrap();

    let mark = j.mark();
    let d = s.daemon(&[]);

    // Positives.
    let (p_abs, _) = run_ok(&mut s.cmd(&["cat", aws_s]));
    let (p_rel, _) = run_ok(
        s.cmd(&["cat", "id_ed25519"])
            .current_dir(s.user.home.join(".ssh")),
    );
    let (p_sym, _) = run_ok(&mut s.cmd(&["cat", symlink.to_str().unwrap()]));
    let (p_hard, _) = run_ok(&mut s.cmd(&["cat", hardlink.to_str().unwrap()]));
    let dirfd_script = "import os, sys\n\
                        d = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)\n\
                        f = os.open(sys.argv[2], os.O_RDONLY, dir_fd=d)\n\
                        os.read(f, 64)\n\
                        print(d, f)\n";
    let aws_dir = s.user.home.join(".aws");
    let (p_dirfd, _) = run_ok(&mut s.cmd(&[
        PYTHON,
        "-c",
        dirfd_script,
        aws_dir.to_str().unwrap(),
        "credentials",
    ]));
    let (p_env, _) = run_ok(s.cmd(&["cat", ".env"]).current_dir(&project.dir));

    // Negatives: the public key, the example env file, the sources, git,
    // a secret's own tool (ssh-keygen and the key), a refused open, an
    // open for writing only.
    let (n_pub, _) = run_ok(&mut s.cmd(&["cat", s.decoys.ssh_pub.to_str().unwrap()]));
    let (n_example, _) = run_ok(s.cmd(&["cat", ".env.example"]).current_dir(&project.dir));
    let (n_src, _) = run_ok(
        s.cmd(&["cat", "Cargo.toml", "src/main.rs", "README.md"])
            .current_dir(&project.dir),
    );
    s.user
        .write(&repo.dir.join("README.md"), "# demo, edited\n", 0o644);
    let (n_git, out) = run_ok(
        s.cmd(&["git", "status", "--porcelain"])
            .current_dir(&repo.dir),
    );
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.contains("README.md"),
        "git status should report the edited README:\n{status}"
    );

    let (n_keygen, _) =
        run(&mut s.cmd(&["ssh-keygen", "-y", "-f", s.decoys.ssh_key.to_str().unwrap()]));
    let (n_shadow, out) = run(&mut s.cmd(&["cat", "/etc/shadow"]));
    assert!(
        !out.status.success(),
        "the agent user could read /etc/shadow"
    );
    let (n_write, _) = run_ok(&mut s.cmd(&["/bin/sh", "-c", &format!(": >> {aws_s}")]));

    // Sync point: one more read, by a new process, last.
    let key = s.decoys.ssh_key.to_str().unwrap();
    let (p_sync, _) = run_ok(&mut s.cmd(&["cat", key]));
    let a_sync = wait_alert(&d, "the sync read of the SSH key", "secret-read", p_sync);
    assert_secret_read(&a_sync, &s, "cat", &s.decoys.ssh_key, key);

    let a = wait_alert(&d, "cat of the absolute path", "secret-read", p_abs);
    assert_secret_read(&a, &s, "cat", &aws, aws_s);
    assert_eq!(
        a["argv"],
        serde_json::json!(["cat", aws_s]),
        "argv; alert {a}"
    );
    let mut checked = vec![a_sync, a];

    let a = wait_alert(&d, "cat of a relative path", "secret-read", p_rel);
    assert_secret_read(&a, &s, "cat", &s.decoys.ssh_key, "id_ed25519");
    checked.push(a);

    let a = wait_alert(&d, "cat through a symlink", "secret-read", p_sym);
    assert_secret_read(&a, &s, "cat", &aws, symlink.to_str().unwrap());
    checked.push(a);

    let a = wait_alert(&d, "cat through a hard link", "secret-read", p_hard);
    // The kernel reports the name used; the identity says what it is.
    assert_secret_read(&a, &s, "cat", &hardlink, hardlink.to_str().unwrap());
    assert!(
        a["detail"].as_str().is_some_and(|x| x.contains(aws_s))
            && a["message"]
                .as_str()
                .is_some_and(|x| x.contains("hard link")),
        "a hard link should be named as one, to {aws_s}; alert {a}"
    );
    checked.push(a);

    let a = wait_alert(
        &d,
        "python opening relative to a dirfd",
        "secret-read",
        p_dirfd,
    );
    assert_secret_read(&a, &s, "python3", &aws, "credentials");
    checked.push(a);

    let a = wait_alert(&d, "cat of a project's .env", "secret-read", p_env);
    assert_secret_read(&a, &s, "cat", &project.env(), ".env");
    checked.push(a);

    let quiet = leaked(
        &d,
        &[n_pub, n_example, n_src, n_git, n_keygen, n_shadow, n_write],
        &[
            "id_ed25519.pub",
            "/etc/shadow",
            ".env.example",
            "Cargo.toml",
            "main.rs",
            "README.md",
            ".gitignore",
        ],
    );
    assert!(
        quiet.is_empty(),
        "alerts for opens that must stay silent (pub key, .env.example, sources, git status, \
         ssh-keygen, refused /etc/shadow, append-only open):\n{}",
        show(&quiet)
    );
    assert_only_rule(&d, "secret-read", "only secret reads happened here");
    for a in &checked {
        assert_in_journal(&j, &mark, a);
    }
    d.stop_ok();
}
