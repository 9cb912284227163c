//! `cloister-runner doctor`: checks that this host can serve as an
//! isolated GitHub Actions runner, one requirement per line, each PASS or
//! FAIL with what was found (`--json` for machines); exit 1 if any fails.
//! The job-started hook (`cookbook/workflows/runner-hooks/`) runs it before
//! every job, so a host that drifted fails the job before a step runs.
//!
//! Checks: the configuration loads; a sandbox starts (user, pid, net …
//! namespaces, seccomp, the profile's cgroup limits: the same front binary
//! and profile the hook uses); the runner daemon and the attestor answer
//! `/healthz`; the image store opens and holds an image; free disk space on
//! the state and store filesystems; the hook's state directory is private
//! to this user; and, given the Actions runner's directory, its `.env`
//! names the container hook and the job hooks and requires job containers.

use crate::client::Endpoint;
use crate::config::Config;
use serde::Serialize;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The runner daemon's config (state dir, store, sockets).
    #[arg(long, env = "CLOISTER_RUNNER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The attestor's consumer API (http://HOST:PORT); default: its signing
    /// socket from the config (which only the daemon's user may reach).
    #[arg(long, value_name = "URL")]
    attestor_url: Option<String>,
    /// Sandbox profile the steps run under.
    #[arg(long, default_value = "default", value_name = "NAME|PATH")]
    profile: String,
    /// The steps' cgroup parent (as given to the hook).
    #[arg(long, value_name = "PATH")]
    cgroup_parent: Option<String>,
    /// The container hook's state directory.
    #[arg(long, default_value = crate::hook::DEFAULT_STATE_DIR, value_name = "DIR")]
    hook_state: PathBuf,
    /// Least free space on the state and store filesystems (K, M, G, T).
    #[arg(long, default_value = "5G", value_name = "SIZE", value_parser = super::common::size_arg)]
    min_free: u64,
    /// The Actions runner's directory: its `.env` is checked.
    #[arg(long, value_name = "DIR")]
    runner_dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// One requirement's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

fn check(name: &'static str, r: Result<String, String>) -> Check {
    match r {
        Ok(detail) => Check {
            name,
            ok: true,
            detail,
        },
        Err(detail) => Check {
            name,
            ok: false,
            detail,
        },
    }
}

