//! An attestor restart loses no build: jobs whose outputs are hashed wait in
//! `attesting` and retry; past the retry window a job fails with its
//! outputs kept, and `cloister-runner attest JOB` gets it signed later.

use super::jobs::{job, submit, wait_state};
use super::promql::{parse_exposition, value};
use super::scrape::runner_metrics;
use crate::harness::Stack;
use cloister_runner::stack;
use std::process::Command;
use std::time::{Duration, Instant};

fn kill_attestor(s: &mut Stack) {
    // SIGKILL at once (a zero grace), reaped.
    let status = s.attestor.stop(Duration::ZERO);
    assert!(status.is_some(), "the attestor was running");
}

fn start_attestor(s: &mut Stack) {
    let log = s.dir.path().join("attestor.log");
    s.attestor = stack::start_attestor(&s.attestor_bin, &s.attestor_state, &log)
        .unwrap_or_else(|e| panic!("{e}"));
}

fn readyz(s: &Stack) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
        ])
        .arg(&s.api_socket)
        .arg("http://runner/readyz")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (
        code.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap(),
    )
}

fn metric(s: &Stack, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(&parse_exposition(&runner_metrics(s)), name, labels)
}

#[test]
fn eight_jobs_in_flight_survive_an_attestor_sigkill_and_restart() {
    let mut s = Stack::start(8);
    let mut ids = Vec::new();
    for i in 0..8 {
        let script = format!("sleep 1\necho token-{i} > out.txt\n");
        ids.push(submit(&s, &format!("job{i}"), &script, &[]));
    }
    wait_state(
        &s,
        &ids[0],
        &["running", "attesting", "succeeded", "failed"],
    );
    kill_attestor(&mut s);
    let killed = Instant::now();
    // Finished builds find the signing socket gone: they stay attesting and
    // retry (the runner's metrics and readiness say the attestor is away).
    let deadline = Instant::now() + Duration::from_secs(600);
    while metric(
        &s,
        "cloister_runner_attestation_requests_total",
        &[("outcome", "unreachable")],
    ) < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "no job tried to sign while the attestor was down"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(metric(&s, "cloister_runner_jobs", &[("state", "attesting")]) >= 1.0);
    assert_eq!(metric(&s, "cloister_runner_attestor_up", &[]), 0.0);
    let (code, ready) = readyz(&s);
    assert_eq!(
        (code, &ready["status"]),
        (503, &serde_json::json!("not_ready")),
        "{ready}"
    );
    assert_eq!(ready["checks"][0]["ok"], false, "{ready}");
    std::thread::sleep(Duration::from_secs(3).saturating_sub(killed.elapsed()));
    start_attestor(&mut s);

    let mut attestations = std::collections::BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        let j = wait_state(&s, id, &["succeeded", "failed", "cancelled"]);
        assert_eq!(j["state"], "succeeded", "job {i}: {j}\n{}", s.log(id));
        let a = &j["result"]["artifacts"][0];
        let path = a["path"].as_str().unwrap();
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            format!("token-{i}\n")
        );
        let v = s.verify(
            a["provenance"].as_str().unwrap(),
            path,
            &format!("git+https://github.com/tenant-secret/job{i}"),
            &[],
        );
        assert_eq!(v["verified"], true, "job {i}: {v}");
        assert!(
            attestations.insert(j["result"]["attestationId"].to_string()),
            "one attestation per job"
        );
    }
    let m = parse_exposition(&runner_metrics(&s));
    assert_eq!(
        value(
            &m,
            "cloister_runner_attestation_requests_total",
            &[("outcome", "signed")]
        ),
        8.0
    );
    assert_eq!(
        value(
            &m,
            "cloister_runner_jobs_finished_total",
            &[
                ("state", "succeeded"),
                ("reason", "none"),
                ("priority", "normal")
            ]
        ),
        8.0
    );
    assert_eq!(value(&m, "cloister_runner_attestor_up", &[]), 1.0);
    assert_eq!(readyz(&s).0, 200);
}

