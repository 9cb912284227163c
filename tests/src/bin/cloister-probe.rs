//! `cloister-probe`: runs inside a sandbox and reports, as JSON, whether each
//! isolation property holds. The escape suite (`tests/tests/escape.rs`) runs
//! it under `cloister-runner run` (as root and rootless) and under bubblewrap
//! for comparison, and asserts every check.
//!
//! Subcommands:
//! - `suite [--tcp ADDR]... [--abstract NAME] [--host-file PATH] [--ro PATH]...
//!   [--host-pid PID]`: every property check, one JSON object `{"checks": [...]}`
//! - `mounts [--ro PATH]... [--rw PATH]...`: for each `--ro` path, that it
//!   is unwritable (EROFS), its topmost mount is `ro` in mountinfo and it can
//!   be neither remounted writable nor detached; for each `--rw` path, that a
//!   file can be created there and its topmost mount is `rw`
//!   (`{"checks": [{"name", "ok", "detail"}]}`)
//! - `syscalls`: each denied system call made with invalid arguments, with
//!   the errno it got (`{"syscalls": [...]}`)
//! - `sockets`: `socket()` of every address family number up to past
//!   `AF_MAX` (and the high-bit variants the policy promises to refuse) in
//!   every socket type, and `socketpair()`, with the errno each got; an
//!   attempt to reach the virtual machine's host over AF_VSOCK; and what
//!   builds need still working: a socketpair, a TCP server on 127.0.0.1 and
//!   on ::1, Unix sockets by path and abstract name, interface listing over
//!   netlink, `localhost` resolving (`{"families", "vsock", "works"}`)
//! - `alloc MIB`: allocate and touch memory
//! - `threads N`: start N threads, report how many started
//! - `tree MARKER [--exit]`: leave a double-forked, setsid'ed grandchild
//!   behind (sleeping forever, holding stdout), then sleep or exit
//! - `spin MS`: burn CPU for MS milliseconds of wall time, then sleep
#![forbid(unsafe_code)]

use serde_json::{Value, json};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn check(name: &str, blocked: bool, detail: impl Into<String>) -> Value {
    json!({"name": name, "blocked": blocked, "detail": detail.into()})
}

fn errno_of(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).to_string(),
        None => e.to_string(),
    }
}

fn status_field(key: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| "missing".into())
}

struct SuiteArgs {
    tcp: Vec<SocketAddr>,
    abstract_name: Option<String>,
    host_file: Option<String>,
    ro: Vec<String>,
    host_pid: Option<i32>,
}

fn parse_suite(args: &[String]) -> SuiteArgs {
    let mut s = SuiteArgs {
        tcp: Vec::new(),
        abstract_name: None,
        host_file: None,
        ro: Vec::new(),
        host_pid: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--tcp" => s.tcp.push(v.parse().expect("--tcp ADDR:PORT")),
            "--abstract" => s.abstract_name = Some(v.clone()),
            "--host-file" => s.host_file = Some(v.clone()),
            "--ro" => s.ro.push(v.clone()),
            "--host-pid" => s.host_pid = Some(v.parse().expect("--host-pid PID")),
            other => panic!("unknown suite option {other}"),
        }
    }
    s
}

