//! Session recording, replay and verification against the real kernel
//! (issue 4): record real activity in a watched cgroup, stop the daemon
//! (SIGTERM, or SIGKILL mid-session), then `agentwatch replay`, `verify`
//! and `sessions` on the file, as a user investigating an incident would.
//! Exit codes: 0 intact (and replay reproduced the alerts), 3 tampered,
//! 4 truncated, 5 unreadable, 6 replay differs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use agentwatch_e2e::daemon::agentwatch_bin;
use agentwatch_e2e::events::show;
use agentwatch_e2e::journald::Journald;
use agentwatch_e2e::util::{run_ok, TempDir};
use agentwatch_e2e::{require_root, Daemon};

use crate::detection::{apid, is_alert, wait_alert, Scene, ALLOWED_HOST, EXFIL_HOST, WAIT};

const TAMPERED: i32 = 3;
const TRUNCATED: i32 = 4;

/// What an `agentwatch` subcommand did.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run `agentwatch ARGS` to completion.
fn agentwatch(args: &[&str]) -> Ran {
    let out = Command::new(agentwatch_bin())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run agentwatch {args:?}: {e}"));
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Parse JSON lines (the alerts of `--json`).
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Alerts as a sorted list of their JSON texts, to compare as multisets.
fn sorted(alerts: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = alerts.iter().map(Value::to_string).collect();
    v.sort();
    v
}

/// `agentwatch replay FILE --json` must print exactly `live`, and exit
/// `code`.
fn assert_replay_matches(file: &Path, live: &[Value], code: i32) -> Ran {
    let r = agentwatch(&["replay", file.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, Some(code), "replay {}: {r}", file.display());
    let replayed = json_lines(&r.stdout);
    assert_eq!(
        sorted(&replayed),
        sorted(live),
        "replayed alerts differ from the live ones\nlive ({}):\n{}\nreplayed ({}):\n{}\nreplay stderr:\n{}",
        live.len(),
        show(live),
        replayed.len(),
        show(&replayed),
        r.stderr
    );
    r
}

/// Real activity of every rule: a secret read, an environment dump, and a
/// read-then-send pipeline (secret-read, unexpected-egress, exfiltration).
/// Returns once the exfiltration alert is out.
fn activity(s: &Scene, d: &Daemon) {
    let aws = s.decoys.aws_credentials.to_str().unwrap();
    let (p, _) = run_ok(&mut s.cmd(&["cat", aws]));
    wait_alert(d, "cat of the AWS credentials", "secret-read", p);
    let (p, _) = run_ok(&mut s.cmd(&["env"]));
    wait_alert(d, "env", "env-dump", p);
    let bash = s.exfil_pipeline();
    d.wait_for("exfiltration by the pipeline", WAIT, |a| {
        a["rule"] == "exfiltration" && a["ppid"].as_u64() == Some(bash as u64)
    });
}

fn rules(alerts: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = alerts
        .iter()
        .map(|a| a["rule"].as_str().unwrap_or("").to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Change one digit of the first `"time_ns":` number on `line` (same
/// length, still valid JSON): an edit only the hash chain can tell.
fn tamper(line: &str) -> String {
    let key = "\"time_ns\":";
    let at = line
        .find(key)
        .unwrap_or_else(|| panic!("no time_ns in {line}"))
        + key.len();
    let mut b = line.as_bytes().to_vec();
    let digits = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    assert!(digits > 3, "time_ns is not a number in {line}");
    let i = at + digits - 2;
    b[i] = if b[i] == b'9' { b'0' } else { b[i] + 1 };
    String::from_utf8(b).unwrap()
}

#[test]
fn forensics_session_replays_to_the_live_alerts_verifies_and_shows_tampering_at_its_line() {
    require_root!();
    let s = Scene::new();
    let dir = TempDir::new("sessions");
    let file = dir.path().join("live.jsonl");
    let d = s.daemon(&["--no-journald", "--record", file.to_str().unwrap()]);
    activity(&s, &d);
    let f = d.stop_ok();
    let live = json_lines(&f.stdout);
    assert_eq!(
        rules(&live),
        [
            "env-dump",
            "exfiltration",
            "secret-read",
            "unexpected-egress"
        ],
        "live alerts:\n{}",
        show(&live)
    );

    // Root-only, JSON lines with a header first and a footer last.
    assert_eq!(mode(&file), 0o600, "mode of {}", file.display());
    let text = std::fs::read_to_string(&file).expect("read the session");
    let lines: Vec<&str> = text.lines().collect();
    let first: Value = serde_json::from_str(lines[0]).expect("header line is JSON");
    assert_eq!(
        first["header"]["format"], "agentwatch-session",
        "header: {first}"
    );
    let last: Value = serde_json::from_str(lines[lines.len() - 1]).expect("footer is JSON");
    assert!(
        last.get("footer").is_some(),
        "last line should be the footer: {last}"
    );
    let recorded: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("alert").cloned())
        .collect();
    assert_eq!(
        sorted(&recorded),
        sorted(&live),
        "the session should hold the live alerts\nrecorded:\n{}\nlive:\n{}",
        show(&recorded),
        show(&live)
    );

    let r = assert_replay_matches(&file, &live, 0);
    assert!(
        r.stderr.contains("reproduced exactly"),
        "replay should say the recorded alerts were reproduced: {r}"
    );
    // Filters: one pid, one rule.
    let exfil = live.iter().find(|a| a["rule"] == "exfiltration").unwrap();
    let r = agentwatch(&[
        "replay",
        file.to_str().unwrap(),
        "--json",
        "--rule",
        "exfiltration",
    ]);
    assert_eq!(
        sorted(&json_lines(&r.stdout)),
        sorted(std::slice::from_ref(exfil)),
        "--rule: {r}"
    );
    let pid = apid(exfil).to_string();
    let r = agentwatch(&["replay", file.to_str().unwrap(), "--json", "--pid", &pid]);
    let by_pid = json_lines(&r.stdout);
    assert!(
        !by_pid.is_empty() && by_pid.iter().all(|a| apid(a).to_string() == pid),
        "--pid {pid}: {r}"
    );

    // A new policy: what it would have raised instead (here: the name is
    // now allowed, so neither the egress nor the exfiltration).
    let newer = dir.path().join("newer.toml");
    std::fs::write(
        &newer,
        format!("version = 1\n\n[egress]\nallow = [\"{ALLOWED_HOST}\", \"{EXFIL_HOST}\"]\n"),
    )
    .unwrap();
    let r = agentwatch(&[
        "replay",
        file.to_str().unwrap(),
        "--json",
        "--policy",
        newer.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "replay --policy: {r}");
    let with_new = json_lines(&r.stdout);
    assert_eq!(
        rules(&with_new),
        ["env-dump", "secret-read"],
        "with {EXFIL_HOST} allowed: {r}"
    );
    let kept: Vec<Value> = live
        .iter()
        .filter(|a| a["rule"] == "env-dump" || a["rule"] == "secret-read")
        .cloned()
        .collect();
    assert_eq!(sorted(&with_new), sorted(&kept), "replay --policy: {r}");

    // The timeline tells the story: who ran what, which files, which hosts.
    let r = agentwatch(&["replay", file.to_str().unwrap(), "--timeline"]);
    assert_eq!(r.code, Some(0), "replay --timeline: {r}");
    for needle in [
        "curl",
        EXFIL_HOST,
        s.decoys.aws_credentials.to_str().unwrap(),
        "exfiltration",
    ] {
        assert!(
            r.stdout.contains(needle),
            "the timeline should mention {needle}: {r}"
        );
    }

    let v = agentwatch(&["verify", file.to_str().unwrap()]);
    assert_eq!(v.code, Some(0), "verify of an intact session: {v}");
    assert!(v.stdout.contains("intact"), "verify: {v}");

    // Edit one event in the middle: verify names that line, replay skips it.
    let middle = (lines.len() / 2..lines.len() - 1)
        .find(|&i| lines[i].contains(",\"event\":{"))
        .unwrap_or_else(|| panic!("no event record after the middle of:\n{text}"));
    let line_no = middle + 1;
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[middle] = tamper(lines[middle]);
    let bad = dir.path().join("tampered.jsonl");
    std::fs::write(&bad, edited.join("\n") + "\n").unwrap();
    let v = agentwatch(&["verify", bad.to_str().unwrap()]);
    assert_eq!(v.code, Some(TAMPERED), "verify of a tampered session: {v}");
    assert!(
        v.stdout.contains("TAMPERED") && v.stdout.contains(&format!("line {line_no}:")),
        "verify should name line {line_no}: {v}"
    );
    let r = agentwatch(&["replay", bad.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, Some(TAMPERED), "replay of a tampered session: {r}");
    assert!(
        r.stderr.contains(&format!("line {line_no}:")),
        "replay should say which line it skipped ({line_no}): {r}"
    );
}

#[test]
fn forensics_sigkill_leaves_a_truncated_session_that_replays_up_to_the_last_record() {
    require_root!();
    let s = Scene::new();
    let dir = TempDir::new("sessions");
    // Compressed: after a crash every complete zstd frame must still read.
    let file = dir.path().join("crash.jsonl.zst");
    let d = s.daemon(&["--no-journald", "--record", file.to_str().unwrap()]);
    activity(&s, &d);
    // Past the recorder's 1 s flush.
    std::thread::sleep(Duration::from_millis(2000));
    let flushed = d.events();
    // One more alert, then the kill, with no time to flush it.
    let key = s.decoys.ssh_key.to_str().unwrap();
    let (p, _) = run_ok(&mut s.cmd(&["cat", key]));
    wait_alert(&d, "the last read before the kill", "secret-read", p);
    let all_live = d.events();
    // SAFETY: kill has no memory-safety preconditions.
    let killed = unsafe { libc::kill(d.pid() as i32, libc::SIGKILL) };
    assert_eq!(killed, 0, "kill -9 {}", d.pid());
    drop(d);

    let bytes = std::fs::read(&file).expect("read the session");
    assert_eq!(
        bytes.get(..4),
        Some(&[0x28, 0xb5, 0x2f, 0xfd][..]),
        "{} should be zstd-compressed",
        file.display()
    );
    let v = agentwatch(&["verify", file.to_str().unwrap()]);
    assert_eq!(v.code, Some(TRUNCATED), "verify of a killed session: {v}");
    assert!(
        v.stdout.contains("TRUNCATED") && v.stdout.contains("no footer"),
        "verify should say the footer is missing: {v}"
    );

    let r = agentwatch(&["replay", file.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, Some(TRUNCATED), "replay of a killed session: {r}");
    assert!(r.stderr.contains("TRUNCATED"), "replay should say so: {r}");
    let replayed = json_lines(&r.stdout);
    let replayed_s = sorted(&replayed);
    for a in &flushed {
        assert!(
            replayed_s.contains(&a.to_string()),
            "an alert raised before the last flush was not replayed: {a}\nreplayed:\n{}\nstderr:\n{}",
            show(&replayed),
            r.stderr
        );
    }
    let live_s = sorted(&all_live);
    let extra: Vec<&Value> = replayed
        .iter()
        .filter(|a| !live_s.contains(&a.to_string()))
        .collect();
    assert!(
        extra.is_empty(),
        "replay raised alerts the live run did not:\n{extra:?}\nlive:\n{}",
        show(&all_live)
    );
    assert!(
        replayed
            .iter()
            .any(|a| a["rule"] == "exfiltration" && a["egress"]["host"] == EXFIL_HOST),
        "the exfiltration before the kill should be replayed:\n{}",
        show(&replayed)
    );
    // `is_alert` on a pid the replay must have: the first read.
    assert!(
        flushed.iter().any(|a| replayed
            .iter()
            .any(|b| is_alert(b, "secret-read", apid(a) as u32))),
        "no secret-read replayed:\n{}",
        show(&replayed)
    );
}

#[test]
fn forensics_compressed_session_in_a_session_directory_round_trips_and_is_listed() {
    require_root!();
    let s = Scene::new();
    let dir = TempDir::new("sessions");
    let store: PathBuf = dir.path().join("store");
    let arg = format!("{}/", store.display());
    // With journald on: the daemon pins the closed session in the journal.
    let journal = Journald::ensure();
    let mark = journal.mark();
    let d = s.daemon(&["--record", &arg]);
    activity(&s, &d);
    let f = d.stop_ok();
    let live = json_lines(&f.stdout);

    let files: Vec<PathBuf> = std::fs::read_dir(&store)
        .unwrap_or_else(|e| panic!("{}: {e}; daemon stderr:\n{}", store.display(), f.stderr))
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one session in {}: {files:?}",
        store.display()
    );
    let file = &files[0];
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.ends_with(".jsonl.zst") && name.as_bytes()[..8].iter().all(u8::is_ascii_digit),
        "a time-sortable compressed name: {name}"
    );
    assert!(
        f.stderr.contains(file.to_str().unwrap()),
        "stderr should say where it records:\n{}",
        f.stderr
    );
    assert_eq!(mode(file), 0o600, "mode of {}", file.display());
    assert_eq!(
        mode(&store) & 0o077,
        0,
        "the directory is root-only: {:o}",
        mode(&store)
    );
    let bytes = std::fs::read(file).unwrap();
    assert_eq!(
        bytes.get(..4),
        Some(&[0x28, 0xb5, 0x2f, 0xfd][..]),
        "zstd magic"
    );

    let v = agentwatch(&["verify", file.to_str().unwrap()]);
    assert_eq!(v.code, Some(0), "verify: {v}");
    assert_replay_matches(file, &live, 0);

    // The journal entry that pins the session carries its file, alert count
    // and the same final hash the recorder reported.
    let last_hash = f
        .stderr
        .split("last hash ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or_else(|| panic!("no 'last hash' on stderr:\n{}", f.stderr));
    let pinned = journal.wait_for(
        &mark,
        &[
            "MESSAGE_ID=7f3c2a9d5b1e4c86a0d4e2b9c1f05a37",
            &format!("AGENTWATCH_SESSION={}", file.display()),
        ],
        WAIT,
    );
    let e = &pinned[0];
    assert_eq!(
        e["AGENTWATCH_SESSION_HASH"].as_str(),
        Some(last_hash),
        "{e}"
    );
    assert_eq!(
        e["AGENTWATCH_SESSION_ALERTS"].as_str(),
        Some(live.len().to_string().as_str()),
        "{e}"
    );
    assert_eq!(e["SYSLOG_IDENTIFIER"].as_str(), Some("agentwatch"), "{e}");

    let l = agentwatch(&["sessions", "--dir", store.to_str().unwrap(), "--json"]);
    assert_eq!(l.code, Some(0), "sessions: {l}");
    let rows = json_lines(&l.stdout);
    assert_eq!(rows.len(), 1, "sessions: {l}");
    let row = &rows[0];
    assert_eq!(row["file"].as_str(), Some(file.to_str().unwrap()), "{row}");
    assert_eq!(row["closed"], true, "{row}");
    assert_eq!(row["alerts"].as_u64(), Some(live.len() as u64), "{row}");
    assert_eq!(row["cgroups"], serde_json::json!([s.cg.rel()]), "{row}");
    for rule in rules(&live) {
        let n = live.iter().filter(|a| a["rule"] == rule.as_str()).count() as u64;
        assert_eq!(
            row["alerts_by_rule"][&rule].as_u64(),
            Some(n),
            "{rule} count; row {row}"
        );
    }
}
