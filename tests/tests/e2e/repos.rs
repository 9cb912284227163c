//! Repos A (Rust, vendored crates, `--frozen`), B (npm, vendored tarball,
//! offline) and C (C with make), each built end to end through both
//! daemons, verified with `cloister-attestor verify` and with the external
//! verifiers (securesystemslib, sigstore-js), checked against what the
//! runner observed, and rebuilt to the same artifact digest.

use super::harness::{
    Stack, fixture_repo, git, rust_toolchain, securesystemslib_verify, sha256_file,
    sigstore_js_verify, statement,
};
use std::process::Command;

fn end_to_end(name: &str, uri: &str, flags: &[&str], command: &[&str], artifact_name: &str) {
    let stack = Stack::start(2);
    let repo = fixture_repo(stack.dir.path(), name);
    let commit = git(&repo, &["rev-parse", "HEAD"]);
    let out1 = stack.dir.path().join("out1");
    let mut extra = vec!["--uri", uri, "--out-dir", out1.to_str().unwrap()];
    extra.extend_from_slice(flags);
    let (code, job, stderr) = stack.build(&repo, &extra, command);
    let id = job["id"].as_str().unwrap_or("?").to_string();
    assert_eq!(code, 0, "{name}: {stderr}\n{job}\n{}", stack.log(&id));
    assert_eq!(job["state"], "succeeded");
    let artifacts = job["result"]["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 1, "{job}");
    let a = &artifacts[0];
    assert_eq!(a["name"], artifact_name);
    let (path, provenance, bundle) = (
        a["path"].as_str().unwrap(),
        a["provenance"].as_str().unwrap(),
        a["bundle"].as_str().unwrap(),
    );
    assert_eq!(path, out1.join(artifact_name).to_str().unwrap());
    assert_eq!(
        provenance,
        format!("{path}.intoto.jsonl"),
        "provenance beside the artifact"
    );
    assert_eq!(bundle, format!("{path}.sigstore.json"));
    let digest = a["digest"].as_str().unwrap();
    assert_eq!(
        digest,
        sha256_file(path),
        "the subject is the artifact's sha256"
    );
    // The build's stderr said where things are.
    assert!(stderr.contains(&format!("artifact:   {path}")), "{stderr}");

    // Our verifier, on both files.
    for file in [provenance, bundle] {
        let v = stack.verify(file, path, uri, &["--source-branch", "main"]);
        assert_eq!(v["verified"], true, "{file}: {v}");
        assert_eq!(v["slsaLevel"], 3);
        assert_eq!(
            v["subject"]["digest"]["sha256"],
            digest.trim_start_matches("sha256:")
        );
    }
    // …which does reject a wrong source or branch (the checks can fail).
    let v = stack.verify(provenance, path, "git+https://github.com/evil/fork", &[]);
    assert_eq!(v["verified"], false, "{v}");
    let v = stack.verify(provenance, path, uri, &["--source-branch", "release"]);
    assert_eq!(v["verified"], false, "{v}");

    // External verifiers we did not write.
    let o = securesystemslib_verify(provenance, &stack.public_key);
    assert!(
        o.status.success(),
        "securesystemslib: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let o = sigstore_js_verify(bundle, &stack.public_key);
    assert!(
        o.status.success(),
        "sigstore-js: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    // The statement holds what the runner observed.
    let st = statement(provenance);
    let text = st.to_string();
    assert!(
        text.contains(&commit),
        "gitCommit {commit} in provenance: {text}"
    );
    assert_eq!(
        st["predicate"]["runDetails"]["metadata"]["invocationId"],
        id.as_str()
    );
    assert_eq!(
        st["predicate"]["buildDefinition"]["internalParameters"]["isolation"]["network"],
        "none"
    );
    let log_digest = job["result"]["logDigest"].as_str().unwrap();
    assert!(
        text.contains(log_digest.trim_start_matches("sha256:")),
        "log digest {log_digest} is a byproduct"
    );
    if flags.contains(&"--vendor") {
        assert!(
            text.contains("snapshot:vendor"),
            "vendored snapshot in resolvedDependencies: {text}"
        );
    }
    let bd = &st["predicate"]["buildDefinition"];
    if flags.contains(&"--toolchain") {
        // The Rust toolchain is an input with a digest: the snapshot of the
        // toolchain, recomputed here from its directory by a separate
        // `cloister-runner snapshot --no-store` (GNU tar equivalence of the
        // digest is checked on a small toolchain in `toolchains`).
        assert_eq!(
            bd["externalParameters"]["toolchains"],
            serde_json::json!(["rust"])
        );
        let sysroot = std::fs::canonicalize(rust_toolchain()).unwrap();
        let dep = toolchain_dependency(&st, "rust");
        assert_eq!(dep["uri"], format!("file://{}", sysroot.display()));
        assert_eq!(dep["mediaType"], "application/x-tar");
        let recomputed = Command::new(&stack.runner_bin)
            .args(["snapshot", "--no-store"])
            .arg(&sysroot)
            .output()
            .unwrap();
        assert!(recomputed.status.success());
        assert_eq!(
            format!("sha256:{}", dep["digest"]["sha256"].as_str().unwrap()),
            String::from_utf8_lossy(&recomputed.stdout).trim(),
            "the provenance names the sysroot's snapshot"
        );
    } else {
        assert_eq!(
            bd["externalParameters"]["toolchains"],
            serde_json::json!([])
        );
        assert!(!text.contains("toolchain:"), "{text}");
    }

    // Rebuilt: a new job, the same bytes.
    let out2 = stack.dir.path().join("out2");
    let mut extra = vec!["--uri", uri, "--out-dir", out2.to_str().unwrap()];
    extra.extend_from_slice(flags);
    let (code, job2, stderr) = stack.build(&repo, &extra, command);
    assert_eq!(code, 0, "rebuild: {stderr}");
    assert_ne!(job2["id"], job["id"]);
    assert_eq!(
        job2["result"]["artifacts"][0]["digest"], digest,
        "{name} is reproducible"
    );
    // Nothing of the workspaces is left.
    let work = stack.dir.path().join("runner/work");
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "workspaces deleted"
    );
}

/// The `toolchain:<name>` entry of a statement's resolvedDependencies.
pub fn toolchain_dependency(st: &serde_json::Value, name: &str) -> serde_json::Value {
    st["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == format!("toolchain:{name}").as_str())
        .unwrap_or_else(|| panic!("no toolchain:{name} dependency: {st}"))
        .clone()
}

#[test]
fn repo_a_rust_vendored_frozen() {
    end_to_end(
        "repo-a",
        "git+https://github.com/cloister-dev/repo-a",
        &[
            "--vendor",
            "vendor",
            "--toolchain",
            "rust",
            "--output",
            "target/release/repo-a",
        ],
        &["cargo", "build", "--release", "--frozen", "--offline"],
        "repo-a",
    );
}

#[test]
fn repo_b_npm_offline_from_vendored_tarball() {
    end_to_end(
        "repo-b",
        "git+https://github.com/cloister-dev/repo-b",
        &[
            "--vendor",
            "vendor",
            "--env",
            "npm_config_update_notifier=false",
            "--output",
            "cloister-repo-b-*.tgz",
        ],
        &[
            "sh",
            "-c",
            "npm ci --offline --ignore-scripts --no-audit --no-fund --cache \"$TMPDIR/npm-cache\" \
             && npm run build && npm test && npm pack --cache \"$TMPDIR/npm-cache\"",
        ],
        "cloister-repo-b-1.0.0.tgz",
    );
}

#[test]
fn repo_c_c_with_make() {
    end_to_end(
        "repo-c",
        "git+https://github.com/cloister-dev/repo-c",
        &["--output", "build/hello"],
        &["sh", "-c", "make && make check"],
        "hello",
    );
}
