//! The recorder against a gated writer: drops become gaps in place, timed
//! flushes, file creation and the `--record` argument.

use super::*;
use crate::event::model::{EventKind, Exit, Task};
use crate::session::{Record, SessionReader};
use std::io::Write;
use std::sync::Condvar;

/// An output the test can hold closed (to fill the queue) and read.
#[derive(Clone, Default)]
struct Gated {
    out: Arc<Mutex<Vec<u8>>>,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl Gated {
    fn closed() -> Self {
        Gated::default()
    }
    fn open(&self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
    }
    fn bytes(&self) -> Vec<u8> {
        self.out.lock().unwrap().clone()
    }
}

impl Write for Gated {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let mut open = self.gate.0.lock().unwrap();
        while !*open {
            open = self.gate.1.wait(open).unwrap();
        }
        self.out.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl SessionOutput for Gated {}

fn ev(i: u64) -> Event {
    Event {
        time_ns: 1_000 + i,
        task: Task {
            pid: i as u32,
            comm: "t".into(),
            ..Task::default()
        },
        kind: EventKind::Exit(Exit { exit_code: 0 }),
    }
}

fn header() -> Header {
    Header::new(1, vec![], "# policy".into())
}

fn read_all(bytes: Vec<u8>) -> (Vec<Record>, crate::session::Verdict) {
    let mut r = SessionReader::from_reader(Path::new("mem"), std::io::Cursor::new(bytes)).unwrap();
    let mut recs = Vec::new();
    while let Some(e) = r.next_record().unwrap() {
        recs.push(e.record);
    }
    (recs, r.finish().unwrap())
}

#[test]
fn a_full_queue_drops_and_records_a_gap_in_place() {
    let out = Gated::closed();
    let mut rec = Recorder::with_output(
        out.clone(),
        Path::new("mem"),
        header(),
        true,
        4,
        Duration::from_secs(3600),
    )
    .unwrap();
    // The writer thread is stuck writing the header: the queue fills.
    for i in 0..100 {
        rec.event(&ev(i));
    }
    let stats = rec.stats();
    let dropped = stats.dropped_events.load(Ordering::Relaxed);
    assert!(dropped >= 95, "only {dropped} dropped");
    out.open();
    // Let the writer drain, then one more event gets in after the gap.
    while stats.queued.load(Ordering::Relaxed) < 100 - dropped {
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(50));
    rec.event(&ev(100));
    rec.finish();

    let (recs, verdict) = read_all(out.bytes());
    assert_eq!(
        verdict.integrity(),
        crate::session::Integrity::Intact,
        "{:?}",
        verdict.problems
    );
    let kept = (100 - dropped) as usize;
    assert_eq!(recs.len(), kept + 3, "{recs:?}");
    for (i, r) in recs[..kept].iter().enumerate() {
        assert_eq!(r, &Record::Event(ev(i as u64)));
    }
    let Record::Gap(g) = &recs[kept] else {
        panic!("expected a gap after the kept events, got {:?}", recs[kept]);
    };
    assert_eq!(g.dropped_events, dropped);
    assert_eq!(g.first_time_ns, Some(1_000 + kept as u64));
    assert_eq!(g.last_time_ns, Some(1_099));
    assert_eq!(recs[kept + 1], Record::Event(ev(100)));
    let Record::Footer(f) = &recs[kept + 2] else {
        panic!()
    };
    assert_eq!(f.dropped_events, dropped);
    assert_eq!(f.gaps, 1);
    assert_eq!(stats.closed().unwrap().footer, *f);
}

#[test]
fn drops_at_the_end_are_recorded_before_the_footer() {
    let out = Gated::closed();
    let mut rec = Recorder::with_output(
        out.clone(),
        Path::new("mem"),
        header(),
        false,
        2,
        Duration::from_secs(3600),
    )
    .unwrap();
    for i in 0..10 {
        rec.event(&ev(i));
    }
    out.open();
    rec.finish();
    let (recs, verdict) = read_all(out.bytes());
    assert_eq!(verdict.integrity(), crate::session::Integrity::Intact);
    let n = recs.len();
    assert!(matches!(recs[n - 2], Record::Gap(_)), "{recs:?}");
    let Record::Footer(f) = &recs[n - 1] else {
        panic!()
    };
    assert_eq!(f.events + f.dropped_events, 10);
}

#[test]
fn flushes_on_its_own_within_the_interval() {
    let out = Gated::closed();
    out.open();
    let mut rec = Recorder::with_output(
        out.clone(),
        Path::new("mem"),
        header(),
        true,
        64,
        Duration::from_millis(50),
    )
    .unwrap();
    rec.event(&ev(1));
    let t = Instant::now();
    loop {
        let bytes = out.bytes();
        if bytes.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        // Readable now, though not closed: header + the event, no footer.
        let (recs, v) = read_all(bytes);
        if recs.len() == 1 {
            assert_eq!(
                v.problems.last().unwrap().kind,
                crate::session::ProblemKind::MissingFooter
            );
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "not flushed");
        std::thread::sleep(Duration::from_millis(10));
    }
    rec.finish();
}

#[test]
fn start_creates_a_private_file_in_the_directory() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sessions");
    let config = RecorderConfig {
        target: RecordTarget::Dir(dir.clone()),
        ..RecorderConfig::default()
    };
    let mut h = header();
    h.cgroups = vec![crate::session::WatchedCgroup {
        id: 7,
        path: "agent.slice".into(),
    }];
    let mut rec = Recorder::start(&config, h).unwrap();
    rec.event(&ev(1));
    rec.finish();
    let path = rec.path().to_path_buf();
    assert!(path.starts_with(&dir));
    assert!(
        path.to_str().unwrap().ends_with("-agent.slice.jsonl.zst"),
        "{path:?}"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    let v = SessionReader::open(&path).unwrap().finish().unwrap();
    assert_eq!(v.integrity(), crate::session::Integrity::Intact);
    assert_eq!(v.counts.events, 1);
}

#[test]
fn record_arg_chooses_file_or_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let c = RecorderConfig::for_record_arg(Some(tmp.path()));
    assert_eq!(c.target, RecordTarget::Dir(tmp.path().to_path_buf()));
    let f = tmp.path().join("s.jsonl");
    let c = RecorderConfig::for_record_arg(Some(&f));
    assert_eq!(c.target, RecordTarget::File(f));
    assert!(!c.compress);
    let c = RecorderConfig::for_record_arg(Some(Path::new("/x/s.jsonl.zst")));
    assert!(c.compress);
    let c = RecorderConfig::for_record_arg(None);
    assert_eq!(c.target, RecordTarget::Dir(store::DEFAULT_DIR.into()));
}
