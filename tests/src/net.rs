//! Destinations for egress tests: listeners on loopback in this process,
//! and a network namespace of our own, reached over a veth pair, with TCP
//! and UDP listeners inside. No traffic ever leaves the machine: the only
//! non-loopback addresses used live on the veth pair created here
//! (198.18.0.0/15, the benchmarking range, and a ULA in fd00::/8).

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::util::{owner_pid, pid_alive, sh, sh_quiet, PYTHON};

/// A TCP listener on a loopback address, accepting and closing in the
/// background.
pub struct TcpLoopback {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpLoopback {
    /// Listen on `ip` (127.0.0.1 or ::1) on a free port.
    pub fn new(ip: IpAddr) -> TcpLoopback {
        let l = TcpListener::bind(SocketAddr::new(ip, 0))
            .unwrap_or_else(|e| panic!("listen on {ip}: {e}"));
        l.set_nonblocking(true).expect("non-blocking listener");
        let addr = l.local_addr().expect("listener address");
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.write_all(b"hi\n");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TcpLoopback {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TcpLoopback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP socket bound on a loopback address, echoing datagrams back.
pub struct UdpLoopback {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpLoopback {
    /// Bind on `ip` (127.0.0.1 or ::1) on a free port.
    pub fn new(ip: IpAddr) -> UdpLoopback {
        let s = UdpSocket::bind(SocketAddr::new(ip, 0))
            .unwrap_or_else(|e| panic!("bind udp {ip}: {e}"));
        s.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("udp read timeout");
        let addr = s.local_addr().expect("udp address");
        let stop = Arc::new(AtomicBool::new(false));
        let st = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(&buf[..n], from);
                }
            }
        });
        UdpLoopback {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for UdpLoopback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP port on `ip` with nothing listening (connects are refused).
pub fn closed_port(ip: IpAddr) -> SocketAddr {
    let l = TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind a port to free");
    l.local_addr().expect("address")
}

/// Name prefix of our namespaces: `awt_<pid>_<n>`.
const NS_PREFIX: &str = "awt_";
/// TCP port the namespace's listener uses.
pub const NS_TCP_PORT: u16 = 8443;
/// UDP port the namespace's listener uses.
pub const NS_UDP_PORT: u16 = 5300;

/// A network namespace with a veth link to the host and TCP/UDP listeners
/// (IPv4 and IPv6) inside it; all removed on drop.
pub struct NetNs {
    name: String,
    host_if: String,
    subnet: u8,
    listener: Option<Child>,
}

/// The listener run inside the namespace: accepts TCP (says hi, closes) and
/// echoes UDP, on both families; prints "ready" once bound.
const LISTENER: &str = r#"
import selectors, socket, sys
v4, v6, tport, uport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sel = selectors.DefaultSelector()
for fam, addr in ((socket.AF_INET, v4), (socket.AF_INET6, v6)):
    t = socket.socket(fam, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind((addr, tport)); t.listen(64); sel.register(t, selectors.EVENT_READ, "tcp")
    u = socket.socket(fam, socket.SOCK_DGRAM)
    u.bind((addr, uport)); sel.register(u, selectors.EVENT_READ, "udp")
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if key.data == "tcp":
            c, _ = s.accept()
            try:
                c.sendall(b"hi\n")
            except OSError:
                pass
            c.close()
        else:
            data, peer = s.recvfrom(2048)
            s.sendto(data, peer)
"#;

impl NetNs {
    /// Create the namespace, the veth pair, the addresses and the listeners.
    #[expect(
        clippy::new_without_default,
        reason = "creating kernel objects is not a default value"
    )]
    pub fn new() -> NetNs {
        static CLEAN: Once = Once::new();
        CLEAN.call_once(remove_leftovers);
        let id = crate::util::unique();
        let name = format!("{NS_PREFIX}{id}");
        let (pid, n) = id.split_once('_').expect("unique() is pid_n");
        let host_if = format!("awh{pid}x{n}");
        let ns_if = format!("awn{pid}x{n}");
        assert!(host_if.len() <= 15, "interface name {host_if} too long");
        let subnet = free_subnet();
        let mut ns = NetNs {
            name,
            host_if,
            subnet,
            listener: None,
        };
        let name = ns.name.clone();
        sh(&["ip", "netns", "add", &name]);
        sh(&[
            "ip",
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
            "netns",
            &name,
        ]);
        let (h4, n4) = (ns.host_v4(), ns.v4());
        let (h6, n6) = (ns.host_v6(), ns.v6());
        sh(&["ip", "addr", "add", &format!("{h4}/24"), "dev", &ns.host_if]);
        sh(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{h6}/64"),
            "dev",
            &ns.host_if,
            "nodad",
        ]);
        sh(&["ip", "link", "set", &ns.host_if, "up"]);
        let in_ns = |args: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", name.as_str()];
            v.extend_from_slice(args);
            sh(&v);
        };
        in_ns(&["ip", "link", "set", "lo", "up"]);
        in_ns(&["ip", "addr", "add", &format!("{n4}/24"), "dev", &ns_if]);
        in_ns(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{n6}/64"),
            "dev",
            &ns_if,
            "nodad",
        ]);
        in_ns(&["ip", "link", "set", &ns_if, "up"]);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &name, PYTHON, "-c", LISTENER])
            .args([
                n4.to_string(),
                n6.to_string(),
                NS_TCP_PORT.to_string(),
                NS_UDP_PORT.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the namespace's listener");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the listener's ready line");
        if line.trim() != "ready" {
            let _ = child.kill();
            panic!("the listener in {name} did not start (said {line:?})");
        }
        ns.listener = Some(child);
        ns
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace side's IPv4 address (where the listeners are).
    pub fn v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.subnet, 2)
    }

    /// The namespace side's IPv6 address.
    pub fn v6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd61, 0x7774, 0, self.subnet as u16, 0, 0, 0, 2)
    }

    /// The host side's IPv4 address.
    pub fn host_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.subnet, 1)
    }

    /// The host side's IPv6 address.
    pub fn host_v6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd61, 0x7774, 0, self.subnet as u16, 0, 0, 0, 1)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Some(mut c) = self.listener.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting the namespace destroys its veth end, and with it ours.
        sh_quiet(&["ip", "netns", "del", &self.name]);
        sh_quiet(&["ip", "link", "del", &self.host_if]);
    }
}

/// A /24 in 198.18.0.0/16 that no interface of the host uses yet.
fn free_subnet() -> u8 {
    let used = sh(&["ip", "-4", "-o", "addr", "show"]);
    let start = (std::process::id() % 250) as u8;
    (0..250u8)
        .map(|i| (start.wrapping_add(i) % 250) + 1)
        .find(|k| !used.contains(&format!("198.18.{k}.")))
        .expect("a free 198.18.x.0/24")
}

/// Remove namespaces (and their links) left by test processes that are gone.
fn remove_leftovers() {
    let list = sh(&["ip", "netns", "list"]);
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if let Some(pid) = owner_pid(name, NS_PREFIX) {
            if !pid_alive(pid) {
                sh_quiet(&["ip", "netns", "del", name]);
            }
        }
    }
    let links = sh(&["ip", "-o", "link", "show"]);
    for line in links.lines() {
        // "12: awh123x0@if11: <...>"
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or("");
        if let Some(pid) = owner_pid(name, "awh") {
            if !pid_alive(pid) {
                sh_quiet(&["ip", "link", "del", name]);
            }
        }
    }
}
