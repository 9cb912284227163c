//! `cloister-runner quickstart`: the main job on embedded defaults. Starts
//! the attestor and the runner daemon in a state directory (a fresh one when
//! none is given; the attestor generates its signing key on first use),
//! builds repo A hermetically from its pinned commit with its vendored
//! dependencies, verifies the provenance with `cloister-attestor verify`,
//! prints the verdict and stops both daemons. With `--json` the last stdout
//! line is `{"verified", "artifact", "provenance", "bundle", "publicKey"}`.

use super::build::{copy_out, submit_and_follow};
use crate::client::Endpoint;
use crate::job::spec::{JobLimits, JobSpec, Source, Vendor};
use crate::job::store::JobState;
use anyhow::{Context, bail};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Where repo A's sources are (the fixture in this source tree).
const REPO_A: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/repo-a");
/// The repository URI recorded for repo A.
pub const REPO_A_URI: &str = "git+https://github.com/cloister-dev/repo-a";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// State directory for both daemons, repo A's checkout and the outputs
    /// (default: a fresh temporary directory, kept afterwards).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Repo A's sources (default: the fixture in the Cloister source tree).
    #[arg(long, default_value = REPO_A)]
    pub repo: PathBuf,
    /// The `cloister-attestor` binary (default: next to this one, else on PATH).
    #[arg(long, env = "CLOISTER_ATTESTOR_BIN")]
    pub attestor: Option<PathBuf>,
    /// Print the result as JSON on the last stdout line.
    #[arg(long)]
    pub json: bool,
}

/// A daemon child process, stopped with SIGTERM (then SIGKILL) on drop.
struct Daemon {
    name: &'static str,
    child: Option<Child>,
}

impl Daemon {
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("quickstart: {} did not stop in 15s; killing it", self.name);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn check_alive(&mut self, log: &Path) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                bail!(
                    "{} exited ({status}); last log lines:\n{}",
                    self.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(name: &'static str, mut cmd: Command, log: &Path) -> anyhow::Result<Daemon> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    Ok(Daemon {
        name,
        child: Some(child),
    })
}

fn wait_socket(d: &mut Daemon, socket: &Path, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Ok(());
        }
        d.check_alive(log)?;
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!(
        "{} did not open {} within 60s (log: {})",
        d.name,
        socket.display(),
        log.display()
    )
}