fn suite(args: &SuiteArgs) -> Vec<Value> {
    let mut out = Vec::new();

    // Network.
    for addr in &args.tcp {
        let r = TcpStream::connect_timeout(addr, Duration::from_secs(3));
        out.push(check(
            &format!("net.tcp {addr}"),
            r.is_err(),
            match r {
                Ok(_) => "connected".to_string(),
                Err(e) => errno_of(&e),
            },
        ));
    }
    if let Some(name) = &args.abstract_name {
        use std::os::linux::net::SocketAddrExt;
        let r = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|a| std::os::unix::net::UnixStream::connect_addr(&a));
        out.push(check(
            "net.abstract-unix-socket",
            r.is_err(),
            match r {
                Ok(_) => "connected".to_string(),
                Err(e) => errno_of(&e),
            },
        ));
    }
    let ifaces: Vec<String> = nix::ifaddrs::getifaddrs()
        .map(|i| i.map(|a| a.interface_name).collect())
        .unwrap_or_default();
    let mut names = ifaces.clone();
    names.sort();
    names.dedup();
    out.push(check(
        "net.only-loopback",
        names.iter().all(|n| n == "lo"),
        names.join(","),
    ));
    out.push(check(
        "net.no-resolv-conf",
        !Path::new("/etc/resolv.conf").exists(),
        "",
    ));

    // Host files.
    if let Some(f) = &args.host_file {
        let r = std::fs::read(f);
        out.push(check(
            "fs.host-file-unreadable",
            r.is_err(),
            match r {
                Ok(_) => "read it".to_string(),
                Err(e) => errno_of(&e),
            },
        ));
    }
    for p in ["/root", "/home", "/var", "/run", "/etc/shadow", "/etc/ssh"] {
        out.push(check(
            &format!("fs.host-path-absent {p}"),
            !Path::new(p).exists(),
            "",
        ));
    }

    // Read-only mounts: unwritable, not remountable, not detachable.
    let mut ro: Vec<String> = vec!["/".into(), "/usr".into(), "/etc".into()];
    ro.extend(args.ro.iter().cloned());
    for p in &ro {
        let probe = Path::new(p).join(".cloister-probe-write");
        let r = std::fs::write(&probe, b"x");
        let _ = std::fs::remove_file(&probe);
        out.push(check(
            &format!("fs.read-only {p}"),
            r.is_err(),
            match r {
                Ok(_) => "wrote".to_string(),
                Err(e) => errno_of(&e),
            },
        ));
        let none: Option<&str> = None;
        let r = nix::mount::mount(
            none,
            p.as_str(),
            none,
            nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_BIND,
            none,
        );
        out.push(check(
            &format!("fs.not-remountable {p}"),
            r.is_err(),
            format!("{r:?}"),
        ));
        let r = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
        out.push(check(
            &format!("fs.not-detachable {p}"),
            r.is_err(),
            format!("{r:?}"),
        ));
    }
    let r = nix::sys::stat::mknod(
        "/tmp/cloister-probe-blk",
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(254, 0),
    );
    out.push(check("fs.no-mknod", r.is_err(), format!("{r:?}")));

    // /dev: no block devices, no memory devices.
    let mut bad = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/dev") {
        for e in entries.flatten() {
            if let Ok(m) = std::fs::symlink_metadata(e.path())
                && m.file_type().is_block_device()
            {
                bad.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    for p in [
        "/dev/mem",
        "/dev/kmem",
        "/dev/port",
        "/dev/kmsg",
        "/dev/vda",
        "/dev/sda",
    ] {
        if Path::new(p).exists() {
            bad.push(p.to_string());
        }
    }
    out.push(check("dev.minimal", bad.is_empty(), bad.join(",")));
    let devpts_private = std::fs::read_dir("/dev/pts")
        .map(|d| d.flatten().all(|e| e.file_name() == "ptmx"))
        .unwrap_or(false);
    out.push(check("dev.pts-new-instance", devpts_private, ""));

    // /proc masking and read-only knobs; no writable /sys.
    for p in ["/proc/kcore", "/proc/keys", "/proc/timer_list"] {
        let content = std::fs::read(p).map(|b| b.len());
        out.push(check(
            &format!("proc.masked {p}"),
            !matches!(content, Ok(n) if n > 0),
            format!("{content:?}"),
        ));
    }
    for p in [
        "/proc/sys/kernel/hostname",
        "/proc/sysrq-trigger",
        "/proc/sys/vm/drop_caches",
    ] {
        let r = std::fs::OpenOptions::new().write(true).open(p);
        out.push(check(
            &format!("proc.read-only {p}"),
            r.is_err(),
            match r {
                Ok(_) => "opened for writing".to_string(),
                Err(e) => errno_of(&e),
            },
        ));
    }
    let sys_writable = std::fs::write("/sys/kernel/uevent_helper", b"/x").is_ok()
        || nix::unistd::access("/sys", nix::unistd::AccessFlags::W_OK).is_ok();
    out.push(check("sys.not-writable", !sys_writable, ""));

    // Credentials.
    for key in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        let v = status_field(key);
        out.push(check(
            &format!("caps.{}", key.trim_end_matches(':')),
            v.chars().all(|c| c == '0') && !v.is_empty(),
            v,
        ));
    }
    let nnp = status_field("NoNewPrivs:");
    out.push(check("no-new-privs", nnp == "1", nnp));
    let sc = status_field("Seccomp:");
    out.push(check("seccomp.filter-mode", sc == "2", sc));

    // File descriptors: only 0, 1, 2 (and the one read_dir holds).
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let extra: Vec<String> = fds
        .iter()
        .filter(|fd| **fd > 2)
        .filter(|fd| {
            // the directory fd used to list /proc/self/fd is gone by now;
            // anything still open that is not a std stream is a leak
            std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok()
        })
        .map(|fd| {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            format!("{fd}->{target}")
        })
        .collect();
    out.push(check("fds.none-leaked", extra.is_empty(), extra.join(",")));

    // Processes: only the sandbox's, and no signal reaches the host.
    let pids: Vec<i32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    out.push(check(
        "pid.only-sandbox-processes",
        pids.len() <= 3 && std::process::id() <= 3,
        format!("visible pids {pids:?}, own pid {}", std::process::id()),
    ));
    if let Some(pid) = args.host_pid {
        let r = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        out.push(check("pid.no-signal-to-host", r.is_err(), format!("{r:?}")));
    }
    // The sandbox init cannot be signalled from inside (if it died, the
    // namespace and this probe would die with it, failing the suite).
    for sig in [
        nix::sys::signal::SIGTERM,
        nix::sys::signal::SIGINT,
        nix::sys::signal::SIGHUP,
        nix::sys::signal::SIGKILL,
    ] {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(1), sig);
    }
    std::thread::sleep(Duration::from_millis(50));
    out.push(check(
        "pid.init-survives-signals",
        Path::new("/proc/1/stat").exists(),
        "",
    ));
    let r = std::fs::read_to_string("/proc/1/environ");
    out.push(check(
        "pid.init-unreadable",
        r.as_ref().map(|s| s.is_empty()).unwrap_or(true),
        match r {
            Ok(s) => format!("{} bytes", s.len()),
            Err(e) => errno_of(&e),
        },
    ));

    // Identity.
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.push(check("uts.own-hostname", host == "cloister", host));
    let cg = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    out.push(check(
        "cgroup.namespace",
        cg.lines().all(|l| l.ends_with(":/")),
        cg.replace('\n', " "),
    ));
    // The init too: it is in the run's cgroup when the namespace is made,
    // so its path does not reveal where the run's cgroup sits on the host
    // (a `/..` here would name the host-side parent).
    let init_cg = std::fs::read_to_string("/proc/1/cgroup").unwrap_or_default();
    out.push(check(
        "cgroup.init-at-root",
        !init_cg.is_empty() && init_cg.lines().all(|l| l.ends_with(":/")),
        init_cg.replace('\n', " "),
    ));
    let core = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE);
    out.push(check(
        "rlimit.no-core-dumps",
        matches!(core, Ok((0, 0))),
        format!("{core:?}"),
    ));

    // Denied system calls (details in `syscalls`).
    for (name, errno, expected) in syscall_results() {
        out.push(check(
            &format!("syscall.{name}"),
            errno == expected,
            nix::errno::Errno::from_raw(errno).to_string(),
        ));
    }
    out
}

