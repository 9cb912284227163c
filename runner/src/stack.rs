//! Both daemons as child processes in one directory: what `quickstart`, the
//! `bench-job` benchmark and the test suites share. Spawning with output
//! appended to a log file, waiting for a socket (failing with the log's tail
//! if the daemon exits first), stopping with SIGTERM then SIGKILL, the runner
//! config they write, submitting and awaiting jobs, and the git helpers
//! that make a repository at a pinned commit with reproducible commit ids.

use crate::client::{ClientError, Endpoint};
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a daemon may take to open its socket. A runner's first start
/// copies its toolchains into the store (a Rust sysroot is ~1.3 GB), so this
/// is a hang guard, not a performance expectation.
pub const START_TIMEOUT: Duration = Duration::from_secs(900);

/// Errors starting or driving the local daemons.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("{name} exited ({status}); last log lines:\n{tail}")]
    Exited {
        name: String,
        status: ExitStatus,
        tail: String,
    },
    #[error("{name} did not open {socket} within {secs}s; last log lines:\n{tail}")]
    Timeout {
        name: String,
        socket: PathBuf,
        secs: u64,
        tail: String,
    },
    #[error("{command}: {message}")]
    Command { command: String, message: String },
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StackError + 'a {
    move |source| StackError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Runs `cmd` to completion; its stdout (trimmed) on success.
fn output(mut cmd: Command, what: &str) -> Result<String, StackError> {
    let out = cmd.output().map_err(|e| StackError::Command {
        command: what.into(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(StackError::Command {
            command: what.into(),
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A daemon child process with its output in a log file. Dropping it stops
/// it: SIGTERM and up to the drop grace (default none: SIGKILL at once).
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    drop_grace: Duration,
}

impl Daemon {
    /// Spawns `cmd` with stdin closed and stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Daemon, StackError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io_err("opening", log))?;
        let err = file.try_clone().map_err(io_err("opening", log))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err));
        let child = cmd.spawn().map_err(|source| StackError::Spawn {
            name: name.into(),
            source,
        })?;
        Ok(Daemon {
            name: name.into(),
            child: Some(child),
            log: log.to_path_buf(),
            drop_grace: Duration::ZERO,
        })
    }

    /// How long dropping waits after SIGTERM before SIGKILL.
    pub fn set_drop_grace(&mut self, grace: Duration) {
        self.drop_grace = grace;
    }

    /// The log file's contents.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().rev().take(10).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), StackError> {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(StackError::Exited {
                    name: self.name.clone(),
                    status,
                    tail: self.tail(),
                });
            }
        }
        Ok(())
    }

    /// Waits until `socket` accepts a connection.
    pub fn wait_socket(&mut self, socket: &Path, timeout: Duration) -> Result<(), StackError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                return Ok(());
            }
            self.check_alive()?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(StackError::Timeout {
            name: self.name.clone(),
            socket: socket.to_path_buf(),
            secs: timeout.as_secs(),
            tail: self.tail(),
        })
    }

    /// Waits until a line starting with `prefix` appears in the log after
    /// byte `offset`.
    pub fn wait_log_line(
        &mut self,
        offset: u64,
        prefix: &str,
        timeout: Duration,
    ) -> Result<(), StackError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let text = std::fs::read(&self.log).map_err(io_err("reading", &self.log))?;
            let fresh = text
                .get(usize::try_from(offset).unwrap_or(usize::MAX)..)
                .unwrap_or(&[]);
            if String::from_utf8_lossy(fresh)
                .lines()
                .any(|l| l.starts_with(prefix))
            {
                return Ok(());
            }
            self.check_alive()?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(StackError::Command {
            command: self.name.clone(),
            message: format!(
                "no `{}` line in {} within {}s; last log lines:\n{}",
                prefix.trim_end(),
                self.log.display(),
                timeout.as_secs(),
                self.tail()
            ),
        })
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) -> Result<(), StackError> {
        let pid = self.pid().ok_or_else(|| StackError::Command {
            command: format!("kill -{signal}"),
            message: format!("{} is not running", self.name),
        })?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).map_err(|e| {
            StackError::Command {
                command: format!("kill -{signal} {pid}"),
                message: e.to_string(),
            }
        })
    }

    /// SIGTERM, then SIGKILL once `grace` is over (at once for zero);
    /// returns how it exited (`None` if it was not running).
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if !grace.is_zero() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(status);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!(
                "{} did not stop within {}s; killing it",
                self.name,
                grace.as_secs()
            );
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(self.drop_grace);
    }
}

