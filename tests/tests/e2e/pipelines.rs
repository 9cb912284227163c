//! The release pipelines of repos A, B and C as GitHub would run them, on
//! a real runner daemon and attestor: the steps of the example caller
//! (`cookbook/workflows/examples/repo-*.release.yml`) and of the reusable
//! workflow it calls (`org.release.hermetic.yml`) are read from the YAML
//! and their `run:` scripts executed with bash as the Actions runner does
//! (`bash --noprofile --norc -eo pipefail`, the runner's default variables,
//! the step's `env:` with its `${{ }}` expressions resolved, `GITHUB_OUTPUT`
//! collected). What the container hook gives a step (the daemon's socket,
//! the public key) comes from the environment; the GitHub actions
//! (checkout, upload, download) are stood in for by copying files. Each
//! pipeline ends with both consumer verifications passing (HTTP
//! `POST /v1/verify` with a tenant's key, offline `cloister-attestor verify`
//! fetched by URL and checked by sha256), and both failing on a tampered
//! artifact.

use super::harness::{Stack, fixture_repo, git};
use cloister_tests::{bin, github_tool, workspace_root};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A workflow as JSON (YAML parsed by the ruamel.yaml check-jsonschema ships).
fn workflow(rel: &str) -> Value {
    let path = workspace_root().join("cookbook/workflows").join(rel);
    let out = Command::new(github_tool("python"))
        .args([
            "-c",
            "import json, sys\nfrom ruamel.yaml import YAML\nprint(json.dumps(YAML(typ='safe').load(open(sys.argv[1]))))",
        ])
        .arg(&path)
        .output()
        .expect("run the tools' python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The values `${{ }}` expressions resolve to.
#[derive(Default)]
struct Context {
    values: BTreeMap<String, String>,
}

impl Context {
    fn set(&mut self, key: &str, value: impl Into<String>) {
        self.values.insert(key.to_string(), value.into());
    }

    /// Replaces every `${{ expr }}` in `text`; an expression the test does
    /// not know fails it (a new one in a workflow must be handled here).
    fn eval(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find("}}").expect("closed expression") + start;
            let expr = rest[start + 3..end].trim();
            let value = self
                .values
                .get(expr)
                .unwrap_or_else(|| panic!("unknown expression {expr:?} in {text:?}"));
            out.push_str(value);
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }
}

/// One job's run on a "runner": its workspace, temp dir and outputs.
struct JobRun<'a> {
    ctx: &'a mut Context,
    env: BTreeMap<String, String>,
    temp: PathBuf,
    workspace: PathBuf,
    /// Uploaded artifacts: name → directory.
    artifacts: &'a Path,
    /// For a job in a job container: (`GITHUB_WORKSPACE` inside, the host
    /// directory mounted at `/__w`).
    container_view: Option<(String, PathBuf)>,
}

impl JobRun<'_> {
    /// Runs the job's steps in order; panics naming the step that failed.
    fn run(&mut self, job: &Value, label: &str) {
        let shell = job["defaults"]["run"]["shell"].as_str().unwrap_or("bash");
        assert_eq!(shell, "bash", "{label}: the steps' shell");
        for step in job["steps"].as_array().expect("steps") {
            let name = step["name"].as_str().unwrap_or("?");
            if let Some(uses) = step["uses"].as_str() {
                self.action(uses, &step["with"], label);
                continue;
            }
            let script = step["run"].as_str().expect("a run step");
            let status = self.script(step, script);
            assert_eq!(status.0, 0, "{label}: step {name:?} failed:\n{}", status.1);
        }
    }

    /// Runs one `run:` script; returns (exit code, output).
    fn script(&mut self, step: &Value, script: &str) -> (i32, String) {
        let file = self.temp.join("step.sh");
        std::fs::write(&file, script).unwrap();
        let output_file = self.temp.join("github_output");
        std::fs::write(&output_file, "").unwrap();
        let mut cmd = Command::new("bash");
        cmd.args(["--noprofile", "--norc", "-eo", "pipefail"])
            .arg(&file)
            .current_dir(&self.workspace)
            .env_clear()
            .envs(&self.env)
            .env("GITHUB_OUTPUT", &output_file)
            .env("RUNNER_TEMP", &self.temp)
            .env("GITHUB_WORKSPACE", &self.workspace);
        // The release job's steps see the workspace as the container hook
        // lays it out (`/__w/REPO/REPO`), as in a job container.
        if let Some((inside, host_work)) = &self.container_view {
            cmd.env("GITHUB_WORKSPACE", inside)
                .env("CLOISTER_HOST_WORK", host_work);
        }
        if let Some(env) = step["env"].as_object() {
            for (k, v) in env {
                let v = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                cmd.env(k, self.ctx.eval(&v));
            }
        }
        let out = cmd.output().expect("run bash");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(id) = step["id"].as_str() {
            for line in std::fs::read_to_string(&output_file).unwrap().lines() {
                if let Some((k, v)) = line.split_once('=') {
                    self.ctx.set(&format!("steps.{id}.outputs.{k}"), v);
                }
            }
        }
        (out.status.code().unwrap_or(-1), text)
    }

    /// Stands in for the three GitHub actions the workflows use.
    fn action(&mut self, uses: &str, with: &Value, label: &str) {
        let (action, _) = uses.split_once('@').unwrap();
        let with_value = with;
        let with = |k: &str| with[k].as_str().map(|v| self.ctx.eval(v));
        match action {
            // The workspace already holds the pinned commit.
            "actions/checkout" => assert_eq!(
                with_value["persist-credentials"],
                Value::Bool(false),
                "{label}: the checkout keeps no credentials"
            ),
            "actions/upload-artifact" => {
                let name = with("name").expect("artifact name");
                let path = with("path").expect("artifact path");
                assert!(!name.is_empty(), "{label}: empty artifact name");
                let dest = self.artifacts.join(&name);
                copy_dir(Path::new(&path), &dest);
            }
            "actions/download-artifact" => {
                let name = with("name").expect("artifact name");
                let path = self.workspace.join(with("path").expect("path"));
                copy_dir(&self.artifacts.join(&name), &path);
            }
            other => panic!("{label}: no stand-in for action {other}"),
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let entries: Vec<_> = std::fs::read_dir(from)
        .unwrap_or_else(|e| panic!("{}: {e}", from.display()))
        .flatten()
        .collect();
    assert!(!entries.is_empty(), "{} is empty", from.display());
    for e in entries {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A directory with `cloister-runner` and `cloister-attestor` for PATH.
fn tools_dir(parent: &Path) -> PathBuf {
    let dir = parent.join("tools");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["cloister-runner", "cloister-attestor"] {
        std::os::unix::fs::symlink(bin(name), dir.join(name)).unwrap();
    }
    dir
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Runs repo `name`'s release pipeline for tag v1.0.0 on `stack`.
fn pipeline(stack: &Stack, name: &str, key: &str, url: &str) {
    let root = stack.dir.path().join(format!("pipeline-{name}"));
    std::fs::create_dir_all(&root).unwrap();
    // The checkout where the runner keeps it: `_work/REPO/REPO`.
    let host_work = root.join("_work");
    let repo = fixture_repo(&host_work.join(name), name);
    git(&repo, &["tag", "v1.0.0"]);
    let sha = git(&repo, &["rev-parse", "HEAD"]);
    let caller = workflow(&format!("examples/{name}.release.yml"));
    let reusable = workflow("org.release.hermetic.yml");
    // The caller calls the reusable workflow, pinned.
    let uses = caller["jobs"]["release"]["uses"].as_str().unwrap();
    assert!(
        uses.contains("/.github/workflows/org.release.hermetic.yml@"),
        "{uses}"
    );
    assert!(caller["on"]["push"]["tags"].to_string().contains("v*"));

    let tools = tools_dir(&root);
    let base_env: BTreeMap<String, String> = [
        (
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", tools.display()),
        ),
        ("HOME", root.display().to_string()),
        ("GITHUB_SHA", sha.clone()),
        ("GITHUB_REF", "refs/tags/v1.0.0".into()),
        ("GITHUB_REF_NAME", "v1.0.0".into()),
        ("GITHUB_SERVER_URL", "https://github.com".into()),
        ("GITHUB_REPOSITORY", format!("cloister-dev/{name}")),
        // What the container hook binds into every step.
        (
            "CLOISTER_RUNNER_SOCKET",
            stack.api_socket.display().to_string(),
        ),
        (
            "CLOISTER_PUBLIC_KEY",
            stack.public_key.display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    // Inputs: what the caller passes, else the reusable workflow's defaults.
    let mut ctx = Context::default();
    let inputs = &reusable["on"]["workflow_call"]["inputs"];
    ctx.set("vars.CLOISTER_RUNNER_IMAGE", "unused-here@sha256:0");
    for (k, spec) in inputs.as_object().unwrap() {
        let given = caller["jobs"]["release"]["with"][k]
            .as_str()
            .map(|v| ctx.eval(v));
        let value = given.or_else(|| spec["default"].as_str().map(str::to_string));
        let required = spec["required"].as_bool().unwrap_or(false);
        assert!(
            value.is_some() || !required,
            "{name}: required input {k} missing"
        );
        ctx.set(&format!("inputs.{k}"), value.unwrap_or_default());
    }
    let artifacts = root.join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();

    // The release job, on the isolated runner.
    let temp = root.join("release-temp");
    std::fs::create_dir_all(&temp).unwrap();
    ctx.set("runner.temp", temp.display().to_string());
    let mut job = JobRun {
        ctx: &mut ctx,
        env: base_env.clone(),
        temp,
        workspace: repo.clone(),
        artifacts: &artifacts,
        container_view: Some((format!("/__w/{name}/{name}"), host_work.clone())),
    };
    job.run(&reusable["jobs"]["build"], name);
    let artifact = ctx.values["steps.build.outputs.artifact-name"].clone();
    assert_eq!(artifact, format!("cloister-{name}-{}", &sha[..12]));
    // Tag builds run at release priority.
    let id = ctx.values["steps.build.outputs.job-id"].clone();
    let record = stack.runner(&["jobs", "--json", "--limit", "100"]);
    let jobs: Value = serde_json::from_slice(&record.stdout).unwrap();
    let this = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id.as_str())
        .unwrap();
    assert_eq!(this["spec"]["priority"], "release", "{this}");
    assert_eq!(this["state"], "succeeded");
    let uploaded: Vec<String> = std::fs::read_dir(artifacts.join(&artifact))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        uploaded.len(),
        3,
        "artifact, .intoto.jsonl, .sigstore.json: {uploaded:?}"
    );

    // The consumer job.
    ctx.set("needs.release.outputs.artifact-name", artifact.clone());
    ctx.set("vars.CLOISTER_ATTESTOR_URL", url);
    ctx.set("secrets.CLOISTER_API_KEY", key);
    ctx.set(
        "vars.CLOISTER_PUBLIC_KEY",
        std::fs::read_to_string(&stack.public_key)
            .unwrap()
            .trim_end()
            .to_string(),
    );
    let attestor = bin("cloister-attestor");
    ctx.set(
        "vars.CLOISTER_ATTESTOR_BIN_URL",
        format!("file://{}", attestor.display()),
    );
    ctx.set("vars.CLOISTER_ATTESTOR_BIN_SHA256", sha256(&attestor));
    let consumer_ws = root.join("consumer");
    let consumer_temp = root.join("consumer-temp");
    std::fs::create_dir_all(&consumer_ws).unwrap();
    std::fs::create_dir_all(&consumer_temp).unwrap();
    // A consumer has neither the daemon nor the host's key.
    let mut consumer_env = base_env.clone();
    consumer_env.remove("CLOISTER_RUNNER_SOCKET");
    consumer_env.remove("CLOISTER_PUBLIC_KEY");
    consumer_env.insert("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into());
    let verify_job = &caller["jobs"]["verify"];
    let mut job = JobRun {
        ctx: &mut ctx,
        env: consumer_env,
        temp: consumer_temp,
        workspace: consumer_ws.clone(),
        artifacts: &artifacts,
        container_view: None,
    };
    job.run(verify_job, &format!("{name} consumer"));

    // Both verifications fail on a tampered artifact.
    let dist = consumer_ws.join("dist");
    let provenance = std::fs::read_dir(&dist)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".intoto.jsonl"))
        .unwrap();
    let file = PathBuf::from(
        provenance
            .to_string_lossy()
            .trim_end_matches(".intoto.jsonl"),
    );
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.push(b'\n');
    std::fs::write(&file, bytes).unwrap();
    for step in verify_job["steps"].as_array().unwrap() {
        if let Some(script) = step["run"].as_str() {
            let (code, out) = job.script(step, script);
            assert_ne!(
                code, 0,
                "{name}: {:?} passed a tampered artifact:\n{out}",
                step["name"]
            );
        }
    }
}

#[test]
fn repos_a_b_c_release_pipelines_build_and_both_verifications_pass() {
    let stack = Stack::start(2);
    let key = stack.tenant_key("consumer", "Pro").unwrap();
    let url = stack.attestor_url().unwrap();
    for name in ["repo-a", "repo-b", "repo-c"] {
        pipeline(&stack, name, &key, &url);
    }
}