fn syscall_results() -> Vec<(String, i32, i32)> {
    cloister_sandbox::probe::syscall_probes()
        .into_iter()
        .map(|p| {
            let errno = p.run();
            (p.name, errno, p.filtered_errno)
        })
        .collect()
}

/// The per-mount options (`ro,nosuid,...`) of the topmost mount at `path`
/// (the last mountinfo line with that mount point).
fn mount_options(mountinfo: &str, path: &str) -> Option<String> {
    mountinfo
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(path))
        .and_then(|l| l.split(' ').nth(5))
        .map(str::to_string)
}

fn mounts(args: &[String]) -> Vec<Value> {
    let ok =
        |name: String, ok: bool, detail: String| json!({"name": name, "ok": ok, "detail": detail});
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let p = it.next().unwrap_or_else(|| panic!("{flag} needs a path"));
        let opts = mount_options(&info, p).unwrap_or_else(|| "not a mount point".into());
        let first = opts.split(',').next().unwrap_or("").to_string();
        let file = Path::new(p).join(".cloister-probe-write");
        let wrote = std::fs::write(&file, b"x");
        let _ = std::fs::remove_file(&file);
        match flag.as_str() {
            "--ro" => {
                out.push(ok(
                    format!("read-only {p}"),
                    matches!(&wrote, Err(e) if e.raw_os_error() == Some(libc::EROFS)),
                    match &wrote {
                        Ok(()) => "wrote".into(),
                        Err(e) => errno_of(e),
                    },
                ));
                out.push(ok(format!("mounted ro {p}"), first == "ro", opts.clone()));
                let none: Option<&str> = None;
                let r = nix::mount::mount(
                    none,
                    p.as_str(),
                    none,
                    nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_BIND,
                    none,
                );
                out.push(ok(
                    format!("not remountable {p}"),
                    r.is_err(),
                    format!("{r:?}"),
                ));
                let r = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
                out.push(ok(
                    format!("not detachable {p}"),
                    r.is_err(),
                    format!("{r:?}"),
                ));
            }
            "--rw" => {
                out.push(ok(
                    format!("writable {p}"),
                    wrote.is_ok(),
                    match &wrote {
                        Ok(()) => "wrote".into(),
                        Err(e) => errno_of(e),
                    },
                ));
                out.push(ok(format!("mounted rw {p}"), first == "rw", opts.clone()));
            }
            other => panic!("unknown mounts option {other}"),
        }
    }
    out
}

