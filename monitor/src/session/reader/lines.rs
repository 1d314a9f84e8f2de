//! A record line as serde reads it, in full or light (for `verify` and
//! `sessions`, which need no full events), and the first-line probe.

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::detect::alert::Alert;
use crate::event::model::Event;
use crate::session::format::{Footer, Gap, Header, WatchedCgroup};

// The record line as read: exactly one payload key is set. Unknown keys
// (newer minor versions, and `hash`) are ignored by serde.
#[derive(Deserialize)]
pub(super) struct FullLine {
    pub(super) seq: u64,
    pub(super) header: Option<IgnoredAny>,
    pub(super) event: Option<Event>,
    pub(super) alert: Option<Alert>,
    pub(super) gap: Option<Gap>,
    pub(super) cgroup: Option<WatchedCgroup>,
    pub(super) footer: Option<Footer>,
}

// The same, checking JSON validity and taking only what the footer check
// needs: `verify` and `sessions` need no full events.
#[derive(Deserialize)]
pub(super) struct LightLine {
    pub(super) seq: u64,
    pub(super) header: Option<IgnoredAny>,
    pub(super) event: Option<LightEvent>,
    pub(super) alert: Option<LightAlert>,
    pub(super) gap: Option<Gap>,
    pub(super) cgroup: Option<IgnoredAny>,
    pub(super) footer: Option<Footer>,
}

#[derive(Deserialize)]
pub(super) struct LightEvent {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) counts: Option<std::collections::BTreeMap<String, u64>>,
}

#[derive(Deserialize)]
pub(super) struct LightAlert {
    pub(super) rule: String,
}

#[derive(Deserialize)]
pub(super) struct ProbeLine {
    pub(super) seq: Option<u64>,
    pub(super) header: Option<ProbeHeader>,
}

#[derive(Deserialize)]
pub(super) struct ProbeHeader {
    pub(super) format: Option<String>,
    pub(super) version: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct HeaderLine {
    pub(super) header: Header,
}

pub(super) enum Parsed {
    Header,
    Event(Option<Event>),
    Alert(Option<Alert>),
    Gap(Gap),
    Cgroup(Option<WatchedCgroup>),
    Footer(Footer),
    Unknown,
}

pub(super) fn full(l: FullLine) -> Result<Parsed, String> {
    one_kind(&[
        l.header.is_some(),
        l.event.is_some(),
        l.alert.is_some(),
        l.gap.is_some(),
        l.cgroup.is_some(),
        l.footer.is_some(),
    ])?;
    Ok(if l.header.is_some() {
        Parsed::Header
    } else if let Some(e) = l.event {
        Parsed::Event(Some(e))
    } else if let Some(a) = l.alert {
        Parsed::Alert(Some(a))
    } else if let Some(g) = l.gap {
        Parsed::Gap(g)
    } else if let Some(c) = l.cgroup {
        Parsed::Cgroup(Some(c))
    } else if let Some(f) = l.footer {
        Parsed::Footer(f)
    } else {
        Parsed::Unknown
    })
}

/// A record line carries at most one payload key; several are damage.
pub(super) fn one_kind(present: &[bool]) -> Result<(), String> {
    if present.iter().filter(|&&p| p).count() > 1 {
        return Err("more than one record kind on the line".into());
    }
    Ok(())
}
