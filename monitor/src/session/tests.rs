//! Format tests: round trip, the hash chain, and every kind of damage, on
//! plain and compressed files.

use std::io::Cursor;
use std::path::Path;

use super::format::*;
use super::*;
use crate::detect::alert::{Alert, Severity};
use crate::event::model::{Event, EventKind, Exec, Lost, Task};

pub(crate) fn event(i: u64) -> Event {
    Event {
        time_ns: 1_796_418_295_000_000_000 + i * 1_000_000,
        task: Task {
            pid: 100 + (i % 7) as u32,
            tid: 100,
            ppid: 1,
            uid: 1000,
            gid: 1000,
            comm: "bash".into(),
            cgroup_id: 42,
        },
        kind: EventKind::Exec(Exec {
            ret: 0,
            filename: "/usr/bin/cat".into(),
            exe: Some("/usr/bin/cat".into()),
            argv: vec!["cat".into(), format!("file-{i}")],
            argv_truncated: false,
            dev: 1,
            ino: i,
        }),
    }
}

pub(crate) fn alert(i: u64, rule: &str) -> Alert {
    Alert {
        time: rfc3339(event(i).time_ns),
        rule: rule.into(),
        severity: Severity::High,
        message: format!("alert {i}"),
        pid: 100,
        ppid: 1,
        uid: 1000,
        comm: "cat".into(),
        cgroup_id: 42,
        cgroup: Some("agent.slice".into()),
        path: Some("/home/u/.aws/credentials".into()),
        ..Alert::default()
    }
}

pub(crate) fn header() -> Header {
    let mut h = Header::new(
        1_796_418_295_000_000_000,
        vec![WatchedCgroup {
            id: 42,
            path: "agent.slice".into(),
        }],
        "[rules]\n".into(),
    );
    h.host = "testhost".into();
    h.kernel = "6.18.0".into();
    h.host_facts = serde_json::json!({"users": [{"name": "u", "home": "/home/u"}]});
    h.cgroup_paths.insert(42, "agent.slice".into());
    h
}

/// A session of `n` events with an alert after every 10th and a kernel
/// `lost` marker at 5: header, events/alerts, footer.
fn session(n: u64, compress: bool, with_footer: bool) -> Vec<u8> {
    let mut w = SessionWriter::new(Vec::new(), compress, &header()).unwrap();
    for i in 0..n {
        if i == 5 {
            let mut counts = std::collections::BTreeMap::new();
            counts.insert("open".to_string(), 3);
            w.event(&Event {
                kind: EventKind::Lost(Lost { counts }),
                ..event(i)
            })
            .unwrap();
            continue;
        }
        w.event(&event(i)).unwrap();
        if i % 10 == 9 {
            w.alert(&alert(i, "secret-read")).unwrap();
        }
        if i % 13 == 0 {
            // Several frames per file, as the recorder writes them.
            w.flush().unwrap();
        }
    }
    if with_footer {
        w.finish(1_796_418_300_000_000_000).unwrap().0
    } else {
        w.flush().unwrap();
        w.get_ref().clone()
    }
}

fn plain(bytes: &[u8]) -> Vec<u8> {
    if bytes.starts_with(&ZSTD_MAGIC) {
        zstd::decode_all(bytes).unwrap()
    } else {
        bytes.to_vec()
    }
}

fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    plain(bytes)
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn join(lines: &[Vec<u8>], compress: bool) -> Vec<u8> {
    let text = lines.concat();
    if compress {
        zstd::encode_all(&text[..], 3).unwrap()
    } else {
        text
    }
}

struct Read {
    header: Header,
    records: Vec<Entry>,
    verdict: Verdict,
}

fn read(bytes: Vec<u8>) -> Result<Read, SessionError> {
    let mut r = SessionReader::from_reader(Path::new("s.jsonl"), Cursor::new(bytes))?;
    let header = r.header().clone();
    let mut records = Vec::new();
    while let Some(e) = r.next_record()? {
        records.push(e);
    }
    Ok(Read {
        header,
        records,
        verdict: r.finish()?,
    })
}

fn verify(bytes: Vec<u8>) -> Verdict {
    SessionReader::from_reader(Path::new("s.jsonl"), Cursor::new(bytes))
        .unwrap()
        .verify()
        .unwrap()
}

