//! `cargo xtask test`: every check the project has, in order, each timed:
//!
//! 1. setup (installs what is missing),
//! 2. rustfmt --check,
//! 3. clippy -D warnings on every host crate and target,
//! 4. unit tests (no root needed): every host crate's tests, and the
//!    library tests of the end-to-end crate (its fixtures),
//! 5. end-to-end tests, as root, against the real kernel: journald is
//!    started if it is not running, agentwatch is built, and the one `e2e`
//!    test binary runs with one test at a time (they load real eBPF
//!    programs and create cgroups, namespaces and users).
//!
//! A failing check does not stop the later ones (one run shows every
//! problem); the exit status is non-zero if any failed. The last line sums
//! the test counts of every cargo test run.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::steps::Steps;
use crate::util::{self, is_root};
use crate::{build, setup};

/// Options of `cargo xtask test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// Only the checks that need no root: rustfmt, clippy and unit tests.
    #[arg(long)]
    unit_only: bool,
    /// Skip rustfmt and clippy (for a quicker local run).
    #[arg(long)]
    no_lint: bool,
    /// Skip the unit tests (for iterating on the end-to-end tests).
    #[arg(long)]
    e2e_only: bool,
    /// Arguments for the e2e test binary after `--`, e.g. a name filter.
    #[arg(last = true)]
    e2e_args: Vec<String>,
}

/// Test counts summed over cargo test runs.
#[derive(Default, Clone, Copy)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.ignored += o.ignored;
    }
}

pub fn run(args: &TestArgs) -> Result<()> {
    let start = Instant::now();
    let mut steps = Steps::default();
    let mut counts = Counts::default();

    if !steps.run("setup", || setup::run().map(|_| ())) {
        steps.summary(start.elapsed());
        bail!("setup failed; nothing else was run");
    }

    if args.no_lint || args.e2e_only {
        steps.skip("rustfmt", "--no-lint/--e2e-only");
        steps.skip("clippy", "--no-lint/--e2e-only");
    } else {
        steps.run("rustfmt", || {
            util::run(util::cargo().args(["fmt", "--all", "--", "--check"]))
        });
        steps.run("clippy", || {
            // clippy-driver gives monitor's build script a unit of its own,
            // so without the skip the eBPF programs would be built a second
            // time (about a minute on 2 cores) just to be linted around;
            // monitor-ebpf is not linted (it is built for bpf, not the host).
            util::run(util::cargo().env("AYA_BUILD_SKIP", "1").args([
                "clippy",
                // Lint every crate even when one fails: one run, every problem.
                "--keep-going",
                "--workspace",
                "--exclude",
                "monitor-ebpf",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        });
    }

    if args.e2e_only {
        steps.skip("unit tests", "--e2e-only");
    } else {
        steps.run("unit tests", || {
            // The e2e crate's integration test binary is the privileged part
            // (step 5); its library (the fixtures) has plain unit tests.
            let mut all = util::cargo();
            all.args([
                "test",
                "--workspace",
                "--exclude",
                "monitor-ebpf",
                "--exclude",
                "agentwatch-e2e",
            ]);
            let a = cargo_test(&mut all, &mut counts);
            let mut fixtures = util::cargo();
            fixtures.args(["test", "--package", "agentwatch-e2e", "--lib"]);
            let b = cargo_test(&mut fixtures, &mut counts);
            a.and(b)
        });
    }

    if args.unit_only {
        steps.skip("end-to-end tests", "--unit-only");
    } else if !is_root() {
        steps.run("end-to-end tests", || {
            bail!(
                "the end-to-end tests load eBPF programs and need root: run `sudo -E cargo xtask test`, \
                 or `cargo xtask test --unit-only` for the rest"
            )
        });
    } else {
        steps.run("journald", start_journald);
        let mut bin = None;
        steps.run("build agentwatch", || {
            bin = Some(build::build_only(false)?);
            Ok(())
        });
        if let Some(bin) = bin {
            steps.run("end-to-end tests", || {
                let mut cmd = util::cargo();
                cmd.env("AGENTWATCH_BIN", &bin)
                    .args(["test", "--package", "agentwatch-e2e", "--test", "e2e", "--"])
                    .arg("--test-threads=1")
                    .args(&args.e2e_args);
                cargo_test(&mut cmd, &mut counts)
            });
        } else {
            steps.skip("end-to-end tests", "agentwatch did not build");
        }
    }

    steps.summary(start.elapsed());
    // The one closing line that sums every cargo test run above.
    println!(
        "tests: {} passed, {} failed, {} skipped",
        counts.passed, counts.failed, counts.ignored
    );
    if steps.failed() {
        bail!("some checks failed (see the summary above)");
    }
    Ok(())
}

/// Run a `cargo test` command, copying its stdout through and adding up its
/// `test result:` lines to `total` (also when it fails). Fails when cargo
/// does.
fn cargo_test(cmd: &mut Command, total: &mut Counts) -> Result<()> {
    println!("+ {}", util::display(cmd));
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", util::display(cmd)))?;
    let mut counts = Counts::default();
    let stdout = child.stdout.take().expect("piped stdout");
    let mut out = std::io::stdout();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        if let Some(c) = parse_result_line(&line) {
            counts.add(c);
        }
    }
    let status = child.wait()?;
    total.add(counts);
    if !status.success() {
        bail!(
            "`{}` failed ({status}): {} passed, {} failed",
            util::display(cmd),
            counts.passed,
            counts.failed
        );
    }
    Ok(())
}

/// Parse libtest's `test result: ok. 3 passed; 0 failed; 1 ignored; ...`.
fn parse_result_line(line: &str) -> Option<Counts> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_, rest) = rest.split_once(". ")?;
    let mut c = Counts::default();
    for part in rest.split(';') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => c.passed = n,
            "failed" => c.failed = n,
            "ignored" => c.ignored = n,
            _ => {}
        }
    }
    Some(c)
}

