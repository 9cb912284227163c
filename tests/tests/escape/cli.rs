//! `cloister-runner run` as a user sees it: exit codes, the JSON result,
//! stream redirection for a supervisor, the clean environment, binds and
//! workdir, image root filesystems, and refused profiles.

use crate::harness::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

fn run_sh(mode: Mode, extra: &[&str], script: &str) -> std::process::Output {
    let deleg = Delegation::new(mode);
    let mut args = vec!["--cgroup-parent", &deleg.parent_arg];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "/bin/sh", "-c", script]);
    let mut cmd = runner(mode);
    cmd.args(run_args(&args));
    output_within(cmd, Duration::from_secs(60))
}

fn exit_codes(mode: Mode) {
    assert_eq!(run_sh(mode, &[], "exit 3").status.code(), Some(3));
    let out = run_sh(mode, &["--json"], "kill -TERM $$");
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM));
    let v = last_json(&out);
    assert_eq!(v["signal"], libc::SIGTERM);
    assert_eq!(v["exitCode"], serde_json::Value::Null);
    // command not found: 127; setup failure: 125 with a one-line reason
    let deleg = Delegation::new(mode);
    let mut cmd = runner(mode);
    cmd.args(run_args(&[
        "--cgroup-parent",
        &deleg.parent_arg,
        "--",
        "no-such-command",
    ]));
    let out = output_within(cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(127));
    let mut cmd = runner(mode);
    cmd.args(run_args(&[
        "--cgroup-parent",
        &deleg.parent_arg,
        "--ro-bind",
        "/nonexistent-cloister-source:/x",
        "--",
        "/bin/true",
    ]));
    let out = output_within(cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nonexistent-cloister-source"), "{err}");
}

both_modes!(exit_status_follows_the_command, super::exit_codes);

