//! `xtask bench-workload`: the programs the benchmark runs inside (or
//! outside) the watched cgroup. Each one times itself and prints one JSON
//! line on stdout (the decoy prints one per sample).
//!
//! They call libc directly: the xtask binary is a debug build, and a loop of
//! raw system calls costs the same in debug and release, so the ratios
//! measure the kernel path and not Rust overhead. Loops run for a fixed
//! time and count operations, so a slow contender cannot stretch the run.

use std::ffi::CString;
use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

/// Arguments of the hidden `bench-workload` task.
#[derive(clap::Args)]
pub struct WorkloadArgs {
    #[command(subcommand)]
    what: Workload,
}

#[derive(clap::Subcommand)]
enum Workload {
    /// open + read + close of FILE, for SECS seconds.
    Open {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        secs: f64,
    },
    /// fork + exec of /bin/true + wait, for SECS seconds.
    Exec {
        #[arg(long)]
        secs: f64,
    },
    /// TCP connect to a loopback listener + accept + close, for SECS seconds.
    Connect {
        #[arg(long)]
        secs: f64,
    },
    /// Waits for a byte on stdin, then opens and closes PATH at RATE per
    /// second (0: as fast as possible) for SECS seconds.
    Flood {
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        rate: f64,
        #[arg(long)]
        secs: f64,
    },
    /// Opens DIR/.env.lat-NNNNN for N in 0..COUNT, GAP_MS apart, printing
    /// the wall-clock time (ns) just before and after each open.
    Decoy {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        count: u32,
        #[arg(long)]
        gap_ms: u64,
    },
    /// Process churn for SECS seconds: RATE short-lived children per second,
    /// each resolving a unique name through the DNS server at DNS, making a
    /// refused loopback connect, opening FILE and exec'ing /bin/true.
    Churn {
        #[arg(long)]
        secs: f64,
        #[arg(long)]
        rate: f64,
        #[arg(long)]
        dns: SocketAddrV4,
        #[arg(long)]
        file: PathBuf,
    },
}

pub fn run(args: &WorkloadArgs) -> Result<()> {
    let out = match &args.what {
        Workload::Open { file, secs } => open_loop(file, *secs)?,
        Workload::Exec { secs } => exec_loop(*secs)?,
        Workload::Connect { secs } => connect_loop(*secs)?,
        Workload::Flood { path, rate, secs } => flood(path, *rate, *secs)?,
        Workload::Decoy { dir, count, gap_ms } => return decoy(dir, *count, *gap_ms),
        Workload::Churn {
            secs,
            rate,
            dns,
            file,
        } => churn(*secs, *rate, *dns, file)?,
    };
    println!("{out}");
    Ok(())
}

fn cpath(p: &std::path::Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).context("path with a NUL byte")
}

/// CPU seconds (user, system) of this process and of its waited-for children.
fn cpu() -> (f64, f64, f64, f64) {
    let get = |who| {
        // SAFETY: getrusage fills the struct we own.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut ru) };
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        (t(ru.ru_utime), t(ru.ru_stime))
    };
    let (u, s) = get(libc::RUSAGE_SELF);
    let (cu, cs) = get(libc::RUSAGE_CHILDREN);
    (u, s, cu, cs)
}

/// Runs `op` for `secs` seconds (checking the clock every 16 operations);
/// returns the JSON result.
fn timed(secs: f64, mut op: impl FnMut() -> Result<()>) -> Result<serde_json::Value> {
    let limit = Duration::from_secs_f64(secs);
    let c0 = cpu();
    let start = Instant::now();
    let mut ops: u64 = 0;
    let elapsed = loop {
        for _ in 0..16 {
            op()?;
        }
        ops += 16;
        let e = start.elapsed();
        if e >= limit {
            break e;
        }
    };
    let c1 = cpu();
    Ok(json!({
        "ops": ops,
        "secs": elapsed.as_secs_f64(),
        "cpu_self": (c1.0 - c0.0) + (c1.1 - c0.1),
        "cpu_children": (c1.2 - c0.2) + (c1.3 - c0.3),
    }))
}

fn open_loop(file: &std::path::Path, secs: f64) -> Result<serde_json::Value> {
    let path = cpath(file)?;
    let mut buf = [0u8; 4096];
    timed(secs, || {
        // SAFETY: plain system calls on a NUL-terminated path and our buffer.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                bail!(
                    "open {}: {}",
                    file.display(),
                    std::io::Error::last_os_error()
                );
            }
            libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
        }
        Ok(())
    })
}

fn exec_loop(secs: f64) -> Result<serde_json::Value> {
    let prog = CString::new("/bin/true")?;
    let argv = [prog.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    timed(secs, || {
        // SAFETY: fork in a single-threaded process; the child only calls
        // execve and _exit on data prepared before the fork.
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr());
                libc::_exit(127);
            }
            if pid < 0 {
                bail!("fork: {}", std::io::Error::last_os_error());
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            if status != 0 {
                bail!("/bin/true exited with status {status}");
            }
        }
        Ok(())
    })
}

/// A `sockaddr_in` for 127.0.0.1:port (port in host order).
fn loopback(port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data.
    let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    a.sin_family = libc::AF_INET as libc::sa_family_t;
    a.sin_port = port.to_be();
    a.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
    a
}

