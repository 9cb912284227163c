//! The runner's metrics move as expected across a succeeded, a failed, a
//! cancelled and a timed-out job, and `/readyz` reports its checks.

use super::promql::{Sample, parse_exposition, value};
use super::scrape::{curl, runner_metrics};
use crate::harness::{Stack, repo_with};
use std::time::{Duration, Instant};

pub(super) fn submit(stack: &Stack, name: &str, script: &str, extra: &[&str]) -> String {
    let repo = stack.dir.path().join(name);
    repo_with(&repo, &[("build.sh", script)]);
    let uri = format!("git+https://github.com/tenant-secret/{name}");
    let mut args = vec![
        "build",
        "--detach",
        "--source",
        repo.to_str().unwrap(),
        "--uri",
        &uri,
        "--output",
        "out.txt",
    ];
    args.extend_from_slice(extra);
    args.extend(["--", "sh", "build.sh"]);
    let out = stack.runner(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    job["id"].as_str().unwrap().to_string()
}

pub(super) fn job(stack: &Stack, id: &str) -> serde_json::Value {
    let out = stack.runner(&["jobs", "--json", "--limit", "100"]);
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    all.into_iter().find(|j| j["id"] == id).expect("job listed")
}

pub(super) fn wait_state(stack: &Stack, id: &str, want: &[&str]) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let j = job(stack, id);
        if want.iter().any(|w| j["state"] == *w) {
            return j;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never reached {want:?}: {j}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn finished(m: &[Sample], state: &str, reason: &str) -> f64 {
    value(
        m,
        "cloister_runner_jobs_finished_total",
        &[("state", state), ("reason", reason), ("priority", "normal")],
    )
}

#[test]
fn runner_metrics_follow_succeeded_failed_cancelled_and_timed_out_jobs() {
    let stack = Stack::start(2);
    let before = parse_exposition(&runner_metrics(&stack));
    for (state, reason) in [
        ("succeeded", "none"),
        ("failed", "build_failed"),
        ("cancelled", "cancelled"),
    ] {
        assert_eq!(
            finished(&before, state, reason),
            0.0,
            "{state}: starts at 0"
        );
    }
    assert_eq!(
        value(&before, "cloister_runner_jobs", &[("state", "running")]),
        0.0
    );

    let ok = submit(&stack, "ok", "echo fine > out.txt\n", &[]);
    let bad = submit(&stack, "bad", "echo broken >&2; exit 3\n", &[]);
    let slow = submit(&stack, "slow", "sleep 600\n", &[]);
    let late = submit(&stack, "late", "sleep 600\n", &["--timeout", "1"]);
    // The long job runs: the gauge of running jobs says so.
    wait_state(&stack, &slow, &["running"]);
    let during = parse_exposition(&runner_metrics(&stack));
    assert!(value(&during, "cloister_runner_jobs", &[("state", "running")]) >= 1.0);
    let out = stack.runner(&["cancel", &slow]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (id, state) in [
        (&ok, "succeeded"),
        (&bad, "failed"),
        (&slow, "cancelled"),
        (&late, "failed"),
    ] {
        let j = wait_state(&stack, id, &["succeeded", "failed", "cancelled"]);
        assert_eq!(j["state"], state, "{j}\n{}", stack.log(id));
    }
    assert!(
        job(&stack, &late)["reason"]
            .as_str()
            .unwrap()
            .contains("timeout"),
        "{}",
        job(&stack, &late)
    );

    let m = parse_exposition(&runner_metrics(&stack));
    assert_eq!(finished(&m, "succeeded", "none"), 1.0);
    assert_eq!(finished(&m, "failed", "build_failed"), 1.0);
    assert_eq!(finished(&m, "cancelled", "cancelled"), 1.0);
    assert_eq!(finished(&m, "failed", "timeout"), 1.0);
    assert_eq!(
        value(
            &m,
            "cloister_runner_limit_hits_total",
            &[("kind", "timeout")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "cloister_runner_limit_hits_total",
            &[("kind", "memory")]
        ),
        0.0
    );
    // One signing request, signed; the attestor is up.
    assert_eq!(
        value(
            &m,
            "cloister_runner_attestation_requests_total",
            &[("outcome", "signed")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "cloister_runner_attestation_requests_total",
            &[("outcome", "unreachable")]
        ),
        0.0
    );
    assert_eq!(value(&m, "cloister_runner_attestor_up", &[]), 1.0);
    // Phases: four jobs prepared and ran (the cancelled one was stopped
    // while running: its run phase never ended), one attested.
    let count = |phase| {
        value(
            &m,
            "cloister_runner_job_phase_seconds_count",
            &[("phase", phase)],
        )
    };
    assert_eq!(count("prepare"), 4.0);
    assert_eq!(count("run"), 3.0);
    assert_eq!(count("attest"), 1.0);
    assert_eq!(
        value(&m, "cloister_runner_sandbox_startup_seconds_count", &[]),
        3.0
    );
    // Four jobs left the queue; none waits or runs now.
    assert_eq!(
        value(
            &m,
            "cloister_runner_queue_wait_seconds_count",
            &[("priority", "normal")]
        ),
        4.0
    );
    for state in ["queued", "preparing", "running", "attesting"] {
        assert_eq!(
            value(&m, "cloister_runner_jobs", &[("state", state)]),
            0.0,
            "{state}"
        );
    }
    assert_eq!(
        value(&m, "cloister_runner_queue_depth", &[("priority", "normal")]),
        0.0
    );
    assert!(value(&m, "cloister_runner_store_filesystem_free_bytes", &[]) > 0.0);
    assert!(
        value(&m, "cloister_runner_store_bytes", &[]) > 0.0,
        "the rust toolchain snapshot"
    );
    // Bounded labels: no repository name, URI or job id.
    let text = runner_metrics(&stack);
    for needle in ["tenant-secret", ok.as_str(), bad.as_str(), "github.com"] {
        assert!(!text.contains(needle), "{needle} leaked into:\n{text}");
    }

    // Readiness: every check passes on this host, each named.
    let socket = stack.api_socket.display().to_string();
    let ready: serde_json::Value =
        serde_json::from_str(&curl(&["--unix-socket", &socket, "http://runner/readyz"])).unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    let names: Vec<&str> = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["attestor", "store_disk", "cgroups", "draining"]);
    assert!(
        ready["checks"][2]["detail"]
            .as_str()
            .unwrap()
            .contains("cgroup v"),
        "{ready}"
    );
}
