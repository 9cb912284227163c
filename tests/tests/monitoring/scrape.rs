//! Both daemons' `/metrics` after a real job and a real verification:
//! every metric name the rules and dashboards read is exported (recorded
//! series are checked against the rules instead, and `up` is Prometheus'
//! own), and both expositions parse: a real Prometheus scrapes them (the
//! runner's over its TCP listener with the bearer token) with the rules
//! loaded, and our reader checks the values.

use super::promql::{
    Sample, dashboard_exprs, metric_names, parse_exposition, rule_files, rules, value,
};
use crate::harness::{Stack, repo_with};
use cloister_runner::stack;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

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

fn exported(samples: &[Sample]) -> BTreeSet<String> {
    samples.iter().map(|s| s.name.clone()).collect()
}

/// A free TCP port on loopback (bound, then released for Prometheus).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `url`, as JSON.
fn get_json(url: &str) -> serde_json::Value {
    serde_json::from_str(&curl(&[url])).unwrap()
}

/// A real Prometheus (Debian's, beside promtool) scraping both daemons
/// every second with the shipped rules loaded; returns its base URL once
/// both targets were scraped successfully (a failed parse of either
/// exposition shows as the target's `lastError`).
fn prometheus(
    dir: &std::path::Path,
    attestor: &str,
    runner: &str,
    token_file: &std::path::Path,
) -> (stack::Daemon, String) {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    for f in rule_files() {
        std::fs::copy(&f, rules.join(f.file_name().unwrap())).unwrap();
    }
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}/*.rules.yml\n\
         scrape_configs:\n  - job_name: cloister-attestor\n    static_configs:\n      - targets: [\"{attestor}\"]\n\
         \x20 - job_name: cloister-runner\n    authorization:\n      type: Bearer\n      credentials_file: {token}\n\
         \x20   static_configs:\n      - targets: [\"{runner}\"]\n",
        rules = rules.display(),
        token = token_file.display(),
    );
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let port = free_port();
    let bin = super::promql::promtool().with_file_name("prometheus");
    let mut cmd = Command::new(&bin);
    cmd.arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let daemon = stack::Daemon::spawn("prometheus", cmd, &dir.join("prometheus.log"))
        .unwrap_or_else(|e| panic!("{e}"));
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = Command::new("curl")
            .args(["-sf", &format!("{base}/-/ready")])
            .output()
            .unwrap();
        if ready.status.success() {
            let targets = get_json(&format!("{base}/api/v1/targets"));
            let active = targets["data"]["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for t in &active {
                assert_ne!(
                    t["health"], "down",
                    "Prometheus could not scrape {}: {}",
                    t["scrapeUrl"], t["lastError"]
                );
            }
            if active.len() == 2 && active.iter().all(|t| t["health"] == "up") {
                return (daemon, base);
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped both daemons:\n{}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn both_daemons_export_every_series_the_rules_and_dashboards_read() {
    let mut stack = Stack::start(1);
    // The runner's TCP listener (Prometheus scrapes TCP, with the token).
    let token_file = stack.dir.path().join("runner-token");
    let token = "monitoring-token-0123456789";
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    stack.stop_runner();
    let config = std::fs::read_to_string(&stack.runner_config)
        .unwrap()
        .replacen(
            "[api]\n",
            &format!(
                "[api]\ntcp = \"127.0.0.1:0\"\ntoken_file = {:?}\n",
                token_file.display().to_string()
            ),
            1,
        );
    std::fs::write(&stack.runner_config, config).unwrap();
    stack.start_runner();
    let runner_addr = std::fs::read_to_string(stack.dir.path().join("runner/tcp.addr")).unwrap();
    // /metrics over TCP needs the token like every route there
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{runner_addr}/metrics"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");

    let repo = stack.dir.path().join("repo");
    repo_with(&repo, &[("build.sh", "echo built > out.txt\n")]);
    let uri = "git+https://github.com/cloister-dev/monitoring";
    let (artifact, _) =
        stack.build_verified(&repo, uri, &["--output", "out.txt"], &["sh", "build.sh"]);
    // a real verification over HTTP, metered
    let url = stack.attestor_url().unwrap();
    let key = stack.tenant_key("monitoring", "Pro").unwrap();
    let provenance =
        std::fs::read_to_string(format!("{}.intoto.jsonl", artifact.display())).unwrap();
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
    let runner_text = curl(&[
        "-H",
        &format!("Authorization: Bearer {token}"),
        &format!("http://{runner_addr}/metrics"),
    ]);
    let attestor = parse_exposition(&attestor_text);
    let runner = parse_exposition(&runner_text);
    // what happened is there
    assert_eq!(
        value(
            &runner,
            "cloister_runner_jobs_finished_total",
            &[("state", "succeeded"), ("priority", "normal")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &attestor,
            "cloister_attestor_http_requests_total",
            &[("route", "/v1/verify"), ("status", "200")]
        ),
        1.0
    );

    // Prometheus itself reads both expositions and loads the rules.
    let prom_dir = stack.dir.path().join("prometheus");
    let attestor_target = url.trim_start_matches("http://").to_string();
    let (_prometheus, base) = prometheus(&prom_dir, &attestor_target, &runner_addr, &token_file);
    let loaded = get_json(&format!("{base}/api/v1/rules"));
    let groups = loaded["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2 * rule_files().len(), "{loaded}");
    let known: BTreeSet<String> = get_json(&format!("{base}/api/v1/label/__name__/values"))["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();

    let mut names = exported(&attestor);
    names.extend(exported(&runner));
    let all_rules = rules();
    let recorded: BTreeSet<String> = all_rules.iter().filter_map(|r| r.record.clone()).collect();
    let mut reads: Vec<(String, String)> = dashboard_exprs();
    reads.extend(all_rules.iter().map(|r| (r.file.clone(), r.expr.clone())));
    let mut checked = BTreeSet::new();
    for (from, expr) in &reads {
        for n in metric_names(expr) {
            if recorded.contains(&n) {
                continue;
            }
            assert!(
                known.contains(&n),
                "{from} reads {n}, which Prometheus did not get from either daemon"
            );
            if n == "up" {
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
    assert!(checked.iter().any(|n| n.starts_with("cloister_runner_")));
    assert!(checked.iter().any(|n| n.starts_with("cloister_attestor_")));
    // No repository, source URI, tenant or job id in any label.
    let jobs = Command::new(&stack.runner_bin)
        .args(["jobs", "--json"])
        .env("CLOISTER_RUNNER_SOCKET", &stack.api_socket)
        .output()
        .unwrap();
    let jobs: serde_json::Value = serde_json::from_slice(&jobs.stdout).unwrap();
    let id = jobs[0]["id"].as_str().unwrap();
    for text in [&attestor_text, &runner_text] {
        for needle in ["cloister-dev/monitoring", "monitoring\"", id, &key[..12]] {
            assert!(!text.contains(needle), "{needle} in a label:\n{text}");
        }
    }
}
