//! The rules, their promtool unit tests, the runbook links, the example
//! scrape config and the dashboards, checked without running a daemon.

use super::promql::{dashboard_exprs, metric_names, monitoring_dir, promtool, rule_files, rules};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

fn run_promtool(args: &[&str], files: &[std::path::PathBuf]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .args(files)
        .current_dir(monitoring_dir())
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// `promtool check rules` accepts every file, and `promtool test rules`
/// passes; every alert has a unit test where it fires and one where it
/// stays silent.
#[test]
fn promtool_checks_the_rules_and_their_unit_tests_pass() {
    let text = run_promtool(&["check", "rules"], &rule_files());
    assert!(!text.contains("FAILED"), "{text}");
    let dir = monitoring_dir().join("tests");
    let mut tests: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yml"))
        .collect();
    tests.sort();
    let text = run_promtool(&["test", "rules"], &tests);
    assert_eq!(text.matches("SUCCESS").count(), tests.len(), "{text}");
    // (alertname → (fires somewhere, silent somewhere))
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for t in &tests {
        let doc = cloister_tests::yaml_as_json(t);
        for case in doc["tests"].as_array().unwrap() {
            for a in case["alert_rule_test"].as_array().into_iter().flatten() {
                let e = seen
                    .entry(a["alertname"].as_str().unwrap().to_string())
                    .or_default();
                if a["exp_alerts"].as_array().is_some_and(|v| !v.is_empty()) {
                    e.0 = true;
                } else {
                    e.1 = true;
                }
            }
        }
    }
    let alerts: Vec<String> = rules().into_iter().filter_map(|r| r.alert).collect();
    assert!(alerts.len() >= 20, "{alerts:?}");
    for a in &alerts {
        assert_eq!(
            seen.get(a),
            Some(&(true, true)),
            "alert {a} needs a unit test where it fires and one where it stays silent"
        );
    }
}

/// The rules cover every SLO the issue names, by their `slo` label.
#[test]
fn every_slo_has_alerts() {
    let slos: BTreeSet<String> = rules()
        .iter()
        .filter_map(|r| r.labels.get("slo").cloned())
        .collect();
    for slo in [
        "verify-availability",
        "verify-latency",
        "time-to-pack",
        "policy-coverage",
        "webhook-delivery",
        "invoice-success",
        "audit-engagements",
        "portal-availability",
        "release-jobs",
        "runner-job-failures",
        "runner-queue-wait",
        "runner-store-disk",
        "runner-attestor",
    ] {
        assert!(slos.contains(slo), "no alert for {slo}: {slos:?}");
    }
    // the availability SLOs burn-rate pairs: 14.4x over 1h and 5m, 6x over 6h and 30m
    for slo in ["verify", "portal"] {
        let all = rules();
        let expr = |name: &str| {
            all.iter()
                .find(|r| r.alert.as_deref() == Some(name))
                .map(|r| r.expr.clone())
                .unwrap_or_else(|| panic!("no alert {name}"))
        };
        let title = format!("{}{}", slo[..1].to_uppercase(), &slo[1..]);
        let fast = expr(&format!("Cloister{title}AvailabilityFastBurn"));
        assert!(
            fast.contains("ratio_rate1h > (14.4 * 0.0005)")
                && fast.contains("ratio_rate5m > (14.4 * 0.0005)"),
            "{fast}"
        );
        let slow = expr(&format!("Cloister{title}AvailabilitySlowBurn"));
        assert!(
            slow.contains("ratio_rate6h > (6 * 0.0005)")
                && slow.contains("ratio_rate30m > (6 * 0.0005)"),
            "{slow}"
        );
    }
}

/// GitHub's anchor for a Markdown heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Each alert links a runbook section that exists: the file under
/// `cookbook/` and a heading whose anchor is the link's fragment; and
/// carries a severity (page or ticket) and a summary.
#[test]
fn every_alert_links_a_runbook_section_that_exists() {
    const PREFIX: &str = "https://github.com/cloister-dev/cloister/blob/main/";
    let root = cloister_tests::workspace_root();
    for r in rules() {
        let Some(alert) = &r.alert else { continue };
        let url = r
            .annotations
            .get("runbook_url")
            .unwrap_or_else(|| panic!("{alert}: no runbook_url"));
        let rel = url
            .strip_prefix(PREFIX)
            .unwrap_or_else(|| panic!("{alert}: {url} is not in this repository"));
        let (file, anchor) = rel
            .split_once('#')
            .unwrap_or_else(|| panic!("{alert}: {url} names no section"));
        assert!(file.starts_with("cookbook/runbook-"), "{alert}: {file}");
        let text = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|e| panic!("{alert}: {file}: {e}"));
        let anchors: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .map(|l| slug(l.trim_start_matches('#')))
            .collect();
        assert!(
            anchors.iter().any(|a| a == anchor),
            "{alert}: {file} has no section #{anchor} (has {anchors:?})"
        );
        let severity = r.labels.get("severity").map(String::as_str);
        assert!(
            matches!(severity, Some("page" | "ticket")),
            "{alert}: severity {severity:?}"
        );
        assert!(r.annotations.contains_key("summary"), "{alert}: no summary");
    }
}

