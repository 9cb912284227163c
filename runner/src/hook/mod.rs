//! `cloister-runner hook`: the GitHub Actions runner's container hooks
//! (`ACTIONS_RUNNER_CONTAINER_HOOKS`), so that every step of a job on an
//! isolated runner runs in a Cloister sandbox instead of on the host.
//!
//! The runner executes the hook once per job event with one JSON request on
//! stdin (`request`) and reads the response file it names:
//! - `prepare_job`: the job container's image must be pinned by digest and
//!   already in the runner's image store (nothing is pulled); services,
//!   port mappings, `options` and `volumes` are refused; the runner's mounts
//!   are checked (`job::plan_mounts`) and recorded (`job::Records`); the
//!   response carries `state` (our job id), `context.container` and
//!   `isAlpine`.
//! - `run_script_step`: the step's entry point runs in a fresh sandbox on
//!   the image's root filesystem with the recorded mounts (the runner's
//!   action cache read-only), the step's environment and `prependPath`, no
//!   network, the profile's limits; its output is the hook's output and its
//!   status the hook's exit status. A step of an action on the operator's
//!   allow-list (`network`) shares the host's network instead, with every
//!   other isolation kept and a narrowed environment; the log says which.
//! - `run_container_step`: an image step the same way (image from the store;
//!   a Dockerfile is refused: isolated runners build no images).
//! - `cleanup_job`: removes the job's record; the sandboxes left nothing.
//!
//! Errors are one line on stderr (the Actions log shows it) and exit 1; a
//! sandbox that could not start exits with its own status (125…).
//! The process must stay single-threaded: `cloister_sandbox::run` requires it.

pub mod job;
pub mod network;
pub mod request;

use cloister_inputs::{Digest, EntryKind, Store};
use cloister_sandbox::{Bind, Network, Profile, SandboxSpec};
use job::{JobError, JobRecord, PlannedMount, Records};
use request::{Args, Command, ContainerArgs, Request, RequestError, ScriptStepArgs};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The PATH a step starts from before `prependPath` (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where the hook keeps its job records unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cloister/github-hook";

/// Errors of one hook invocation.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("{command}: {message}")]
    Refused {
        command: &'static str,
        message: String,
    },
    #[error("{command}: {source}")]
    Job {
        command: &'static str,
        source: JobError,
    },
    #[error("{command}: profile {name}: {source}")]
    Profile {
        command: &'static str,
        name: String,
        source: cloister_sandbox::ProfileError,
    },
    #[error("{command}: the sandbox did not run the step: {source}")]
    Sandbox {
        command: &'static str,
        source: cloister_sandbox::SandboxError,
    },
    #[error("{command}: {what} {path}: {source}")]
    Io {
        command: &'static str,
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl HookError {
    /// The status the hook exits with for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            HookError::Sandbox { source, .. } => source.exit_code(),
            _ => 1,
        }
    }
}

/// How the hook is set up (the entry script's flags).
#[derive(Debug, Clone)]
pub struct HookOptions {
    /// The runner's content-addressed store (its images).
    pub store: PathBuf,
    /// The hook's own records (outside every mount).
    pub state_dir: PathBuf,
    /// The sandbox profile every step runs under.
    pub profile: String,
    /// Where the steps' cgroups go (a delegated cgroup for a rootless runner).
    pub cgroup_parent: Option<String>,
    /// The runner daemon's API socket, bound into every step at
    /// [`STEP_DAEMON_SOCKET`] (the release workflow submits its build
    /// through it; a client of the socket can submit jobs, nothing more).
    pub daemon_socket: Option<PathBuf>,
    /// The attestor's public key (PEM), bound read-only at [`STEP_PUBLIC_KEY`].
    pub trusted_key: Option<PathBuf>,
    /// The actions whose script steps share the host's network (each
    /// pinned by commit; empty: no step gets a network).
    pub network_actions: Vec<network::NetworkAction>,
}

