//! Both daemons' `/metrics` after a real job and a real verification:
//! every metric name the rules and dashboards read is exported (recorded
//! series are checked against the rules instead, and `up` is Prometheus'
//! own), and both expositions parse (our reader and promtool's).

use super::promql::{
    Sample, dashboard_exprs, metric_names, parse_exposition, promtool_parses, rules, value,
};
use crate::harness::{Stack, repo_with};
use std::collections::BTreeSet;
use std::process::Command;

/// `curl` with `args`; its stdout (it must succeed).
pub fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--max-time", "30"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The runner daemon's `/metrics` over its API socket.
pub fn runner_metrics(stack: &Stack) -> String {
    let socket = stack.api_socket.display().to_string();
    curl(&["--unix-socket", &socket, "http://runner/metrics"])
}

/// The attestor's consumer URL (the last `listening on` line: it may have
/// been restarted).
pub fn attestor_url(stack: &Stack) -> String {
    let log = std::fs::read_to_string(stack.dir.path().join("attestor.log")).unwrap();
    log.lines()
        .filter_map(|l| l.strip_prefix("listening on "))
        .last()
        .expect("the attestor's listening line")
        .trim()
        .to_string()
}

/// A verification API key for a new tenant (operator CLI).
fn api_key(stack: &Stack) -> String {
    let cli = |args: &[&str]| {
        let out = Command::new(&stack.attestor_bin)
            .args(args)
            .arg("--state-dir")
            .arg(&stack.attestor_state)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    cli(&["tenants", "create", "monitoring", "--plan", "Pro"]);
    cli(&["api-keys", "issue", "monitoring"])
        .lines()
        .last()
        .expect("the key line")
        .trim()
        .to_string()
}

fn exported(samples: &[Sample]) -> BTreeSet<String> {
    samples.iter().map(|s| s.name.clone()).collect()
}

#[test]
fn both_daemons_export_every_series_the_rules_and_dashboards_read() {
    let stack = Stack::start(1);
    let repo = stack.dir.path().join("repo");
    repo_with(&repo, &[("build.sh", "echo built > out.txt\n")]);
    let uri = "git+https://github.com/cloister-dev/monitoring";
    let (artifact, _) =
        stack.build_verified(&repo, uri, &["--output", "out.txt"], &["sh", "build.sh"]);
    // a real verification over HTTP, metered
    let url = attestor_url(&stack);
    let key = api_key(&stack);
    let provenance = std::fs::read_to_string(format!("{}.intoto.jsonl", artifact.display())).unwrap();
    let envelope: serde_json::Value = serde_json::from_str(provenance.trim()).unwrap();
    let body = serde_json::json!({
        "artifactDigest": crate::harness::sha256_file(artifact.to_str().unwrap()),
        "sourceUri": uri,
        "provenance": envelope,
    });
    let verdict = curl(&[
        "-H",
        &format!("Authorization: Bearer {key}"),
        "-H",
        "Content-Type: application/json",
        "--data",
        &body.to_string(),
        &format!("{url}/v1/verify"),
    ]);
    let verdict: serde_json::Value = serde_json::from_str(&verdict).unwrap();
    assert_eq!(verdict["verified"], true, "{verdict}");

    let attestor_text = curl(&[&format!("{url}/metrics")]);
    let runner_text = runner_metrics(&stack);
    promtool_parses(&attestor_text);
    promtool_parses(&runner_text);
    let attestor = parse_exposition(&attestor_text);
    let runner = parse_exposition(&runner_text);
    // what happened is there
    assert_eq!(
        value(&runner, "cloister_runner_jobs_finished_total", &[("state", "succeeded"), ("priority", "normal")]),
        1.0
    );
    assert_eq!(
        value(&attestor, "cloister_attestor_http_requests_total", &[("route", "/v1/verify"), ("status", "200")]),
        1.0
    );
    let mut names = exported(&attestor);
    names.extend(exported(&runner));

    let all_rules = rules();
    let recorded: BTreeSet<String> = all_rules.iter().filter_map(|r| r.record.clone()).collect();
    let mut reads: Vec<(String, String)> = dashboard_exprs();
    reads.extend(all_rules.iter().map(|r| (r.file.clone(), r.expr.clone())));
    let mut checked = BTreeSet::new();
    for (from, expr) in &reads {
        for n in metric_names(expr) {
            if recorded.contains(&n) || n == "up" {
                continue;
            }
            assert!(
                names.contains(&n),
                "{from} reads {n}, which neither daemon exports.\nattestor:\n{attestor_text}\nrunner:\n{runner_text}"
            );
            checked.insert(n);
        }
    }
    assert!(checked.len() >= 25, "{checked:?}");
    // Recorded series read only what is exported too (their own exprs are
    // in `reads` above); and both families are there.
    assert!(checked.iter().any(|n| n.starts_with("cloister_runner_")));
    assert!(checked.iter().any(|n| n.starts_with("cloister_attestor_")));
    // No repository, source URI, tenant or job id in any label.
    let job_id = Command::new(&stack.runner_bin)
        .args(["jobs", "--json"])
        .env("CLOISTER_RUNNER_SOCKET", &stack.api_socket)
        .output()
        .unwrap();
    let jobs: serde_json::Value = serde_json::from_slice(&job_id.stdout).unwrap();
    let id = jobs[0]["id"].as_str().unwrap();
    for text in [&attestor_text, &runner_text] {
        for needle in ["cloister-dev/monitoring", "monitoring\"", id, &key[..12]] {
            assert!(!text.contains(needle), "{needle} in a label:\n{text}");
        }
    }
}