fn connect_loop(secs: f64) -> Result<serde_json::Value> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind a listener")?;
    let port = listener.local_addr()?.port();
    let lfd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let addr = loopback(port);
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    timed(secs, || {
        // SAFETY: plain socket calls on fds we own and structs on the stack.
        unsafe {
            let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if s < 0 {
                bail!("socket: {}", std::io::Error::last_os_error());
            }
            let r = libc::connect(
                s,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            if r != 0 {
                let e = std::io::Error::last_os_error();
                libc::close(s);
                bail!("connect 127.0.0.1:{port}: {e}");
            }
            let a = libc::accept4(
                lfd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            );
            // Reset instead of a FIN: no TIME_WAIT, so ports never run out.
            libc::setsockopt(
                s,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
            libc::close(s);
            if a >= 0 {
                libc::close(a);
            }
        }
        Ok(())
    })
}

fn wait_for_go() -> Result<()> {
    let mut b = [0u8; 1];
    std::io::stdin()
        .read_exact(&mut b)
        .context("waiting for the start byte on stdin")
}

fn flood(path: &std::path::Path, rate: f64, secs: f64) -> Result<serde_json::Value> {
    let p = cpath(path)?;
    let open_close = || {
        // SAFETY: plain system calls on a NUL-terminated path.
        unsafe {
            let fd = libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::close(fd);
            }
        }
    };
    wait_for_go()?;
    let c0 = cpu();
    let limit = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut ops: u64 = 0;
    let elapsed = loop {
        let e = start.elapsed();
        if e >= limit {
            break e;
        }
        let batch = if rate > 0.0 {
            let due = (rate * e.as_secs_f64()) as u64;
            if ops >= due {
                // Ahead of schedule: sleep until the next open is due.
                let wait = ((ops + 1 - due) as f64 / rate).min(0.001);
                std::thread::sleep(Duration::from_secs_f64(wait));
                continue;
            }
            (due - ops).min(64)
        } else {
            64
        };
        for _ in 0..batch {
            open_close();
        }
        ops += batch;
    };
    let c1 = cpu();
    Ok(json!({
        "ops": ops,
        "secs": elapsed.as_secs_f64(),
        "cpu_self": (c1.0 - c0.0) + (c1.1 - c0.1),
    }))
}

/// Wall-clock ns since the epoch (the clock journald and the bench use).
fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn decoy(dir: &std::path::Path, count: u32, gap_ms: u64) -> Result<()> {
    let mut buf = [0u8; 256];
    let mut out = std::io::stdout().lock();
    for i in 0..count {
        let path = cpath(&dir.join(format!(".env.lat-{i:05}")))?;
        let t0 = realtime_ns();
        // SAFETY: plain system calls on a NUL-terminated path and our buffer.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        let t1 = realtime_ns();
        if fd < 0 {
            bail!("open decoy {i}: {}", std::io::Error::last_os_error());
        }
        unsafe {
            libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
        }
        writeln!(out, "{}", json!({ "i": i, "t0": t0, "t1": t1 }))?;
        out.flush()?;
        std::thread::sleep(Duration::from_millis(gap_ms));
    }
    Ok(())
}

/// A DNS query (A, recursion desired) for `name`.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// What a churn child does, then exec /bin/true.
fn churn_child(i: u64, dns: SocketAddrV4, file: &CString) -> ! {
    let name = format!("c{i}-{}.bench.invalid", std::process::id());
    if let Ok(sock) = std::net::UdpSocket::bind("127.0.0.1:0") {
        let _ = sock.set_read_timeout(Some(Duration::from_millis(500)));
        if sock.connect(dns).is_ok() && sock.send(&dns_query(i as u16, &name)).is_ok() {
            let mut buf = [0u8; 512];
            let _ = sock.recv(&mut buf);
        }
    }
    // Port 9 (discard) has no listener: a refused connect, loopback only.
    let _ = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], 9)),
        Duration::from_millis(200),
    );
    let prog = c"/bin/true";
    let argv = [prog.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: plain system calls; the child never returns.
    unsafe {
        let fd = libc::open(file.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::close(fd);
        }
        libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr());
        libc::_exit(127)
    }
}

fn churn(
    secs: f64,
    rate: f64,
    dns: SocketAddrV4,
    file: &std::path::Path,
) -> Result<serde_json::Value> {
    let file = cpath(file)?;
    let limit = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut spawned: u64 = 0;
    let mut failed: u64 = 0;
    let mut running: u64 = 0;
    let reap = |block: bool, running: &mut u64, failed: &mut u64| loop {
        let mut status = 0;
        let flags = if block { 0 } else { libc::WNOHANG };
        // SAFETY: waitpid on our children.
        let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
        if pid <= 0 {
            break;
        }
        *running -= 1;
        if status != 0 {
            *failed += 1;
        }
    };
    while start.elapsed() < limit {
        let due = (rate * start.elapsed().as_secs_f64()) as u64;
        if spawned >= due || running >= 64 {
            reap(false, &mut running, &mut failed);
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        // SAFETY: fork in a single-threaded process.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            churn_child(spawned, dns, &file);
        }
        if pid < 0 {
            bail!("fork: {}", std::io::Error::last_os_error());
        }
        spawned += 1;
        running += 1;
        reap(false, &mut running, &mut failed);
    }
    reap(true, &mut running, &mut failed);
    Ok(json!({ "ops": spawned, "failed": failed, "secs": start.elapsed().as_secs_f64() }))
}
