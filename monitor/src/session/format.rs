//! The session file format, version 1.0: what the recorder writes and replay,
//! `verify` and `sessions` read. This documentation is the specification.
//!
//! # Layout
//!
//! A session file is [JSON Lines]: one JSON object per line, each line ended
//! by `\n`, UTF-8. It may be compressed with zstd (the file then starts with
//! the zstd magic `28 b5 2f fd`; readers detect it by those bytes, not by the
//! name). A compressed file is a sequence of complete zstd frames, one per
//! flush of the recorder, which decode as a single stream (`zstd -dc`,
//! `zstdcat`); so after a crash every frame but the last one being written is
//! intact, and so is every line in them.
//!
//! Every line is one record:
//!
//! ```text
//! {"seq":0,"header":{"format":"agentwatch-session","version":"1.0",...},"hash":"5f0c…"}
//! {"seq":1,"event":{"time_ns":…,"task":{…},"type":"exec",…},"hash":"a1b2…"}
//! {"seq":2,"alert":{"time":"…","rule":"secret-read",…},"hash":"…"}
//! {"seq":3,"gap":{"dropped_events":12,"dropped_alerts":0,…},"hash":"…"}
//! {"seq":4,"footer":{"end_time":"…","events":1,"alerts":1,…,"final_hash":"…"},"hash":"…"}
//! ```
//!
//! - `seq` counts records from 0 (the header) up by one per line.
//! - Exactly one payload key names the record's kind and holds its content:
//!   - `header` ([`Header`]): always the first line and only there: the
//!     format name and version, who recorded it, on which host and kernel,
//!     when, which cgroups, the policy in force (its text), the host facts
//!     the detection engine looked up at start (opaque JSON), and the cgroup
//!     id to path map.
//!   - `event` ([`Event`]): an input of the pipeline, exactly as the sources
//!     produced it, in the order the pipeline saw them. Events the KERNEL
//!     could not deliver are themselves events (`"type":"lost"`, a gap marker
//!     the live pipeline saw too), so replay feeds them through the same path.
//!   - `alert` ([`Alert`]): an alert the live engine raised, written right
//!     after the event that triggered it. Replay does not feed these to the
//!     engine; it re-derives alerts from the events and compares.
//!   - `gap` ([`Gap`]): the RECORDER lost records here (its queue was full),
//!     so the file is known to be incomplete at this point. Never silent.
//!   - `cgroup` ([`WatchedCgroup`]: `id`, `path`): a host fact learned
//!     along the way: the live engine named a cgroup that was not known at
//!     start (one created during the run). Written right after the event
//!     whose handling looked it up, before that event's alerts; replay
//!     applies it BEFORE feeding that event, so the alerts name the cgroup
//!     exactly as they did live.
//!   - `footer` ([`Footer`]): the last line of a cleanly closed session: end
//!     time, counts, and the hash of the record before it. A file without a
//!     footer was cut short (crash, power loss, `SIGKILL`).
//! - `hash` is always the LAST key of the line and is the chain hash:
//!
//!   ```text
//!   hash[n] = hex(SHA-256( hash[n-1] || body[n] ))      hash[-1] = "0" * 64
//!   ```
//!
//!   where `hash[n-1]` is the previous line's hash as its 64 lowercase hex
//!   ASCII characters and `body[n]` is the exact bytes of line `n` before the
//!   75-byte suffix `,"hash":"<64 hex>"}` (so: the line without its hash
//!   field and without its closing brace). Hashing the bytes as written, not
//!   a re-serialisation, makes verification exact and cheap, and lets a shell
//!   check it with no agentwatch at all:
//!
//!   ```sh
//!   prev=$(printf '0%.0s' $(seq 64))
//!   zstdcat -f SESSION | while IFS= read -r line; do
//!     body=${line%,\"hash\":\"*}; want=${line##*\"hash\":\"}; want=${want%\"\}}
//!     got=$(printf '%s%s' "$prev" "$body" | sha256sum | cut -c1-64)
//!     [ "$got" = "$want" ] || echo "broken: $line"; prev=$want
//!   done
//!   ```
//!
//!   Editing a record breaks its hash; removing, inserting or reordering
//!   records breaks the hash (and the `seq` run) of the record after. The
//!   chain proves integrity against anyone who does not re-compute it; the
//!   footer's own hash (the session's last hash, printed on stderr when the
//!   recorder closes) is the value to keep elsewhere (journald) to pin the
//!   whole file against someone who can.
//!
//! `jq` reads it directly: `jq -c 'select(.alert) | .alert' SESSION`,
//! `zstdcat SESSION | jq -c 'select(.event.type == "exec") | .event.argv'`.
//!
//! # Versions
//!
//! `header.version` is `"MAJOR.MINOR"`. A reader reads every version with
//! the same major and any minor: later minors only ADD optional fields and
//! record kinds, and readers ignore keys and record kinds they do not know
//! (unknown record kinds are still hash-checked). A new major is for changes
//! old readers cannot skip; readers refuse a major they do not know with a
//! message naming both versions rather than guess. The [`Event`] and
//! [`Alert`] JSON forms are part of this format and follow the same rule.
//!
//! [JSON Lines]: https://jsonlines.org/

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::detect::alert::Alert;
use crate::event::model::Event;

