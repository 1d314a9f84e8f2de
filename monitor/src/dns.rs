//! The DNS map: which names the watched processes resolved to which
//! addresses, from the DNS answers they received (the raw messages are in
//! [`crate::event::model::Dns`] events, so replay parses them again here).
//!
//! For every A/AAAA record the map keeps the question name (what the process
//! asked for) and every name of the CNAME chain that led to it, so a connect
//! to `140.82.x.y` is tied to `api.github.com` even when the answer came
//! through `github.map.fastly.net`. Entries expire by EVENT time, after
//! `max(TTL, min_keep)` (programs keep using addresses after the TTL, so a
//! short TTL must not turn an allowed host into an unexpected one), and the
//! map is bounded (oldest expiry evicted first).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::RData;
use simple_dns::{Packet, PacketFlag, RCODE};

/// At most this many names are kept per address.
const NAMES_PER_ADDR: usize = 8;

/// Why a DNS message was not used.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// Not a parseable DNS message.
    #[error("malformed DNS message of {len} bytes: {reason}")]
    Malformed {
        /// Message length.
        len: usize,
        /// The parser's complaint.
        reason: String,
    },
}

#[derive(Clone, Debug)]
struct Entry {
    name: String,
    expires_ns: u64,
}

/// Address -> names, learned from DNS answers.
#[derive(Debug)]
pub struct DnsMap {
    by_addr: HashMap<IpAddr, Vec<Entry>>,
    min_keep_ns: u64,
    max_keep_ns: u64,
    cap: usize,
    last_sweep_ns: u64,
}

impl Default for DnsMap {
    fn default() -> Self {
        // 16,384 addresses: a few MiB at most, and under a churn of new names
        // the map stops growing there instead of for the whole 600 s.
        DnsMap::new(600 * 1_000_000_000, 86_400 * 1_000_000_000, 16_384)
    }
}

impl DnsMap {
    /// A map keeping answers at least `min_keep_ns` and at most `max_keep_ns`,
    /// for at most `cap` addresses.
    pub fn new(min_keep_ns: u64, max_keep_ns: u64, cap: usize) -> Self {
        DnsMap {
            by_addr: HashMap::new(),
            min_keep_ns,
            max_keep_ns: max_keep_ns.max(min_keep_ns),
            cap: cap.max(1),
            last_sweep_ns: 0,
        }
    }

    /// Number of addresses known.
    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    /// Whether no address is known.
    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// Learn from one DNS message received at `time_ns`. Queries, errors and
    /// answers without addresses teach nothing. Returns the number of
    /// (address, name) pairs learned.
    pub fn observe(&mut self, time_ns: u64, payload: &[u8]) -> Result<usize, DnsError> {
        let pkt = Packet::parse(payload).map_err(|e| DnsError::Malformed {
            len: payload.len(),
            reason: e.to_string(),
        })?;
        if !pkt.has_flags(PacketFlag::RESPONSE) || pkt.rcode() != RCODE::NoError {
            return Ok(0);
        }
        // alias -> target, lowercase, no trailing dot
        let mut cname: HashMap<String, String> = HashMap::new();
        for rr in &pkt.answers {
            if let RData::CNAME(c) = &rr.rdata {
                cname.insert(norm(&rr.name.to_string()), norm(&c.0.to_string()));
            }
        }
        let questions: Vec<String> = pkt
            .questions
            .iter()
            .map(|q| norm(&q.qname.to_string()))
            .collect();
        let mut learned = 0;
        for rr in &pkt.answers {
            let addr = match &rr.rdata {
                RData::A(a) => IpAddr::V4(Ipv4Addr::from(a.address)),
                RData::AAAA(a) => IpAddr::V6(Ipv6Addr::from(a.address)),
                _ => continue,
            };
            let owner = norm(&rr.name.to_string());
            // names leading to `owner`: the questions first, then the chain
            let mut names: Vec<String> = Vec::new();
            for q in &questions {
                let mut cur = q.clone();
                let mut chain = vec![cur.clone()];
                for _ in 0..16 {
                    if cur == owner {
                        break;
                    }
                    match cname.get(&cur) {
                        Some(next) => {
                            cur = next.clone();
                            chain.push(cur.clone());
                        }
                        None => break,
                    }
                }
                if cur == owner {
                    for n in chain {
                        if !names.contains(&n) {
                            names.push(n);
                        }
                    }
                }
            }
            if !names.contains(&owner) {
                names.push(owner);
            }
            let keep =
                (u64::from(rr.ttl) * 1_000_000_000).clamp(self.min_keep_ns, self.max_keep_ns);
            let expires_ns = time_ns.saturating_add(keep);
            let slot = self.by_addr.entry(addr).or_default();
            for name in names {
                learned += 1;
                match slot.iter_mut().find(|e| e.name == name) {
                    Some(e) => e.expires_ns = e.expires_ns.max(expires_ns),
                    None => {
                        // most recent first: a question name is the best answer
                        slot.insert(0, Entry { name, expires_ns });
                        slot.truncate(NAMES_PER_ADDR);
                    }
                }
            }
        }
        if self.by_addr.len() > self.cap
            || time_ns.saturating_sub(self.last_sweep_ns) >= 10_000_000_000
        {
            self.expire(time_ns);
            self.last_sweep_ns = time_ns;
        }
        Ok(learned)
    }