/// Where a step finds the runner daemon's socket (also `CLOISTER_RUNNER_SOCKET`).
pub const STEP_DAEMON_SOCKET: &str = "/cloister/runner.sock";
/// Where a step finds the trusted public key (also `CLOISTER_PUBLIC_KEY`).
pub const STEP_PUBLIC_KEY: &str = "/cloister/attestor-public.pem";

/// What an invocation ended with: the exit status and a line for the log.
#[derive(Debug)]
pub struct Done {
    pub status: i32,
    pub note: Option<String>,
}

/// Handles one request document.
pub fn handle(input: &[u8], opts: &HookOptions) -> Result<Done, HookError> {
    let req = Request::parse(input)?;
    let command = req.command;
    let records = Records::open(&opts.state_dir).map_err(job_err(command))?;
    match req.args {
        Args::PrepareJob(args) => prepare_job(&req.response_file, args, opts, &records),
        Args::RunScriptStep(args) => {
            let record = prepared(command, req.state.as_ref(), &records)?;
            run_script_step(&args, &record, opts)
        }
        Args::RunContainerStep(args) => {
            let record = prepared(command, req.state.as_ref(), &records)?;
            run_container_step(&args, &record, opts, &records)
        }
        Args::CleanupJob => cleanup_job(req.state.as_ref(), &records),
    }
}

fn job_err(command: Command) -> impl FnOnce(JobError) -> HookError {
    move |source| HookError::Job {
        command: command.as_str(),
        source,
    }
}

fn refused(command: Command, message: impl Into<String>) -> HookError {
    HookError::Refused {
        command: command.as_str(),
        message: message.into(),
    }
}

/// The record of the job the request's state names.
fn prepared(
    command: Command,
    state: Option<&serde_json::Value>,
    records: &Records,
) -> Result<JobRecord, HookError> {
    let id = job::job_id(state)
        .map_err(job_err(command))?
        .ok_or_else(|| {
            refused(
                command,
                "no prepared job in the request's state: this runner runs every step in a job container (set ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER=true and give the job a `container:`)",
            )
        })?;
    records.load(&id).map_err(job_err(command))?.ok_or_else(|| {
        refused(
            command,
            format!("job {id} is not prepared (or was cleaned up)"),
        )
    })
}

/// `sha256:<hex>` from an image reference pinned by digest:
/// `NAME@sha256:<hex>`, `sha256:<hex>`, optionally `docker://…`.
pub fn image_digest(reference: &str) -> Result<Digest, String> {
    let r = reference.trim();
    let r = r.strip_prefix("docker://").unwrap_or(r);
    let digest = r.rsplit_once('@').map_or(r, |(_, d)| d);
    digest.parse::<Digest>().map_err(|_| {
        format!(
            "image {reference:?} is not pinned by digest: use NAME@sha256:<manifest digest> of an image imported with `cloister-runner image import` (isolated runners pull nothing)"
        )
    })
}

/// The unpacked root filesystem of an image in the store, pinned for as
/// long as the returned guard lives.
fn image_rootfs(
    command: Command,
    store_root: &Path,
    digest: &Digest,
) -> Result<cloister_inputs::Pin, HookError> {
    let store = Store::open(store_root).map_err(|e| {
        refused(
            command,
            format!("the runner's image store {}: {e}", store_root.display()),
        )
    })?;
    store.pin(EntryKind::Image, digest).map_err(|e| match e {
        cloister_inputs::StoreError::NotFound(_) => refused(
            command,
            format!(
                "image {digest} is not in the runner's image store {} (import it with `cloister-runner image import`; isolated runners pull nothing)",
                store_root.display()
            ),
        ),
        other => refused(command, format!("image {digest}: {other}")),
    })
}

/// Refusals shared by the job container and container steps: what would
/// need a network, docker flags, or host paths the runner did not choose.
fn refuse_container_options(command: Command, c: &ContainerArgs) -> Result<(), HookError> {
    if c.port_mappings.as_ref().is_some_and(|p| !p.is_empty()) {
        return Err(refused(
            command,
            "port mappings are refused: steps on an isolated runner have no network",
        ));
    }
    if c.create_options
        .as_ref()
        .is_some_and(|o| !o.trim().is_empty())
    {
        return Err(refused(
            command,
            "container `options` are refused: docker flags do not apply; the sandbox profile sets the limits",
        ));
    }
    if c.user_mount_volumes.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(refused(
            command,
            "container `volumes` are refused: a step sees only the runner's work directories",
        ));
    }
    request::check_env(command, c.environment_variables.as_ref())?;
    Ok(())
}