/// A runner daemon config (`runner.toml`) for a local stack.
#[derive(Debug, Clone, Default)]
pub struct RunnerConfig {
    pub state_dir: PathBuf,
    pub api_socket: PathBuf,
    pub attestor_socket: PathBuf,
    /// The content-addressed store (default: under the state dir). Stores
    /// are safe to share between daemons.
    pub store: Option<PathBuf>,
    pub toolchains: BTreeMap<String, PathBuf>,
    /// More top-level keys, verbatim TOML (e.g. `concurrency = 1`).
    pub extra: String,
    /// More `[api]` keys, verbatim TOML.
    pub api_extra: String,
}

fn toml_path(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

impl RunnerConfig {
    /// The config file's text.
    pub fn render(&self) -> String {
        let mut t = format!(
            "state_dir = {}\nattestor_socket = {}\n",
            toml_path(&self.state_dir),
            toml_path(&self.attestor_socket)
        );
        if let Some(store) = &self.store {
            t.push_str(&format!("store = {}\n", toml_path(store)));
        }
        t.push_str(&self.extra);
        t.push_str(&format!(
            "\n[api]\nsocket = {}\n{}\n",
            toml_path(&self.api_socket),
            self.api_extra
        ));
        if !self.toolchains.is_empty() {
            t.push_str("[toolchains]\n");
            for (name, dir) in &self.toolchains {
                t.push_str(&format!("{name} = {}\n", toml_path(dir)));
            }
        }
        t
    }

    /// Writes the config to `path`.
    pub fn write(&self, path: &Path) -> Result<(), StackError> {
        std::fs::write(path, self.render()).map_err(io_err("writing", path))
    }
}

/// Starts `cloister-runner serve --config CONFIG` (with `env` added and the
/// environment overrides that would redirect it removed) and waits for its
/// API socket.
pub fn start_runner(
    bin: &Path,
    config: &Path,
    api_socket: &Path,
    log: &Path,
    env: &[(&str, &str)],
) -> Result<Daemon, StackError> {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--config"]).arg(config);
    for var in [
        "CLOISTER_RUNNER_CONFIG",
        "CLOISTER_RUNNER_SOCKET",
        "CLOISTER_RUNNER_STATE_DIR",
        "CLOISTER_STORE",
        "CLOISTER_ATTESTOR_SOCKET",
        "NOTIFY_SOCKET",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let mut d = Daemon::spawn("cloister-runner serve", cmd, log)?;
    d.wait_socket(api_socket, START_TIMEOUT)?;
    Ok(d)
}

/// Starts `cloister-attestor serve --state-dir STATE` (signing key made on
/// first use) and waits for its signing socket, `STATE/sign.sock`, and for
/// the `listening on URL` line it prints once both listeners are up (callers
/// read the address from the log).
pub fn start_attestor(bin: &Path, state: &Path, log: &Path) -> Result<Daemon, StackError> {
    // The log is appended to across restarts: only a line after this offset
    // announces this process.
    let offset = std::fs::metadata(log).map_or(0, |m| m.len());
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--state-dir"])
        .arg(state)
        .args(["--listen", "127.0.0.1:0"]);
    for var in [
        "CLOISTER_ATTESTOR_SIGN_SOCKET",
        "CLOISTER_ATTESTOR_STATE_DIR",
        "CLOISTER_ATTESTOR_CONFIG",
        "CLOISTER_ATTESTOR_LISTEN",
    ] {
        cmd.env_remove(var);
    }
    let mut d = Daemon::spawn("cloister-attestor serve", cmd, log)?;
    d.wait_socket(&state.join("sign.sock"), START_TIMEOUT)?;
    d.wait_log_line(offset, "listening on ", START_TIMEOUT)?;
    Ok(d)
}

/// A new API key of tenant `name` (created with `plan` on first use) in the
/// attestor state `state`, through `attestor`'s operator CLI.
pub fn tenant_key(
    attestor: &Path,
    state: &Path,
    name: &str,
    plan: &str,
) -> Result<String, StackError> {
    let run = |args: &[&str]| -> Result<String, StackError> {
        let command = format!("cloister-attestor {}", args.join(" "));
        let out = Command::new(attestor)
            .args(args)
            .arg("--state-dir")
            .arg(state)
            .output()
            .map_err(|e| StackError::Command {
                command: command.clone(),
                message: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(StackError::Command {
                command,
                message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let tenants: serde_json::Value = serde_json::from_str(&run(&["tenants", "list", "--json"])?)
        .map_err(|e| StackError::Command {
            command: "cloister-attestor tenants list --json".into(),
            message: e.to_string(),
        })?;
    let exists = tenants
        .as_array()
        .is_some_and(|ts| ts.iter().any(|t| t["name"] == name));
    if !exists {
        run(&["tenants", "create", name, "--plan", plan])?;
    }
    run(&["api-keys", "issue", name])?
        .lines()
        .last()
        .map(|k| k.trim().to_owned())
        .filter(|k| k.starts_with("clst_"))
        .ok_or_else(|| StackError::Command {
            command: format!("cloister-attestor api-keys issue {name}"),
            message: "printed no key".into(),
        })
}

/// What a [`Stack`] runs.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub runner_bin: PathBuf,
    pub attestor_bin: PathBuf,
    pub concurrency: usize,
    /// Seconds running jobs get when the runner is stopped.
    pub shutdown_grace_secs: u64,
    /// A store shared with other stacks (default: under the runner's state).
    pub store: Option<PathBuf>,
    pub toolchains: BTreeMap<String, PathBuf>,
}

/// An attestor and a runner daemon in one directory:
/// `attestor/` (its state; `sign.sock`), `runner/` (state), `runner.toml`,
/// `runner.sock` (API), `attestor.log`, `runner.log`.
#[derive(Debug)]
pub struct Stack {
    pub dir: PathBuf,
    pub runner_bin: PathBuf,
    pub attestor_bin: PathBuf,
    pub attestor_state: PathBuf,
    pub sign_socket: PathBuf,
    pub api_socket: PathBuf,
    pub runner_config: PathBuf,
    pub runner_log: PathBuf,
    // Field order: the runner stops before the attestor on drop.
    pub runner: Option<Daemon>,
    pub attestor: Daemon,
}

impl Stack {
    /// The attestor's consumer URL: the latest `listening on` line of its
    /// log (it may have been restarted; `start_attestor` waits for the line).
    pub fn attestor_url(&self) -> Result<String, StackError> {
        let log = self.dir.join("attestor.log");
        let text = std::fs::read_to_string(&log).map_err(io_err("reading", &log))?;
        text.lines()
            .rev()
            .find_map(|l| l.strip_prefix("listening on "))
            .map(|url| url.trim().to_owned())
            .ok_or_else(|| StackError::Command {
                command: "cloister-attestor serve".into(),
                message: format!("no `listening on` line in {}", log.display()),
            })
    }

    /// A new API key of tenant `name` (created with `plan` on first use),
    /// through the attestor's operator CLI on this stack's state.
    pub fn tenant_key(&self, name: &str, plan: &str) -> Result<String, StackError> {
        tenant_key(&self.attestor_bin, &self.attestor_state, name, plan)
    }

    /// Starts the attestor, writes the runner's config and starts the runner.
    pub fn start(dir: &Path, opts: &StackOptions) -> Result<Stack, StackError> {
        std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        let attestor_state = dir.join("attestor");
        let attestor = start_attestor(
            &opts.attestor_bin,
            &attestor_state,
            &dir.join("attestor.log"),
        )?;
        let sign_socket = attestor_state.join("sign.sock");
        let api_socket = dir.join("runner.sock");
        let runner_config = dir.join("runner.toml");
        RunnerConfig {
            state_dir: dir.join("runner"),
            api_socket: api_socket.clone(),
            attestor_socket: sign_socket.clone(),
            store: opts.store.clone(),
            toolchains: opts.toolchains.clone(),
            extra: format!(
                "concurrency = {}\nshutdown_grace_secs = {}\n",
                opts.concurrency, opts.shutdown_grace_secs
            ),
            api_extra: String::new(),
        }
        .write(&runner_config)?;
        let mut stack = Stack {
            dir: dir.to_path_buf(),
            runner_bin: opts.runner_bin.clone(),
            attestor_bin: opts.attestor_bin.clone(),
            attestor_state,
            sign_socket,
            api_socket,
            runner_config,
            runner_log: dir.join("runner.log"),
            runner: None,
            attestor,
        };
        stack.start_runner()?;
        Ok(stack)
    }

    /// (Re)starts the runner daemon on the same config and state.
    pub fn start_runner(&mut self) -> Result<(), StackError> {
        self.runner = Some(start_runner(
            &self.runner_bin,
            &self.runner_config,
            &self.api_socket,
            &self.runner_log,
            &[],
        )?);
        Ok(())
    }

    /// Stops the runner (SIGTERM: it drains within `grace`).
    pub fn stop_runner(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.runner.take().and_then(|mut r| r.stop(grace))
    }

    /// The runner's API.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::Unix(self.api_socket.clone())
    }

    /// The runner daemon's log.
    pub fn runner_log(&self) -> String {
        std::fs::read_to_string(&self.runner_log).unwrap_or_default()
    }

    /// Writes the attestor's public key (PEM) to `to`.
    pub fn export_public_key(&self, to: &Path) -> Result<(), StackError> {
        let mut cmd = Command::new(&self.attestor_bin);
        cmd.args(["keys", "export", "--state-dir"])
            .arg(&self.attestor_state);
        let pem = output(cmd, "cloister-attestor keys export")?;
        std::fs::write(to, pem + "\n").map_err(io_err("writing", to))
    }
}

/// Submits a job spec (JSON) to a runner; returns the new job's record.
pub async fn submit_job(
    ep: &Endpoint,
    spec: &serde_json::Value,
) -> Result<serde_json::Value, ClientError> {
    ep.json(
        hyper::Method::POST,
        "/v1/jobs",
        Some(spec.to_string().into_bytes()),
    )
    .await
}

/// Polls job `id` every `poll` until it is succeeded, failed or cancelled
/// (or `timeout` passed); returns its last record.
pub async fn wait_job(
    ep: &Endpoint,
    id: &str,
    poll: Duration,
    timeout: Duration,
) -> Result<serde_json::Value, ClientError> {
    let deadline = Instant::now() + timeout;
    loop {
        let job: serde_json::Value = ep
            .json(hyper::Method::GET, &format!("/v1/jobs/{id}"), None)
            .await?;
        let state = job["state"].as_str().unwrap_or("");
        if ["succeeded", "failed", "cancelled"].contains(&state) || Instant::now() >= deadline {
            return Ok(job);
        }
        tokio::time::sleep(poll).await;
    }
}

/// Job `id`'s log.
pub async fn job_log(ep: &Endpoint, id: &str) -> Result<String, ClientError> {
    let log = ep
        .call(hyper::Method::GET, &format!("/v1/jobs/{id}/logs"), None)
        .await?;
    Ok(String::from_utf8_lossy(&log).into_owned())
}

/// Runs git in `dir` with a fixed identity and dates (commits are
/// reproducible), ignoring the user's signing config; returns its stdout.
pub fn git(dir: &Path, args: &[&str]) -> Result<String, StackError> {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Cloister",
            "-c",
            "user.email=build@cloister.invalid",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z");
    output(cmd, &format!("git {}", args.join(" ")))
}

/// Makes `dir` a git repository with everything in it committed on `main`;
/// returns the commit id.
pub fn commit_all(dir: &Path, message: &str) -> Result<String, StackError> {
    git(dir, &["init", "-q"])?;
    git(dir, &["add", "-A"])?;
    git(dir, &["commit", "-q", "-m", message])?;
    git(dir, &["rev-parse", "HEAD"])
}

/// Writes `files` (relative path, text) under `dir` and commits them all;
/// returns the commit id.
pub fn repo_with(dir: &Path, files: &[(&str, &str)]) -> Result<String, StackError> {
    for (name, text) in files {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        std::fs::write(&p, text).map_err(io_err("writing", &p))?;
    }
    commit_all(dir, "fixture")
}

/// Copies a tree of directories and regular files (symlinks are skipped),
/// leaving out directories named in `skip` (build outputs).
pub fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> Result<(), StackError> {
    std::fs::create_dir_all(to).map_err(io_err("creating", to))?;
    for entry in std::fs::read_dir(from).map_err(io_err("reading", from))? {
        let entry = entry.map_err(io_err("reading", from))?;
        let ty = entry
            .file_type()
            .map_err(io_err("reading", &entry.path()))?;
        let dest = to.join(entry.file_name());
        if ty.is_dir() {
            if !skip.iter().any(|s| entry.file_name() == *s) {
                copy_tree(&entry.path(), &dest, skip)?;
            }
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &dest).map_err(io_err("copying to", &dest))?;
        }
    }
    Ok(())
}

/// The host's Rust sysroot (`rustc --print sysroot`), configured as the
/// `rust` toolchain for repo A.
pub fn rust_sysroot() -> Result<PathBuf, StackError> {
    let mut cmd = Command::new("rustc");
    cmd.args(["--print", "sysroot"]);
    output(
        cmd,
        "rustc --print sysroot (repo A needs a Rust toolchain on the host)",
    )
    .map(PathBuf::from)
}
