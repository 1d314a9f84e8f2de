//! A local DNS server (Debian's dnsmasq-base) on a loopback address with
//! fixed answers, and a way to run a command that uses it as its resolver
//! without touching the host's /etc/resolv.conf: a private mount namespace
//! (`unshare -m`) with a bind mount over the file.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::{poll, TempDir};

/// A running dnsmasq answering only the names it was given.
pub struct Dns {
    child: Child,
    addr: Ipv4Addr,
    resolv: std::path::PathBuf,
    log: std::path::PathBuf,
    _dir: TempDir,
}

impl Dns {
    /// Start dnsmasq on a free `127.53.x.y:53` answering `name -> ip` (A or
    /// AAAA by the address family; several entries per name allowed) and
    /// nothing else (`no-resolv`: it never forwards).
    pub fn start(records: &[(&str, IpAddr)]) -> Dns {
        let dir = TempDir::new("dns");
        let resolv = dir.path().join("resolv.conf");
        let log = dir.path().join("dnsmasq.log");
        let pid = std::process::id();
        for attempt in 0..64u32 {
            let n = pid.wrapping_add(attempt.wrapping_mul(7919));
            let addr = Ipv4Addr::new(127, 53, ((n >> 8) % 250 + 1) as u8, (n % 250 + 1) as u8);
            // Taken by someone else (another test process)?
            if UdpSocket::bind(SocketAddr::new(addr.into(), 53)).is_err() {
                continue;
            }
            let mut cmd = Command::new("dnsmasq");
            cmd.args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--port=53",
                "--pid-file",
                "--log-queries",
                "--log-facility=-",
            ])
            .arg(format!("--listen-address={addr}"));
            for (name, ip) in records {
                cmd.arg(format!("--address=/{name}/{ip}"));
            }
            let logf = std::fs::File::create(&log).expect("create the dnsmasq log");
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(logf.try_clone().expect("dup"))
                .stderr(logf)
                .spawn()
                .expect("start dnsmasq (apt package dnsmasq-base)");
            std::fs::write(
                &resolv,
                format!("nameserver {addr}\noptions attempts:1 timeout:2\n"),
            )
            .expect("write resolv.conf");
            crate::util::set_mode(&resolv, 0o644);
            let up = poll(Duration::from_secs(5), || {
                if let Ok(Some(_)) = child.try_wait() {
                    return Some(false);
                }
                // Any answer (even NXDOMAIN) means it is up.
                query(
                    addr,
                    "readiness-probe.invalid",
                    1,
                    Duration::from_millis(100),
                )
                .map(|_| true)
            });
            match up {
                Some(true) => {
                    return Dns {
                        child,
                        addr,
                        resolv,
                        log,
                        _dir: dir,
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        panic!(
            "dnsmasq did not start on any 127.53.x.y:53; last log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// The server's address (port 53).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// dnsmasq's log (queries and answers), for panic messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wrap `argv` so that it runs in a private mount namespace where
    /// /etc/resolv.conf names this server. The wrappers exec, so the pid of
    /// the spawned process is the pid of `argv`'s program. Needs root (put
    /// any privilege-dropping prefix inside `argv`).
    pub fn wrap(&self, argv: Vec<String>) -> Vec<String> {
        let mut v: Vec<String> = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(self.resolv.display().to_string());
        v.extend(argv);
        v
    }

    /// Ask the server for `name` (qtype 1 = A, 28 = AAAA); the answer's
    /// addresses, or `None` without a reply.
    pub fn query(&self, name: &str, qtype: u16) -> Option<Vec<IpAddr>> {
        query(self.addr, name, qtype, Duration::from_secs(2))
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal DNS client: one question, the A/AAAA records of the answer.
fn query(server: Ipv4Addr, name: &str, qtype: u16, timeout: Duration) -> Option<Vec<IpAddr>> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(timeout)).ok()?;
    let id: u16 = (std::process::id() as u16) ^ 0x5a5a;
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    sock.send_to(&q, (server, 53)).ok()?;
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf).ok()?;
    let r = &buf[..n];
    if n < 12 || r[0..2] != id.to_be_bytes() {
        return None;
    }
    let ancount = u16::from_be_bytes([r[6], r[7]]);
    // Skip the question: the name (labels up to 0) and 4 bytes.
    let mut i = 12;
    while i < n && r[i] != 0 {
        i += r[i] as usize + 1;
    }
    i += 5;
    let mut out = Vec::new();
    for _ in 0..ancount {
        // Name: a pointer (2 bytes) or labels.
        if i >= n {
            break;
        }
        if r[i] & 0xc0 == 0xc0 {
            i += 2;
        } else {
            while i < n && r[i] != 0 {
                i += r[i] as usize + 1;
            }
            i += 1;
        }
        if i + 10 > n {
            break;
        }
        let ty = u16::from_be_bytes([r[i], r[i + 1]]);
        let len = u16::from_be_bytes([r[i + 8], r[i + 9]]) as usize;
        i += 10;
        if i + len > n {
            break;
        }
        match (ty, len) {
            (1, 4) => out.push(IpAddr::from([r[i], r[i + 1], r[i + 2], r[i + 3]])),
            (28, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&r[i..i + 16]);
                out.push(IpAddr::from(a));
            }
            _ => {}
        }
        i += len;
    }
    Some(out)
}
