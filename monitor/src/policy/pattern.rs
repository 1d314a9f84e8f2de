//! The patterns a policy names: path globs ([`PathPattern`]), address
//! ranges ([`IpNet`]) and allowed destinations ([`DestPattern`]).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A path glob from the policy, in one of three forms:
/// `/abs/glob`, `~/home/relative/glob` (every user's home), or a pattern
/// without a leading `/` that matches the end of any path (`.env` matches
/// `/srv/app/.env`). `*` and `?` stay within a component; `**` crosses them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathPattern {
    /// An absolute glob.
    Absolute(String),
    /// Relative to every home directory (the part after `~/`).
    Home(String),
    /// Matches anywhere: the glob for the trailing components.
    Anywhere(String),
}

impl PathPattern {
    /// Parse and check a pattern.
    pub fn parse(s: &str) -> Result<PathPattern, String> {
        if s.is_empty() {
            return Err("empty path pattern".into());
        }
        if s.contains('\0') {
            return Err("path pattern contains a NUL byte".into());
        }
        let p = if let Some(rest) = s.strip_prefix("~/") {
            if rest.is_empty() {
                return Err("`~/` alone would match every home directory".into());
            }
            PathPattern::Home(rest.to_string())
        } else if s.starts_with('~') {
            return Err(format!(
                "`{s}`: only `~/` (every user's home) is supported, not `~user`"
            ));
        } else if s.starts_with('/') {
            PathPattern::Absolute(s.to_string())
        } else {
            PathPattern::Anywhere(s.trim_start_matches("**/").to_string())
        };
        for g in p.globs(&["/h".to_string()]) {
            globset::GlobBuilder::new(&g)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("invalid glob `{s}`: {}", e.kind()))?;
        }
        Ok(p)
    }

    /// The absolute globs this pattern stands for, given the home directories.
    pub fn globs(&self, homes: &[String]) -> Vec<String> {
        match self {
            PathPattern::Absolute(s) => vec![s.clone()],
            PathPattern::Home(rest) => homes
                .iter()
                .map(|h| format!("{}/{}", h.trim_end_matches('/'), rest))
                .collect(),
            PathPattern::Anywhere(s) => vec![format!("/**/{s}")],
        }
    }
}

// ---------------------------------------------------------------------------
// Destinations
// ---------------------------------------------------------------------------

/// An address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    /// Network address (host bits cleared).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl IpNet {
    /// Parse `addr/prefix` or a bare address.
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("`{a}` is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let mut prefix = match p {
            None => max,
            Some(p) => {
                let n: u8 = p
                    .parse()
                    .map_err(|_| format!("`{p}` is not a prefix length"))?;
                if n > max {
                    return Err(format!("prefix length {n} is over {max}"));
                }
                n
            }
        };
        // `contains` compares IPv4-mapped IPv6 addresses as IPv4, so an entry
        // written as one (`::ffff:10.0.0.0/104`) is stored as IPv4 too.
        let mapped = canonical_ip(addr);
        let addr = if mapped.is_ipv4() && addr.is_ipv6() {
            if prefix < 96 {
                return Err(format!(
                    "prefix length {prefix} of the IPv4-mapped address `{a}` reaches outside \
                     ::ffff:0:0/96; write the IPv4 network instead"
                ));
            }
            prefix -= 96;
            mapped
        } else {
            addr
        };
        Ok(IpNet {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether `ip` is inside (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix as u32)
            };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix as u32)
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as IPv4; everything else unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// What an allowed destination names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestTarget {
    /// A host name pattern, lowercase: `api.example.com` or `*.example.com`
    /// (`*.` is any number of labels, at least one; never the apex).
    Host(String),
    /// An address range.
    Net(IpNet),
}

/// An allowed destination: a host pattern or address range, optional port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestPattern {
    /// Host or range.
    pub target: DestTarget,
    /// Port, or any.
    pub port: Option<u16>,
}

impl DestPattern {
    /// Whether a host name matches this pattern's host part (case-insensitive,
    /// a trailing dot ignored).
    pub fn host_matches(&self, name: &str) -> bool {
        let DestTarget::Host(pat) = &self.target else {
            return false;
        };
        host_matches(pat, name)
    }

    /// Whether the port is allowed.
    pub fn port_matches(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }
}

/// `*.example.com` matches `a.example.com` and `a.b.example.com`, not
/// `example.com`; other patterns match exactly. Case-insensitive.
pub fn host_matches(pattern: &str, name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            name.len() > suffix.len() + 1
                && name.ends_with(suffix)
                && name[..name.len() - suffix.len()].ends_with('.')
        }
        None => name == pattern,
    }
}

impl FromStr for DestPattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty destination".into());
        }
        let parse_port = |p: &str| -> Result<u16, String> {
            match p.parse::<u16>() {
                Ok(0) | Err(_) => Err(format!("`{p}` is not a port (1-65535)")),
                Ok(n) => Ok(n),
            }
        };
        // [v6] / [v6/len] with optional :port
        if let Some(rest) = s.strip_prefix('[') {
            let (inner, after) = rest.split_once(']').ok_or("missing `]`")?;
            let port = match after {
                "" => None,
                a => Some(parse_port(
                    a.strip_prefix(':').ok_or("expected `:PORT` after `]`")?,
                )?),
            };
            return Ok(DestPattern {
                target: DestTarget::Net(IpNet::parse(inner)?),
                port,
            });
        }
        // bare IPv6 address or CIDR (several colons, no brackets): no port
        if s.matches(':').count() > 1 {
            return Ok(DestPattern {
                target: DestTarget::Net(IpNet::parse(s)?),
                port: None,
            });
        }
        let (main, port) = match s.rsplit_once(':') {
            Some((m, p)) => (m, Some(parse_port(p)?)),
            None => (s, None),
        };
        let looks_numeric = main
            .split('/')
            .next()
            .is_some_and(|a| a.parse::<std::net::Ipv4Addr>().is_ok());
        if main.contains('/') || looks_numeric {
            return Ok(DestPattern {
                target: DestTarget::Net(IpNet::parse(main)?),
                port,
            });
        }
        let host = main.to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        let body = host.strip_prefix("*.").unwrap_or(host);
        if body.is_empty()
            || body.split('.').any(|l| {
                l.is_empty()
                    || l.len() > 63
                    || !l
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
        {
            return Err(format!(
                "`{main}` is not a host name (a `*` may only stand as the whole first label)"
            ));
        }
        Ok(DestPattern {
            target: DestTarget::Host(host.to_string()),
            port,
        })
    }
}

impl fmt::Display for DestPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.target, self.port) {
            (DestTarget::Host(h), None) => write!(f, "{h}"),
            (DestTarget::Host(h), Some(p)) => write!(f, "{h}:{p}"),
            (DestTarget::Net(n), None) => write!(f, "{n}"),
            (DestTarget::Net(n), Some(p)) if n.addr.is_ipv6() => write!(f, "[{n}]:{p}"),
            (DestTarget::Net(n), Some(p)) => write!(f, "{n}:{p}"),
        }
    }
}
