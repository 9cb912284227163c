//! `cloister-runner quickstart`: the main job on embedded defaults. Starts
//! the attestor and the runner daemon in a state directory (a fresh one when
//! none is given; the attestor generates its signing key on first use),
//! builds repo A hermetically from its pinned commit with its vendored
//! dependencies, verifies the provenance with `cloister-attestor verify`,
//! prints the verdict and stops both daemons. Then it issues an API key of
//! tenant `quickstart` for the trust portal and prints how to open it. With
//! `--json` the last stdout line is `{"verified", "artifact", "provenance",
//! "bundle", "publicKey", "portal", "tenantKey"}`.

use super::artifacts::copy_out;
use super::build::submit_and_follow;
use crate::job::spec::{JobLimits, JobSpec, Source, Vendor};
use crate::job::store::JobState;
use crate::stack::{self, Stack, StackOptions};
use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

/// How long each daemon gets to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);

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
    /// The runner's content-addressed store (default: `cloister/store` in
    /// the user's cache directory, `$XDG_CACHE_HOME` or `~/.cache`, so later
    /// runs skip copying the Rust toolchain; stores are safe to share and
    /// `cloister-runner store gc --store DIR` trims them).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// The Rust toolchain the build gets, snapshotted into the store as
    /// toolchain `rust` (default: `rustc --print sysroot`).
    #[arg(long, value_name = "DIR")]
    pub rust_toolchain: Option<PathBuf>,
    /// The `cloister-attestor` binary (default: next to this one, else on PATH).
    #[arg(long, env = "CLOISTER_ATTESTOR_BIN")]
    pub attestor: Option<PathBuf>,
    /// Print the result as JSON on the last stdout line.
    #[arg(long)]
    pub json: bool,
}

/// Finds `cloister-attestor`: the flag, next to this binary, on PATH, or
/// built with cargo when run through `cargo run`.
fn find_attestor(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p);
    }
    let beside = std::env::current_exe()?.with_file_name("cloister-attestor");
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
    build_beside("cloister-attestor", "cloister-attestor")
}

/// The front binary (`cloister-runner`), which the runner daemon starts
/// sandboxes with: beside this binary, or built with cargo when run through
/// `cargo run` (which builds only the binary it runs).
fn find_front() -> anyhow::Result<PathBuf> {
    let beside = std::env::current_exe()?.with_file_name(crate::binaries::FRONT_BINARY);
    if beside.is_file() {
        return Ok(beside);
    }
    build_beside(crate::binaries::FRONT_BINARY, "cloister-runner")
}

/// Under `cargo run`, builds binary `bin` of `package` beside this one
/// (same profile) and returns its path.
fn build_beside(bin: &str, package: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let beside = exe.with_file_name(bin);
    if let (Some(cargo), Some(manifest)) = (
        std::env::var_os("CARGO"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) {
        eprintln!("quickstart: building {bin} …");
        let mut cmd = Command::new(cargo);
        cmd.current_dir(manifest)
            .args(["build", "--quiet", "-p", package, "--bin", bin]);
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
        "{bin} not found next to {}; build it with `cargo build --release -p {package}`",
        exe.display()
    )
}

/// `cloister/store` in the user's cache directory (`$XDG_CACHE_HOME`, else
/// `$HOME/.cache`); none without either (the store then lives in the state
/// directory). A quickstart leaves its state directory behind for the user
/// to look at: with the store inside it, every run would leave a copy of
/// the Rust toolchain (~1.3 GB) in /tmp.
fn default_store() -> Option<PathBuf> {
    cache_store(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

fn cache_store(xdg_cache: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let absolute = |v: OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    xdg_cache
        .and_then(absolute)
        .or_else(|| home.and_then(absolute).map(|h| h.join(".cache")))
        .map(|c| c.join("cloister").join("store"))
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
    /// How to open the trust portal on this state.
    portal: String,
    tenant_key: String,
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
    find_front()?;
    let sysroot = match &args.rust_toolchain {
        Some(d) => d.clone(),
        None => stack::rust_sysroot()?,
    };
    let store = args.store.clone().or_else(default_store);
    if let Some(store) = &store {
        eprintln!("quickstart: store in {}", store.display());
    }

    // Repo A as a git repository at a pinned commit.
    let repo = dir.join("repo-a");
    if repo.exists() {
        std::fs::remove_dir_all(&repo)?;
    }
    stack::copy_tree(&args.repo, &repo, &["target"])?;
    let commit = stack::commit_all(&repo, "repo A")?;

    // Both daemons; the runner snapshots the Rust toolchain into its store
    // before it listens (a full copy the first time, a stat pass later).
    eprintln!(
        "quickstart: starting the attestor and the runner (the first start copies the Rust toolchain into the store) …"
    );
    let opts = StackOptions {
        runner_bin: std::env::current_exe()?,
        attestor_bin: attestor_bin.clone(),
        concurrency: 1,
        shutdown_grace_secs: 30,
        store,
        toolchains: BTreeMap::from([("rust".to_string(), sysroot)]),
    };
    let mut daemons = Stack::start(&dir, &opts)?;
    daemons.attestor.set_drop_grace(STOP_GRACE);
    if let Some(r) = daemons.runner.as_mut() {
        r.set_drop_grace(STOP_GRACE);
    }

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
        priority: Default::default(),
    };
    let ep = daemons.endpoint();
    let rt = super::common::runtime();
    let progress = std::io::stderr().is_terminal();
    let mut record = rt.block_on(async {
        // With --json the build log is not streamed: stdout carries the result.
        submit_and_follow(&ep, &spec, args.json, progress).await
    })?;
    if record.state != JobState::Succeeded {
        let log = rt
            .block_on(stack::job_log(&ep, &record.id))
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
    daemons.stop_runner(STOP_GRACE);

    // Verify with the attestor's public key.
    let public_key = dir.join("public.pem");
    daemons.export_public_key(&public_key)?;
    daemons.attestor.stop(STOP_GRACE);
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
    // For signing in to the trust portal.
    let tenant_key = daemons.tenant_key("quickstart", "Starter")?;
    Ok(Summary {
        verified,
        artifact: artifact.path,
        provenance: artifact.provenance,
        bundle: artifact.bundle,
        public_key: public_key.display().to_string(),
        portal: format!(
            "cloister-attestor serve --state-dir {}, then open http://{}/portal/",
            daemons.attestor_state.display(),
            PORTAL_LISTEN
        ),
        tenant_key,
    })
}

/// Where `cloister-attestor serve` listens by default.
const PORTAL_LISTEN: &str = "127.0.0.1:8450";

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
                println!("portal:     {}", s.portal);
                println!("tenant key: {}", s.tenant_key);
            }
            if s.verified {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!(
                "cloister-runner quickstart: {}",
                cloister_report::Chain(e.as_ref())
            );
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cache_store;
    use std::path::PathBuf;

    #[test]
    fn the_default_store_is_in_the_users_cache_directory() {
        let p = |s: &str| Some(s.into());
        assert_eq!(
            cache_store(p("/x/cache"), p("/root")),
            Some(PathBuf::from("/x/cache/cloister/store"))
        );
        assert_eq!(
            cache_store(None, p("/root")),
            Some(PathBuf::from("/root/.cache/cloister/store"))
        );
        // relative values are ignored, as the XDG spec says
        assert_eq!(
            cache_store(p("cache"), p("/home/u")),
            Some(PathBuf::from("/home/u/.cache/cloister/store"))
        );
        assert_eq!(cache_store(p(""), None), None);
        assert_eq!(cache_store(None, None), None);
    }
}
