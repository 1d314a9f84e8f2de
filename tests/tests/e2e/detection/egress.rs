//! `unexpected-egress`: connects to names and addresses the policy does
//! not allow, and the allowed ones that must stay silent.

use super::*;

/// Connects from python: each argument `label,host,family(4|6),proto,port`;
/// resolves with getaddrinfo (so names go through the DNS server), connects
/// (UDP: and sends), prints a JSON list of what happened.
const CONNECTS: &str = r#"
import json, socket, sys
out = {}
for spec in sys.argv[1:]:
    label, host, fam, proto, port = spec.split(",")
    family = socket.AF_INET if fam == "4" else socket.AF_INET6
    typ = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    try:
        addr = socket.getaddrinfo(host, int(port), family, typ)[0][4]
        s = socket.socket(family, typ)
        s.settimeout(5)
        err = s.connect_ex(addr)
        if typ == socket.SOCK_DGRAM and err == 0:
            s.send(b"ping")
        s.close()
        out[label] = {"addr": addr[0], "port": addr[1], "errno": err}
    except Exception as e:
        out[label] = {"error": repr(e)}
print(json.dumps(out))
"#;

/// Run [`CONNECTS`] as the agent user (with the test DNS); every connect
/// must have worked. Returns the pid.
fn connects(s: &Scene, script: &Path, specs: &[String]) -> u32 {
    let mut argv = vec![PYTHON.to_string(), script.display().to_string()];
    argv.extend(specs.iter().cloned());
    let (pid, out) = run_ok(&mut s.cmd_dns(&argv));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python's output is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    for (label, r) in v.as_object().unwrap() {
        assert_eq!(
            r["errno"],
            0,
            "{label}: the connect failed: {r}\nall: {v}\ndnsmasq log:\n{}",
            s.dns.log()
        );
    }
    pid
}

#[test]
fn detection_egress_to_names_and_addresses_the_policy_does_not_allow_is_caught() {
    require_root!();
    let s = Scene::new();
    let j = Journald::ensure();
    let loopback = TcpLoopback::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    // The script in a file the agent user can read (short argv in alerts).
    let scripts = TempDir::new("scripts");
    let script = scripts.path().join("connects.py");
    std::fs::write(&script, CONNECTS).unwrap();
    agentwatch_e2e::util::set_mode(&script, 0o644);
    let mark = j.mark();
    let d = s.daemon(&[]);
    let (t, u) = (NS_TCP_PORT, NS_UDP_PORT);

    // Negatives first: the allowed name (both families, TCP and UDP), and
    // loopback.
    let n_allowed = connects(
        &s,
        &script,
        &[
            format!("tcp4,{ALLOWED_HOST},4,tcp,{t}"),
            format!("tcp6,{ALLOWED_HOST},6,tcp,{t}"),
            format!("udp4,{ALLOWED_HOST},4,udp,{u}"),
            format!("lo,127.0.0.1,4,tcp,{}", loopback.addr().port()),
        ],
    );
    // A name the policy does not allow, over IPv4 and IPv6, TCP and UDP.
    let p_named = connects(
        &s,
        &script,
        &[
            format!("tcp4,{EXFIL_HOST},4,tcp,{t}"),
            format!("udp4,{EXFIL_HOST},4,udp,{u}"),
            format!("tcp6,{EXFIL_HOST},6,tcp,{t}"),
            format!("udp6,{EXFIL_HOST},6,udp,{u}"),
        ],
    );
    // Bare addresses no DNS answer named; last, as the sync point.
    let (b4, b6) = (s.bare.v4().to_string(), s.bare.v6().to_string());
    let p_bare = connects(
        &s,
        &script,
        &[
            format!("tcp4,{b4},4,tcp,{t}"),
            format!("udp4,{b4},4,udp,{u}"),
            format!("tcp6,{b6},6,tcp,{t}"),
            format!("udp6,{b6},6,udp,{u}"),
        ],
    );

    let python = exe_of("python3");
    let cases: [(u32, IpAddr, u16, &str, Option<&str>); 8] = [
        (p_named, s.evil.v4().into(), t, "tcp", Some(EXFIL_HOST)),
        (p_named, s.evil.v4().into(), u, "udp", Some(EXFIL_HOST)),
        (p_named, s.evil.v6().into(), t, "tcp", Some(EXFIL_HOST)),
        (p_named, s.evil.v6().into(), u, "udp", Some(EXFIL_HOST)),
        (p_bare, s.bare.v4().into(), t, "tcp", None),
        (p_bare, s.bare.v4().into(), u, "udp", None),
        (p_bare, s.bare.v6().into(), t, "tcp", None),
        (p_bare, s.bare.v6().into(), u, "udp", None),
    ];
    let mut checked = Vec::new();
    // The last case first: the sync point.
    for (pid, ip, port, proto, host) in cases.iter().rev() {
        let what = format!("{proto} connect to {ip} port {port} (host {host:?})");
        let a = d.wait_for(&format!("unexpected-egress for {what}"), WAIT, |a| {
            is_alert(a, "unexpected-egress", *pid)
                && a["daddr"].as_str().and_then(|x| x.parse::<IpAddr>().ok()) == Some(*ip)
                && a["dport"] == *port
                && a["protocol"] == *proto
        });
        assert_basics(&a, "unexpected-egress", "medium", &s);
        assert_eq!(a["comm"], "python3", "{what}: comm; alert {a}");
        assert_eq!(
            a["exe"].as_str(),
            Some(python.as_str()),
            "{what}: exe; alert {a}"
        );
        match host {
            Some(h) => assert_eq!(a["host"], *h, "{what}: host; alert {a}"),
            None => {
                assert!(
                    a["host"].is_null(),
                    "{what}: no host for a bare address; alert {a}"
                );
                assert!(
                    a["detail"]
                        .as_str()
                        .is_some_and(|x| x.contains("no DNS answer")),
                    "{what}: detail should say no DNS answer was seen; alert {a}"
                );
            }
        }
        assert!(a.get("path").is_none(), "{what}: no file fields; alert {a}");
        checked.push(a);
    }

    let good = [s.good.v4().to_string(), s.good.v6().to_string()];
    let quiet = leaked(&d, &[n_allowed], &[ALLOWED_HOST, &good[0], &good[1]]);
    assert!(
        quiet.is_empty(),
        "alerts for connects to the allowed name or loopback:\n{}",
        show(&quiet)
    );
    assert_only_rule(
        &d,
        "unexpected-egress",
        "no secret was touched, so no other rule may fire",
    );
    for a in &checked {
        assert_in_journal(&j, &mark, a);
    }
    d.stop_ok();
}
