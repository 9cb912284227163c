//! `cloister-runner quickstart --json`: both daemons on embedded defaults,
//! repo A built and verified; the last stdout line is the summary. (With
//! the suite's shared store, so the Rust toolchain is not copied again.)

use super::harness::{rust_toolchain, shared_store};
use cloister_tests::bin;
use std::process::Command;

#[test]
fn quickstart_builds_repo_a_and_verifies_it() {
    let dir = tempfile::Builder::new().prefix("cqs-").tempdir().unwrap();
    let state = dir.path().join("state");
    let out = Command::new(bin("cloister-runner"))
        .args(["quickstart", "--json", "--state-dir"])
        .arg(&state)
        .arg("--store")
        .arg(shared_store())
        .arg("--rust-toolchain")
        .arg(rust_toolchain())
        .env("CLOISTER_ATTESTOR_BIN", bin("cloister-attestor"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["verified"], true);
    for key in ["artifact", "provenance", "bundle", "publicKey"] {
        let p = last[key].as_str().unwrap();
        assert!(std::path::Path::new(p).is_file(), "{key}: {p}");
        assert!(
            p.starts_with(state.to_str().unwrap()),
            "{key} under the state dir: {p}"
        );
    }
    assert!(
        last["provenance"]
            .as_str()
            .unwrap()
            .ends_with("repo-a.intoto.jsonl")
    );
    // A key for the trust portal, of tenant `quickstart` in the attestor's state.
    assert!(last["tenantKey"].as_str().unwrap().starts_with("clst_"));
    assert!(last["portal"].as_str().unwrap().ends_with("/portal/"));
    let keys = Command::new(bin("cloister-attestor"))
        .args(["api-keys", "list", "quickstart", "--json", "--state-dir"])
        .arg(state.join("attestor"))
        .output()
        .unwrap();
    let keys: serde_json::Value = serde_json::from_slice(&keys.stdout).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1);
    // Both daemons were stopped: their sockets are gone.
    assert!(!state.join("runner.sock").exists());
    // The artifact runs.
    let run = Command::new(last["artifact"].as_str().unwrap())
        .arg("a b a")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "2 a\n1 b\n");
}

/// The README's daemon example, as written: its `cloister-runner build` and
/// `cloister-attestor verify` lines, read from README.md, run in a checkout
/// of repo A that has no `origin` remote (where a build without `--uri`
/// records `file://…` and the verification fails), with `pub.pem` the
/// attestor's exported public key.
#[test]
fn readme_build_then_verify_example_works_as_written() {
    let stack = super::harness::Stack::start(1);
    let repo = super::harness::fixture_repo(stack.dir.path(), "repo-a");
    assert_eq!(super::harness::git(&repo, &["remote"]), "", "no remote");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let from = readme.find("## Runner daemon and builds").unwrap();
    let block = &readme[from..];
    let block = block[..block.find("\n```\n").unwrap()].replace("\\\n", " ");
    let line = |prefix: &str| -> Vec<String> {
        block
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let build = line("cloister-runner build ");
    let out = Command::new(&stack.runner_bin)
        .args(&build[1..])
        .current_dir(&repo)
        .env("CLOISTER_RUNNER_SOCKET", &stack.api_socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{build:?}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(&stack.public_key, repo.join("pub.pem")).unwrap();
    let verify = line("cloister-attestor verify ");
    let out = Command::new(&stack.attestor_bin)
        .args(&verify[1..])
        .current_dir(&repo)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("PASSED: "),
        "{verify:?}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