/// The value of `header.format`: what makes a file a session.
pub const FORMAT_NAME: &str = "agentwatch-session";

/// The version this build writes, and the newest major it reads.
pub const FORMAT_VERSION: FormatVersion = FormatVersion { major: 1, minor: 0 };

/// The chain hash before the first record: 64 ASCII zeros.
pub const GENESIS_HASH: HashHex = HashHex([b'0'; 64]);

/// Length of the suffix every line ends with: `,"hash":"` + 64 hex + `"}`.
pub const HASH_SUFFIX_LEN: usize = HASH_PREFIX.len() + 64 + 2;

const HASH_PREFIX: &[u8] = b",\"hash\":\"";

/// The first four bytes of a zstd frame.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// `MAJOR.MINOR`, written as the string `"1.0"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FormatVersion {
    /// Incompatible changes.
    pub major: u32,
    /// Compatible additions.
    pub minor: u32,
}

impl fmt::Display for FormatVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for FormatVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("version {s:?} is not MAJOR.MINOR");
        let (major, minor) = s.split_once('.').ok_or_else(bad)?;
        Ok(FormatVersion {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for FormatVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FormatVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A watched cgroup, as given on the command line and resolved at start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedCgroup {
    /// cgroup v2 id (the directory's inode number).
    pub id: u64,
    /// Path relative to the cgroup2 root, e.g. `agent.slice`.
    pub path: String,
}

/// The first record: everything replay needs besides the events, so that it
/// never touches the host it runs on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// The format version the file was written in.
    pub version: FormatVersion,
    /// The agentwatch version that recorded it.
    pub agentwatch_version: String,
    /// Host name.
    pub host: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// When recording began: RFC 3339, UTC, nanoseconds.
    pub start_time: String,
    /// The same instant, nanoseconds since the Unix epoch.
    pub start_time_ns: u64,
    /// The cgroups watched (each with its subtree).
    pub cgroups: Vec<WatchedCgroup>,
    /// The effective policy in force, as TOML text.
    pub policy: String,
    /// Where the policy came from (a file path, or `built-in default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_source: Option<String>,
    /// The host facts the detection engine looked up at start (users and
    /// their homes, resolvers, ...): stored opaquely so this format does not
    /// change when the engine learns a new fact.
    #[serde(default)]
    pub host_facts: serde_json::Value,
    /// cgroup id -> path relative to the cgroup2 root, for every cgroup known
    /// at start (ids seen later appear in events and alerts).
    #[serde(default)]
    pub cgroup_paths: BTreeMap<u64, String>,
}

impl Header {
    /// A header for this build and format version; the caller fills in the
    /// rest. Host name and kernel release come from `/proc/sys/kernel`.
    pub fn new(start_time_ns: u64, cgroups: Vec<WatchedCgroup>, policy: String) -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        Header {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            agentwatch_version: env!("CARGO_PKG_VERSION").to_string(),
            host: read("/proc/sys/kernel/hostname"),
            kernel: read("/proc/sys/kernel/osrelease"),
            start_time: rfc3339(start_time_ns),
            start_time_ns,
            cgroups,
            policy,
            policy_source: None,
            host_facts: serde_json::Value::Null,
            cgroup_paths: BTreeMap::new(),
        }
    }
}