/// `socket()` types probed per family.
const SOCKET_TYPES: [(&str, i32); 4] = [
    ("stream", libc::SOCK_STREAM),
    ("dgram", libc::SOCK_DGRAM),
    ("seqpacket", libc::SOCK_SEQPACKET),
    ("raw", libc::SOCK_RAW),
];

fn sockets() -> Value {
    use cloister_sandbox::probe::{socket_errno, socketpair_errno};
    use cloister_sandbox::seccomp::{SOCKET_FAMILIES, denied_socket_families, socket_family_name};
    let mut values: Vec<u64> = (0..SOCKET_FAMILIES.len() as u64 + 2).collect();
    values.extend(denied_socket_families());
    values.sort_unstable();
    values.dedup();
    let families: Vec<Value> = values
        .into_iter()
        .map(|family| {
            let socket: serde_json::Map<String, Value> = SOCKET_TYPES
                .iter()
                .map(|(name, ty)| (name.to_string(), json!(socket_errno(family, *ty as u64))))
                .collect();
            json!({
                "family": family,
                "name": socket_family_name(family & 0xffff_ffff),
                "socket": socket,
                "socketpair": socketpair_errno(family, libc::SOCK_STREAM as u64),
            })
        })
        .collect();
    json!({"families": families, "vsock": vsock_to_host(), "works": socket_uses()})
}

/// Tries to reach the virtual machine's host (CID 2) over AF_VSOCK: what a
/// build would do to leave a sandbox whose network namespace vsock ignores.
fn vsock_to_host() -> Value {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, VsockAddr, connect, socket};
    use std::os::fd::AsRawFd;
    let fd = match socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    ) {
        Ok(fd) => fd,
        Err(e) => return json!({"socket": e.to_string(), "connect": "not tried"}),
    };
    let r = connect(fd.as_raw_fd(), &VsockAddr::new(2, 9));
    json!({"socket": "made", "connect": match r {
        Ok(()) => "connected to the host".to_string(),
        Err(e) => e.to_string(),
    }})
}

