//! `unexpected-egress`: a connect to a destination the policy does not allow.
//!
//! Destinations are allowed by address (loopback, the system resolvers on
//! port 53, addresses and CIDRs) or by NAME: the names come from the DNS map
//! (what the watched processes resolved to this address), so a connect is
//! allowed when any name that led to the address matches an allowed host.

use std::net::IpAddr;

use crate::event::model::{Connect, Protocol};
use crate::host::HostFacts;
use crate::policy::{canonical_ip, DestPattern, DestTarget, Policy};

/// The verdict on one connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressVerdict {
    /// The policy allows it.
    pub allowed: bool,
    /// The name it was resolved from: the allowed one if allowed, else the
    /// most recent one, if any.
    pub host: Option<String>,
    /// Why it is allowed (for `policy` debugging), or empty.
    pub because: String,
}

/// The compiled egress policy.
pub struct EgressPolicy {
    loopback: bool,
    resolvers: Vec<IpAddr>,
    allow: Vec<DestPattern>,
}

impl EgressPolicy {
    /// Compile from the policy and the host's resolvers.
    pub fn new(policy: &Policy, facts: &HostFacts) -> Self {
        EgressPolicy {
            loopback: policy.egress.allow_loopback,
            resolvers: if policy.egress.allow_resolvers {
                facts.resolvers.iter().map(|a| canonical_ip(*a)).collect()
            } else {
                vec![]
            },
            allow: policy.egress.allow.clone(),
        }
    }

    /// Whether a connect needs a verdict at all: a UDP connect to port 0 sends
    /// nothing (glibc's getaddrinfo does it to sort addresses).
    pub fn relevant(c: &Connect) -> bool {
        c.dport != 0 || (c.protocol != Protocol::Udp && !c.daddr.is_unspecified())
    }

    /// Judge a destination, given the names the DNS map has for it.
    pub fn check(&self, daddr: IpAddr, dport: u16, names: &[&str]) -> EgressVerdict {
        let ip = canonical_ip(daddr);
        let yes = |because: String, host: Option<String>| EgressVerdict {
            allowed: true,
            host,
            because,
        };
        if self.loopback && (ip.is_loopback() || ip.is_unspecified()) {
            return yes("loopback".into(), names.first().map(|s| s.to_string()));
        }
        if dport == 53 && self.resolvers.contains(&ip) {
            return yes(
                "system resolver".into(),
                names.first().map(|s| s.to_string()),
            );
        }
        for d in &self.allow {
            if !d.port_matches(dport) {
                continue;
            }
            match &d.target {
                DestTarget::Net(n) if n.contains(ip) => {
                    return yes(format!("allowed {d}"), names.first().map(|s| s.to_string()))
                }
                DestTarget::Host(_) => {
                    if let Some(n) = names.iter().find(|n| d.host_matches(n)) {
                        return yes(format!("allowed {d}"), Some(n.to_string()));
                    }
                }
                _ => {}
            }
        }
        EgressVerdict {
            allowed: false,
            host: names.first().map(|s| s.to_string()),
            because: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_table() {
        let user = r#"
[egress]
allow = ["10.20.0.0/16", "db.internal.example:5432", "[fd00::/8]:443"]
"#;
        let p = Policy::from_user_str("t", user).unwrap();
        let facts = HostFacts {
            resolvers: vec!["192.0.2.53".parse().unwrap()],
            ..Default::default()
        };
        let e = EgressPolicy::new(&p, &facts);
        // (what, address, port, names from DNS, allowed?, host reported)
        type Case<'a> = (&'a str, &'a str, u16, &'a [&'a str], bool, Option<&'a str>);
        let cases: &[Case] = &[
            ("loopback v4", "127.0.0.1", 8080, &[], true, None),
            ("loopback v6", "::1", 80, &[], true, None),
            ("resolver on 53", "192.0.2.53", 53, &[], true, None),
            (
                "resolver on another port",
                "192.0.2.53",
                80,
                &[],
                false,
                None,
            ),
            (
                "allowed LLM host",
                "203.0.113.5",
                443,
                &["api.anthropic.com"],
                true,
                Some("api.anthropic.com"),
            ),
            (
                "wildcard",
                "203.0.113.6",
                443,
                &["objects.githubusercontent.com"],
                true,
                Some("objects.githubusercontent.com"),
            ),
            (
                "cname chain: any name allowed",
                "203.0.113.7",
                443,
                &["github.map.fastly.net", "api.github.com"],
                true,
                Some("api.github.com"),
            ),
            (
                "unknown name",
                "203.0.113.8",
                443,
                &["evil.example"],
                false,
                Some("evil.example"),
            ),
            ("bare address", "198.51.100.1", 443, &[], false, None),
            ("cidr", "10.20.3.4", 22, &[], true, None),
            (
                "host with port, right port",
                "203.0.113.9",
                5432,
                &["db.internal.example"],
                true,
                Some("db.internal.example"),
            ),
            (
                "host with port, wrong port",
                "203.0.113.9",
                22,
                &["db.internal.example"],
                false,
                Some("db.internal.example"),
            ),
            ("v6 cidr with port", "fd12::5", 443, &[], true, None),
            ("v6 outside", "2001:db8::5", 443, &[], false, None),
            (
                "v4-mapped loopback",
                "::ffff:127.0.0.1",
                80,
                &[],
                true,
                None,
            ),
            ("metadata service", "169.254.169.254", 80, &[], false, None),
        ];
        for (what, addr, port, names, allowed, host) in cases {
            let v = e.check(addr.parse().unwrap(), *port, names);
            assert_eq!(v.allowed, *allowed, "{what}");
            assert_eq!(v.host.as_deref(), *host, "{what}");
        }
    }
}
