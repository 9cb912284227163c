//! Both daemons in a temporary directory, fixture repositories committed at
//! a fixed date, and the verifiers (ours and the external ones).

use cloister_tests::{bin, fixture, workspace_root};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running attestor + runner pair.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub runner_bin: PathBuf,
    pub attestor_bin: PathBuf,
    pub attestor_state: PathBuf,
    pub sign_socket: PathBuf,
    pub api_socket: PathBuf,
    pub runner_config: PathBuf,
    pub public_key: PathBuf,
    attestor: Option<Child>,
    runner: Option<Child>,
}

fn wait_socket(child: &mut Child, socket: &Path, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "daemon exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{} never accepted connections: {}",
        socket.display(),
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn log_file(path: &Path) -> Stdio {
    Stdio::from(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("log file"),
    )
}

/// The host's Rust toolchain (for repo A).
pub fn rust_sysroot() -> String {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("rustc is installed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Stack {
    /// Starts the attestor, then the runner (with `concurrency`).
    pub fn start(concurrency: usize) -> Stack {
        let dir = tempfile::Builder::new()
            .prefix("ce2e-")
            .tempdir()
            .expect("tempdir");
        let runner_bin = bin("cloister-runner");
        let attestor_bin = bin("cloister-attestor");
        let attestor_state = dir.path().join("attestor");
        let sign_socket = attestor_state.join("sign.sock");
        let api_socket = dir.path().join("api.sock");
        let runner_config = dir.path().join("runner.toml");
        std::fs::write(
            &runner_config,
            format!(
                "state_dir = {:?}\nattestor_socket = {:?}\nconcurrency = {concurrency}\nshutdown_grace_secs = 120\n\
                 [api]\nsocket = {:?}\n[toolchains]\nrust = {:?}\n",
                dir.path().join("runner").display().to_string(),
                sign_socket.display().to_string(),
                api_socket.display().to_string(),
                rust_sysroot(),
            ),
        )
        .unwrap();
        let mut s = Stack {
            public_key: dir.path().join("public.pem"),
            dir,
            runner_bin,
            attestor_bin,
            attestor_state,
            sign_socket,
            api_socket,
            runner_config,
            attestor: None,
            runner: None,
        };
        let log = s.dir.path().join("attestor.log");
        let mut attestor = Command::new(&s.attestor_bin)
            .args(["serve", "--state-dir"])
            .arg(&s.attestor_state)
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("CLOISTER_ATTESTOR_SIGN_SOCKET")
            .env_remove("CLOISTER_ATTESTOR_STATE_DIR")
            .stdout(log_file(&log))
            .stderr(log_file(&log))
            .spawn()
            .expect("start cloister-attestor serve");
        wait_socket(&mut attestor, &s.sign_socket, &log);
        s.attestor = Some(attestor);
        let pem = Command::new(&s.attestor_bin)
            .args(["keys", "export", "--state-dir"])
            .arg(&s.attestor_state)
            .output()
            .unwrap();
        assert!(
            pem.status.success(),
            "keys export: {}",
            String::from_utf8_lossy(&pem.stderr)
        );
        std::fs::write(&s.public_key, &pem.stdout).unwrap();
        s.start_runner();
        s
    }

    pub fn start_runner(&mut self) {
        let log = self.dir.path().join("runner.log");
        let mut runner = Command::new(&self.runner_bin)
            .args(["serve", "--config"])
            .arg(&self.runner_config)
            .env_remove("CLOISTER_RUNNER_SOCKET")
            .env_remove("CLOISTER_STORE")
            .stdout(log_file(&log))
            .stderr(log_file(&log))
            .spawn()
            .expect("start cloister-runner serve");
        wait_socket(&mut runner, &self.api_socket, &log);
        self.runner = Some(runner);
    }

    /// SIGTERM the runner daemon and wait for it (it drains).
    pub fn stop_runner(&mut self) {
        let mut child = self.runner.take().expect("runner running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let status = child.wait().unwrap();
        assert!(status.success(), "runner exit: {status}");
    }

    /// `cloister-runner <args>` against this stack's socket.
    pub fn runner(&self, args: &[&str]) -> Output {
        Command::new(&self.runner_bin)
            .args(args)
            .env("CLOISTER_RUNNER_SOCKET", &self.api_socket)
            .output()
            .expect("run cloister-runner")
    }

    /// `cloister-runner build … --json -- CMD`: (exit code, final job record, stderr).
    pub fn build(
        &self,
        repo: &Path,
        extra: &[&str],
        command: &[&str],
    ) -> (i32, serde_json::Value, String) {
        let mut args = vec![
            "build",
            "--source",
            repo.to_str().unwrap(),
            "--json",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(command);
        let out = self.runner(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or("");
        let job = serde_json::from_str(last).unwrap_or(serde_json::Value::Null);
        (
            out.status.code().unwrap_or(-1),
            job,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A job's log.
    pub fn log(&self, id: &str) -> String {
        String::from_utf8_lossy(&self.runner(&["logs", id]).stdout).into_owned()
    }

    /// `cloister-attestor verify --json` with this stack's public key.
    pub fn verify(
        &self,
        provenance: &str,
        artifact: &str,
        source_uri: &str,
        extra: &[&str],
    ) -> serde_json::Value {
        let out = Command::new(&self.attestor_bin)
            .args(["verify", "--provenance", provenance, "--public-key"])
            .arg(&self.public_key)
            .args(["--artifact", artifact, "--source-uri", source_uri, "--json"])
            .args(extra)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "verify printed no verdict: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for child in [self.runner.take(), self.attestor.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs git with a fixed identity and dates so commits are reproducible.
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
        .expect("git is installed");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let ty = entry.file_type().unwrap();
        let dest = to.join(entry.file_name());
        let name = entry.file_name();
        if ty.is_dir() {
            if name != "target" && name != "node_modules" && name != "dist" && name != "build" {
                copy_tree(&entry.path(), &dest);
            }
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A git repository made from `tests/fixtures/<name>`, committed; returns its path.
pub fn fixture_repo(parent: &Path, name: &str) -> PathBuf {
    let repo = parent.join(name);
    copy_tree(&fixture(name), &repo);
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", name]);
    repo
}

/// A git repository with the given files.
pub fn repo_with(dir: &Path, files: &[(&str, &str)]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "test"]);
    git(dir, &["rev-parse", "HEAD"])
}

fn interop_python() -> PathBuf {
    let p = std::env::var_os("CLOISTER_INTEROP_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        panic!("CLOISTER_INTEROP_PYTHON is not set: source .ci/setup.d/30-interop.sh (it installs securesystemslib)")
    });
    assert!(
        p.exists(),
        "CLOISTER_INTEROP_PYTHON={} does not exist",
        p.display()
    );
    p
}

fn interop_node_modules() -> PathBuf {
    let p = std::env::var_os("CLOISTER_INTEROP_NODE_MODULES").map(PathBuf::from).unwrap_or_else(|| {
        panic!("CLOISTER_INTEROP_NODE_MODULES is not set: source .ci/setup.d/30-interop.sh (it installs @sigstore/verify)")
    });
    assert!(
        p.exists(),
        "CLOISTER_INTEROP_NODE_MODULES={} does not exist",
        p.display()
    );
    p
}

/// securesystemslib (`tests/interop/verify_envelope.py`) on a `.intoto.jsonl`.
pub fn securesystemslib_verify(jsonl: &str, public: &Path) -> Output {
    Command::new(interop_python())
        .arg(workspace_root().join("tests/interop/verify_envelope.py"))
        .arg(jsonl)
        .arg(public)
        .output()
        .expect("run python")
}

/// sigstore-js (`tests/interop/verify_bundle.js`) on a `.sigstore.json`.
pub fn sigstore_js_verify(bundle: &str, public: &Path) -> Output {
    Command::new("node")
        .arg(workspace_root().join("tests/interop/verify_bundle.js"))
        .arg(bundle)
        .arg(public)
        .env("NODE_PATH", interop_node_modules())
        .output()
        .expect("run node")
}

/// sha256 of a file as `sha256:<hex>` (with sha256sum, independent of our code).
pub fn sha256_file(path: &str) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    let text = String::from_utf8_lossy(&out.stdout);
    format!(
        "sha256:{}",
        text.split_whitespace().next().expect("a digest")
    )
}