    /// The names `addr` was resolved from and that are still valid at
    /// `now_ns`, most recently learned first. IPv4-mapped IPv6 addresses are
    /// looked up as IPv4.
    pub fn names(&self, addr: IpAddr, now_ns: u64) -> Vec<&str> {
        let addr = crate::policy::canonical_ip(addr);
        self.by_addr
            .get(&addr)
            .map(|v| {
                v.iter()
                    .filter(|e| e.expires_ns > now_ns)
                    .map(|e| e.name.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drop expired entries, then, when over the cap, the soonest-expiring
    /// addresses down to 7/8 of it.
    pub fn expire(&mut self, now_ns: u64) {
        self.by_addr.retain(|_, v| {
            v.retain(|e| e.expires_ns > now_ns);
            !v.is_empty()
        });
        if self.by_addr.len() > self.cap {
            let mut v: Vec<(u64, IpAddr)> = self
                .by_addr
                .iter()
                .map(|(a, e)| (e.iter().map(|e| e.expires_ns).max().unwrap_or(0), *a))
                .collect();
            v.sort();
            // Evict down to 7/8 of the cap, not to the cap: otherwise every
            // new address past the cap would sort the whole map again.
            let excess = self.by_addr.len() - (self.cap - self.cap / 8);
            for (_, a) in v.into_iter().take(excess) {
                self.by_addr.remove(&a);
            }
        }
    }
}

fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Test helper: build a DNS answer message (also used by detector tests).
#[cfg(test)]
pub(crate) fn answer(
    question: &str,
    cnames: &[(&str, &str)],
    addrs: &[(&str, &str, u32)],
) -> Vec<u8> {
    use simple_dns::rdata::{A, AAAA, CNAME};
    use simple_dns::{Name, Question, ResourceRecord, CLASS, QCLASS, QTYPE, TYPE};
    let mut p = Packet::new_reply(7);
    p.questions.push(Question::new(
        Name::new_unchecked(question),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    for (from, to) in cnames {
        p.answers.push(ResourceRecord::new(
            Name::new_unchecked(from),
            CLASS::IN,
            300,
            RData::CNAME(CNAME(Name::new_unchecked(to))),
        ));
    }
    for (owner, a, ttl) in addrs {
        let rd = match a.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => RData::A(A {
                address: u32::from(v4),
            }),
            IpAddr::V6(v6) => RData::AAAA(AAAA {
                address: u128::from(v6),
            }),
        };
        p.answers.push(ResourceRecord::new(
            Name::new_unchecked(owner),
            CLASS::IN,
            *ttl,
            rd,
        ));
    }
    p.build_bytes_vec().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn mapping_table() {
        struct Case {
            what: &'static str,
            msg: Vec<u8>,
            addr: &'static str,
            at: u64,
            want: &'static [&'static str],
        }
        let cases = [
            Case {
                what: "plain A",
                msg: answer("example.com", &[], &[("example.com", "93.184.216.34", 60)]),
                addr: "93.184.216.34",
                at: 1,
                want: &["example.com"],
            },
            Case {
                what: "cname chain, question first",
                msg: answer(
                    "api.github.com",
                    &[("api.github.com", "gh.map.fastly.net")],
                    &[("gh.map.fastly.net", "140.82.112.6", 30)],
                ),
                addr: "140.82.112.6",
                at: 1,
                want: &["gh.map.fastly.net", "api.github.com"],
            },
            Case {
                what: "AAAA",
                msg: answer("v6.example", &[], &[("v6.example", "2001:db8::1", 60)]),
                addr: "2001:db8::1",
                at: 1,
                want: &["v6.example"],
            },
            Case {
                what: "v4-mapped lookup",
                msg: answer("m.example", &[], &[("m.example", "192.0.2.1", 60)]),
                addr: "::ffff:192.0.2.1",
                at: 1,
                want: &["m.example"],
            },
            Case {
                what: "kept at least min_keep",
                msg: answer("short.example", &[], &[("short.example", "192.0.2.9", 1)]),
                addr: "192.0.2.9",
                at: 599 * S,
                want: &["short.example"],
            },
            Case {
                what: "expired after min_keep",
                msg: answer("short.example", &[], &[("short.example", "192.0.2.9", 1)]),
                addr: "192.0.2.9",
                at: 601 * S,
                want: &[],
            },
            Case {
                what: "long TTL honoured",
                msg: answer("long.example", &[], &[("long.example", "192.0.2.10", 3600)]),
                addr: "192.0.2.10",
                at: 3000 * S,
                want: &["long.example"],
            },
            Case {
                what: "other address unknown",
                msg: answer("a.example", &[], &[("a.example", "192.0.2.11", 60)]),
                addr: "192.0.2.12",
                at: 1,
                want: &[],
            },
            Case {
                what: "trailing dot and case",
                msg: answer(
                    "WWW.Example.ORG.",
                    &[],
                    &[("www.example.org", "192.0.2.13", 60)],
                ),
                addr: "192.0.2.13",
                at: 1,
                want: &["www.example.org"],
            },
        ];
        for c in cases {
            let mut m = DnsMap::default();
            m.observe(0, &c.msg).unwrap();
            let mut got = m.names(ip(c.addr), c.at);
            got.sort();
            let mut want = c.want.to_vec();
            want.sort();
            assert_eq!(got, want, "{}", c.what);
        }
    }

    #[test]
    fn queries_and_errors_teach_nothing() {
        let mut m = DnsMap::default();
        let q = Packet::new_query(1).build_bytes_vec().unwrap();
        assert_eq!(m.observe(0, &q).unwrap(), 0);
        assert!(m.observe(0, &[1, 2, 3]).is_err());
        assert!(m.is_empty());
    }

    #[test]
    fn shared_addresses_keep_several_names_bounded() {
        let mut m = DnsMap::default();
        for i in 0..20 {
            let n = format!("h{i}.cdn.example");
            m.observe(i, &answer(&n, &[], &[(&n, "192.0.2.50", 60)]))
                .unwrap();
        }
        let names = m.names(ip("192.0.2.50"), 100);
        assert_eq!(names.len(), NAMES_PER_ADDR);
        assert_eq!(names[0], "h19.cdn.example", "most recent first");
    }

    #[test]
    fn the_map_is_bounded() {
        let mut m = DnsMap::new(600 * S, 600 * S, 10);
        for i in 0..50u32 {
            let a = format!("10.0.0.{i}");
            m.observe(
                u64::from(i),
                &answer("x.example", &[], &[("x.example", &a, 60)]),
            )
            .unwrap();
        }
        assert!(m.len() <= 10);
        assert_eq!(m.names(ip("10.0.0.49"), 60), vec!["x.example"]);
    }
}