fn prepare_job(
    response_file: &Option<PathBuf>,
    args: request::PrepareJobArgs,
    opts: &HookOptions,
    records: &Records,
) -> Result<Done, HookError> {
    let command = Command::PrepareJob;
    let response_file = response_file
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or(RequestError::Missing {
            command: "prepare_job",
            field: "responseFile",
        })?;
    if args.services.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(refused(
            command,
            "service containers are refused: a service needs a network, and steps on an isolated runner have none",
        ));
    }
    let Some(container) = args.container else {
        return Err(refused(
            command,
            "the job has no container: every job on an isolated runner runs in one (set `container:` to an imported image digest; ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER=true)",
        ));
    };
    let image = request::required(command, "container.image", &container.image)?;
    let digest = image_digest(image).map_err(|m| refused(command, m))?;
    refuse_container_options(command, &container)?;
    let working_directory = request::working_directory(command, &container.working_directory)?;
    let mounts = container.system_mount_volumes.unwrap_or_default();
    let work_root = job::source_of(&mounts, "/__w")
        .map_err(job_err(command))?
        .ok_or(RequestError::Missing {
            command: "prepare_job",
            field: "a systemMountVolumes entry for /__w (the runner's work directory)",
        })?;
    let externals = job::source_of(&mounts, "/__e").map_err(job_err(command))?;
    let state_dir = records.state_dir().map_err(job_err(command))?;
    let plan = job::plan_mounts(
        &mounts,
        job::JOB_TARGETS,
        &work_root,
        externals.as_deref(),
        &state_dir,
    )
    .map_err(job_err(command))?;
    let actions = job::actions_dir(&plan.mounts, &work_root).map_err(job_err(command))?;
    let pin = image_rootfs(command, &opts.store, &digest)?;
    let is_alpine = job::is_alpine(pin.path());
    drop(pin);
    // What the entry script binds into every step must be there, or every
    // step would fail; say so once, up front.
    for (what, path) in [
        ("daemon socket", &opts.daemon_socket),
        ("trusted key", &opts.trusted_key),
    ] {
        if let Some(path) = path {
            std::fs::metadata(path).map_err(|source| HookError::Io {
                command: "prepare_job",
                what,
                path: path.clone(),
                source,
            })?;
        }
    }
    // The profile is loaded now so that a bad one fails the job up front.
    Profile::load(&opts.profile).map_err(|source| HookError::Profile {
        command: "prepare_job",
        name: opts.profile.clone(),
        source,
    })?;
    let id = uuid::Uuid::now_v7().to_string();
    let record = JobRecord {
        version: 1,
        id: id.clone(),
        image: digest.to_string(),
        work_root,
        externals,
        mounts: job::protect_actions(&plan.mounts, &actions),
        working_directory,
        actions,
        env: container.environment_variables.unwrap_or_default(),
        is_alpine,
    };
    records.save(&record).map_err(job_err(command))?;
    let response = serde_json::json!({
        "state": { job::STATE_KEY: id },
        "context": {
            "container": { "id": format!("cloister-{id}"), "network": "none" },
            "services": [],
        },
        "isAlpine": is_alpine,
    });
    if let Err(e) = write_response(response_file, &response) {
        // No half-prepared job is left behind.
        let _ = records.remove(&id);
        return Err(HookError::Io {
            command: "prepare_job",
            what: "writing the response file",
            path: response_file.clone(),
            source: e,
        });
    }
    let network = if opts.network_actions.is_empty() {
        "no network".to_string()
    } else {
        let list: Vec<String> = opts.network_actions.iter().map(|a| a.to_string()).collect();
        format!(
            "no network but for the steps of {} (the hook's network allow-list)",
            list.join(", ")
        )
    };
    let mut note = format!(
        "cloister: job container {digest} prepared (job {id}; every step runs sandboxed, {network}; the action cache is read-only)"
    );
    if !plan.dropped.is_empty() {
        note.push_str(&format!(
            "; not mounted: {} (the Docker socket is root on the host)",
            plan.dropped.join(", ")
        ));
    }
    Ok(Done {
        status: 0,
        note: Some(note),
    })
}

