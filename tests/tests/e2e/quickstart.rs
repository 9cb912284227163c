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
