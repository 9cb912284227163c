//! The front binary (`cloister-runner`: `run` itself, everything else by
//! executing `cloister-runner-full` beside it).

use crate::harness::RUNNER;
use std::os::unix::process::CommandExt as _;
use std::process::Command;

const FULL: &str = env!("CARGO_BIN_EXE_cloister-runner-full");

/// Help, version and errors through the front are the full binary's,
/// byte for byte, exit codes included.
#[test]
fn every_other_subcommand_reaches_the_full_binary_through_the_front() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["jobs", "--help"],
        &["no-such-subcommand"],
        &["store", "gc", "--bogus"],
    ] {
        let front = Command::new(RUNNER).args(args).output().unwrap();
        let full = Command::new(FULL)
            .arg0("cloister-runner")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(front.status.code(), full.status.code(), "{args:?}");
        assert_eq!(front.stdout, full.stdout, "{args:?}");
        assert_eq!(front.stderr, full.stderr, "{args:?}");
    }
    let help = Command::new(RUNNER).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for sub in ["run", "serve", "build", "quickstart", "store"] {
        assert!(
            help.contains(&format!("  {sub} ")),
            "{sub} missing:\n{help}"
        );
    }
    let bad = Command::new(RUNNER)
        .arg("no-such-subcommand")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// A front installed without the full binary still runs sandboxes, and for
/// anything else says what is missing (exit 125) instead of failing
/// obscurely.
#[test]
fn a_lone_front_runs_sandboxes_and_names_the_missing_binary() {
    let dir = tempfile::tempdir().unwrap();
    let lone = dir.path().join("cloister-runner");
    std::fs::copy(RUNNER, &lone).unwrap();
    let out = output_of_fresh_copy(Command::new(&lone).arg("jobs"));
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cloister-runner-full") && err.contains("install it beside"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = output_of_fresh_copy(Command::new(&lone).args([
        "run",
        "--",
        "/bin/sh",
        "-c",
        "echo sandboxed; exit 7",
    ]));
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "sandboxed\n");
}

/// Runs a binary this test has just copied. Another test thread that forks
/// while the copy's write descriptor is open holds it open in its child
/// until that child execs (close-on-exec), and exec then fails with
/// ETXTBSY; the copy is complete, so trying again shortly is correct.
fn output_of_fresh_copy(cmd: &mut Command) -> std::process::Output {
    for _ in 0..50 {
        match cmd.output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other.unwrap(),
        }
    }
    panic!("the copied binary stayed busy (ETXTBSY)")
}