/// Writes the response document over the (runner-created) response file,
/// never through a symlink.
fn write_response(path: &Path, value: &serde_json::Value) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut text = serde_json::to_vec(value).expect("a response serializes");
    text.push(b'\n');
    f.write_all(&text)
}

/// The environment of a step: Docker's default PATH and HOME, the job
/// container's env, the step's env, `GITHUB_ACTIONS`/`CI`, then
/// `prependPath` in front of PATH.
fn step_env(
    container_env: &BTreeMap<String, String>,
    step_env: Option<&BTreeMap<String, String>>,
    prepend: Option<&request::PrependPath>,
    has_home: bool,
) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("PATH".into(), DEFAULT_PATH.into());
    if has_home {
        env.insert("HOME".into(), "/github/home".into());
    }
    for (k, v) in container_env.iter().chain(step_env.into_iter().flatten()) {
        env.insert(k.clone(), v.clone());
    }
    env.insert("GITHUB_ACTIONS".into(), "true".into());
    env.entry("CI".into()).or_insert_with(|| "true".into());
    if let Some(p) = prepend {
        let mut dirs = p.dirs();
        if !dirs.is_empty() {
            dirs.push(env["PATH"].clone());
            env.insert("PATH".into(), dirs.join(":"));
        }
    }
    env.into_iter().collect()
}

/// Runs `argv` in a fresh sandbox on `image`'s root filesystem with `mounts`.
#[allow(clippy::too_many_arguments)]
fn run_sandboxed(
    command: Command,
    opts: &HookOptions,
    work_root: &Path,
    image: &str,
    mounts: &[PlannedMount],
    argv: Vec<String>,
    workdir: PathBuf,
    env: Vec<(String, String)>,
    network: Network,
) -> Result<Done, HookError> {
    let digest = image_digest(image).map_err(|m| refused(command, m))?;
    let pin = image_rootfs(command, &opts.store, &digest)?;
    let profile = Profile::load(&opts.profile).map_err(|source| HookError::Profile {
        command: command.as_str(),
        name: opts.profile.clone(),
        source,
    })?;
    let mut spec = SandboxSpec::new(argv, profile);
    spec.rootfs = Some(pin.path().to_path_buf());
    for m in mounts {
        let bind = Bind {
            source: m.source.clone(),
            destination: m.target.clone(),
        };
        if m.read_only {
            spec.ro_binds.push(bind);
        } else {
            spec.binds.push(bind);
        }
    }
    let mut env = env;
    // A step with the host's network has no use for the daemon's socket
    // (it submits nothing), so it does not get it.
    let daemon_socket = match network {
        Network::None => &opts.daemon_socket,
        Network::Host => &None,
    };
    for (host, inside, var) in [
        (daemon_socket, STEP_DAEMON_SOCKET, "CLOISTER_RUNNER_SOCKET"),
        (&opts.trusted_key, STEP_PUBLIC_KEY, "CLOISTER_PUBLIC_KEY"),
    ] {
        if let Some(host) = host {
            spec.ro_binds.push(Bind {
                source: host.clone(),
                destination: PathBuf::from(inside),
            });
            env.push((var.into(), inside.into()));
        }
    }
    // Where `/__w` is on the host: the daemon reads a checkout by its host path.
    env.push(("CLOISTER_HOST_WORK".into(), work_root.display().to_string()));
    spec.workdir = Some(workdir);
    spec.env = env;
    spec.cgroup_parent = opts.cgroup_parent.clone();
    spec.network = network;
    let outcome = cloister_sandbox::run(&spec).map_err(|source| HookError::Sandbox {
        command: command.as_str(),
        source,
    })?;
    drop(spec);
    drop(pin);
    let note = match (outcome.limit_hit, outcome.signal) {
        (Some(limit), _) => Some(format!(
            "cloister: the step was stopped by the sandbox's {limit} limit"
        )),
        (None, Some(sig)) => Some(format!("cloister: the step was killed by signal {sig}")),
        _ => None,
    };
    Ok(Done {
        status: outcome.status_code(),
        note,
    })
}