#[test]
fn past_the_retry_window_the_job_fails_keeping_its_outputs_and_attest_signs_it_later() {
    let mut s = Stack::start(2);
    // A short retry window (top-level keys go before the first table).
    s.stop_runner();
    let config = std::fs::read_to_string(&s.runner_config).unwrap();
    std::fs::write(
        &s.runner_config,
        format!("attestor_retry_secs = 2\n{config}"),
    )
    .unwrap();
    s.start_runner();
    kill_attestor(&mut s);
    let kept = submit(&s, "kept", "echo precious > out.txt\n", &[]);
    let tampered = submit(&s, "tampered", "echo original > out.txt\n", &[]);
    for id in [&kept, &tampered] {
        let j = wait_state(&s, id, &["succeeded", "failed", "cancelled"]);
        assert_eq!(j["state"], "failed", "{j}");
        let reason = j["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("attestor unreachable for 2s"),
            "{reason}"
        );
        assert!(
            reason.contains(&format!("cloister-runner attest {id}")),
            "{reason}"
        );
        assert!(
            j["result"].is_null(),
            "no artifacts are served for it yet: {j}"
        );
    }
    let artifacts = s.dir.path().join("runner/artifacts");
    let kept_file = artifacts.join(&kept).join("out.txt");
    assert_eq!(
        std::fs::read_to_string(&kept_file).unwrap(),
        "precious\n",
        "the output is kept"
    );
    assert_eq!(
        metric(
            &s,
            "cloister_runner_jobs_finished_total",
            &[
                ("state", "failed"),
                ("reason", "attestor_unreachable"),
                ("priority", "normal")
            ]
        ),
        2.0
    );
    let (code, ready) = readyz(&s);
    assert_eq!(code, 503, "{ready}");

    // Still down: `attest` says so and changes nothing.
    let out = s.runner(&["attest", &kept]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("attestor signing socket"), "{err}");
    assert_eq!(job(&s, &kept)["state"], "failed");

    // A kept output changed meanwhile is refused, never signed.
    std::fs::write(artifacts.join(&tampered).join("out.txt"), "swapped\n").unwrap();
    start_attestor(&mut s);
    let out = s.runner(&["attest", &tampered]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no longer matches its recorded digest"),
        "{err}"
    );
    assert_eq!(job(&s, &tampered)["state"], "failed");

    // Back: `attest` signs the kept record; the job is succeeded and verifies.
    let out = s.runner(&["attest", "--json", &kept]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["state"], "succeeded", "{j}");
    assert!(j["reason"].is_null(), "{j}");
    let a = &j["result"]["artifacts"][0];
    assert_eq!(a["path"].as_str().unwrap(), kept_file.to_str().unwrap());
    let v = s.verify(
        a["provenance"].as_str().unwrap(),
        a["path"].as_str().unwrap(),
        "git+https://github.com/tenant-secret/kept",
        &[],
    );
    assert_eq!(v["verified"], true, "{v}");
    // Served like any succeeded job's files now.
    let dest = s.dir.path().join("downloaded");
    let out = s.runner(&["artifacts", &kept, "--out-dir", dest.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("out.txt")).unwrap(),
        "precious\n"
    );
    // Once only; and never for a job that did not fail waiting for the attestor.
    let out = s.runner(&["attest", &kept]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is succeeded"),
        "{out:?}"
    );
    let plain = submit(&s, "plain", "exit 3\n", &[]);
    wait_state(&s, &plain, &["failed"]);
    let out = s.runner(&["attest", &plain]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no attestation pending"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A runner restart while a job waits for the attestor: the drain stops it
/// after the grace period, failed, but its hashed outputs and record stay,
/// and `attest` gets it signed once both daemons are back.
#[test]
fn a_job_waiting_for_the_attestor_keeps_its_outputs_through_a_runner_restart() {
    let mut s = Stack::start(1);
    s.stop_runner();
    let config = std::fs::read_to_string(&s.runner_config)
        .unwrap()
        .replace("shutdown_grace_secs = 120", "shutdown_grace_secs = 1");
    std::fs::write(&s.runner_config, config).unwrap();
    s.start_runner();
    kill_attestor(&mut s);
    let id = submit(&s, "drained", "echo drained > out.txt\n", &[]);
    wait_state(&s, &id, &["attesting"]);
    s.stop_runner();
    s.start_runner();
    let j = job(&s, &id);
    assert_eq!(j["state"], "failed", "{j}");
    let reason = j["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("killed: the daemon shut down"),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("cloister-runner attest {id}")),
        "{reason}"
    );
    start_attestor(&mut s);
    let out = s.runner(&["attest", "--json", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["state"], "succeeded", "{j}");
    let a = &j["result"]["artifacts"][0];
    let v = s.verify(
        a["provenance"].as_str().unwrap(),
        a["path"].as_str().unwrap(),
        "git+https://github.com/tenant-secret/drained",
        &[],
    );
    assert_eq!(v["verified"], true, "{v}");
}