pub fn exec(args: Args) -> ExitCode {
    let checks = run_checks(&args);
    let ok = checks.iter().all(|c| c.ok);
    if args.json {
        println!("{}", serde_json::json!({ "ok": ok, "checks": checks }));
    } else {
        for c in &checks {
            println!(
                "{}  {:<12}  {}",
                if c.ok { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        let failed = checks.iter().filter(|c| !c.ok).count();
        if failed > 0 {
            eprintln!(
                "cloister-runner doctor: {failed} of {} checks failed",
                checks.len()
            );
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run_checks(args: &Args) -> Vec<Check> {
    let mut checks = Vec::new();
    let config = Config::load(args.config.as_deref(), None);
    checks.push(check(
        "config",
        match &config {
            Ok(_) => Ok(args
                .config
                .as_ref()
                .map_or("built-in defaults".to_string(), |p| p.display().to_string())),
            Err(e) => Err(e.to_string()),
        },
    ));
    checks.push(check("sandbox", sandbox(args)));
    let Ok(config) = config else {
        return checks;
    };
    let rt = super::common::runtime();
    let health = |ep: Endpoint| {
        rt.block_on(async {
            match tokio::time::timeout(
                Duration::from_secs(5),
                ep.json::<serde_json::Value>(hyper::Method::GET, "/healthz", None),
            )
            .await
            {
                Ok(Ok(v)) if v["status"] == "ok" => Ok(format!("{ep}: ok")),
                Ok(Ok(v)) => Err(format!("{ep}: {v}")),
                Ok(Err(e)) => Err(format!("{ep}: {e}")),
                Err(_) => Err(format!("{ep}: no answer within 5 s")),
            }
        })
    };
    checks.push(check(
        "daemon",
        health(Endpoint::Unix(config.api.socket.clone())),
    ));
    let attestor = match &args.attestor_url {
        Some(url) => match url.strip_prefix("http://") {
            Some(addr) => Endpoint::Tcp {
                addr: addr.trim_end_matches('/').to_string(),
                token: None,
            },
            None => {
                checks.push(check(
                    "attestor",
                    Err(format!(
                        "--attestor-url {url}: only http://HOST:PORT (loopback) is checked"
                    )),
                ));
                return finish(checks, args, &config);
            }
        },
        None => Endpoint::Unix(config.attestor_socket.clone()),
    };
    checks.push(check("attestor", health(attestor)));
    finish(checks, args, &config)
}

fn finish(mut checks: Vec<Check>, args: &Args, config: &Config) -> Vec<Check> {
    checks.push(check("store", store(&config.store)));
    checks.push(check(
        "disk",
        disk(&[&config.state_dir, &config.store], args.min_free),
    ));
    checks.push(check("hook-state", hook_state(&args.hook_state)));
    if let Some(dir) = &args.runner_dir {
        checks.push(check("runner-env", runner_env(dir)));
    }
    checks
}

/// Starts `true` in a sandbox through the front binary, as the hook's
/// steps and the daemon's builds are started.
fn sandbox(args: &Args) -> Result<String, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("locate this executable: {e}"))?
        .with_file_name(crate::binaries::FRONT_BINARY);
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["run", "--json", "--profile", &args.profile]);
    if let Some(parent) = &args.cgroup_parent {
        cmd.args(["--cgroup-parent", parent]);
    }
    let out = cmd
        .args(["--", "true"])
        .output()
        .map_err(|e| format!("start {}: {e}", exe.display()))?;
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if !out.status.success() {
        let why = result["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
        return Err(format!("a sandbox did not start: {why}"));
    }
    let iso = &result["isolation"];
    let unapplied = result["unappliedLimits"].as_array().map_or(0, Vec::len);
    if unapplied > 0 {
        return Err(format!(
            "limits not applied: {} (give the hook a delegated --cgroup-parent)",
            result["unappliedLimits"]
        ));
    }
    Ok(format!(
        "network {}, namespaces {}, rootless {}, profile {}",
        iso["network"].as_str().unwrap_or("?"),
        iso["namespaces"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(","))
            .unwrap_or_default(),
        iso["rootless"],
        args.profile
    ))
}

fn store(root: &Path) -> Result<String, String> {
    // Looked at, never created (Store::open makes what is missing).
    if !root.join("images").is_dir() {
        return Err(format!(
            "{}: no image store here (job containers come from it: `cloister-runner image import`)",
            root.display()
        ));
    }
    let store =
        cloister_inputs::Store::open(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let images =
        cloister_inputs::image::list(&store).map_err(|e| format!("{}: {e}", root.display()))?;
    if images.is_empty() {
        return Err(format!(
            "{}: no image imported (job containers come from here: `cloister-runner image import`)",
            root.display()
        ));
    }
    Ok(format!("{}: {} image(s)", root.display(), images.len()))
}

fn disk(paths: &[&Path], min_free: u64) -> Result<String, String> {
    let mut parts = Vec::new();
    for p in paths {
        // The nearest existing ancestor (a store may not exist yet).
        let mut at = p.to_path_buf();
        while !at.exists() && at.pop() {}
        let st = nix::sys::statvfs::statvfs(&at).map_err(|e| format!("{}: {e}", at.display()))?;
        let free = st.blocks_available() as u64 * st.fragment_size() as u64;
        if free < min_free {
            return Err(format!(
                "{}: {} free, below {}",
                p.display(),
                human(free),
                human(min_free)
            ));
        }
        parts.push(format!("{} {} free", p.display(), human(free)));
    }
    Ok(parts.join(", "))
}

fn human(bytes: u64) -> String {
    const G: f64 = (1u64 << 30) as f64;
    format!("{:.1} GiB", bytes as f64 / G)
}

fn hook_state(dir: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(format!(
            "{} belongs to uid {}, not this user ({uid}): the hook runs as the runner's user",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} is mode {:o}: make it 0700",
            dir.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    Ok(format!("{}: private to uid {uid}", dir.display()))
}

/// The runner's `.env`: the container hook (a `.sh` that execs
/// `cloister-runner hook`), job containers required, both job hooks.
fn runner_env(dir: &Path) -> Result<String, String> {
    let path = dir.join(".env");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let vars: std::collections::BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let file = |key: &str| -> Result<PathBuf, String> {
        let v = vars
            .get(key)
            .ok_or_else(|| format!("{}: {key} is not set", path.display()))?;
        let p = PathBuf::from(v);
        let m = std::fs::metadata(&p).map_err(|e| format!("{key}={v}: {e}"))?;
        if !m.is_file() || m.permissions().mode() & 0o111 == 0 {
            return Err(format!("{key}={v}: not an executable file"));
        }
        Ok(p)
    };
    let hook = file("ACTIONS_RUNNER_CONTAINER_HOOKS")?;
    if hook.extension().is_none_or(|e| e != "sh") {
        return Err(format!(
            "ACTIONS_RUNNER_CONTAINER_HOOKS={}: the runner runs a .sh (or .js) entry point",
            hook.display()
        ));
    }
    let script = std::fs::read_to_string(&hook).map_err(|e| format!("{}: {e}", hook.display()))?;
    if !script.contains("cloister-runner") || !script.contains(" hook ") {
        return Err(format!(
            "{} does not hand the request to `cloister-runner hook`",
            hook.display()
        ));
    }
    if vars.get("ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER") != Some(&"true") {
        return Err(format!(
            "{}: ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER=true is required (a job without a container would run on the host)",
            path.display()
        ));
    }
    file("ACTIONS_RUNNER_HOOK_JOB_STARTED")?;
    file("ACTIONS_RUNNER_HOOK_JOB_COMPLETED")?;
    Ok(format!(
        "{}: container hook {}, job containers required, job hooks set",
        path.display(),
        hook.display()
    ))
}