/// The recorder lost records at this point: its queue to the writer thread
/// was full (the disk could not keep up), or the records could not be
/// written. Replay reports gaps; alerts after one may differ from the live
/// ones because the engine did not see the lost events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// Events not recorded since the previous record.
    pub dropped_events: u64,
    /// Alerts not recorded since the previous record.
    pub dropped_alerts: u64,
    /// Time of the first event lost (ns since the epoch), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_time_ns: Option<u64>,
    /// Time of the last event lost, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_time_ns: Option<u64>,
    /// Why, for people: `recorder queue full`.
    pub reason: String,
}

/// The last record of a cleanly closed session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footer {
    /// When recording ended: RFC 3339, UTC, nanoseconds.
    pub end_time: String,
    /// The same instant, nanoseconds since the Unix epoch.
    pub end_time_ns: u64,
    /// `event` records written.
    pub events: u64,
    /// `alert` records written.
    pub alerts: u64,
    /// `gap` records written.
    pub gaps: u64,
    /// Events the recorder dropped (sum over gaps).
    pub dropped_events: u64,
    /// Alerts the recorder dropped (sum over gaps).
    pub dropped_alerts: u64,
    /// Events the kernel lost (sum over `lost` events).
    pub lost_events: u64,
    /// Alert records by rule id.
    pub alerts_by_rule: BTreeMap<String, u64>,
    /// The chain hash of the record before this footer.
    pub final_hash: String,
}

/// Running totals kept while writing or reading, the footer's numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// `event` records.
    pub events: u64,
    /// `alert` records.
    pub alerts: u64,
    /// `gap` records.
    pub gaps: u64,
    /// Sum of `gap.dropped_events`.
    pub dropped_events: u64,
    /// Sum of `gap.dropped_alerts`.
    pub dropped_alerts: u64,
    /// Sum over `lost` events' counts.
    pub lost_events: u64,
    /// Alerts by rule.
    pub alerts_by_rule: BTreeMap<String, u64>,
}

impl Counts {
    /// Count an event.
    pub fn event(&mut self, e: &Event) {
        let lost = match &e.kind {
            crate::event::model::EventKind::Lost(l) => l.counts.values().sum::<u64>(),
            _ => 0,
        };
        self.add_event(lost);
    }

    /// Count an event that reports `lost` kernel-lost events (0 for all but
    /// `lost` events).
    pub fn add_event(&mut self, lost: u64) {
        self.events += 1;
        self.lost_events += lost;
    }

    /// Count an alert.
    pub fn alert(&mut self, a: &Alert) {
        self.add_alert(&a.rule);
    }

    /// Count an alert of `rule`.
    pub fn add_alert(&mut self, rule: &str) {
        self.alerts += 1;
        match self.alerts_by_rule.get_mut(rule) {
            Some(n) => *n += 1,
            None => {
                self.alerts_by_rule.insert(rule.to_string(), 1);
            }
        }
    }

    /// Count a gap.
    pub fn gap(&mut self, g: &Gap) {
        self.gaps += 1;
        self.dropped_events += g.dropped_events;
        self.dropped_alerts += g.dropped_alerts;
    }

