//! Limits and whole-tree kill: memory, pids and cpu limits through the
//! run's cgroup (v1 here; the v2 file writing is unit-tested in the sandbox
//! crate), the wall-clock timeout, and that no process of a run survives it
//! (timeout, normal exit, runner killed), a double-forked setsid'ed
//! grandchild included.

use crate::harness::*;
use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::Duration;

fn memory_limit(mode: Mode) {
    let deleg = Delegation::new(mode);
    let mut cmd = runner(mode);
    cmd.args(run_args(&[
        "--cgroup-parent",
        &deleg.parent_arg,
        "--memory",
        "32M",
        "--json",
        "--",
        PROBE,
        "alloc",
        "512",
    ]));
    let out = output_within(cmd, Duration::from_secs(120));
    let v = last_json(&out);
    assert_eq!(v["limitHit"], "memory", "{v}");
    assert_eq!(v["signal"], libc::SIGKILL, "{v}");
    assert_eq!(out.status.code(), Some(128 + libc::SIGKILL));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("allocated 512"));
    let peak = v["peakMemoryBytes"].as_u64().unwrap();
    assert!(peak <= 32 << 20, "peak {peak} above the limit");
}

both_modes!(memory_limit_kills_the_run, super::memory_limit);

fn pids_limit(mode: Mode) {
    let deleg = Delegation::new(mode);
    let mut cmd = runner(mode);
    cmd.args(run_args(&[
        "--cgroup-parent",
        &deleg.parent_arg,
        "--pids",
        "8",
        "--json",
        "--",
        PROBE,
        "threads",
        "64",
    ]));
    let out = output_within(cmd, Duration::from_secs(120));
    let v = last_json(&out);
    assert_eq!(v["limitHit"], "pids", "{v}");
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(text.lines().next().unwrap()).expect("probe report");
    let started = report["started"].as_u64().unwrap();
    assert!(started < 8, "{started} threads started under a limit of 8");
    assert!(
        report["error"].as_str().unwrap().contains("EAGAIN"),
        "{report}"
    );
}

both_modes!(pids_limit_stops_forks, super::pids_limit);

fn cpu_limit(mode: Mode) {
    let deleg = Delegation::new(mode);
    let mut cmd = runner(mode);
    cmd.args(run_args(&[
        "--cgroup-parent",
        &deleg.parent_arg,
        "--cpus",
        "0.1",
        "--",
        PROBE,
        "spin",
        "400",
    ]));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().expect("probe output").unwrap();
    assert!(ready.starts_with("ready"), "{ready}");
    // The runner is setpriv's exec, so the child's pid is the runner's.
    let runs = deleg.run_dirs(child.id());
    let cpu_dir = runs
        .iter()
        .find(|d| d.join("cpu.cfs_quota_us").exists() || d.join("cpu.max").exists())
        .unwrap_or_else(|| panic!("no cpu cgroup among {runs:?}"));
    if cpu_dir.join("cpu.max").exists() {
        let max = std::fs::read_to_string(cpu_dir.join("cpu.max")).unwrap();
        assert_eq!(max.trim(), "10000 100000");
    } else {
        let quota = std::fs::read_to_string(cpu_dir.join("cpu.cfs_quota_us")).unwrap();
        assert_eq!(quota.trim(), "10000");
    }
    let stat = std::fs::read_to_string(cpu_dir.join("cpu.stat")).unwrap();
    let throttled: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        throttled > 0,
        "the spinning probe was never throttled: {stat}"
    );
    // SIGTERM to the runner: it kills the sandbox, removes the cgroup and
    // exits 128+15.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let out = wait_output(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM), "{out:?}");
    for d in runs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

both_modes!(cpu_limit_throttles_and_cleanup_on_sigterm, super::cpu_limit);

