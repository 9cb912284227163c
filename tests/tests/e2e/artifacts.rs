//! `cloister-runner artifacts JOB`: a finished job's artifacts and provenance
//! fetched afterwards through the API, streamed, and checked against the
//! subject digest the job recorded (and the provenance names).

use super::harness::{Stack, repo_with, sha256_file};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const URI: &str = "git+https://github.com/cloister-dev/artifacts";

/// Names of the entries of `dir` (hidden ones included), sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn artifacts_download_whole_and_a_tampered_artifact_is_refused() {
    let stack = Stack::start(1);
    let repo = stack.dir.path().join("repo");
    // 3 MiB, executable: more than one buffer of the stream, and a mode to keep.
    repo_with(
        &repo,
        &[(
            "build.sh",
            "head -c 3145728 /dev/urandom > out.bin\nchmod +x out.bin\n",
        )],
    );
    let (code, job, stderr) = stack.build(
        &repo,
        &["--uri", URI, "--output", "out.bin"],
        &["sh", "build.sh"],
    );
    assert_eq!(code, 0, "{stderr}\n{job}");
    let id = job["id"].as_str().unwrap();
    let a = &job["result"]["artifacts"][0];
    let (daemon_copy, digest) = (a["path"].as_str().unwrap(), a["digest"].as_str().unwrap());

    let out = stack.dir.path().join("fetched");
    let o = stack.runner(&[
        "artifacts",
        id,
        "--out-dir",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let record: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let fetched = &record["result"]["artifacts"][0];
    let path = fetched["path"].as_str().unwrap();
    assert_eq!(Path::new(path), out.join("out.bin"));
    assert_eq!(sha256_file(path), digest);
    assert_eq!(
        std::fs::read(path).unwrap(),
        std::fs::read(daemon_copy).unwrap()
    );
    assert_eq!(
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        entries(&out),
        ["out.bin", "out.bin.intoto.jsonl", "out.bin.sigstore.json"]
    );
    let v = stack.verify(fetched["provenance"].as_str().unwrap(), path, URI, &[]);
    assert_eq!(v["verified"], true, "{v}");

    // The daemon's copy changes after the job: the download is refused and
    // leaves nothing (no partial file either).
    let mut bytes = std::fs::read(daemon_copy).unwrap();
    bytes[1_000_000] ^= 1;
    std::fs::write(daemon_copy, &bytes).unwrap();
    let tampered = stack.dir.path().join("tampered");
    let o = stack.runner(&["artifacts", id, "--out-dir", tampered.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("recorded subject digest"), "{err}");
    assert!(err.contains(digest), "{err}");
    assert_eq!(entries(&tampered), Vec::<String>::new());
}

#[test]
fn a_job_that_did_not_succeed_has_no_artifacts() {
    let stack = Stack::start(1);
    let repo = stack.dir.path().join("repo");
    repo_with(&repo, &[("build.sh", "exit 3\n")]);
    let (code, job, _) = stack.build(&repo, &["--output", "out"], &["sh", "build.sh"]);
    assert_eq!(code, 3, "{job}");
    let id = job["id"].as_str().unwrap();
    let dir = stack.dir.path().join("none");
    let o = stack.runner(&["artifacts", id, "--out-dir", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "job {id} is failed: only a succeeded job has artifacts"
        )),
        "{err}"
    );
    let o = stack.runner(&[
        "artifacts",
        "no-such-job",
        "--out-dir",
        dir.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("404"), "{err}");
}
