//! `cloister-runner doctor` and the job hooks on a runner host with both
//! daemons: every requirement passes on a ready host, each broken one fails
//! with its reason, the job-started hook (run with `bash -e` as the Actions
//! runner runs it) fails the job when the host is not ready, and the
//! job-completed hook removes stale job records only.

use cloister_runner::stack::{Stack, StackOptions};
use cloister_tests::hook::{RunnerHost, install_entry_script};
use cloister_tests::{bin, workspace_root};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn doctor(args: &[&str], extra: &[&Path]) -> (i32, Value) {
    let out = Command::new(bin("cloister-runner"))
        .arg("doctor")
        .args(args)
        .args(extra)
        .arg("--json")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

fn failed(v: &Value) -> Vec<(String, String)> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| {
            (
                c["name"].as_str().unwrap().into(),
                c["detail"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// Installs a shipped runner hook script with its settings edited.
fn install(name: &str, to: &Path, settings: &[(&str, String)]) -> PathBuf {
    let shipped = workspace_root()
        .join("cookbook/workflows/runner-hooks")
        .join(name);
    let path = to.join(name);
    let text = std::fs::read_to_string(shipped).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        match line
            .split_once('=')
            .and_then(|(k, _)| settings.iter().find(|(n, _)| *n == k))
        {
            Some((k, v)) => out.push_str(&format!("{k}={v}")),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    std::fs::write(&path, out).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn job_hook(script: &Path) -> Output {
    // As the runner runs job hooks: `bash -e FILE`.
    Command::new("bash").arg("-e").arg(script).output().unwrap()
}

#[test]
fn doctor_passes_on_a_ready_host_and_names_each_failure() {
    let host = RunnerHost::new();
    let root = host.dir.path().to_path_buf();
    let mut stack = Stack::start(
        &root.join("stack"),
        &StackOptions {
            runner_bin: bin("cloister-runner"),
            attestor_bin: bin("cloister-attestor"),
            concurrency: 1,
            shutdown_grace_secs: 5,
            store: Some(host.store.clone()),
            toolchains: BTreeMap::new(),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(&host.state).unwrap();
    std::fs::set_permissions(&host.state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let attestor_url = stack.attestor_url().unwrap_or_else(|e| panic!("{e}"));

    // The Actions runner's directory with the three hooks in its .env.
    let runner_dir = root.join("actions-runner");
    let hooks = root.join("hooks");
    std::fs::create_dir_all(&runner_dir).unwrap();
    std::fs::create_dir_all(&hooks).unwrap();
    let container_hook = hooks.join("cloister-container-hook.sh");
    install_entry_script(
        &container_hook,
        &[("CLOISTER_STORE", host.store.display().to_string())],
    );
    let runner = bin("cloister-runner").display().to_string();
    let settings = [
        ("CLOISTER_RUNNER", runner.clone()),
        (
            "CLOISTER_RUNNER_CONFIG",
            stack.runner_config.display().to_string(),
        ),
        ("CLOISTER_ATTESTOR_URL", attestor_url.clone()),
        ("CLOISTER_HOOK_STATE", host.state.display().to_string()),
        ("CLOISTER_MIN_FREE", "1M".to_string()),
        ("ACTIONS_RUNNER_DIR", runner_dir.display().to_string()),
    ];
    let started = install("cloister-job-started.sh", &hooks, &settings);
    let completed = install(
        "cloister-job-completed.sh",
        &hooks,
        &[("CLOISTER_HOOK_STATE", host.state.display().to_string())],
    );
    let env_file = |require: bool| {
        let mut text = format!(
            "LANG=C.UTF-8\nACTIONS_RUNNER_CONTAINER_HOOKS={}\nACTIONS_RUNNER_HOOK_JOB_STARTED={}\nACTIONS_RUNNER_HOOK_JOB_COMPLETED={}\n",
            container_hook.display(),
            started.display(),
            completed.display()
        );
        if require {
            text.push_str("ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER=true\n");
        }
        std::fs::write(runner_dir.join(".env"), text).unwrap();
    };
    env_file(true);

    let config = stack.runner_config.display().to_string();
    let state = host.state.display().to_string();
    let dir = runner_dir.display().to_string();
    let base = [
        "--config",
        config.as_str(),
        "--hook-state",
        state.as_str(),
        "--runner-dir",
        dir.as_str(),
        "--min-free",
        "1M",
    ];

    // A ready host: every check passes (the attestor through its signing socket).
    let (code, v) = doctor(&base, &[]);
    assert_eq!((code, &v["ok"]), (0, &Value::Bool(true)), "{v:#}");
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "config",
            "sandbox",
            "daemon",
            "attestor",
            "store",
            "disk",
            "hook-state",
            "runner-env"
        ]
    );
    // The job-started hook passes too (the attestor over HTTP), each check on a line.
    let out = job_hook(&started);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("PASS")).count(),
        8,
        "{text}"
    );

    // Each broken requirement fails with its reason.
    std::fs::set_permissions(&host.state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, v) = doctor(&base, &[]);
    assert_eq!(code, 1);
    assert_eq!(failed(&v).len(), 1, "{v:#}");
    assert_eq!(failed(&v)[0].0, "hook-state");
    assert!(failed(&v)[0].1.contains("make it 0700"), "{v:#}");
    std::fs::set_permissions(&host.state, std::fs::Permissions::from_mode(0o700)).unwrap();

    env_file(false);
    let (_, v) = doctor(&base, &[]);
    assert_eq!(failed(&v)[0].0, "runner-env");
    assert!(
        failed(&v)[0]
            .1
            .contains("ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER=true is required")
    );
    env_file(true);

    let mut huge = base.to_vec();
    huge.truncate(base.len() - 2);
    huge.extend(["--min-free", "100000T"]);
    let (_, v) = doctor(&huge, &[]);
    assert_eq!(failed(&v)[0].0, "disk");
    assert!(failed(&v)[0].1.contains("below"), "{v:#}");

    let (_, v) = doctor(
        &base,
        &[Path::new("--attestor-url"), Path::new("http://127.0.0.1:1")],
    );
    assert_eq!(failed(&v)[0].0, "attestor", "{v:#}");

    // A stopped daemon fails the check, and the job-started hook the job.
    stack.stop_runner(std::time::Duration::from_secs(30));
    let (_, v) = doctor(&base, &[]);
    assert_eq!(failed(&v).len(), 1, "{v:#}");
    assert_eq!(failed(&v)[0].0, "daemon");
    let out = job_hook(&started);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL  daemon"));

    // job-completed: a record a day old goes, a live one stays.
    let jobs = host.state.join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    std::fs::write(jobs.join("old.json"), "{}").unwrap();
    std::fs::write(jobs.join("live.json"), "{}").unwrap();
    let touched = Command::new("touch")
        .args(["-d", "2 days ago"])
        .arg(jobs.join("old.json"))
        .status()
        .unwrap();
    assert!(touched.success());
    let out = job_hook(&completed);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("removed 1 stale job record(s); 1 job record(s) in use"),
        "{text}"
    );
    assert!(!jobs.join("old.json").exists() && jobs.join("live.json").exists());
}
