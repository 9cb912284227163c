//! Job lifecycle through the real sandbox: cancel (queued and running),
//! the bounded queue, crash recovery, SIGTERM drain, hostile outputs, and
//! nothing persisting between builds. No attestor runs here, so builds that
//! get past their outputs fail at `attesting`; the states and exit codes
//! before that are what these tests check.

use crate::harness::{Daemon, job_log, repo_with, run_job, spec, submit, wait_job};
use cloister_runner::client::{ClientError, Endpoint};
use std::time::{Duration, Instant};

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(marker) {
                pids.push(pid);
            }
        }
    }
    pids
}

fn wait_gone(marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !processes_with(marker).is_empty() {
        assert!(
            Instant::now() < deadline,
            "processes with {marker} still alive"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A unique `sleep` duration per test so /proc can be searched for it.
fn marker(n: u32) -> String {
    format!("{}.{n}", 3000 + std::process::id() % 1000)
}

async fn wait_state(ep: &Endpoint, id: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job: serde_json::Value = ep
            .json(hyper::Method::GET, &format!("/v1/jobs/{id}"), None)
            .await
            .unwrap();
        if job["state"] == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never reached {state}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_log(ep: &Endpoint, id: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if job_log(ep, id).await.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} log never showed {needle}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cancel(ep: &Endpoint, id: &str) -> serde_json::Value {
    ep.json(hyper::Method::POST, &format!("/v1/jobs/{id}/cancel"), None)
        .await
        .unwrap()
}

fn reason(job: &serde_json::Value) -> &str {
    job["reason"].as_str().unwrap_or_default()
}

fn sleeper(d: &Daemon, m: &str) -> serde_json::Value {
    let repo = d.dir.path().join(format!("repo-{m}"));
    let commit = repo_with(
        &repo,
        &[("build.sh", &format!("echo started\nexec sleep {m}\n"))],
    );
    spec(&repo, &commit, &["sh", "build.sh"], &["out"])
}

#[tokio::test]
async fn cancel_a_running_job_kills_its_build() {
    let d = Daemon::start("", "");
    let ep = d.endpoint();
    let m = marker(1);
    let id = submit(&ep, &sleeper(&d, &m)).await;
    wait_log(&ep, &id, "stdout | started").await;
    assert!(!processes_with(&m).is_empty());
    let job = cancel(&ep, &id).await;
    assert_eq!(job["state"], "cancelled", "{job}");
    assert_eq!(job["reason"], "cancelled by a client");
    wait_gone(&m);
    assert!(
        !d.state.join("work").join(&id).exists(),
        "the workspace is deleted"
    );
    // Cancelling again is a conflict, not a change.
    let err = ep
        .call(hyper::Method::POST, &format!("/v1/jobs/{id}/cancel"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Status { status, .. } if status == 409),
        "{err}"
    );
}

#[tokio::test]
async fn cancel_a_queued_job_and_the_queue_is_bounded() {
    let d = Daemon::start("concurrency = 1\nqueue_capacity = 1", "");
    let ep = d.endpoint();
    let m = marker(2);
    let running = submit(&ep, &sleeper(&d, &m)).await;
    wait_state(&ep, &running, "running").await;
    let queued = submit(&ep, &sleeper(&d, &marker(3))).await;
    // The queue holds one job: a third is refused with 503 queue_full.
    let err = ep
        .call(
            hyper::Method::POST,
            "/v1/jobs",
            Some(sleeper(&d, &marker(4)).to_string().into_bytes()),
        )
        .await
        .unwrap_err();
    match err {
        ClientError::Status { status, body, .. } => {
            assert_eq!(status, 503);
            assert!(body.contains("queue is full"), "{body}");
        }
        other => panic!("expected 503, got {other}"),
    }
    let job = cancel(&ep, &queued).await;
    assert_eq!(job["state"], "cancelled");
    assert!(
        job["startedAt"].is_null(),
        "a cancelled queued job never started: {job}"
    );
    // The slot is free again once the dispatcher passes the cancelled job.
    let _ = cancel(&ep, &running).await;
    wait_gone(&m);
    let job = wait_job(&ep, &queued).await;
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(
        processes_with(&marker(3)).is_empty(),
        "the cancelled queued job never ran"
    );
}

#[tokio::test]
async fn crash_and_restart_keep_history_fail_interrupted_and_resume_queued() {
    let mut d = Daemon::start("concurrency = 1", "");
    let ep = d.endpoint();
    let m = marker(5);
    let interrupted = submit(&ep, &sleeper(&d, &m)).await;
    wait_log(&ep, &interrupted, "stdout | started").await;
    let repo = d.dir.path().join("quick");
    let commit = repo_with(&repo, &[("build.sh", "echo quick > out\n")]);
    let queued = submit(&ep, &spec(&repo, &commit, &["sh", "build.sh"], &["out"])).await;
    d.kill();
    // The build dies with the daemon (parent-death signal), not at its timeout.
    wait_gone(&m);
    d.spawn(&[]);
    let ep = d.endpoint();
    let job = wait_job(&ep, &interrupted).await;
    assert_eq!(job["state"], "failed");
    assert!(reason(&job).starts_with("interrupted"), "{job}");
    let job = wait_job(&ep, &queued).await;
    // It ran after the restart: the build exited 0 (attestation then fails: no attestor here).
    assert_eq!(job["exitCode"], 0, "{job}");
    let jobs: Vec<serde_json::Value> = ep.json(hyper::Method::GET, "/v1/jobs", None).await.unwrap();
    assert_eq!(jobs.len(), 2, "history kept: {jobs:?}");
}

#[tokio::test]
async fn sigterm_drains_running_jobs_fail_after_grace_queued_stay() {
    let mut d = Daemon::start("concurrency = 1\nshutdown_grace_secs = 1", "");
    let ep = d.endpoint();
    let m = marker(6);
    let running = submit(&ep, &sleeper(&d, &m)).await;
    wait_log(&ep, &running, "stdout | started").await;
    let queued = submit(&ep, &sleeper(&d, &marker(7))).await;
    let status = d.stop();
    assert!(status.success(), "{status}\n{}", d.daemon_log());
    wait_gone(&m);
    d.spawn(&[]);
    let ep = d.endpoint();
    let job: serde_json::Value = ep
        .json(hyper::Method::GET, &format!("/v1/jobs/{running}"), None)
        .await
        .unwrap();
    assert_eq!(job["state"], "failed");
    assert!(reason(&job).contains("grace period"), "{job}");
    // The queued job was kept and runs now.
    wait_log(&ep, &queued, "stdout | started").await;
    let _ = cancel(&ep, &queued).await;
    wait_gone(&marker(7));
}

#[tokio::test]
async fn symlink_output_pointing_out_of_the_workspace_fails_the_job() {
    let d = Daemon::start("", "");
    let ep = d.endpoint();
    let repo = d.dir.path().join("hostile");
    let commit = repo_with(
        &repo,
        &[(
            "build.sh",
            "mkdir -p dist\necho ok > dist/app\nln -s /etc/shadow dist/app.sig\n",
        )],
    );
    let id = submit(&ep, &spec(&repo, &commit, &["sh", "build.sh"], &["dist/*"])).await;
    let job = wait_job(&ep, &id).await;
    assert_eq!(job["state"], "failed");
    assert_eq!(job["exitCode"], 0);
    let reason = reason(&job);
    assert!(reason.contains("dist/app.sig is a symlink"), "{reason}");
    assert!(
        !d.state.join("artifacts").join(&id).exists(),
        "nothing is kept from a failed job"
    );
}

#[tokio::test]
async fn nothing_persists_between_builds() {
    let d = Daemon::start("concurrency = 1", "");
    let ep = d.endpoint();
    let repo = d.dir.path().join("persist");
    let script = "\
if [ \"$1\" = write ]; then
  echo planted > /workspace/planted; echo planted > /tmp/planted; echo planted > \"$HOME/planted\"
  echo planted > vendor/planted && exit 3
  echo out > out; exit 0
fi
for f in /workspace/planted /tmp/planted \"$HOME/planted\" vendor/planted; do
  [ -e \"$f\" ] && { echo \"found $f\"; exit 4; }
done
echo clean > out
";
    // Content of its own (the test store is shared by every test and run),
    // so that the first job's snapshot is new to the store.
    let dep = format!("dep of {}", repo.display());
    let commit = repo_with(&repo, &[("build.sh", script), ("vendor/dep.txt", &dep)]);
    let mut first = spec(&repo, &commit, &["sh", "build.sh", "write"], &["out"]);
    first["vendor"] = serde_json::json!([{"path": "vendor"}]);
    let job = run_job(&ep, &first).await;
    let log = job_log(&ep, job["id"].as_str().unwrap()).await;
    // The vendor snapshot is read-only: the write there failed, the rest ran.
    assert_eq!(job["exitCode"], 0, "{job}\n{log}");
    assert!(
        log.contains("(1 files, snapshotted into the store)"),
        "{log}"
    );
    let mut second = spec(&repo, &commit, &["sh", "build.sh", "check"], &["out"]);
    second["vendor"] = serde_json::json!([{"path": "vendor"}]);
    let job = run_job(&ep, &second).await;
    let log = job_log(&ep, job["id"].as_str().unwrap()).await;
    assert_eq!(job["exitCode"], 0, "{job}\n{log}");
    assert!(log.contains("vendor vendor → sha256:"), "{log}");
    // The second checkout's vendor dir is read again (a fresh checkout has
    // no warm record), and its digest is found in the store.
    assert!(
        log.contains("(1 files, already in the store: same digest)"),
        "{log}"
    );
}

/// The daemon snapshots only what the job may name: a vendor path that
/// leads out of the workspace through a symlink, or a host path outside the
/// configured vendor roots, fails the job before anything is read.
#[tokio::test]
async fn vendor_paths_cannot_reach_host_directories() {
    let d = Daemon::start("", "");
    let ep = d.endpoint();
    let secret = d.dir.path().join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("key.pem"), "PRIVATE").unwrap();
    let repo = d.dir.path().join("sneaky");
    let commit = repo_with(&repo, &[("build.sh", "cat deps/x/key.pem > out\n")]);
    std::os::unix::fs::symlink(&secret, repo.join("hop")).unwrap();
    crate::harness::git(&repo, &["add", "hop"]);
    crate::harness::git(&repo, &["commit", "-qm", "link"]);
    let commit2 = crate::harness::git(&repo, &["rev-parse", "HEAD"]);
    assert_ne!(commit, commit2);
    let mut s = spec(&repo, &commit2, &["sh", "build.sh"], &["out"]);
    s["vendor"] = serde_json::json!([{"path": "hop", "dest": "deps/x"}]);
    let job = run_job(&ep, &s).await;
    assert_eq!(job["state"], "failed");
    // named as the symlink it is, as the other symlink cases are
    assert!(
        reason(&job).contains("vendor hop is a symlink: name the directory itself"),
        "{job}"
    );
    // A file is not a directory.
    let mut s = spec(&repo, &commit2, &["sh", "build.sh"], &["out"]);
    s["vendor"] = serde_json::json!([{"path": "build.sh", "dest": "deps/x"}]);
    let job = run_job(&ep, &s).await;
    assert!(
        reason(&job).contains("vendor build.sh is not a directory"),
        "{job}"
    );
    // Through a symlinked parent directory.
    let mut s = spec(&repo, &commit2, &["sh", "build.sh"], &["out"]);
    s["vendor"] = serde_json::json!([{"path": "hop/.", "dest": "deps/x"}]);
    let job = run_job(&ep, &s).await;
    assert!(reason(&job).contains("leads out of the workspace"), "{job}");
    // An absolute host path with no vendor_roots configured.
    let mut s = spec(&repo, &commit2, &["sh", "build.sh"], &["out"]);
    s["vendor"] = serde_json::json!([{"path": secret, "dest": "deps/x"}]);
    let job = run_job(&ep, &s).await;
    assert!(
        reason(&job).contains("not under the runner's vendor_roots"),
        "{job}"
    );
    assert!(job["exitCode"].is_null(), "nothing ran: {job}");
    // A dest under a symlinked directory: nothing is created or deleted there.
    std::fs::create_dir_all(repo.join("vendor")).unwrap();
    std::fs::write(repo.join("vendor/dep"), "dep").unwrap();
    std::fs::create_dir_all(secret.join("deps")).unwrap();
    crate::harness::git(&repo, &["add", "vendor"]);
    crate::harness::git(&repo, &["commit", "-qm", "vendor"]);
    let commit3 = crate::harness::git(&repo, &["rev-parse", "HEAD"]);
    let mut s = spec(&repo, &commit3, &["sh", "build.sh"], &["out"]);
    s["vendor"] = serde_json::json!([{"path": "vendor", "dest": "hop/deps"}]);
    let job = run_job(&ep, &s).await;
    assert!(reason(&job).contains("passes through a symlink"), "{job}");
    assert!(
        secret.join("deps").is_dir(),
        "the host directory was not touched"
    );
    assert!(secret.join("key.pem").exists());
}

/// An absolute vendor path under a configured vendor root is snapshotted
/// and mounted read-only where `dest` says; the job log says whether the
/// snapshot was taken or reused from the store.
#[tokio::test]
async fn vendor_path_under_a_configured_root_is_mounted_read_only() {
    let roots = tempfile::tempdir().unwrap();
    let store = roots.path().join("pnpm-store");
    std::fs::create_dir_all(&store).unwrap();
    // content of its own: the test store is shared by every test and run
    std::fs::write(
        store.join("pkg.tgz"),
        format!("tarball {}", store.display()),
    )
    .unwrap();
    // The stat cache trusts only entries unchanged for longer than its racy
    // window before a snapshot starts; on a fast machine the first job can
    // start within it, and then nothing is recorded to reuse.
    std::thread::sleep(3 * cloister_inputs::RACY_WINDOW);
    let d = Daemon::start(
        &format!("vendor_roots = [{:?}]", roots.path().display().to_string()),
        "",
    );
    let ep = d.endpoint();
    let repo = d.dir.path().join("uses-store");
    let commit = repo_with(
        &repo,
        &[(
            "build.sh",
            "cat .store/pkg.tgz > out\n! touch .store/new 2>/dev/null || exit 5\n",
        )],
    );
    let mut s = spec(&repo, &commit, &["sh", "build.sh"], &["out"]);
    s["vendor"] = serde_json::json!([{"path": store, "dest": ".store"}]);
    // Twice: the job log says the snapshot was taken, then reused from the
    // store (the directory is unchanged since).
    for said in [
        "(1 files, snapshotted into the store)",
        "(1 files, reused from the store: unchanged since its last snapshot)",
    ] {
        let job = run_job(&ep, &s).await;
        let log = job_log(&ep, job["id"].as_str().unwrap()).await;
        assert_eq!(job["exitCode"], 0, "{job}\n{log}");
        assert!(log.contains("→ sha256:") && log.contains(said), "{log}");
    }
}

/// A build printing far past its log cap (64 MiB of output, a 1 MiB cap):
/// the build runs to its end, the log stops near the cap with a line saying
/// output is discarded, and ends with the count of what was.
#[tokio::test]
async fn output_past_the_log_cap_is_discarded_and_the_build_goes_on() {
    let d = Daemon::start("", "");
    let ep = d.endpoint();
    let repo = d.dir.path().join("loud");
    let script =
        "yes \"$(head -c 1000 /dev/zero | tr '\\0' y)\" | head -c 67108864; echo done > out";
    let commit = repo_with(&repo, &[("build.sh", script)]);
    let mut s = spec(&repo, &commit, &["sh", "build.sh"], &["out"]);
    s["limits"] = serde_json::json!({"logBytes": 1 << 20});
    let job = run_job(&ep, &s).await;
    let id = job["id"].as_str().unwrap();
    // the build finished (no attestor here: the job stops at attesting)
    assert_eq!(job["exitCode"], 0, "{job}");
    assert!(reason(&job).contains("attest"), "{job}");
    let path = d.state.join("logs").join(format!("{id}.log"));
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(
        size > (1 << 20) - (4 << 10) && size < (1 << 20) + (16 << 10),
        "the log is {size} bytes"
    );
    let log = job_log(&ep, id).await;
    assert!(
        log.contains("daemon | the log reached its 1 MiB cap: further build output is discarded (the build goes on)"),
        "{}",
        &log[log.len().saturating_sub(2000)..]
    );
    assert!(log.contains("build finished;"), "the daemon's lines go on");
    let last = log.lines().last().unwrap();
    assert!(last.contains("daemon | log truncated: "), "{last}");
    assert!(
        last.contains("of build output discarded after the 1 MiB cap"),
        "{last}"
    );
}

/// The run cgroups (`cloister-<pid>-<n>`) a process is in, as directories
/// of the mounted hierarchies (v1: one per controller; v2: one).
fn run_cgroup_dirs(pid: i32) -> Vec<std::path::PathBuf> {
    use cloister_sandbox::cgroup::Layout;
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mut dirs = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        let last = path.rsplit('/').next().unwrap_or_default();
        if !last.starts_with("cloister-") {
            continue;
        }
        match Layout::detect().unwrap() {
            Layout::V2 { mount } if ctrls.is_empty() => {
                dirs.push(mount.join(path.trim_start_matches('/')))
            }
            Layout::V1(hs) => {
                for h in hs.iter().filter(|h| {
                    ctrls
                        .split(',')
                        .any(|c| h.controllers.iter().any(|x| x == c))
                }) {
                    let rel = std::path::Path::new(path)
                        .strip_prefix(&h.mount_root)
                        .unwrap_or(std::path::Path::new(path));
                    let dir = h.mount.join(rel.strip_prefix("/").unwrap_or(rel));
                    if !dirs.contains(&dir) {
                        dirs.push(dir);
                    }
                }
            }
            _ => {}
        }
    }
    dirs
}

/// A daemon killed with SIGKILL mid-build takes the build down with it
/// (parent-death signal), but the run's cgroups stay behind, empty; the
/// restarted daemon removes them at start (only those of dead runs, and
/// only empty ones: a live owner's stays), and the job's log ends saying
/// the daemon stopped. (Run alone, only the restarted daemon's sweep can
/// remove them; beside other tests, a run starting elsewhere sweeps its
/// parent too, which is also right.)
#[tokio::test]
async fn sigkill_mid_build_then_restart_removes_the_runs_cgroups_and_logs_it() {
    let mut d = Daemon::start("concurrency = 1", "");
    let ep = d.endpoint();
    let m = marker(8);
    let id = submit(&ep, &sleeper(&d, &m)).await;
    wait_log(&ep, &id, "stdout | started").await;
    let sleeper_pid = processes_with(&m)[0];
    let cgroups = run_cgroup_dirs(sleeper_pid);
    // The default limits (memory, pids, cpu) each need a cgroup.
    assert!(!cgroups.is_empty(), "the build runs in no run cgroup");
    // Beside them, a run cgroup of a live owner (this test) must survive.
    let live = cgroups[0]
        .parent()
        .unwrap()
        .join(format!("cloister-{}-999", std::process::id()));
    std::fs::create_dir(&live).unwrap();

    d.kill();
    wait_gone(&m);
    for dir in &cgroups {
        assert!(
            dir.is_dir(),
            "{} went with the killed daemon",
            dir.display()
        );
    }
    d.spawn(&[]);
    // The sweep runs at start, in the background, until the killed run's
    // last processes are gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    while cgroups.iter().any(|dir| dir.exists()) {
        if Instant::now() >= deadline {
            let mut who = String::new();
            for dir in &cgroups {
                let tasks = std::fs::read_to_string(dir.join("tasks")).unwrap_or_default();
                for t in tasks.lines() {
                    let st =
                        std::fs::read_to_string(format!("/proc/{t}/status")).unwrap_or_default();
                    let pick: Vec<&str> = st
                        .lines()
                        .filter(|l| {
                            l.starts_with("Name") || l.starts_with("State") || l.starts_with("PPid")
                        })
                        .collect();
                    who += &format!("{} {t}: {pick:?}\n", dir.display());
                }
            }
            panic!(
                "left after the restart: {cgroups:?}\n{who}\n{}",
                d.daemon_log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(live.is_dir(), "a live owner's cgroup was removed");
    std::fs::remove_dir(&live).unwrap();
    let ep = d.endpoint();
    let job = wait_job(&ep, &id).await;
    assert_eq!(job["state"], "failed");
    let log = job_log(&ep, &id).await;
    assert!(
        log.trim_end().ends_with(
            "daemon | job failed: interrupted: the daemon stopped while the job was running"
        ),
        "{log}"
    );
}
