//! Toolchains are hermetic inputs: the daemon snapshots each configured
//! directory into the store at start-up, builds see that snapshot (not the
//! live host directory) read-only, and the verified provenance names it by
//! digest. A change on the host reaches builds only after a re-snapshot
//! (SIGHUP), and then the provenance names the new digest.

use super::harness::{Stack, repo_with};
use super::repos::toolchain_dependency;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const URI: &str = "git+https://github.com/cloister-dev/uses-toolchain";

fn write_toolchain(dir: &Path, version: &str) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let greet = dir.join("bin/greet");
    std::fs::write(&greet, format!("#!/bin/sh\necho greet {version}\n")).unwrap();
    std::fs::set_permissions(&greet, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("VERSION"), format!("{version}\n")).unwrap();
}

/// Builds the repo with toolchain `demo`; returns (output text, the
/// toolchain digest in the verified provenance, the statement).
fn build(stack: &Stack, repo: &Path, out: &str) -> (String, String, serde_json::Value) {
    let out_dir = stack.dir.path().join(out);
    let (path, st) = stack.build_verified(
        repo,
        URI,
        &[
            "--toolchain",
            "demo",
            "--output",
            "out.txt",
            "--out-dir",
            out_dir.to_str().unwrap(),
        ],
        &["sh", "build.sh"],
    );
    let dep = toolchain_dependency(&st, "demo");
    let digest = format!("sha256:{}", dep["digest"]["sha256"].as_str().unwrap());
    (std::fs::read_to_string(path).unwrap(), digest, st)
}

#[test]
fn toolchain_is_a_pinned_snapshot_named_in_provenance_until_sighup() {
    let tc = tempfile::Builder::new().prefix("tc-").tempdir().unwrap();
    let tc_dir = std::fs::canonicalize(tc.path()).unwrap().join("demo");
    write_toolchain(&tc_dir, "v1");
    let v1 = cloister_tests::gnu_tar_digest(&tc_dir);
    let stack = Stack::start_with(1, &[("demo", &tc_dir)]);
    assert!(
        stack.runner_log().contains(&v1),
        "the daemon logged the snapshot it took at start-up:\n{}",
        stack.runner_log()
    );

    let repo = stack.dir.path().join("repo");
    repo_with(
        &repo,
        &[(
            "build.sh",
            // The toolchain is on PATH and read-only.
            "greet > out.txt\ncat /opt/toolchains/demo/VERSION >> out.txt\n\
             if touch /opt/toolchains/demo/VERSION 2>/dev/null; then echo writable; exit 3; fi\n",
        )],
    );
    let (text, digest, st) = build(&stack, &repo, "out1");
    assert_eq!(text, "greet v1\nv1\n");
    assert_eq!(digest, v1, "provenance names the snapshot the build saw");
    let bd = &st["predicate"]["buildDefinition"];
    assert_eq!(
        bd["externalParameters"]["toolchains"],
        serde_json::json!(["demo"])
    );
    let dep = toolchain_dependency(&st, "demo");
    assert_eq!(dep["uri"], format!("file://{}", tc_dir.display()));
    assert_eq!(dep["mediaType"], "application/x-tar");

    // Changed on the host: builds still get the start-up snapshot.
    write_toolchain(&tc_dir, "v2");
    let v2 = cloister_tests::gnu_tar_digest(&tc_dir);
    assert_ne!(v1, v2);
    let (text, digest, _) = build(&stack, &repo, "out2");
    assert_eq!(
        text, "greet v1\nv1\n",
        "the live host directory is not mounted"
    );
    assert_eq!(digest, v1);

    // SIGHUP re-snapshots; the next build sees and records the new tree.
    stack.sighup_and_wait_log("toolchains re-snapshotted", 1);
    let (text, digest, _) = build(&stack, &repo, "out3");
    assert_eq!(text, "greet v2\nv2\n");
    assert_eq!(digest, v2, "provenance names the new snapshot");

    // A toolchain the runner does not have is refused at submit.
    let (code, job, stderr) = stack.build(
        &repo,
        &["--uri", URI, "--toolchain", "gcc", "--output", "out.txt"],
        &["sh", "build.sh"],
    );
    assert_ne!(code, 0);
    assert!(job.is_null(), "no job was created: {job}");
    assert!(
        stderr.contains("toolchain \"gcc\" is not configured on this runner")
            && stderr.contains("demo"),
        "{stderr}"
    );
}
