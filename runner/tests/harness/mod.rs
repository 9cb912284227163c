//! Test harness: a runner daemon in a temporary state directory (started as
//! the real binary, stopped with SIGTERM on drop), git repositories made
//! from fixtures, and a client.

#![allow(dead_code)]

use cloister_runner::client::Endpoint;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const RUNNER: &str = env!("CARGO_BIN_EXE_cloister-runner");

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runner/ has a parent")
        .to_path_buf()
}

/// A running daemon.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Starts a daemon whose config is `top` (top-level keys and tables)
    /// and `api` (extra `[api]` keys), with state dir, sockets and the
    /// attestor socket inside a fresh temporary directory.
    pub fn start(top: &str, api: &str) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("cr-")
            .tempdir()
            .expect("tempdir");
        let state = dir.path().join("state");
        let socket = dir.path().join("api.sock");
        let config = dir.path().join("runner.toml");
        let attestor = dir.path().join("no-attestor.sock").display().to_string();
        let toml = format!(
            "state_dir = {:?}\nattestor_socket = {:?}\n{top}\n[api]\nsocket = {:?}\n{api}\n",
            state.display().to_string(),
            attestor,
            socket.display().to_string()
        );
        std::fs::write(&config, toml).expect("write config");
        let mut d = Daemon {
            dir,
            state,
            socket,
            config,
            child: None,
        };
        d.spawn(&[]);
        d
    }

    /// (Re)starts the daemon process on the same state.
    pub fn spawn(&mut self, env: &[(&str, &str)]) {
        let mut cmd = Command::new(RUNNER);
        cmd.args(["serve", "--config"])
            .arg(&self.config)
            .env_remove("CLOISTER_RUNNER_SOCKET")
            .env_remove("CLOISTER_RUNNER_STATE_DIR")
            .env_remove("CLOISTER_STORE")
            .env_remove("CLOISTER_ATTESTOR_SOCKET")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("daemon.log"))
                    .expect("daemon log"),
            ));
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn cloister-runner serve"));
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("daemon exited early ({status}):\n{}", self.daemon_log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not listen within 60s:\n{}", self.daemon_log());
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::Unix(self.socket.clone())
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().expect("wait daemon")
    }

    /// SIGKILL and wait (a crash).
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs git with a fixed identity and dates (deterministic commits).
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Cloister Test",
            "-c",
            "user.email=test@cloister.invalid",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Copies a directory tree (files and dirs only).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let ty = entry.file_type().expect("file type");
        let dest = to.join(entry.file_name());
        if ty.is_dir() {
            if entry.file_name() == "target" || entry.file_name() == "node_modules" {
                continue;
            }
            copy_tree(&entry.path(), &dest);
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}

/// A git repository in `dir` with the given files, committed; returns the commit.
pub fn repo_with(dir: &Path, files: &[(&str, &str)]) -> String {
    std::fs::create_dir_all(dir).expect("mkdir repo");
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "fixture"]);
    git(dir, &["rev-parse", "HEAD"])
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
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let job: serde_json::Value = ep
            .json(hyper::Method::GET, &format!("/v1/jobs/{id}"), None)
            .await
            .expect("get job");
        if ["succeeded", "failed", "cancelled"].contains(&job["state"].as_str().unwrap_or("")) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not finish: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Submits a spec; returns the job id.
pub async fn submit(ep: &Endpoint, spec: &serde_json::Value) -> String {
    let job: serde_json::Value = ep
        .json(
            hyper::Method::POST,
            "/v1/jobs",
            Some(spec.to_string().into_bytes()),
        )
        .await
        .expect("submit");
    job["id"].as_str().expect("job id").to_string()
}