    /// The footer these counts make.
    pub fn footer(&self, end_time_ns: u64, final_hash: HashHex) -> Footer {
        Footer {
            end_time: rfc3339(end_time_ns),
            end_time_ns,
            events: self.events,
            alerts: self.alerts,
            gaps: self.gaps,
            dropped_events: self.dropped_events,
            dropped_alerts: self.dropped_alerts,
            lost_events: self.lost_events,
            alerts_by_rule: self.alerts_by_rule.clone(),
            final_hash: final_hash.as_str().to_string(),
        }
    }

    /// Where `footer` disagrees with these counts, for people.
    pub fn differences(&self, footer: &Footer) -> Vec<String> {
        let mut d = Vec::new();
        let mut cmp = |name: &str, written: u64, found: u64| {
            if written != found {
                d.push(format!("{name}: footer says {written}, file has {found}"));
            }
        };
        cmp("events", footer.events, self.events);
        cmp("alerts", footer.alerts, self.alerts);
        cmp("gaps", footer.gaps, self.gaps);
        cmp("dropped events", footer.dropped_events, self.dropped_events);
        cmp("dropped alerts", footer.dropped_alerts, self.dropped_alerts);
        cmp("lost events", footer.lost_events, self.lost_events);
        if d.is_empty() && footer.alerts_by_rule != self.alerts_by_rule {
            d.push("alerts by rule differ".to_string());
        }
        d
    }
}

/// One record after the header, as read back.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// An input event.
    Event(Event),
    /// An alert the live engine raised.
    Alert(Alert),
    /// Records the recorder lost here.
    Gap(Gap),
    /// A cgroup name learned during the run.
    Cgroup(WatchedCgroup),
    /// The end of a cleanly closed session.
    Footer(Footer),
}

/// A chain hash as its 64 lowercase hex ASCII characters (the form that is
/// both written and hashed, so no conversion happens per record).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashHex(pub [u8; 64]);

impl HashHex {
    /// The hex text.
    pub fn as_str(&self) -> &str {
        // Only ever built from lowercase hex digits (see `chain_hash` and
        // `split_line`), so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// Parse 64 lowercase hex digits.
    pub fn parse(s: &[u8]) -> Option<HashHex> {
        let arr: [u8; 64] = s.try_into().ok()?;
        arr.iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .then_some(HashHex(arr))
    }
}

impl fmt::Debug for HashHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for HashHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `hash[n] = hex(SHA-256(hash[n-1] || body[n]))`.
pub fn chain_hash(prev: &HashHex, body: &[u8]) -> HashHex {
    let mut h = Sha256::new();
    h.update(prev.0);
    h.update(body);
    let digest = h.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0xf) as usize];
    }
    HashHex(out)
}

/// Why a line is not a well-formed record line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineShapeError {
    /// Too short to end with a hash.
    TooShort,
    /// Does not end with `,"hash":"<64 lowercase hex>"}`.
    NoHashSuffix,
}

impl fmt::Display for LineShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineShapeError::TooShort => f.write_str("line too short to be a record"),
            LineShapeError::NoHashSuffix => {
                f.write_str(r#"line does not end with ,"hash":"<64 hex digits>"}"#)
            }
        }
    }
}

/// Split a line (without its `\n`) into the hashed body and the stored hash.
pub fn split_line(line: &[u8]) -> Result<(&[u8], HashHex), LineShapeError> {
    if line.len() < HASH_SUFFIX_LEN + 1 {
        return Err(LineShapeError::TooShort);
    }
    let (body, suffix) = line.split_at(line.len() - HASH_SUFFIX_LEN);
    if !suffix.starts_with(HASH_PREFIX) || !suffix.ends_with(b"\"}") {
        return Err(LineShapeError::NoHashSuffix);
    }
    let hex = &suffix[HASH_PREFIX.len()..HASH_PREFIX.len() + 64];
    let hash = HashHex::parse(hex).ok_or(LineShapeError::NoHashSuffix)?;
    Ok((body, hash))
}

