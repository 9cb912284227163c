//! Test harness: a runner daemon in a temporary state directory (the real
//! binary, through `cloister_runner::stack`, killed on drop), fixture git
//! repositories and the API calls the tests make. Every daemon shares the
//! one test store ([`shared_store`]).

#![allow(dead_code)]

use cloister_runner::client::Endpoint;
use cloister_runner::stack::{self, RunnerConfig};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

pub const RUNNER: &str = env!("CARGO_BIN_EXE_cloister-runner");

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runner/ has a parent")
        .to_path_buf()
}

/// The content-addressed store every test daemon uses: under cargo's
/// per-target scratch directory, so snapshots (a toolchain above all) are
/// copied once, not once per test; the store is safe for concurrent use.
pub fn shared_store() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cloister-store")
}

/// A running daemon.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    process: Option<stack::Daemon>,
}

impl Daemon {
    /// Starts a daemon whose config is `top` (top-level keys and tables)
    /// and `api` (extra `[api]` keys), with state dir, sockets and the
    /// attestor socket (nothing listens there) in a fresh temporary directory.
    pub fn start(top: &str, api: &str) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("cr-")
            .tempdir()
            .expect("tempdir");
        let state = dir.path().join("state");
        let socket = dir.path().join("api.sock");
        let config = dir.path().join("runner.toml");
        RunnerConfig {
            state_dir: state.clone(),
            api_socket: socket.clone(),
            attestor_socket: dir.path().join("no-attestor.sock"),
            store: Some(shared_store()),
            // Nothing listens on the attestor socket here: a job that gets
            // to `attesting` fails at its first attempt instead of retrying
            // for the default 10 minutes.
            extra: format!("attestor_retry_secs = 0\n{top}"),
            api_extra: api.into(),
            ..Default::default()
        }
        .write(&config)
        .expect("write config");
        let mut d = Daemon {
            dir,
            state,
            socket,
            config,
            process: None,
        };
        d.spawn(&[]);
        d
    }

    /// (Re)starts the daemon process on the same state.
    pub fn spawn(&mut self, env: &[(&str, &str)]) {
        let log = self.dir.path().join("daemon.log");
        self.process = Some(
            stack::start_runner(Path::new(RUNNER), &self.config, &self.socket, &log, env)
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::Unix(self.socket.clone())
    }

    pub fn pid(&self) -> i32 {
        self.process
            .as_ref()
            .and_then(stack::Daemon::pid)
            .expect("running") as i32
    }

    /// SIGTERM and wait (the daemon drains).
    pub fn stop(&mut self) -> ExitStatus {
        let mut p = self.process.take().expect("running");
        p.stop(Duration::from_secs(600)).expect("it was running")
    }

    /// SIGKILL and wait (a crash).
    pub fn kill(&mut self) {
        self.process.take().expect("running").stop(Duration::ZERO);
    }
}

/// Runs git with a fixed identity and dates (deterministic commits).
pub fn git(dir: &Path, args: &[&str]) -> String {
    stack::git(dir, args).unwrap_or_else(|e| panic!("{e}"))
}

/// A git repository in `dir` with the given files, committed; returns the commit.
pub fn repo_with(dir: &Path, files: &[(&str, &str)]) -> String {
    stack::repo_with(dir, files).unwrap_or_else(|e| panic!("{e}"))
}

/// A job spec for a repository at `path`.
pub fn spec(path: &Path, commit: &str, command: &[&str], outputs: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "source": {"path": path, "commit": commit, "uri": "git+https://github.com/cloister-dev/test", "ref": "refs/heads/main"},
        "command": command,
        "outputs": outputs,
    })
}

/// Polls a job until it is terminal.
pub async fn wait_job(ep: &Endpoint, id: &str) -> serde_json::Value {
    let job = stack::wait_job(ep, id, Duration::from_millis(50), Duration::from_secs(300))
        .await
        .expect("get job");
    let state = job["state"].as_str().unwrap_or("");
    assert!(
        ["succeeded", "failed", "cancelled"].contains(&state),
        "job {id} did not finish: {job}"
    );
    job
}

/// Submits a spec; returns the job id.
pub async fn submit(ep: &Endpoint, spec: &serde_json::Value) -> String {
    let job = stack::submit_job(ep, spec).await.expect("submit");
    job["id"].as_str().expect("job id").to_string()
}

/// Submits a spec and waits for the job to end; returns its record.
pub async fn run_job(ep: &Endpoint, spec: &serde_json::Value) -> serde_json::Value {
    let id = submit(ep, spec).await;
    wait_job(ep, &id).await
}

/// A job's log.
pub async fn job_log(ep: &Endpoint, id: &str) -> String {
    stack::job_log(ep, id).await.expect("job log")
}
