//! Footprint over a run with process churn: short-lived processes in the
//! watched cgroup, each resolving a NEW name (so the daemon's DNS map sees a
//! new answer every time), making a refused loopback connect, opening a file
//! and exec'ing /bin/true. The daemon's resident set is sampled every
//! second: it must stay flat (its process table and DNS map bounded, what
//! has exited expired).
//!
//! The DNS server is a thread of this process on a loopback address, port
//! 53, outside the watched cgroup; its answers are made-up 10.x addresses
//! that nothing ever connects to.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::host;
use super::monitors::{Agentwatch, AwOptions};
use super::report::{num, thousands, Table};
use super::{check_interrupted, Ctx, Section};

const RSS_GOAL_MIB: f64 = 64.0;

/// A tiny DNS responder: answers every A query with a unique 10.x address.
struct Dns {
    addr: SocketAddrV4,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The answer to `q`: the query with the response flags, one A record.
pub fn dns_answer(q: &[u8], n: u64) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    let mut r = q.to_vec();
    r[2] = 0x81; // QR, RD
    r[3] = 0x80; // RA, no error
    r[6] = 0;
    r[7] = 1; // one answer
    r[8..12].fill(0);
    r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    r.extend_from_slice(&[10, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
    Some(r)
}

impl Dns {
    fn start() -> Result<Self> {
        // A loopback address of our own, so nobody else's resolver is in the way.
        let pid = std::process::id();
        let mut last = None;
        for k in 0..16u32 {
            let ip = Ipv4Addr::new(127, 83, ((pid + k) % 250) as u8 + 1, 53);
            match UdpSocket::bind(SocketAddrV4::new(ip, 53)) {
                Ok(sock) => {
                    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
                    let stop = Arc::new(AtomicBool::new(false));
                    let answered = Arc::new(AtomicU64::new(0));
                    let (s, a) = (stop.clone(), answered.clone());
                    let thread = std::thread::spawn(move || {
                        let mut buf = [0u8; 512];
                        while !s.load(Ordering::Relaxed) {
                            let Ok((len, from)) = sock.recv_from(&mut buf) else {
                                continue;
                            };
                            let n = a.fetch_add(1, Ordering::Relaxed);
                            if let Some(r) = dns_answer(&buf[..len], n) {
                                let _ = sock.send_to(&r, from);
                            }
                        }
                    });
                    return Ok(Self {
                        addr: SocketAddrV4::new(ip, 53),
                        stop,
                        answered,
                        thread: Some(thread),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        bail!("cannot bind a loopback DNS responder: {last:?}")
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let dns = Dns::start()?;
    let aw = Agentwatch::start(&ctx.env, &ctx.cg.watched, AwOptions::default())?;
    let pid = aw.pid();
    let rss0 = host::vm_kib(pid, "VmRSS").unwrap_or(0);
    let anon0 = host::vm_kib(pid, "RssAnon").unwrap_or(0);
    // Idle cost first: the drain timer and housekeeping with nothing to do.
    let idle_secs = (ctx.cfg.churn_secs / 10.0).clamp(2.0, 10.0);
    let c0 = host::cpu_secs(pid).unwrap_or(0.0);
    super::sleep(Duration::from_secs_f64(idle_secs))?;
    let idle_pct = (host::cpu_secs(pid).unwrap_or(0.0) - c0) / idle_secs * 100.0;
    let secs = ctx.cfg.churn_secs;
    let args: Vec<String> = vec![
        "churn".into(),
        "--secs".into(),
        secs.to_string(),
        "--rate".into(),
        ctx.cfg.churn_rate.to_string(),
        "--dns".into(),
        dns.addr.to_string(),
        "--file".into(),
        ctx.small.display().to_string(),
    ];
    println!(
        "footprint: {secs:.0} s of churn at {} processes/s",
        ctx.cfg.churn_rate
    );
    let mut child = ctx
        .workload_cmd(&args, &ctx.inside())?
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the churn workload")?;
    let start = Instant::now();
    let mut samples: Vec<(f64, u64, u64)> = Vec::new();
    let mut next_print = 60.0;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if let Err(e) = check_interrupted() {
            let _ = child.kill();
            return Err(e);
        }
        let t = start.elapsed().as_secs_f64();
        if let Some(rss) = host::vm_kib(pid, "VmRSS") {
            samples.push((t, rss, host::vm_kib(pid, "RssAnon").unwrap_or(0)));
            if t >= next_print {
                println!(
                    "footprint: {t:.0} s, daemon RSS {:.1} MiB",
                    rss as f64 / 1024.0
                );
                next_print += 60.0;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let out = child.wait_with_output()?;
    if !status.success() {
        bail!("the churn workload failed: {status}");
    }
    let v: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or(""),
    )
    .context("churn workload output")?;
    std::thread::sleep(Duration::from_millis(300));
    let summary = aw.stop()?;
    let answered = dns.answered.load(Ordering::Relaxed);
    drop(dns);

    // "Warm" is the first sample after a tenth of the run; growth is what
    // the resident set gained from there to the end.
    let warm_sample = samples.iter().find(|(t, _, _)| *t >= secs / 10.0);
    let warm = warm_sample.map_or(rss0, |s| s.1);
    let warm_anon = warm_sample.map_or(anon0, |s| s.2);
    let end = samples.last().map_or(rss0, |s| s.1);
    let end_anon = samples.last().map_or(anon0, |s| s.2);
    let max = samples.iter().map(|s| s.1).max().unwrap_or(rss0);
    let mib = |k: u64| k as f64 / 1024.0;
    let growth = mib(end) - mib(warm);
    let half = samples
        .iter()
        .find(|(t, _, _)| *t >= secs / 2.0)
        .map_or(rss0, |s| s.1);
    let half_growth = mib(end) - mib(half);
    let events = summary.events.unwrap_or(0);
    let cpu_per_m = summary.cpu_secs / (events.max(1) as f64 / 1e6);
    let mut t = Table::new(&[
        "processes",
        "DNS answers",
        "events",
        "RSS ready MiB",
        "warm MiB",
        "end MiB",
        "max MiB",
        "peak (VmHWM) MiB",
        "private end MiB",
        "CPU s/M events",
        "idle CPU %",
    ]);
    t.row(vec![
        thousands(v["ops"].as_f64().unwrap_or(0.0)),
        thousands(answered as f64),
        thousands(events as f64),
        format!("{:.1}", mib(rss0)),
        format!("{:.1}", mib(warm)),
        format!("{:.1}", mib(end)),
        format!("{:.1}", mib(max)),
        format!("{:.1}", mib(summary.hwm_kib)),
        format!("{:.1}", mib(end_anon)),
        format!("{cpu_per_m:.2}"),
        format!("{idle_pct:.2}"),
    ]);
    let text = format!(
        "6. Footprint: {secs:.0} s of process churn ({} processes/s, each a new DNS name, a connect, an open, an exec)\n{}   \
         RSS growth from warm to end: {growth:+.1} MiB (private memory {:+.1} MiB); lost events: {}\n   \
         (RSS counts the ring buffer's pages twice: the kernel maps its data area twice so records can wrap;\n   \
         \"private\" is RssAnon, the daemon's own heap and stacks; idle CPU measured for {idle_secs:.0} s before the churn)\n",
        ctx.cfg.churn_rate,
        t.render("   "),
        mib(end_anon) - mib(warm_anon),
        summary.lost_total()
    );
    let goals = vec![
        (
            format!("peak RSS < {RSS_GOAL_MIB:.0} MiB over the churn"),
            Some(mib(summary.hwm_kib) < RSS_GOAL_MIB),
            format!("{:.1} MiB", mib(summary.hwm_kib)),
        ),
        (
            "RSS flat over 10 minutes of churn (second half grows < 1 MiB)".to_string(),
            // The process table keeps exited processes 300 s and the DNS map
            // answers 600 s (by design, for the exfiltration window and for
            // programs that keep using an address), so only a long run can
            // show whether the bounds hold.
            (secs >= 600.0).then_some(half_growth < 1.0),
            if secs >= 600.0 {
                format!("{half_growth:+.1} MiB in the second half, {growth:+.1} MiB overall")
            } else {
                format!("{growth:+.1} MiB in {secs:.0} s (use --long)")
            },
        ),
    ];
    Ok(Section {
        text,
        json: json!({
            "secs": secs,
            "processes": v["ops"],
            "failed_processes": v["failed"],
            "dns_answers": answered,
            "events": events,
            "lost": summary.lost_total(),
            "rss_ready_kib": rss0,
            "rss_warm_kib": warm,
            "rss_end_kib": end,
            "rss_max_kib": max,
            "peak_rss_kib": summary.hwm_kib,
            "rss_growth_mib": num(growth),
            "rss_growth_second_half_mib": num(half_growth),
            "cpu_secs": num(summary.cpu_secs),
            "cpu_secs_per_million_events": num(cpu_per_m),
            "anon_ready_kib": anon0,
            "anon_warm_kib": warm_anon,
            "anon_end_kib": end_anon,
            "idle_cpu_percent": num(idle_pct),
            "rss_samples": samples.iter().map(|(t, k, a)| json!([num(*t), k, a])).collect::<Vec<_>>(),
        }),
        goals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::workload::dns_query;

    #[test]
    fn answers_echo_the_question_with_one_record() {
        let q = dns_query(7, "a.bench.invalid");
        let r = dns_answer(&q, 0x010203).unwrap();
        assert_eq!(&r[..2], &[0, 7]);
        assert_eq!(&r[6..8], &[0, 1]);
        assert_eq!(&r[r.len() - 4..], &[10, 1, 2, 3]);
        assert_eq!(&r[12..q.len()], &q[12..]);
    }
}