fn timeout(mode: Mode) {
    let deleg = Delegation::new(mode);
    let mark = marker("timeout");
    let mut cmd = runner(mode);
    cmd.args(run_args(&[
        "--cgroup-parent",
        &deleg.parent_arg,
        "--timeout",
        "1",
        "--json",
        "--",
        PROBE,
        "tree",
        &mark,
    ]));
    // output_within also waits for stdout EOF: the grandchild holds stdout,
    // so this returns only once it is dead too.
    let out = output_within(cmd, Duration::from_secs(60));
    let v = last_json(&out);
    assert_eq!(v["limitHit"], "timeout", "{v}");
    assert_eq!(out.status.code(), Some(128 + libc::SIGKILL));
    assert!(String::from_utf8_lossy(&out.stdout).contains("grandchild"));
    assert_eq!(processes_with(&mark), Vec::<String>::new());
}

both_modes!(timeout_kills_the_whole_tree, super::timeout);

fn exit_kills_stragglers(mode: Mode) {
    let deleg = Delegation::new(mode);
    let mark = marker("exit");
    let mut cmd = runner(mode);
    cmd.args(run_args(&[
        "--cgroup-parent",
        &deleg.parent_arg,
        "--",
        PROBE,
        "tree",
        &mark,
        "--exit",
    ]));
    let out = output_within(cmd, Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ready"));
    assert_eq!(processes_with(&mark), Vec::<String>::new());
}

both_modes!(
    command_exit_kills_leftover_processes,
    super::exit_kills_stragglers
);

fn runner_death(mode: Mode) {
    let deleg = Delegation::new(mode);
    let mark = marker("death");
    let mut cmd = runner(mode);
    cmd.args(run_args(&[
        "--cgroup-parent",
        &deleg.parent_arg,
        "--",
        PROBE,
        "tree",
        &mark,
    ]));
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !seen.contains("ready") {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "probe ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // The grandchild is running (its cmdline can take a moment to be
    // readable while it starts).
    let mut grandchild = Vec::new();
    for _ in 0..100 {
        grandchild = processes_with(&format!("grandchild {mark}"));
        if grandchild.len() == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if grandchild.len() != 1 {
        let _ = child.kill();
        let ps = std::process::Command::new("ps")
            .args(["-eo", "pid,ppid,stat,user,cmd"])
            .output()
            .unwrap();
        panic!(
            "expected one grandchild running: {grandchild:?} all: {:?} (output: {seen}) ps: {}",
            processes_with(&mark),
            String::from_utf8_lossy(&ps.stdout)
        );
    }
    // SIGKILL: the runner gets no chance to clean up; the kernel must.
    child.kill().unwrap();
    let _ = child.wait();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = out.read_to_end(&mut rest);
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("a sandbox process outlived the runner (stdout still open)");
    assert_eq!(processes_with(&mark), Vec::<String>::new());
    // The killed runner could not remove its cgroup; the next run below the
    // same parent removes it once it is empty.
    let stale = deleg.run_dirs(child.id());
    let mut removed = false;
    for _ in 0..200 {
        let mut cmd = runner(mode);
        cmd.args(run_args(&[
            "--cgroup-parent",
            &deleg.parent_arg,
            "--",
            "/bin/true",
        ]));
        let out = output_within(cmd, Duration::from_secs(60));
        assert!(out.status.success(), "{out:?}");
        if stale.iter().all(|d| !d.exists()) {
            removed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(removed, "stale run cgroups {stale:?} not removed");
}

both_modes!(runner_death_kills_the_whole_tree, super::runner_death);

#[test]
fn rootless_without_a_writable_cgroup_refuses_required_limits() {
    let _staged = staged();
    // No --cgroup-parent: the test user cannot write the runner's cgroup.
    let mut cmd = runner(Mode::Rootless);
    cmd.args(run_args(&["--", PROBE, "syscalls"]));
    let out = output_within(cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot apply the pids limit"), "{err}");
    assert_eq!(err.lines().count(), 1, "one-line reason: {err}");
    // The dev profile marks limits optional: it runs and says so.
    let mut cmd = runner(Mode::Rootless);
    cmd.args(run_args(&["--profile", "dev", "--json", "--", "/bin/true"]));
    let out = output_within(cmd, Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
    let v = last_json(&out);
    assert_eq!(v["unappliedLimits"], serde_json::json!(["pids"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not applied"));
}