fn json_result(mode: Mode) {
    let out = run_sh(mode, &["--json"], "echo hi");
    assert!(out.status.success());
    let v = last_json(&out);
    for key in [
        "exitCode",
        "signal",
        "wallMs",
        "cpuMs",
        "peakMemoryBytes",
        "limitHit",
        "isolation",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["exitCode"], 0);
    let iso = &v["isolation"];
    assert_eq!(iso["network"], "none");
    assert_eq!(
        iso["namespaces"],
        serde_json::json!(["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"])
    );
    assert_eq!(iso["noNewPrivs"], true);
    assert_eq!(iso["capabilities"], serde_json::json!([]));
    assert_eq!(iso["rootless"], mode == Mode::Rootless);
    assert!(
        iso["seccompPolicy"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    // the profile digest is the one `profile check` prints
    let staged = staged();
    let check = Command::new(&staged.runner)
        .args(["profile", "check", "default", "--json"])
        .output()
        .unwrap();
    let check: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(iso["profile"], check["digest"]);
    assert_eq!(iso["seccompPolicy"], check["seccompPolicy"]["digest"]);
}

/// CPU time and peak memory count every process of the run, the ones the
/// command started in the background included (no memory limit: peak
/// memory is the largest process's peak resident size).
fn measurements(mode: Mode) {
    let script = format!(
        "{PROBE} alloc 48 >/dev/null & \
         i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; wait"
    );
    let out = run_sh(mode, &["--json"], &script);
    assert!(out.status.success(), "{out:?}");
    let v = last_json(&out);
    let cpu_ms = v["cpuMs"].as_u64().unwrap();
    let peak = v["peakMemoryBytes"].as_u64().unwrap();
    assert!(cpu_ms >= 50, "{v}");
    assert!(cpu_ms <= v["wallMs"].as_u64().unwrap() * 2 + 10, "{v}");
    assert!(peak >= 48 << 20, "{v}");
}

both_modes!(
    cpu_time_and_peak_memory_cover_every_process,
    super::measurements
);

both_modes!(
    json_result_has_outcome_and_isolation_facts,
    super::json_result
);

fn streams(mode: Mode) {
    let dir = shared_dir(true);
    let p = |n: &str| dir.path().join(n).display().to_string();
    let (o, e, r) = (p("out"), p("err"), p("result.json"));
    let out = run_sh(
        mode,
        &["--stdout", &o, "--stderr", &e, "--result", &r],
        "echo to-stdout; echo to-stderr >&2; exit 4",
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(out.stdout.is_empty(), "runner stdout must stay empty");
    assert_eq!(std::fs::read_to_string(&o).unwrap(), "to-stdout\n");
    assert_eq!(std::fs::read_to_string(&e).unwrap(), "to-stderr\n");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&r).unwrap()).unwrap();
    assert_eq!(v["exitCode"], 4);
}

both_modes!(streams_and_result_go_to_files, super::streams);

fn startup_trace(mode: Mode) {
    let deleg = Delegation::new(mode);
    let mut cmd = runner(mode);
    cmd.env("CLOISTER_TRACE_STARTUP", "1");
    cmd.args(run_args(&[
        "--cgroup-parent",
        &deleg.parent_arg,
        "--",
        "/bin/sh",
        "-c",
        "echo ran",
    ]));
    let out = output_within(cmd, Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    let err = String::from_utf8_lossy(&out.stderr);
    // `cloister-runner: trace <ms> ms (+<ms>) <stage>`, in time order, from
    // the runner, the sandbox init and the command's process.
    let stages: Vec<(f64, &str)> = err
        .lines()
        .map(|l| {
            let rest = l
                .strip_prefix("cloister-runner: trace ")
                .unwrap_or_else(|| panic!("not a trace line: {l}"));
            let (ms, rest) = rest.trim_start().split_once(" ms (+").unwrap();
            let stage = rest.split_once(") ").unwrap().1;
            (ms.parse().unwrap(), stage)
        })
        .collect();
    assert!(stages.windows(2).all(|w| w[0].0 <= w[1].0), "{err}");
    for stage in [
        "cli: profile loaded",
        "runner: cgroup created",
        "init: started",
        "root: /proc masked",
        "init: pivoted, old root detached, cwd verified",
        "command: capabilities verified",
        "command: ready to exec",
        "init: command reaped",
        "runner: measured, cgroup removed",
        "cli: done",
    ] {
        assert!(stages.iter().any(|(_, s)| *s == stage), "no {stage}: {err}");
    }
    // Without the variable: nothing on stderr.
    let out = run_sh(mode, &[], "true");
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
}

both_modes!(startup_trace_reports_every_stage, super::startup_trace);

fn clean_environment(mode: Mode) {
    let deleg = Delegation::new(mode);
    let mut cmd = runner(mode);
    cmd.env("CLOISTER_SECRET_TOKEN", "leak");
    cmd.args(run_args(&[
        "--cgroup-parent",
        &deleg.parent_arg,
        "--env",
        "FOO=bar",
        "--env",
        "SOURCE_DATE_EPOCH=1700000000",
        "--",
        "/usr/bin/env",
    ]));
    let out = output_within(cmd, Duration::from_secs(60));
    assert!(out.status.success());
    let mut vars: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    vars.sort();
    assert_eq!(
        vars,
        vec![
            "FOO=bar",
            "HOME=/tmp",
            "LANG=C.UTF-8",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "SOURCE_DATE_EPOCH=1700000000",
            "TMPDIR=/tmp",
        ]
    );
}

both_modes!(environment_is_clean, super::clean_environment);

fn binds_and_workdir(mode: Mode) {
    let rw = shared_dir(true);
    let ro = shared_dir(false);
    std::fs::write(ro.path().join("input"), "in").unwrap();
    let out = run_sh(
        mode,
        &[
            "--bind",
            &format!("{}:/work/out", rw.path().display()),
            "--ro-bind",
            &format!("{}:/work/src", ro.path().display()),
            "--workdir",
            "/work/out",
        ],
        "pwd; cat ../src/input > result; echo x > ../src/input 2>/dev/null && echo wrote-ro; true",
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().next(), Some("/work/out"));
    assert!(!text.contains("wrote-ro"));
    assert_eq!(
        std::fs::read_to_string(rw.path().join("result")).unwrap(),
        "in"
    );
    assert_eq!(
        std::fs::read_to_string(ro.path().join("input")).unwrap(),
        "in"
    );
    // a workdir that does not exist in the sandbox is a setup failure
    let out = run_sh(mode, &["--workdir", "/does/not/exist"], "true");
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("workdir"));
}

both_modes!(binds_and_workdir_behave, super::binds_and_workdir);

fn bad_binds(mode: Mode) {
    for bind in [
        "/proc:/x",
        "/:/host",
        "/sys/kernel:/k",
        "/tmp:/proc/x",
        "/tmp:relative",
    ] {
        let out = run_sh(mode, &["--bind", bind], "true");
        assert_ne!(out.status.code(), Some(0), "{bind} accepted");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    }
}

both_modes!(dangerous_binds_are_refused, super::bad_binds);

fn image_rootfs(mode: Mode) {
    // A tiny image: a static busybox and its applet links.
    let image = shared_dir(false);
    let bin = image.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let busybox = std::path::Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "busybox-static is installed by .ci/setup.d/10-sandbox.sh"
    );
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    for applet in ["sh", "ls", "cat", "id"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let out = run_sh(
        mode,
        &["--rootfs", &image.path().display().to_string()],
        "ls /; test -e /usr && echo host-usr-visible; cat /etc/hosts; echo > /bin/x 2>/dev/null && echo image-writable; true",
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let top: Vec<&str> = text
        .lines()
        .take_while(|l| !l.contains("localhost"))
        .collect();
    assert!(top.contains(&"bin"), "{text}");
    assert!(!text.contains("host-usr-visible"), "{text}");
    assert!(!text.contains("image-writable"), "{text}");
    assert!(
        text.contains("127.0.0.1\tlocalhost"),
        "synthesized /etc: {text}"
    );
}

both_modes!(image_rootfs_replaces_host_binds, super::image_rootfs);

/// A profile's `noexec` on a host bind takes effect (it is not dropped in
/// favour of the default read-only, nosuid, nodev flags).
fn noexec_host_bind(mode: Mode) {
    let dir = shared_dir(false);
    let mut p: serde_json::Value =
        serde_json::from_str(include_str!("../../../sandbox-profiles/default.json")).unwrap();
    p["mounts"].as_array_mut().unwrap().push(serde_json::json!(
        {"destination": "/nx", "type": "bind", "source": "/usr/bin", "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}
    ));
    let path = dir.path().join("noexec.json");
    std::fs::write(&path, p.to_string()).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_sh(
        mode,
        &["--profile", path.to_str().unwrap()],
        "/usr/bin/true && echo exec-ok; /nx/true; echo \"nx=$?\"",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("exec-ok"), "{stdout} {out:?}");
    assert!(stdout.contains("nx=126"), "{stdout} {out:?}");
}

both_modes!(noexec_on_a_host_bind_takes_effect, super::noexec_host_bind);

#[test]
fn refused_profiles_fail_check_and_run_with_the_reason() {
    let dir = shared_dir(false);
    let default: serde_json::Value =
        serde_json::from_str(include_str!("../../../sandbox-profiles/default.json")).unwrap();
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "hostnet",
            Box::new(|p| {
                p["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|n| n["type"] != "network")
            }),
            "shares the host net namespace",
        ),
        (
            "cap",
            Box::new(|p| {
                p["process"]["capabilities"]["bounding"] = serde_json::json!(["CAP_SYS_ADMIN"])
            }),
            "grants capability CAP_SYS_ADMIN",
        ),
        (
            "hostpath",
            Box::new(|p| {
                p["mounts"].as_array_mut().unwrap().push(serde_json::json!(
                    {"destination": "/home", "type": "bind", "source": "/home", "options": ["rbind", "ro"]}
                ))
            }),
            "outside the allow-list",
        ),
    ];
    let staged = staged();
    let runner = &staged.runner;
    for (name, edit, reason) in cases {
        let mut p = default.clone();
        edit(&mut p);
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, p.to_string()).unwrap();
        let out = Command::new(runner)
            .args(["profile", "check"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(reason), "{name}: {err}");
        let out = Command::new(runner)
            .args(["run", "--profile"])
            .arg(&path)
            .args(["--", "/bin/true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(125), "{name}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(reason),
            "{name}"
        );
    }
    // and the shipped ones pass, printing their digest
    for name in ["default", "dev"] {
        let out = Command::new(runner)
            .args(["profile", "check", name])
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}");
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("sha256:"));
    }
}

fn setup_never_writes_through_links_or_binds(mode: Mode) {
    // The host directory a hostile image's links point at (through the
    // host root that is reachable during setup).
    let host = shared_dir(true);
    let image = shared_dir(false);
    let bin = image.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", bin.join("sh")).unwrap();
    let via_oldroot = format!("/oldroot{}", host.path().display());
    std::os::unix::fs::symlink(&via_oldroot, image.path().join("work")).unwrap();
    std::os::unix::fs::symlink(&via_oldroot, image.path().join("etc")).unwrap();
    let other = shared_dir(false);
    let rootfs = image.path().display().to_string();
    // a bind below the image's link is refused
    let out = run_sh(
        mode,
        &[
            "--rootfs",
            &rootfs,
            "--ro-bind",
            &format!("{}:/work/sub", other.path().display()),
        ],
        "true",
    );
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("symlink"),
        "{out:?}"
    );
    // the image's /etc link is left alone: nothing is synthesized through it
    let out = run_sh(mode, &["--rootfs", &rootfs], "true");
    assert!(out.status.success(), "{out:?}");
    let written: Vec<_> = std::fs::read_dir(host.path()).unwrap().collect();
    assert!(written.is_empty(), "setup wrote into the host: {written:?}");
    // a mount point missing inside a host bind is not created on the host
    let missing = format!("/usr/share/cloister-escape-{}", std::process::id());
    let out = run_sh(
        mode,
        &[
            "--ro-bind",
            &format!("{}:{missing}", other.path().display()),
        ],
        "true",
    );
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(
        !std::path::Path::new(&missing).exists(),
        "created {missing} on the host"
    );
}

both_modes!(
    setup_never_writes_through_links_or_binds,
    super::setup_never_writes_through_links_or_binds
);