/// Finds `cloister-attestor`: the flag, next to this binary, on PATH, or
/// built with cargo when run through `cargo run`.
fn find_attestor(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let beside = exe.with_file_name("cloister-attestor");
    if beside.is_file() {
        return Ok(beside);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("cloister-attestor");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    // Under `cargo run`, build the attestor beside us (same profile).
    if let (Some(cargo), Some(manifest)) = (
        std::env::var_os("CARGO"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) {
        eprintln!("quickstart: building cloister-attestor …");
        let mut cmd = Command::new(cargo);
        cmd.current_dir(manifest).args([
            "build",
            "--quiet",
            "-p",
            "cloister-attestor",
            "--bin",
            "cloister-attestor",
        ]);
        if exe
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|p| p == "release")
        {
            cmd.arg("--release");
        }
        if cmd.status()?.success() && beside.is_file() {
            return Ok(beside);
        }
    }
    bail!(
        "cloister-attestor not found next to {} or on PATH; build it with `cargo build --release -p cloister-attestor`",
        exe.display()
    )
}

fn rust_sysroot() -> anyhow::Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context(
            "rustc not found: repo A is a Rust crate and needs a Rust toolchain on the host",
        )?;
    if !out.status.success() {
        bail!(
            "rustc --print sysroot failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if ty.is_dir() {
            if entry.file_name() != "target" {
                copy_tree(&entry.path(), &dest)?;
            }
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Cloister Quickstart",
            "-c",
            "user.email=quickstart@cloister.invalid",
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
        .context("git not found")?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// What quickstart produced.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    verified: bool,
    artifact: String,
    provenance: String,
    bundle: String,
    public_key: String,
}

fn run(args: &Args) -> anyhow::Result<Summary> {
    let dir = match &args.state_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            std::path::absolute(d)?
        }
        None => tempfile::Builder::new()
            .prefix("cloister-quickstart-")
            .tempdir()?
            .keep(),
    };
    eprintln!("quickstart: state in {}", dir.display());
    let attestor_bin = find_attestor(args.attestor.clone())?;
    let sysroot = rust_sysroot()?;

    // Repo A as a git repository at a pinned commit.
    let repo = dir.join("repo-a");
    if repo.exists() {
        std::fs::remove_dir_all(&repo)?;
    }
    copy_tree(&args.repo, &repo)?;
    git(&repo, &["init", "-q"])?;
    git(&repo, &["add", "-A"])?;
    git(&repo, &["commit", "-q", "-m", "repo A"])?;
    let commit = git(&repo, &["rev-parse", "HEAD"])?;

    // The attestor (signing key generated on first use).
    let att_state = dir.join("attestor");
    let att_log = dir.join("attestor.log");
    let mut cmd = Command::new(&attestor_bin);
    cmd.args(["serve", "--state-dir"])
        .arg(&att_state)
        .args(["--listen", "127.0.0.1:0"]);
    for var in [
        "CLOISTER_ATTESTOR_SIGN_SOCKET",
        "CLOISTER_ATTESTOR_CONFIG",
        "CLOISTER_ATTESTOR_LISTEN",
    ] {
        cmd.env_remove(var);
    }
    let mut attestor = spawn("cloister-attestor", cmd, &att_log)?;
    let sign_socket = att_state.join("sign.sock");
    wait_socket(&mut attestor, &sign_socket, &att_log)?;

    // The runner daemon.
    let runner_state = dir.join("runner");
    let api_socket = dir.join("runner.sock");
    let config = dir.join("runner.toml");
    let toml = format!(
        "state_dir = {:?}\nattestor_socket = {:?}\nconcurrency = 1\n[api]\nsocket = {:?}\n[toolchains]\nrust = {:?}\n",
        runner_state.display().to_string(),
        sign_socket.display().to_string(),
        api_socket.display().to_string(),
        sysroot.display().to_string(),
    );
    std::fs::write(&config, toml)?;
    let runner_log = dir.join("runner.log");
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["serve", "--config"]).arg(&config);
    for var in [
        "CLOISTER_RUNNER_SOCKET",
        "CLOISTER_RUNNER_STATE_DIR",
        "CLOISTER_STORE",
        "CLOISTER_ATTESTOR_SOCKET",
    ] {
        cmd.env_remove(var);
    }
    let mut runner = spawn("cloister-runner serve", cmd, &runner_log)?;
    wait_socket(&mut runner, &api_socket, &runner_log)?;

    // Build repo A hermetically.
    let spec = JobSpec {
        source: Source {
            path: repo.clone(),
            commit,
            uri: REPO_A_URI.into(),
            git_ref: "refs/heads/main".into(),
        },
        profile: "default".into(),
        image: None,
        vendor: vec![Vendor {
            path: "vendor".into(),
            dest: None,
        }],
        toolchains: vec!["rust".into()],
        command: ["cargo", "build", "--release", "--frozen", "--offline"]
            .map(String::from)
            .to_vec(),
        env: Default::default(),
        outputs: vec!["target/release/repo-a".into()],
        limits: JobLimits::default(),
    };
    let ep = Endpoint::Unix(api_socket);
    let rt = super::common::runtime();
    let progress = std::io::stderr().is_terminal();
    let mut record = rt.block_on(async {
        // With --json the build log is not streamed: stdout carries the result.
        submit_and_follow(&ep, &spec, args.json, progress).await
    })?;
    if record.state != JobState::Succeeded {
        let log = rt
            .block_on(ep.call(
                hyper::Method::GET,
                &format!("/v1/jobs/{}/logs", record.id),
                None,
            ))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        eprintln!("{log}");
        bail!(
            "the build {}: {}",
            record.state,
            record.reason.unwrap_or_default()
        );
    }
    let out = dir.join("out");
    rt.block_on(copy_out(&ep, &mut record, &out))?;
    let artifact = record
        .result
        .as_ref()
        .and_then(|r| r.artifacts.first())
        .cloned()
        .context("the job produced no artifact")?;
    runner.stop();

    // Verify with the attestor's public key.
    let public_key = dir.join("public.pem");
    let pem = Command::new(&attestor_bin)
        .args(["keys", "export", "--state-dir"])
        .arg(&att_state)
        .output()?;
    if !pem.status.success() {
        bail!(
            "exporting the public key: {}",
            String::from_utf8_lossy(&pem.stderr).trim()
        );
    }
    std::fs::write(&public_key, &pem.stdout)?;
    attestor.stop();
    let verdict = Command::new(&attestor_bin)
        .args([
            "verify",
            "--provenance",
            &artifact.provenance,
            "--public-key",
        ])
        .arg(&public_key)
        .args([
            "--artifact",
            &artifact.path,
            "--source-uri",
            REPO_A_URI,
            "--source-branch",
            "main",
            "--json",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&verdict.stdout);
    let json: serde_json::Value = serde_json::from_str(text.trim()).with_context(|| {
        format!(
            "cloister-attestor verify printed no verdict: {}",
            String::from_utf8_lossy(&verdict.stderr)
        )
    })?;
    let verified = json["verified"].as_bool() == Some(true);
    eprintln!("verdict: {}", serde_json::to_string_pretty(&json)?);
    Ok(Summary {
        verified,
        artifact: artifact.path,
        provenance: artifact.provenance,
        bundle: artifact.bundle,
        public_key: public_key.display().to_string(),
    })
}

pub fn exec(args: Args) -> ExitCode {
    match run(&args) {
        Ok(s) => {
            if args.json {
                println!("{}", serde_json::to_string(&s).expect("summary serializes"));
            } else {
                println!(
                    "{}: repo A built hermetically and its provenance verified",
                    if s.verified { "PASSED" } else { "FAILED" }
                );
                println!("artifact:   {}", s.artifact);
                println!("provenance: {}", s.provenance);
                println!("bundle:     {}", s.bundle);
                println!("public key: {}", s.public_key);
            }
            if s.verified {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("cloister-runner quickstart: {e:#}");
            ExitCode::from(1)
        }
    }
}