fn kinds(v: &Verdict) -> Vec<(u64, ProblemKind)> {
    v.problems
        .iter()
        .map(|p| (p.line, p.kind.clone()))
        .collect()
}

#[test]
fn round_trip_plain_and_compressed() {
    for compress in [false, true] {
        let bytes = session(50, compress, true);
        assert_eq!(bytes.starts_with(&ZSTD_MAGIC), compress);
        let r = read(bytes.clone()).unwrap();
        assert_eq!(r.header, header());
        assert_eq!(
            r.verdict.integrity(),
            Integrity::Intact,
            "{:?}",
            r.verdict.problems
        );
        assert!(r.verdict.problems.is_empty());
        let events: Vec<_> = r
            .records
            .iter()
            .filter_map(|e| match &e.record {
                Record::Event(ev) => Some(ev.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(events.len(), 50);
        assert_eq!(events[0], event(0));
        assert_eq!(events[49], event(49));
        assert!(matches!(events[5].kind, EventKind::Lost(_)));
        let alerts = r
            .records
            .iter()
            .filter(|e| matches!(e.record, Record::Alert(_)))
            .count();
        assert_eq!(alerts, 5);
        // Lines and seqs line up: line = seq + 1.
        assert!(r.records.iter().all(|e| e.line == e.seq + 1));
        let footer = r.verdict.footer.clone().unwrap();
        assert_eq!(footer.events, 50);
        assert_eq!(footer.alerts, 5);
        assert_eq!(footer.lost_events, 3);
        assert_eq!(footer.alerts_by_rule["secret-read"], 5);
        assert!(matches!(
            r.records.last().unwrap().record,
            Record::Footer(_)
        ));
        // The light check agrees.
        let v = verify(bytes);
        assert_eq!(v.integrity(), Integrity::Intact, "{:?}", v.problems);
        assert_eq!(v.counts, r.verdict.counts);
    }
}

#[test]
fn every_line_is_a_json_object_with_the_hash_last() {
    let bytes = session(20, false, true);
    let mut prev = GENESIS_HASH;
    for (i, l) in lines(&bytes).iter().enumerate() {
        let l = l.strip_suffix(b"\n").unwrap();
        let v: serde_json::Value = serde_json::from_slice(l).unwrap();
        assert_eq!(v["seq"], i as u64);
        let (body, stored) = split_line(l).unwrap();
        assert_eq!(chain_hash(&prev, body), stored);
        assert_eq!(v["hash"], stored.as_str());
        prev = stored;
    }
}

#[test]
fn an_edited_record_is_reported_once_at_its_line() {
    for compress in [false, true] {
        let mut ls = lines(&session(30, compress, true));
        // Line 8 (seq 7): change the argv, keep the JSON valid.
        let s = String::from_utf8(ls[7].clone()).unwrap();
        assert!(s.contains("file-6"), "{s}");
        ls[7] = s.replace("file-6", "file-X").into_bytes();
        let r = read(join(&ls, compress)).unwrap();
        assert_eq!(r.verdict.integrity(), Integrity::Tampered);
        assert_eq!(
            kinds(&r.verdict),
            vec![(8, ProblemKind::HashMismatch { seq: 7 })]
        );
        assert_eq!(r.verdict.skipped, 1);
        // Everything else was yielded.
        assert!(r.records.iter().all(|e| e.line != 8));
        assert_eq!(r.records.len() as u64, r.verdict.lines - 2);
        assert_eq!(verify(join(&ls, compress)).first_problem().unwrap().line, 8);
    }
}

#[test]
fn an_edited_hash_is_caught_too() {
    let mut ls = lines(&session(30, false, true));
    let n = ls[7].len();
    ls[7][n - 4] = if ls[7][n - 4] == b'0' { b'1' } else { b'0' };
    let v = verify(join(&ls, false));
    assert_eq!(v.integrity(), Integrity::Tampered);
    // The edited line and the one that chains to it.
    assert_eq!(v.problems[0].line, 8);
    assert_eq!(v.problems[1].line, 9);
}

#[test]
fn a_removed_record_is_reported_at_the_line_after_it() {
    for compress in [false, true] {
        let mut ls = lines(&session(30, compress, true));
        ls.remove(10); // seq 10
        let r = read(join(&ls, compress)).unwrap();
        assert_eq!(r.verdict.integrity(), Integrity::Tampered);
        assert_eq!(
            kinds(&r.verdict)[0],
            (
                11,
                ProblemKind::OutOfSequence {
                    expected: 10,
                    found: 11
                }
            )
        );
        // Only that line: the footer's count check is not repeated.
        assert_eq!(r.verdict.problems.len(), 1, "{:?}", r.verdict.problems);
    }
}

#[test]
fn reordered_records_are_reported() {
    let mut ls = lines(&session(30, false, true));
    ls.swap(10, 11);
    let v = verify(join(&ls, false));
    assert_eq!(v.integrity(), Integrity::Tampered);
    let lines_hit: Vec<u64> = v.problems.iter().map(|p| p.line).collect();
    // The two swapped lines, and the one after them, which chains to the
    // hash of the record that used to be before it.
    assert_eq!(lines_hit, vec![11, 12, 13]);
}

#[test]
fn corrupted_json_is_reported_and_the_rest_is_read() {
    for compress in [false, true] {
        let mut ls = lines(&session(30, compress, true));
        ls[4] = b"{\"seq\":4,\"event\":{garbage\n".to_vec();
        let r = read(join(&ls, compress)).unwrap();
        assert_eq!(r.verdict.integrity(), Integrity::Tampered);
        let k = kinds(&r.verdict);
        assert_eq!(k[0].0, 5);
        assert!(matches!(k[0].1, ProblemKind::Corrupt { .. }), "{k:?}");
        // Line 6 chains to line 5's hash, which is gone: reported, not more.
        assert_eq!(k[1].0, 6);
        assert_eq!(k.len(), 2, "{k:?}");
        assert!(r.verdict.footer.is_some());
        assert_eq!(r.verdict.skipped, 2);
    }
}

#[test]
fn valid_json_that_is_not_a_record_is_corrupt() {
    let mut ls = lines(&session(5, false, true));
    // Right hash shape, but an event that does not match the schema.
    let prev = split_line(ls[1].strip_suffix(b"\n").unwrap()).unwrap().1;
    let mut buf = Vec::new();
    encode_line(&mut buf, 2, "event", &serde_json::json!({"nope": 1}), &prev).unwrap();
    ls[2] = buf;
    let r = read(join(&ls, false)).unwrap();
    assert!(matches!(
        r.verdict.problems[0].kind,
        ProblemKind::Corrupt { .. }
    ));
    assert_eq!(r.verdict.problems[0].line, 3);
}

#[test]
fn a_line_with_two_record_kinds_is_corrupt_read_or_verified() {
    let mut ls = lines(&session(5, false, true));
    // A correctly chained line carrying both an event and a gap: the kind
    // string smuggles the first payload key in before the second.
    let prev = split_line(ls[1].strip_suffix(b"\n").unwrap()).unwrap().1;
    let both = format!(
        "event\":{},\"gap",
        serde_json::to_string(&event(1)).unwrap()
    );
    let mut buf = Vec::new();
    encode_line(&mut buf, 2, &both, &Gap::default(), &prev).unwrap();
    ls[2] = buf;
    let bytes = join(&ls, false);
    let problems = [read(bytes.clone()).unwrap().verdict, verify(bytes)];
    for v in &problems {
        let p = &v.problems[0];
        assert_eq!(p.line, 3, "{p}");
        assert!(
            matches!(&p.kind, ProblemKind::Corrupt { reason } if reason.contains("more than one record kind")),
            "{p}"
        );
    }
}

#[test]
fn truncated_mid_line_keeps_every_complete_record() {
    let full = session(30, false, true);
    let ls = lines(&full);
    let cut: usize = ls[..20].iter().map(Vec::len).sum::<usize>() + 17;
    let r = read(full[..cut].to_vec()).unwrap();
    assert_eq!(r.verdict.integrity(), Integrity::Truncated);
    assert_eq!(
        kinds(&r.verdict),
        vec![
            (21, ProblemKind::PartialLine),
            (22, ProblemKind::MissingFooter)
        ]
    );
    assert_eq!(r.records.len(), 19);
    assert_eq!(r.verdict.skipped, 1);
}

#[test]
fn truncated_at_a_line_end_only_misses_the_footer() {
    for compress in [false, true] {
        let r = read(session(30, compress, false)).unwrap();
        assert_eq!(r.verdict.integrity(), Integrity::Truncated);
        let k = kinds(&r.verdict);
        assert_eq!(k, vec![(r.verdict.lines + 1, ProblemKind::MissingFooter)]);
        assert_eq!(r.verdict.skipped, 0);
        assert_eq!(
            r.verdict.problems[0].to_string(),
            format!(
                "no footer after line {}: the session was not closed (crash, power loss or \
                 kill); everything up to there is readable",
                r.verdict.lines
            )
        );
    }
}

/// How the crash-safety of compressed sessions was verified: the writer ends
/// a zstd frame at every flush, so cutting the file at ANY byte leaves every
/// frame before the cut whole. For each cut, the reader must yield at least
/// every record of the complete frames, never fail, and call the file
/// truncated (never tampered).
#[test]
fn crash_at_any_byte_keeps_every_complete_frame() {
    let mut w = SessionWriter::new(Vec::new(), true, &header()).unwrap();
    w.flush().unwrap();
    // Frame boundaries (in bytes) and the records complete at each.
    let mut bounds = vec![(w.get_ref().len(), 0usize)];
    let mut n = 0;
    for i in 0..40 {
        w.event(&event(i)).unwrap();
        n += 1;
        if i % 8 == 7 {
            w.flush().unwrap();
            bounds.push((w.get_ref().len(), n));
        }
    }
    let (full, _, _) = w.finish(1).unwrap();
    let first = bounds[0].0;
    for cut in first..full.len() {
        let must_have = bounds
            .iter()
            .filter(|(b, _)| *b <= cut)
            .map(|(_, n)| *n)
            .max()
            .unwrap();
        let r = read(full[..cut].to_vec()).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let events = r
            .records
            .iter()
            .filter(|e| matches!(e.record, Record::Event(_)))
            .count();
        assert!(events >= must_have, "cut at {cut}: {events} < {must_have}");
        assert_eq!(
            r.verdict.integrity(),
            Integrity::Truncated,
            "cut at {cut}: {:?}",
            r.verdict.problems
        );
    }
}

#[test]
fn corrupt_compressed_data_is_tampered() {
    let mut bytes = session(200, true, true);
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0x5a;
    }
    let r = read(bytes).unwrap();
    assert_eq!(
        r.verdict.integrity(),
        Integrity::Tampered,
        "{:?}",
        r.verdict.problems
    );
}

#[test]
fn a_newer_major_version_is_refused_with_both_versions_named() {
    for compress in [false, true] {
        let mut ls = lines(&session(3, compress, true));
        ls[0] = String::from_utf8(ls[0].clone())
            .unwrap()
            .replace("\"version\":\"1.0\"", "\"version\":\"2.0\"")
            .into_bytes();
        let err = read(join(&ls, compress)).err().unwrap();
        assert!(matches!(err, SessionError::UnsupportedVersion { .. }));
        assert_eq!(err.exit_code(), exit::UNREADABLE);
        assert_eq!(
            err.to_string(),
            "s.jsonl: session format version 2.0 cannot be read by this agentwatch (reads 1.x); \
             use a newer agentwatch"
        );
    }
}

#[test]
fn a_newer_minor_version_is_read_and_its_additions_skipped() {
    // A 1.1 writer adds a header field and a record kind this build does not
    // know; both are ignored, the chain still checks.
    let mut buf = Vec::new();
    let mut h = serde_json::to_value(header()).unwrap();
    h["version"] = "1.1".into();
    h["new_field"] = "x".into();
    let mut prev = encode_line(&mut buf, 0, "header", &h, &GENESIS_HASH).unwrap();
    prev = encode_line(&mut buf, 1, "event", &event(1), &prev).unwrap();
    prev = encode_line(&mut buf, 2, "snapshot", &serde_json::json!({"a": 1}), &prev).unwrap();
    let mut counts = Counts::default();
    counts.event(&event(1));
    let footer = counts.footer(5, prev);
    encode_line(&mut buf, 3, "footer", &footer, &prev).unwrap();
    let r = read(buf).unwrap();
    assert_eq!(
        r.verdict.integrity(),
        Integrity::Intact,
        "{:?}",
        r.verdict.problems
    );
    assert_eq!(r.verdict.unknown, 1);
    assert_eq!(r.header.version, "1.1".parse().unwrap());
    assert_eq!(r.records.len(), 2);
}

#[test]
fn not_a_session_is_unreadable_with_a_reason() {
    let cases: Vec<(&[u8], &str)> = vec![
        (b"", "the file is empty"),
        (b"hello world\n", "line 1 is not a JSON object"),
        (
            b"{\"seq\":0,\"header\":{\"format\":\"other\"}}\n",
            "not a session header",
        ),
        (b"{\"a\":1}\n", "not a session header"),
        (b"\x7fELF\x02\x01\x01\x00", "not a JSON object"),
    ];
    for (bytes, want) in cases {
        let err = read(bytes.to_vec()).err().unwrap();
        assert!(
            matches!(err, SessionError::NotASession { .. }),
            "{bytes:?}: {err:?}"
        );
        assert!(err.to_string().contains(want), "{err}");
        assert_eq!(err.exit_code(), exit::UNREADABLE);
    }
    // zstd of something else.
    let z = zstd::encode_all(&b"just text\n"[..], 3).unwrap();
    assert!(matches!(read(z), Err(SessionError::NotASession { .. })));
    // Broken zstd.
    let mut z = zstd::encode_all(&b"just text\n"[..], 3).unwrap();
    z.truncate(6);
    assert!(read(z).is_err());
}

#[test]
fn a_header_cut_short_is_a_damaged_header() {
    let bytes = session(3, false, true);
    let err = read(bytes[..100].to_vec()).err().unwrap();
    assert!(matches!(err, SessionError::BadHeader { .. }), "{err:?}");
}

#[test]
fn records_after_the_footer_and_a_second_header_are_tampering() {
    let mut ls = lines(&session(3, false, true));
    // Append a correctly chained event after the footer.
    let last = split_line(ls.last().unwrap().strip_suffix(b"\n").unwrap())
        .unwrap()
        .1;
    let seq = ls.len() as u64;
    let mut buf = Vec::new();
    let h = encode_line(&mut buf, seq, "event", &event(9), &last).unwrap();
    encode_line(&mut buf, seq + 1, "header", &header(), &h).unwrap();
    ls.push(buf);
    let r = read(join(&ls, false)).unwrap();
    let k = kinds(&r.verdict);
    assert_eq!(k[0], (seq + 1, ProblemKind::AfterFooter));
    assert!(
        k.contains(&(seq + 2, ProblemKind::UnexpectedHeader)),
        "{k:?}"
    );
    assert_eq!(r.verdict.integrity(), Integrity::Tampered);
}

#[test]
fn a_rechained_file_with_records_removed_fails_the_footer_counts() {
    // Someone removes an alert and recomputes every hash after it: the chain
    // is whole again, but the footer's counts give it away (unless they fix
    // those too; that is what keeping the last hash elsewhere is for).
    let ls = lines(&session(30, false, true));
    let mut buf = Vec::new();
    let mut prev = GENESIS_HASH;
    let mut seq = 0;
    for l in &ls {
        let v: serde_json::Value = serde_json::from_slice(l).unwrap();
        if v.get("alert").is_some() && seq == 11 {
            continue; // drop the first alert
        }
        let (kind, payload) = ["header", "event", "alert", "gap", "footer"]
            .iter()
            .find_map(|k| v.get(*k).map(|p| (*k, p.clone())))
            .unwrap();
        let payload = if kind == "footer" {
            let mut f = payload;
            f["final_hash"] = prev.as_str().into();
            f
        } else {
            payload
        };
        prev = encode_line(&mut buf, seq, kind, &payload, &prev).unwrap();
        seq += 1;
    }
    let v = verify(buf);
    assert_eq!(v.integrity(), Integrity::Tampered);
    let p = v.first_problem().unwrap();
    assert!(
        matches!(&p.kind, ProblemKind::FooterMismatch { what } if what.contains("alerts: footer says 3, file has 2")),
        "{p}"
    );
}

#[test]
fn problem_messages_name_the_line() {
    let p = Problem {
        line: 42,
        kind: ProblemKind::HashMismatch { seq: 41 },
    };
    assert_eq!(
        p.to_string(),
        "line 42: hash mismatch at record seq 41: this record was edited, or the one before it \
         was removed or altered"
    );
    assert_eq!(Integrity::Tampered.exit_code(), exit::TAMPERED);
    assert_eq!(Integrity::Truncated.exit_code(), exit::TRUNCATED);
}
