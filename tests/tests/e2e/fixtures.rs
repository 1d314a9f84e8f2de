//! Self-tests of the fixtures: if one of these fails, the failures of the
//! behaviour tests say nothing about agentwatch.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use agentwatch_e2e::util::{run_ok, unique};
use agentwatch_e2e::{
    require_root, AgentUser, Cgroup, Dns, Journald, NetNs, TcpLoopback, UdpLoopback,
};

/// `cmd`'s stdout; panics with its output when it fails.
fn output(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run_ok(cmd).1.stdout).into_owned()
}

#[test]
fn fixture_cgroup_runs_commands_inside_and_removes_the_subtree() {
    require_root!();
    let cg = Cgroup::new();
    let child = cg.child("x.scope");
    let grandchild = child.child("y");
    let seen = output(&mut grandchild.command(&["cat", "/proc/self/cgroup"]));
    assert!(
        seen.lines()
            .any(|l| l == format!("0::{}", grandchild.rel())),
        "cat ran outside {}: /proc/self/cgroup says\n{seen}",
        grandchild.rel()
    );
    assert_ne!(cg.id(), grandchild.id());
    // A process still running in a child when the fixture drops is killed.
    let mut sleeper = child
        .command(&["sleep", "300"])
        .spawn()
        .expect("start sleep");
    let pid = sleeper.id();
    assert_eq!(child.procs(), vec![pid]);
    let top = cg.path().to_path_buf();
    drop(grandchild);
    drop(child);
    drop(cg);
    assert!(!top.exists(), "{} still exists after drop", top.display());
    let status = sleeper.wait().expect("reap sleep");
    assert!(
        !status.success(),
        "sleep should have been killed, ended {status}"
    );
}

#[test]
fn fixture_agent_user_runs_unprivileged_inside_the_cgroup() {
    require_root!();
    let user = AgentUser::get();
    let decoys = user.decoys();
    let cg = Cgroup::new();
    let out = output(&mut user.command(
        &cg,
        &[
            "/bin/sh",
            "-c",
            "id -u; id -g; grep ^CapEff /proc/self/status; grep ^0:: /proc/self/cgroup; echo \"$HOME\"; head -c 5 ~/.aws/credentials",
        ],
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "unexpected output:\n{out}");
    assert_eq!(lines[0], user.uid.to_string(), "uid; output:\n{out}");
    assert_eq!(lines[1], user.gid.to_string(), "gid; output:\n{out}");
    assert_eq!(
        lines[2].split_whitespace().nth(1),
        Some("0000000000000000"),
        "capabilities; output:\n{out}"
    );
    assert_eq!(
        lines[3],
        format!("0::{}", cg.rel()),
        "cgroup; output:\n{out}"
    );
    assert_eq!(
        lines[4],
        user.home.display().to_string(),
        "HOME; output:\n{out}"
    );
    assert_eq!(
        lines[5], "[defa",
        "the user cannot read its own decoy; output:\n{out}"
    );
    assert!(decoys.ssh_key.exists() && decoys.ssh_pub.exists());
    // ...and cannot read root's files.
    let st = user
        .command(&cg, &["cat", "/etc/shadow"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run cat");
    assert!(!st.success(), "the agent user could read /etc/shadow");
}

#[test]
fn fixture_dns_answers_through_the_bind_mounted_resolv_conf() {
    require_root!();
    let before = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    let name = format!("api-{}.agentwatch.test", unique().replace('_', "-"));
    let v4 = IpAddr::V4(Ipv4Addr::new(198, 18, 250, 7));
    let v6 = IpAddr::V6(Ipv6Addr::new(0xfd61, 0x7774, 0, 250, 0, 0, 0, 7));
    let dns = Dns::start(&[(&name, v4), (&name, v6)]);
    assert_eq!(
        dns.query(&name, 1),
        Some(vec![v4]),
        "A answer; dnsmasq log:\n{}",
        dns.log()
    );
    assert_eq!(
        dns.query(&name, 28),
        Some(vec![v6]),
        "AAAA answer; dnsmasq log:\n{}",
        dns.log()
    );
    // A process given the wrapped resolver resolves it through glibc, and
    // so does an unprivileged one under it.
    let argv = dns.wrap(vec!["getent".into(), "ahostsv4".into(), name.clone()]);
    let out = output(Command::new(&argv[0]).args(&argv[1..]));
    assert!(
        out.contains("198.18.250.7"),
        "getent said:\n{out}\ndnsmasq log:\n{}",
        dns.log()
    );
    let user = AgentUser::get();
    let cg = Cgroup::new();
    let out = output(&mut user.command_with_dns(&cg, Some(&dns), &["getent", "ahostsv6", &name]));
    assert!(
        out.contains("fd61:7774:0:fa::7"),
        "getent as the user said:\n{out}\ndnsmasq log:\n{}",
        dns.log()
    );
    assert_eq!(
        std::fs::read("/etc/resolv.conf").unwrap_or_default(),
        before,
        "the host's /etc/resolv.conf changed"
    );
}

#[test]
fn fixture_netns_listeners_answer_over_ipv4_and_ipv6() {
    require_root!();
    let ns = NetNs::new();
    let name = ns.name().to_string();
    for ip in [IpAddr::V4(ns.v4()), IpAddr::V6(ns.v6())] {
        let addr = SocketAddr::new(ip, agentwatch_e2e::net::NS_TCP_PORT);
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let mut hi = String::new();
        s.read_to_string(&mut hi).expect("read");
        assert_eq!(hi, "hi\n", "from {addr}");
        let bind: SocketAddr = if ip.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let u = UdpSocket::bind(bind).expect("udp");
        u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let to = SocketAddr::new(ip, agentwatch_e2e::net::NS_UDP_PORT);
        u.send_to(b"ping", to).expect("send");
        let mut buf = [0u8; 16];
        let n = u
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no UDP echo from {to}: {e}"));
        assert_eq!(&buf[..n], b"ping");
    }
    drop(ns);
    let list = agentwatch_e2e::util::sh(&["ip", "netns", "list"]);
    assert!(
        !list.contains(&name),
        "namespace {name} left behind:\n{list}"
    );
}

#[test]
fn fixture_loopback_listeners_answer_over_ipv4_and_ipv6() {
    require_root!();
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let t = TcpLoopback::new(ip);
        let mut s = TcpStream::connect(t.addr()).expect("connect");
        let mut hi = String::new();
        s.read_to_string(&mut hi).expect("read");
        assert_eq!(hi, "hi\n");
        let u = UdpLoopback::new(ip);
        let c = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.send_to(b"x", u.addr()).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(c.recv(&mut buf).expect("echo"), 1);
    }
}

#[test]
fn fixture_journald_round_trip() {
    require_root!();
    let j = Journald::ensure();
    let mark = j.mark();
    let tag = format!("AGENTWATCH_TEST_ID=fixture-{}", unique());
    let mut logger = Command::new("logger")
        .arg("--journald")
        .stdin(Stdio::piped())
        .spawn()
        .expect("run logger");
    logger
        .stdin
        .take()
        .unwrap()
        .write_all(
            format!(
                "MESSAGE=agentwatch fixture self-test\n{tag}\nSYSLOG_IDENTIFIER=agentwatch-e2e\n"
            )
            .as_bytes(),
        )
        .unwrap();
    assert!(logger.wait().unwrap().success(), "logger --journald failed");
    let entries = j.wait_for(&mark, &[&tag], Duration::from_secs(10));
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        entries[0]["MESSAGE"], "agentwatch fixture self-test",
        "{:?}",
        entries[0]
    );
}