/// Append one record line (with its `\n`) to `buf` and return its hash.
///
/// `kind` is the payload key (`header`, `event`, `alert`, `gap`, `footer`).
pub fn encode_line<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    seq: u64,
    kind: &str,
    payload: &T,
    prev: &HashHex,
) -> serde_json::Result<HashHex> {
    use std::io::Write as _;
    let start = buf.len();
    // Writing into a Vec cannot fail.
    let _ = write!(buf, "{{\"seq\":{seq},\"{kind}\":");
    if let Err(e) = serde_json::to_writer(&mut *buf, payload) {
        buf.truncate(start);
        return Err(e);
    }
    let hash = chain_hash(prev, &buf[start..]);
    buf.extend_from_slice(HASH_PREFIX);
    buf.extend_from_slice(&hash.0);
    buf.extend_from_slice(b"\"}\n");
    Ok(hash)
}

/// RFC 3339, UTC, with nanoseconds (`2026-12-04T21:04:55.123456789Z`).
pub fn rfc3339(ns: u64) -> String {
    match jiff::Timestamp::from_nanosecond(ns as i128) {
        Ok(t) => format!("{t:.9}"),
        Err(_) => ns.to_string(),
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_text_round_trips() {
        let v: FormatVersion = "1.0".parse().unwrap();
        assert_eq!(v, FORMAT_VERSION);
        assert_eq!(serde_json::to_string(&v).unwrap(), r#""1.0""#);
        assert_eq!("12.3".parse::<FormatVersion>().unwrap().major, 12);
        assert!("1".parse::<FormatVersion>().is_err());
        assert!("a.b".parse::<FormatVersion>().is_err());
    }

    #[test]
    fn encoded_line_splits_back_and_hash_is_over_the_body() {
        let mut buf = Vec::new();
        let g = Gap {
            dropped_events: 3,
            reason: "recorder queue full".into(),
            ..Gap::default()
        };
        let h = encode_line(&mut buf, 7, "gap", &g, &GENESIS_HASH).unwrap();
        assert_eq!(buf.last(), Some(&b'\n'));
        let line = &buf[..buf.len() - 1];
        let (body, stored) = split_line(line).unwrap();
        assert_eq!(stored, h);
        assert!(body.starts_with(br#"{"seq":7,"gap":{"dropped_events":3"#));
        assert_eq!(chain_hash(&GENESIS_HASH, body), h);
        // jq-readable: the whole line is one JSON object with the hash last.
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert_eq!(v["hash"], h.as_str());
        assert_eq!(v["gap"]["dropped_events"], 3);
    }

    #[test]
    fn chain_hash_matches_sha256sum_of_prev_hex_and_body() {
        // printf '%s%s' "$(printf '0%.0s' $(seq 64))" '{"seq":0' | sha256sum
        let h = chain_hash(&GENESIS_HASH, br#"{"seq":0"#);
        let mut s = Sha256::new();
        s.update([b'0'; 64]);
        s.update(br#"{"seq":0"#);
        let want: String = s.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(h.as_str(), want);
    }

    #[test]
    fn split_rejects_lines_without_a_hash() {
        assert_eq!(split_line(b"{}"), Err(LineShapeError::TooShort));
        let mut l = br#"{"seq":1,"gap":{},"hash":""#.to_vec();
        l.extend_from_slice(&[b'G'; 64]);
        l.extend_from_slice(b"\"}");
        assert_eq!(split_line(&l), Err(LineShapeError::NoHashSuffix));
    }

    #[test]
    fn timestamps_have_nanoseconds() {
        assert_eq!(
            rfc3339(1_764_000_000_123_456_789),
            "2025-11-24T16:00:00.123456789Z"
        );
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
    }
}
