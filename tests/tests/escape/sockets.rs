//! Socket address families: every family a network namespace does not
//! confine, and every other one builds do not need, is refused inside the
//! sandbox (EAFNOSUPPORT) whatever the socket type, checked against an
//! unsandboxed control that shows which families this kernel has (AF_VSOCK
//! among them on a virtual machine: the path to the host that a network
//! namespace does not close). What builds need still works inside: a
//! socketpair, TCP servers on loopback, Unix sockets, interface listing and
//! a real toolchain (node) serving and connecting on `localhost`.

use crate::harness::*;
use cloister_sandbox::seccomp::{ALLOWED_SOCKET_FAMILIES, denied_socket_families};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// errno per (family, call), where call is `socket <type>` or `socketpair`.
fn errnos(v: &Value) -> BTreeMap<(u64, String), i64> {
    let mut out = BTreeMap::new();
    for f in v["families"].as_array().expect("families") {
        let family = f["family"].as_u64().unwrap();
        for (ty, errno) in f["socket"].as_object().unwrap() {
            out.insert((family, format!("socket {ty}")), errno.as_i64().unwrap());
        }
        out.insert(
            (family, "socketpair".to_string()),
            f["socketpair"].as_i64().unwrap(),
        );
    }
    out
}

fn sockets(mode: Mode) {
    let deleg = Delegation::new(mode);
    let (control, inside) = probe_control_and_inside(mode, &deleg, "sockets");
    let (control_errnos, inside_errnos) = (errnos(&control), errnos(&inside));
    assert_eq!(control_errnos.len(), inside_errnos.len());

    // Every denied family, in every type and as a pair: EAFNOSUPPORT.
    let eafnosupport = libc::EAFNOSUPPORT as i64;
    let mut reachable_outside = Vec::new();
    for family in denied_socket_families() {
        for ((f, call), errno) in inside_errnos.range((family, String::new())..) {
            if *f != family {
                break;
            }
            assert_eq!(
                *errno, eafnosupport,
                "{mode:?}: {call} of family {family:#x} got errno {errno} inside"
            );
            if control_errnos[&(family, call.clone())] != eafnosupport {
                reachable_outside.push(format!("{family} {call}"));
            }
        }
    }
    // The control proves the probe means something here: this kernel has
    // families the sandbox refuses (AF_PACKET on any Linux, AF_VSOCK on a
    // virtual machine), and unsandboxed they are not refused.
    assert!(
        !reachable_outside.is_empty(),
        "no denied family exists on this kernel outside the sandbox: the probe proves nothing"
    );
    let vsock = libc::AF_VSOCK as u64;
    if control_errnos[&(vsock, "socket stream".into())] == 0 {
        assert!(
            reachable_outside.iter().any(|r| r.starts_with("40 ")),
            "{reachable_outside:?}"
        );
    }
    assert!(
        inside["vsock"]["socket"]
            .as_str()
            .unwrap()
            .contains("not supported"),
        "{mode:?}: AF_VSOCK inside: {}",
        inside["vsock"]
    );
    assert_eq!(inside["vsock"]["connect"], "not tried");

    // The allowed families are not refused inside (AF_UNIX and AF_INET
    // sockets are made; AF_NETLINK's datagram sockets too).
    for family in ALLOWED_SOCKET_FAMILIES {
        let stream = inside_errnos[&(family, "socket dgram".to_string())];
        assert_eq!(stream, 0, "{mode:?}: datagram socket of family {family}");
    }
    assert_eq!(
        inside_errnos[&(libc::AF_UNIX as u64, "socketpair".to_string())],
        0
    );

    // What builds do with sockets works, inside as outside.
    let works = inside["works"].as_array().unwrap();
    let names: Vec<&str> = works.iter().map(|w| w["name"].as_str().unwrap()).collect();
    for needed in [
        "socketpair AF_UNIX",
        "loopback tcp 127.0.0.1",
        "loopback tcp ::1",
        "unix socket by path",
        "unix socket by abstract name",
        "interfaces over netlink",
        "localhost resolves",
    ] {
        assert!(names.contains(&needed), "probe did not report {needed}");
    }
    let broken: Vec<String> = works
        .iter()
        .filter(|w| w["ok"] != true)
        .map(|w| format!("{}: {}", w["name"], w["detail"]))
        .collect();
    assert!(broken.is_empty(), "{mode:?}: {broken:#?}");
    let interfaces = works
        .iter()
        .find(|w| w["name"] == "interfaces over netlink")
        .unwrap();
    assert_eq!(interfaces["detail"], "lo");
}

both_modes!(
    socket_families_outside_the_namespace_are_refused,
    super::sockets
);

/// A real toolchain's loopback use: node serves on `localhost` and connects
/// to itself. Resolving `localhost` makes node's getaddrinfo list the
/// interfaces over netlink (AI_ADDRCONFIG), the reason AF_NETLINK is allowed.
fn node_serves_on_localhost(mode: Mode) {
    let node = ["/usr/bin/node", "/usr/local/bin/node"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("node is not installed (.ci/setup.d/30-interop.sh installs it)");
    let deleg = Delegation::new(mode);
    let script = "const net = require('net');\
        const srv = net.createServer(c => c.end('pong')).listen(0, 'localhost', () => {\
          const c = net.connect(srv.address().port, 'localhost');\
          let got = ''; c.on('data', d => got += d);\
          c.on('end', () => { console.log('got ' + got); srv.close(); });\
        });";
    let mut cmd = runner(mode);
    cmd.args(run_args(&[
        "--cgroup-parent",
        &deleg.parent_arg,
        "--",
        node,
        "-e",
        script,
    ]));
    let out = output_within(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{mode:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "got pong");
}

both_modes!(
    a_toolchain_serving_on_localhost_works,
    super::node_serves_on_localhost
);