/// The example scrape config loads (with the rules) in promtool.
#[test]
fn the_example_prometheus_config_loads_the_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let rules_dir = tmp.path().join("rules");
    std::fs::create_dir(&rules_dir).unwrap();
    for f in rule_files() {
        std::fs::copy(&f, rules_dir.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        tmp.path().join("runner-token"),
        "a-token-of-sixteen-chars\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(monitoring_dir().join("prometheus.yml"))
        .unwrap()
        .replace(
            "/etc/prometheus/cloister",
            &tmp.path().display().to_string(),
        );
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(&config, text).unwrap();
    let out = run_promtool(&["check", "config"], &[config]);
    assert!(out.contains("SUCCESS") && !out.contains("FAILED"), "{out}");
    let n = rule_files().len();
    assert!(
        out.contains(&format!("SUCCESS: {n} rule files found")),
        "{out}"
    );
}

/// The dashboards are Grafana JSON with a Prometheus data-source variable
/// and queries; the provisioning file points Grafana at them; every
/// recorded series an alert or panel reads is recorded by a rule.
#[test]
fn dashboards_parse_and_read_only_recorded_or_raw_series() {
    let dir = monitoring_dir().join("dashboards");
    let mut uids = BTreeSet::new();
    for name in ["cloister-attestor.json", "cloister-runner.json"] {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap();
        assert!(uids.insert(v["uid"].as_str().unwrap().to_string()));
        assert!(
            v["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("Cloister"))
        );
        let vars = v["templating"]["list"].as_array().unwrap();
        assert!(
            vars.iter()
                .any(|x| x["type"] == "datasource" && x["query"] == "prometheus"),
            "{name}: no Prometheus data-source variable"
        );
        for p in v["panels"].as_array().unwrap() {
            assert!(p["gridPos"]["w"].as_u64().is_some(), "{name}: {p}");
        }
    }
    let prov = cloister_tests::yaml_as_json(&dir.join("provisioning.yml"));
    assert_eq!(prov["apiVersion"], 1);
    assert_eq!(prov["providers"][0]["type"], "file");
    assert!(prov["providers"][0]["options"]["path"].as_str().is_some());

    let all = rules();
    let recorded: BTreeSet<String> = all.iter().filter_map(|r| r.record.clone()).collect();
    let mut reads: Vec<(String, String)> = dashboard_exprs();
    reads.extend(all.iter().map(|r| (r.file.clone(), r.expr.clone())));
    for (from, expr) in reads {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{from}: no series in {expr}");
        for n in names.iter().filter(|n| n.contains(':')) {
            assert!(
                recorded.contains(n),
                "{from}: {n} is not recorded by any rule"
            );
        }
    }
    assert!(Path::new(&dir).join("provisioning.yml").is_file());
}