/// What builds use sockets for, each done for real.
fn socket_uses() -> Vec<Value> {
    use std::io::{Read, Write};
    let ok = |name: &str, r: std::io::Result<String>| match r {
        Ok(detail) => json!({"name": name, "ok": true, "detail": detail}),
        Err(e) => json!({"name": name, "ok": false, "detail": errno_of(&e)}),
    };
    let echo = |mut a: std::os::unix::net::UnixStream,
                mut b: std::os::unix::net::UnixStream|
     -> std::io::Result<String> {
        a.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    let tcp = |addr: &str| -> std::io::Result<String> {
        let listener = std::net::TcpListener::bind(addr)?;
        let at = listener.local_addr()?;
        let server = std::thread::spawn(move || -> std::io::Result<()> {
            let (mut c, _) = listener.accept()?;
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf)?;
            c.write_all(&buf)
        });
        let mut c = TcpStream::connect_timeout(&at, Duration::from_secs(5))?;
        c.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf)?;
        server
            .join()
            .map_err(|_| std::io::Error::other("server thread panicked"))??;
        Ok(format!("{at} echoed {}", String::from_utf8_lossy(&buf)))
    };
    let mut out = vec![
        ok(
            "socketpair AF_UNIX",
            std::os::unix::net::UnixStream::pair().and_then(|(a, b)| echo(a, b)),
        ),
        ok("loopback tcp 127.0.0.1", tcp("127.0.0.1:0")),
        ok("loopback tcp ::1", tcp("[::1]:0")),
    ];
    let path = std::env::temp_dir().join(format!("cloister-probe-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let by_path = std::os::unix::net::UnixListener::bind(&path).and_then(|l| {
        let c = std::os::unix::net::UnixStream::connect(&path)?;
        let (s, _) = l.accept()?;
        echo(c, s)
    });
    let _ = std::fs::remove_file(&path);
    out.push(ok("unix socket by path", by_path));
    let abstract_name = format!("cloister-probe-{}", std::process::id());
    let by_name = {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).and_then(
            |addr| {
                let l = std::os::unix::net::UnixListener::bind_addr(&addr)?;
                let c = std::os::unix::net::UnixStream::connect_addr(&addr)?;
                let (s, _) = l.accept()?;
                echo(c, s)
            },
        )
    };
    out.push(ok("unix socket by abstract name", by_name));
    out.push(ok(
        "interfaces over netlink",
        nix::ifaddrs::getifaddrs()
            .map(|i| {
                let mut names: Vec<String> = i.map(|a| a.interface_name).collect();
                names.sort();
                names.dedup();
                names.join(",")
            })
            .map_err(std::io::Error::from),
    ));
    out.push(ok(
        "localhost resolves",
        std::net::ToSocketAddrs::to_socket_addrs("localhost:80")
            .map(|a| a.map(|a| a.ip().to_string()).collect::<Vec<_>>().join(",")),
    ));
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cmd = args.get(1).map(String::as_str).unwrap_or("");
    match cmd {
        "suite" => {
            let s = parse_suite(&args[2..]);
            println!("{}", json!({"checks": suite(&s)}));
        }
        "sockets" => {
            println!("{}", sockets());
        }
        "mounts" => {
            println!("{}", json!({"checks": mounts(&args[2..])}));
        }
        "syscalls" => {
            let mut rows: Vec<Value> = syscall_results()
                .into_iter()
                .map(|(name, errno, filtered)| {
                    json!({"name": name, "errno": errno, "filteredErrno": filtered})
                })
                .collect();
            for p in cloister_sandbox::probe::allowed_probes() {
                rows.push(json!({"name": p.name, "errno": p.run(), "filteredErrno": 0}));
            }
            println!("{}", json!({"syscalls": rows}));
        }
        "alloc" => {
            let mib: usize = args[2].parse().expect("alloc MIB");
            let mut chunks: Vec<Vec<u8>> = Vec::new();
            for i in 0..mib {
                let mut v = vec![0u8; 1 << 20];
                for b in v.iter_mut().step_by(4096) {
                    *b = 1;
                }
                chunks.push(v);
                if i % 16 == 0 {
                    let _ = std::io::stdout().flush();
                }
            }
            println!("allocated {mib} MiB");
        }
        "threads" => {
            let n: usize = args[2].parse().expect("threads N");
            let mut started = 0;
            let mut error = String::new();
            let mut handles = Vec::new();
            for _ in 0..n {
                match std::thread::Builder::new()
                    .stack_size(64 << 10)
                    .spawn(|| std::thread::sleep(Duration::from_millis(500)))
                {
                    Ok(h) => {
                        started += 1;
                        handles.push(h);
                    }
                    Err(e) => {
                        error = errno_of(&e);
                        break;
                    }
                }
            }
            println!("{}", json!({"started": started, "error": error}));
            for h in handles {
                let _ = h.join();
            }
        }
        "tree" => {
            // tree MARKER [--exit]: `middle` starts the grandchild and exits
            // at once, orphaning it; all three share our stdout, so whoever
            // reads it sees EOF only when every one of them is gone.
            let me = std::env::current_exe().expect("current_exe");
            let status = std::process::Command::new(&me)
                .args(["middle", &args[2]])
                .status()
                .expect("run middle");
            println!("ready {status}");
            let _ = std::io::stdout().flush();
            if args.get(3).map(String::as_str) == Some("--exit") {
                return;
            }
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        "middle" => {
            let me = std::env::current_exe().expect("current_exe");
            // Deliberately never waited for: the point is an orphan.
            #[allow(clippy::zombie_processes)]
            let child = std::process::Command::new(&me)
                .args(["grandchild", &args[2]])
                .spawn()
                .expect("spawn grandchild");
            println!("grandchild {}", child.id());
            let _ = std::io::stdout().flush();
        }
        "grandchild" => {
            nix::unistd::setsid().expect("setsid");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        "spin" => {
            let ms: u64 = args[2].parse().expect("spin MS");
            let start = Instant::now();
            let mut x: u64 = 0;
            while start.elapsed() < Duration::from_millis(ms) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            println!("ready {x}");
            let _ = std::io::stdout().flush();
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        _ => {
            eprintln!(
                "usage: cloister-probe suite|mounts|syscalls|sockets|alloc MIB|threads N|tree MARKER [--exit]|spin MS"
            );
            std::process::exit(2);
        }
    }
}
