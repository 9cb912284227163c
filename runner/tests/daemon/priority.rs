//! Job priority through the real daemon with one build slot: a `release`
//! job queued after `normal` ones starts first, `low` last; the API and
//! `cloister-runner jobs` show each queued job's place; an old `low` job
//! ages past a fresh `release` one (no starvation).

use crate::harness::{Daemon, RUNNER, repo_with, spec, submit, wait_job};
use cloister_runner::client::Endpoint;
use std::time::{Duration, Instant};

async fn get(ep: &Endpoint, id: &str) -> serde_json::Value {
    ep.json(hyper::Method::GET, &format!("/v1/jobs/{id}"), None)
        .await
        .unwrap()
}

async fn wait_running(ep: &Endpoint, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while get(ep, id).await["state"] != "running" {
        assert!(Instant::now() < deadline, "job {id} never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A job that runs until cancelled (holds the only slot), and a quick one
/// with `priority`.
fn specs(d: &Daemon) -> (serde_json::Value, impl Fn(&str) -> serde_json::Value) {
    let repo = d.dir.path().join("repo");
    let commit = repo_with(&repo, &[("build.sh", "echo started\nexec sleep 600\n")]);
    let blocker = spec(&repo, &commit, &["sh", "build.sh"], &["out"]);
    let quick = move |priority: &str| {
        let mut s = spec(&repo, &commit, &["true"], &["out"]);
        s["priority"] = serde_json::json!(priority);
        s
    };
    (blocker, quick)
}

async fn cancel(ep: &Endpoint, id: &str) {
    let _: serde_json::Value = ep
        .json(hyper::Method::POST, &format!("/v1/jobs/{id}/cancel"), None)
        .await
        .unwrap();
}

/// The ids in the order the daemon started them.
async fn start_order(ep: &Endpoint, ids: &[&str]) -> Vec<String> {
    let mut started = Vec::new();
    for id in ids {
        let job = wait_job(ep, id).await;
        let at = job["startedAt"]
            .as_str()
            .unwrap_or_else(|| panic!("{id} never started: {job}"))
            .to_string();
        started.push((
            at,
            job["spec"]["priority"]
                .as_str()
                .unwrap_or("normal")
                .to_string(),
            id.to_string(),
        ));
    }
    started.sort();
    started.into_iter().map(|(_, _, id)| id).collect()
}

#[tokio::test]
async fn release_jobs_start_before_earlier_normal_ones_and_low_ones_last() {
    let d = Daemon::start("concurrency = 1\npriority_aging_secs = 3600", "");
    let ep = d.endpoint();
    let (blocker, quick) = specs(&d);
    let block = submit(&ep, &blocker).await;
    wait_running(&ep, &block).await;
    let n1 = submit(&ep, &quick("normal")).await;
    let l1 = submit(&ep, &quick("low")).await;
    let n2 = submit(&ep, &quick("normal")).await;
    let r1 = submit(&ep, &quick("release")).await;

    // Queue positions, in the API and in `jobs`.
    for (id, pos) in [(&r1, 1), (&n1, 2), (&n2, 3), (&l1, 4)] {
        let job = get(&ep, id).await;
        assert_eq!(job["queuePosition"], pos, "{job}");
    }
    assert!(get(&ep, &block).await["queuePosition"].is_null());
    let out = std::process::Command::new(RUNNER)
        .args(["jobs", "--socket"])
        .arg(&d.socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().next().unwrap().contains("PRIORITY"), "{text}");
    let line = |id: &str| {
        text.lines()
            .find(|l| l.starts_with(id))
            .unwrap()
            .to_string()
    };
    let r_line = line(&r1);
    assert!(
        r_line.contains("release") && r_line.split_whitespace().nth(3) == Some("1"),
        "{r_line}"
    );
    let l_line = line(&l1);
    assert!(
        l_line.contains("low") && l_line.split_whitespace().nth(3) == Some("4"),
        "{l_line}"
    );

    cancel(&ep, &block).await;
    let order = start_order(&ep, &[&n1, &l1, &n2, &r1]).await;
    assert_eq!(order, [r1, n1, n2, l1]);
}

#[tokio::test]
async fn an_old_low_job_still_starts_before_a_fresh_release_job() {
    let d = Daemon::start("concurrency = 1\npriority_aging_secs = 1", "");
    let ep = d.endpoint();
    let (blocker, quick) = specs(&d);
    let block = submit(&ep, &blocker).await;
    wait_running(&ep, &block).await;
    let low = submit(&ep, &quick("low")).await;
    // Two aging periods and a margin: low now ranks with release (0 + 2).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let release = submit(&ep, &quick("release")).await;
    assert_eq!(get(&ep, &low).await["queuePosition"], 1);
    assert_eq!(get(&ep, &release).await["queuePosition"], 2);
    cancel(&ep, &block).await;
    let order = start_order(&ep, &[&release, &low]).await;
    assert_eq!(order, [low, release]);
}

#[test]
fn an_aging_period_out_of_range_stops_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runner.toml");
    std::fs::write(&path, "priority_aging_secs = 0\n").unwrap();
    let out = std::process::Command::new(RUNNER)
        .args(["serve", "--config"])
        .arg(&path)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("priority_aging_secs must be between 1 and 86400, got 0"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