fn entry_argv(
    command: Command,
    entry_point: &Option<String>,
    args: &Option<Vec<String>>,
) -> Result<Vec<String>, HookError> {
    let entry = request::required(command, "entryPoint", entry_point)?;
    let mut argv = vec![network::unquote_arg(entry)];
    // The runner splits its argument string on spaces; empty pieces are
    // gaps, and a piece it wrapped in double quotes for a shell (a node
    // action's script path) is taken off them: no shell runs here.
    argv.extend(
        args.iter()
            .flatten()
            .filter(|a| !a.is_empty())
            .map(|a| network::unquote_arg(a)),
    );
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(refused(
            command,
            "entry point arguments must not contain NUL",
        ));
    }
    Ok(argv)
}

fn run_script_step(
    args: &ScriptStepArgs,
    record: &JobRecord,
    opts: &HookOptions,
) -> Result<Done, HookError> {
    let command = Command::RunScriptStep;
    let argv = entry_argv(command, &args.entry_point, &args.entry_point_args)?;
    let workdir = request::working_directory(command, &args.working_directory)?;
    request::check_env(command, args.environment_variables.as_ref())?;
    // A step may have replaced a directory it could write (`/__w/_tool`,
    // say) with a link leading out of the work directory; the next step
    // must not get that bound in.
    job::verify_mounts(&record.mounts).map_err(job_err(command))?;
    verify_actions(command, record)?;
    let has_home = record
        .mounts
        .iter()
        .any(|m| m.target == Path::new("/github/home"));
    let env = step_env(
        &record.env,
        args.environment_variables.as_ref(),
        args.prepend_path.as_ref(),
        has_home,
    );
    let decision = network::decide(
        &opts.network_actions,
        &argv[0],
        &argv[1..],
        &record.actions,
        record.externals.as_deref(),
    );
    let (env, net) = match decision {
        network::Decision::Host { action, script } => {
            let (env, dropped) = network::network_env(env);
            let mut line = format!(
                "cloister: this step gets the host network: its script {script} is action {action}, on the hook's network allow-list (every other isolation kept; PATH and HOME reset"
            );
            if !dropped.is_empty() {
                line.push_str(&format!("; variables not passed: {}", dropped.join(", ")));
            }
            line.push(')');
            eprintln!("{line}");
            (env, Network::Host)
        }
        network::Decision::None { why } => {
            if let Some(why) = why {
                eprintln!("cloister: this step gets no network: {why}");
            }
            (env, Network::None)
        }
    };
    run_sandboxed(
        command,
        opts,
        &record.work_root,
        &record.image,
        &record.mounts,
        argv,
        workdir,
        env,
        net,
    )
}

/// The action cache is still the directory `prepare_job` resolved (it is
/// read-only in every step; this catches a change made around the hook).
fn verify_actions(command: Command, record: &JobRecord) -> Result<(), HookError> {
    job::verify_mounts(&[PlannedMount {
        source: record.actions.clone(),
        target: PathBuf::from(network::ACTIONS_TARGET),
        read_only: true,
    }])
    .map_err(job_err(command))
}

