//! The shipped workflows (`cookbook/workflows/`): valid against GitHub's
//! workflow schema (check-jsonschema's vendored `vendor.github-workflows`),
//! zero zizmor findings offline (each inline suppression justified by the
//! comment above it), every action pinned by full commit SHA, no
//! `pull_request_target`, and no `${{ }}` expression inside a `run:` script
//! (inputs reach the shell through `env` only). The tools come from
//! `.ci/setup.d/65-github.sh`; without them these tests fail.

use cloister_tests::{github_tool, workspace_root};
use std::path::PathBuf;
use std::process::Command;

/// Every workflow file shipped in the cookbook.
fn workflows() -> Vec<PathBuf> {
    let dir = workspace_root().join("cookbook/workflows");
    let mut files = Vec::new();
    for d in [dir.clone(), dir.join("examples")] {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_workflows_are_the_expected_set() {
    let names: Vec<String> = workflows()
        .iter()
        .map(|p| {
            p.strip_prefix(workspace_root().join("cookbook/workflows"))
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "examples/repo-a.release.yml",
            "examples/repo-b.release.yml",
            "examples/repo-c.release.yml",
            "org.release.hermetic.yml",
        ],
        "one reusable workflow, one caller per repo"
    );
}

#[test]
fn the_workflows_match_githubs_workflow_schema() {
    let out = Command::new(github_tool("check-jsonschema"))
        .args(["--builtin-schema", "vendor.github-workflows"])
        .args(workflows())
        .output()
        .expect("run check-jsonschema");
    assert!(
        out.status.success(),
        "check-jsonschema: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The check can fail: a workflow with a misspelled key is refused.
    let bad = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
    std::fs::write(
        bad.path(),
        "on: push\njobs:\n  a:\n    runs-on: x\n    stepz: []\n",
    )
    .unwrap();
    let out = Command::new(github_tool("check-jsonschema"))
        .args(["--builtin-schema", "vendor.github-workflows"])
        .arg(bad.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "a bad workflow passed the schema");
}

fn zizmor(files: &[PathBuf]) -> serde_json::Value {
    let out = Command::new(github_tool("zizmor"))
        .args(["--offline", "--format", "json", "--no-progress"])
        .args(files)
        .output()
        .expect("run zizmor");
    // zizmor exits non-zero when it has findings; the JSON says which.
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "zizmor printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn zizmor_finds_nothing_and_every_suppression_is_justified() {
    let findings = zizmor(&workflows());
    assert_eq!(findings, serde_json::json!([]), "zizmor findings");
    for file in workflows() {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.contains("zizmor: ignore[") {
                let above = i.checked_sub(1).map(|j| lines[j].trim()).unwrap_or("");
                assert!(
                    above.starts_with('#') && above.len() > 20,
                    "{}:{}: a zizmor suppression without a justifying comment above it",
                    file.display(),
                    i + 1
                );
            }
        }
    }
    // The audit can fail: the old workflow's unpinned action is a finding.
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.yml");
    std::fs::write(
        &old,
        "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n        with:\n          persist-credentials: false\n",
    )
    .unwrap();
    let findings = zizmor(&[old]);
    assert!(
        findings.to_string().contains("unpinned-uses"),
        "zizmor did not flag an unpinned action: {findings}"
    );
}

/// Every `run:` script, every `uses:`, and the triggers of a workflow.
fn walk(v: &serde_json::Value, runs: &mut Vec<String>, uses: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("run", serde_json::Value::String(s)) => runs.push(s.clone()),
                    ("uses", serde_json::Value::String(s)) => uses.push(s.clone()),
                    _ => walk(x, runs, uses),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, runs, uses)),
        _ => {}
    }
}

#[test]
fn actions_are_pinned_by_sha_and_no_expression_reaches_a_shell() {
    for file in workflows() {
        let wf = cloister_tests::yaml_as_json(&file);
        let (mut runs, mut uses) = (Vec::new(), Vec::new());
        walk(&wf, &mut runs, &mut uses);
        assert!(!uses.is_empty(), "{}: no actions?", file.display());
        for u in &uses {
            let (_, reference) = u.rsplit_once('@').unwrap_or_else(|| panic!("{u}: no ref"));
            assert!(
                reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit()),
                "{}: {u} is not pinned by a full commit SHA",
                file.display()
            );
        }
        for script in &runs {
            assert!(
                !script.contains("${{"),
                "{}: an expression inside a run script:\n{script}",
                file.display()
            );
        }
        let on = wf["on"].to_string();
        assert!(!on.contains("pull_request_target"), "{}", file.display());
        assert!(
            wf.get("permissions").is_some(),
            "{}: top-level permissions",
            file.display()
        );
    }
}