/// Start a standalone systemd-journald when none answers on its socket
/// (there is no systemd PID 1 on the project's machines); the recipe of
/// platform.md. The e2e fixtures do the same, so running the test binary
/// directly works too.
pub(crate) fn start_journald() -> Result<()> {
    let socket = Path::new("/run/systemd/journal/socket");
    if journald_alive(socket) {
        println!("journald: already running");
        return Ok(());
    }
    for dir in ["/run/systemd/journal", "/run/log/journal"] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
    }
    let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    if machine_id.trim().is_empty() {
        util::run(&mut Command::new("systemd-machine-id-setup"))?;
    }
    // Stale sockets from a journald that died would fool the wait below.
    for name in ["socket", "stdout", "dev-log", "io.systemd.journal"] {
        let _ = std::fs::remove_file(Path::new("/run/systemd/journal").join(name));
    }
    let log =
        std::fs::File::create("/tmp/journald.log").context("cannot create /tmp/journald.log")?;
    // `setsid --fork`: journald is re-parented away from us and outlives
    // this run; only the short-lived setsid is waited for.
    let mut cmd = Command::new("setsid");
    cmd.args(["--fork", "/lib/systemd/systemd-journald"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    util::run(&mut cmd).context("cannot start systemd-journald")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !journald_alive(socket) {
        if Instant::now() > deadline {
            bail!(
                "systemd-journald did not open {} within 10 s (see /tmp/journald.log)",
                socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("journald: started");
    Ok(())
}

/// Whether something listens on journald's datagram socket (a stale socket
/// file refuses the connection).
fn journald_alive(socket: &Path) -> bool {
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return false;
    };
    sock.connect(socket).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_result_lines_are_counted() {
        let c = parse_result_line(
            "test result: ok. 12 passed; 1 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.01s",
        )
        .unwrap();
        assert_eq!((c.passed, c.failed, c.ignored), (12, 1, 3));
        assert!(parse_result_line("running 3 tests").is_none());
    }
}
