//! Every property the probe checks, asserted as root and rootless; the
//! denied system calls against an unsandboxed control run.

use crate::harness::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

/// Check names the probe must report (so a check that silently did not run
/// fails the test too).
const REQUIRED_CHECKS: &[&str] = &[
    "net.abstract-unix-socket",
    "net.only-loopback",
    "net.no-resolv-conf",
    "fs.host-file-unreadable",
    "fs.read-only /",
    "fs.read-only /usr",
    "fs.read-only /ro",
    "fs.not-remountable /usr",
    "fs.not-remountable /ro",
    "fs.not-detachable /usr",
    "fs.not-detachable /ro",
    "fs.no-mknod",
    "dev.minimal",
    "dev.pts-new-instance",
    "proc.masked /proc/keys",
    "proc.masked /proc/timer_list",
    "proc.masked /proc/kcore",
    "proc.read-only /proc/sys/kernel/hostname",
    "proc.read-only /proc/sysrq-trigger",
    "sys.not-writable",
    "caps.CapInh",
    "caps.CapPrm",
    "caps.CapEff",
    "caps.CapBnd",
    "caps.CapAmb",
    "no-new-privs",
    "seccomp.filter-mode",
    "fds.none-leaked",
    "pid.only-sandbox-processes",
    "pid.no-signal-to-host",
    "pid.init-unreadable",
    "pid.init-survives-signals",
    "uts.own-hostname",
    "cgroup.namespace",
    "cgroup.init-at-root",
    "rlimit.no-core-dumps",
];

fn property_suite(mode: Mode) {
    let deleg = Delegation::new(mode);
    // Host services the build must not reach: TCP on loopback and on the
    // host's interface address, and an abstract unix socket.
    let tcp = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let port = tcp.local_addr().unwrap().port();
    let host_ip = host_interface_address();
    let abstract_name = marker("abstract");
    let unix = {
        use std::os::linux::net::SocketAddrExt;
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
        std::os::unix::net::UnixListener::bind_addr(&addr).unwrap()
    };
    unix.set_nonblocking(true).unwrap();
    // A host file the test user could read outside the sandbox.
    let data = shared_dir(false);
    let secret = data.path().join("secret");
    std::fs::write(&secret, "host secret").unwrap();
    // A read-only bind the build must not write, remount or detach.
    let ro = shared_dir(true);
    // A host process the build must not be able to signal.
    let mut victim = Command::new("sleep").arg("600").spawn().unwrap();

    // Leak fds into the runner (7: a file, 8: a pipe copy of stdout): the
    // sandbox must close them.
    let mut args = run_args(&[
        "--cgroup-parent",
        &deleg.parent_arg,
        "--ro-bind",
        &format!("{}:/ro", ro.path().display()),
        "--",
        PROBE,
        "suite",
        "--tcp",
        &format!("127.0.0.1:{port}"),
        "--tcp",
        &format!("{host_ip}:{port}"),
        "--abstract",
        &abstract_name,
        "--host-file",
        &secret.display().to_string(),
        "--ro",
        "/ro",
        "--host-pid",
        &victim.id().to_string(),
    ]);
    let runner = runner(mode);
    let mut cmd = Command::new("bash");
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/tmp");
    cmd.args(["-c", "exec 7</etc/hostname 8>&1; exec \"$@\"", "bash"]);
    cmd.arg(runner.get_program());
    cmd.args(runner.get_args());
    cmd.args(args.drain(..));
    let out = output_within(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "probe failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("probe JSON");
    let checks = v["checks"].as_array().unwrap();
    let by_name: BTreeMap<String, &Value> = checks
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c))
        .collect();
    for name in REQUIRED_CHECKS {
        assert!(by_name.contains_key(*name), "probe did not report {name}");
    }
    assert!(by_name.contains_key(&format!("net.tcp 127.0.0.1:{port}")));
    assert!(by_name.contains_key(&format!("net.tcp {host_ip}:{port}")));
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c["blocked"] != true)
        .map(|c| format!("{} ({})", c["name"], c["detail"]))
        .collect();
    assert!(failed.is_empty(), "{mode:?}: not blocked: {failed:#?}");
    // The host side saw nothing.
    assert!(
        tcp.accept().is_err(),
        "a connection reached the host TCP service"
    );
    assert!(
        unix.accept().is_err(),
        "a connection reached the host unix socket"
    );
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the host process was killed"
    );
    victim.kill().unwrap();
    let _ = victim.wait();
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host secret");
}

both_modes!(every_property_is_blocked, super::property_suite);

fn syscall_table(mode: Mode) {
    // Control: the same calls unsandboxed, as root with every capability.
    // None may fail the way the filter makes it fail, which shows the
    // arguments are the harmless invalid kind and EPERM/ENOSYS inside comes
    // from the sandbox.
    let deleg = Delegation::new(mode);
    let (control, inside) = probe_control_and_inside(mode, &deleg, "syscalls");
    let control = control["syscalls"].as_array().unwrap();
    let inside = inside["syscalls"].as_array().unwrap();
    assert_eq!(control.len(), inside.len());
    assert!(
        inside.len() > 50,
        "too few syscall probes: {}",
        inside.len()
    );
    for (c, i) in control.iter().zip(inside) {
        let name = i["name"].as_str().unwrap();
        let filtered = i["filteredErrno"].as_i64().unwrap();
        let got = i["errno"].as_i64().unwrap();
        let ctl = c["errno"].as_i64().unwrap();
        if filtered == 0 {
            assert_eq!(got, ctl, "{name}: an allowed call must behave as outside");
            assert_ne!(got, libc::EPERM as i64, "{name}: allowed call denied");
        } else {
            assert_eq!(got, filtered, "{mode:?}: {name} not denied (errno {got})");
            assert_ne!(
                ctl, filtered,
                "{name}: the control run fails the same way, so the probe proves nothing"
            );
        }
    }
}

both_modes!(every_denied_syscall_is_denied, super::syscall_table);