fn run_container_step(
    args: &ContainerArgs,
    record: &JobRecord,
    opts: &HookOptions,
    records: &Records,
) -> Result<Done, HookError> {
    let command = Command::RunContainerStep;
    if args
        .dockerfile
        .as_ref()
        .is_some_and(|d| !d.trim().is_empty())
    {
        return Err(refused(
            command,
            "Dockerfile steps are refused: isolated runners build no images (publish the action's image, import it with `cloister-runner image import` and use it by digest)",
        ));
    }
    let image = request::required(command, "image", &args.image)?;
    image_digest(image).map_err(|m| refused(command, m))?;
    refuse_container_options(command, args)?;
    if args
        .entry_point
        .as_deref()
        .is_none_or(|e| e.trim().is_empty())
    {
        return Err(refused(
            command,
            "the step names no entrypoint, and images in the runner's store keep no default one: give the action an `entrypoint`",
        ));
    }
    let argv = entry_argv(command, &args.entry_point, &args.entry_point_args)?;
    let workdir = request::working_directory(command, &args.working_directory)?;
    let state_dir = records.state_dir().map_err(job_err(command))?;
    let allowed: Vec<&str> = job::JOB_TARGETS
        .iter()
        .chain(job::STEP_TARGETS)
        .copied()
        .collect();
    let plan = job::plan_mounts(
        args.system_mount_volumes.as_deref().unwrap_or_default(),
        &allowed,
        &record.work_root,
        record.externals.as_deref(),
        &state_dir,
    )
    .map_err(job_err(command))?;
    verify_actions(command, record)?;
    let mounts = job::protect_actions(&plan.mounts, &record.actions);
    let has_home = mounts.iter().any(|m| m.target == Path::new("/github/home"));
    let env = step_env(
        &BTreeMap::new(),
        args.environment_variables.as_ref(),
        args.prepend_path.as_ref(),
        has_home,
    );
    run_sandboxed(
        command,
        opts,
        &record.work_root,
        image,
        &mounts,
        argv,
        workdir,
        env,
        Network::None,
    )
}

fn cleanup_job(state: Option<&serde_json::Value>, records: &Records) -> Result<Done, HookError> {
    let command = Command::CleanupJob;
    let Some(id) = job::job_id(state).map_err(job_err(command))? else {
        return Ok(Done {
            status: 0,
            note: Some("cloister: no job was prepared; nothing to clean up".into()),
        });
    };
    // Every step's sandbox ended with its step (its processes, mounts and
    // cgroup with it); what is left of the job is its record.
    let removed = records.remove(&id).map_err(job_err(command))?;
    Ok(Done {
        status: 0,
        note: Some(if removed {
            format!("cloister: job {id} cleaned up")
        } else {
            format!("cloister: job {id} had nothing left to clean up")
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_must_be_pinned_by_digest() {
        let hex = "0123456789abcdef".repeat(4);
        for ok in [
            format!("sha256:{hex}"),
            format!("ghcr.io/org/builder@sha256:{hex}"),
            format!("docker://ghcr.io/org/builder:1.2@sha256:{hex}"),
        ] {
            assert_eq!(
                image_digest(&ok).unwrap().to_string(),
                format!("sha256:{hex}"),
                "{ok}"
            );
        }
        for bad in [
            "node:22",
            "ghcr.io/org/builder:latest",
            "sha256:abc",
            "x@sha256:ABC",
        ] {
            assert!(
                image_digest(bad)
                    .unwrap_err()
                    .contains("not pinned by digest"),
                "{bad}"
            );
        }
    }

    #[test]
    fn step_environment_layers_and_prepends_path() {
        let container = BTreeMap::from([("A".to_string(), "container".to_string())]);
        let step = BTreeMap::from([
            ("A".to_string(), "step".to_string()),
            ("CI".to_string(), "false".to_string()),
        ]);
        let prepend = request::PrependPath::Joined("/opt/x/bin:/__w/_tool/y".into());
        let env: BTreeMap<_, _> = step_env(&container, Some(&step), Some(&prepend), true)
            .into_iter()
            .collect();
        assert_eq!(env["A"], "step");
        assert_eq!(env["CI"], "false");
        assert_eq!(env["GITHUB_ACTIONS"], "true");
        assert_eq!(env["HOME"], "/github/home");
        assert_eq!(
            env["PATH"],
            format!("/opt/x/bin:/__w/_tool/y:{DEFAULT_PATH}")
        );
        let env: BTreeMap<_, _> = step_env(&BTreeMap::new(), None, None, false)
            .into_iter()
            .collect();
        assert_eq!(env["PATH"], DEFAULT_PATH);
        assert_eq!(env["CI"], "true");
        assert!(!env.contains_key("HOME"), "the profile's HOME stays");
    }
}
