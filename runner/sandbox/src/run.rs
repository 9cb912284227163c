//! The runner's side of one sandboxed run: validate the spec, create the
//! cgroup, clone the sandbox init into new namespaces, write its id maps,
//! wait (with the timeout), collect the outcome and clean up.
//!
//! Process tree: runner → sandbox init (pid 1 of the new pid namespace,
//! parent-death signal SIGKILL) → the command. When the init dies for any
//! reason (the command exited, the runner died, the timeout fired) the kernel
//! kills every process left in the pid namespace, including double-forked,
//! setsid'ed ones; the cgroup is killed as well where there is one.

use crate::cgroup::{Cgroup, CgroupError, CgroupLimits, Layout};
use crate::child::{self, Plan, Planned};
use crate::disk::{self, Watcher};
use crate::facts::IsolationFacts;
use crate::limit::LimitKind;
use crate::message::{CommandStatus, InitMessage, Stage};
use crate::profile::{MountEntry, is_clean_absolute};
use crate::spec::{SandboxSpec, Stdio};
use crate::sys::{self, Forked};
use nix::sys::wait::WaitStatus;
use std::ffi::CString;
use std::io::Read as _;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Why a run could not happen.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "the sandbox must be started from a single-threaded process (this one has {0} threads)"
    )]
    Threads(usize),
    #[error("invalid sandbox spec: {0}")]
    Spec(String),
    #[error("cannot apply the {limits} limit: {source} (the profile does not mark it optional)")]
    Cgroup { limits: String, source: CgroupError },
    #[error("sandbox setup failed at {stage}: {message}")]
    Setup { stage: Stage, message: String },
    #[error("{0}")]
    CommandNotFound(String),
    #[error("{0}")]
    NotExecutable(String),
    #[error("the runner was interrupted by signal {0}; the sandbox was killed")]
    Interrupted(i32),
    #[error("the workspace disk limit: {0} (the profile does not mark disk optional)")]
    Disk(String),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

impl SandboxError {
    /// The exit status `cloister-runner run` uses for this error: 127 when
    /// the command does not exist, 126 when it cannot be executed, 128+N
    /// when the runner was interrupted by signal N, 125 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            SandboxError::CommandNotFound(_) => 127,
            SandboxError::NotExecutable(_) => 126,
            SandboxError::Interrupted(sig) => 128 + sig,
            _ => 125,
        }
    }
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> SandboxError {
    move |source| SandboxError::Io { what, source }
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The command's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed the command, when it was killed.
    pub signal: Option<i32>,
    /// Wall-clock time from the clone to the end of the run.
    pub wall: Duration,
    /// CPU time (user + system) of every process of the run.
    pub cpu: Duration,
    /// Peak memory: of the run's memory cgroup when it has one (a memory
    /// limit was set), otherwise the peak resident size of its largest
    /// process (rusage).
    pub peak_memory_bytes: Option<u64>,
    /// The limit that stopped the run, if one did.
    pub limit_hit: Option<LimitKind>,
    /// Optional limits (per the profile) that could not be applied.
    pub unapplied_limits: Vec<LimitKind>,
    /// The limits in force (the spec's, else the profile's).
    pub limits: crate::spec::Limits,
    /// How much the writable binds grew during the run, as last measured
    /// (when the workspace limit was watched).
    pub workspace_growth_bytes: Option<u64>,
    /// The isolation the run had.
    pub isolation: IsolationFacts,
}

impl Outcome {
    /// The status `cloister-runner run` exits with: the exit code, or 128+N
    /// when killed by signal N.
    pub fn status_code(&self) -> i32 {
        match (self.exit_code, self.signal) {
            (Some(code), _) => code,
            (None, Some(sig)) => 128 + sig,
            (None, None) => 125,
        }
    }
}

fn thread_count() -> Result<usize, SandboxError> {
    sys::thread_count()
        .map(|n| n as usize)
        .map_err(io("count this process's threads (/proc/self/task)"))
}

/// Host paths whose contents are kernel interfaces; never bind sources.
const FORBIDDEN_SOURCES: &[&str] = &["/proc", "/sys", "/dev"];
/// Sandbox paths the sandbox builds itself; never bind destinations.
const FORBIDDEN_DESTINATIONS: &[&str] = &["/proc", "/dev", "/sys"];

fn check_bind(source: &Path, destination: &Path) -> Result<PathBuf, SandboxError> {
    let canonical = std::fs::canonicalize(source)
        .map_err(|e| SandboxError::Spec(format!("bind source {}: {e}", source.display())))?;
    if canonical == Path::new("/") || FORBIDDEN_SOURCES.iter().any(|f| canonical.starts_with(f)) {
        return Err(SandboxError::Spec(format!(
            "bind source {} exposes the host root or kernel interfaces",
            canonical.display()
        )));
    }
    if !is_clean_absolute(destination)
        || destination == Path::new("/")
        || FORBIDDEN_DESTINATIONS
            .iter()
            .any(|f| destination.starts_with(f))
    {
        return Err(SandboxError::Spec(format!(
            "bind destination {} must be a clean absolute path outside /, /proc, /dev and /sys",
            destination.display()
        )));
    }
    Ok(canonical)
}

fn cstring(s: &str, what: &str) -> Result<CString, SandboxError> {
    CString::new(s).map_err(|_| SandboxError::Spec(format!("{what} contains a NUL byte")))
}

fn etc_files(uid: u32, gid: u32) -> Vec<(&'static str, String)> {
    let mut passwd = String::from("root:x:0:0:root:/tmp:/bin/sh\n");
    let mut group = String::from("root:x:0:\n");
    if uid != 0 {
        passwd.push_str(&format!("build:x:{uid}:{gid}:build:/tmp:/bin/sh\n"));
    }
    if gid != 0 {
        group.push_str(&format!("build:x:{gid}:\n"));
    }
    passwd.push_str("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    group.push_str("nogroup:x:65534:\n");
    vec![
        ("passwd", passwd),
        ("group", group),
        (
            "hosts",
            "127.0.0.1\tlocalhost cloister\n::1\tlocalhost ip6-localhost ip6-loopback\n".into(),
        ),
        (
            "nsswitch.conf",
            "passwd: files\ngroup: files\nshadow: files\nhosts: files\nnetworks: files\nprotocols: files\nservices: files\n".into(),
        ),
    ]
}

/// The mounts of a plan and what they imply.
struct PlannedMounts {
    /// In mount order (parents first).
    mounts: Vec<Planned>,
    /// The size-capped, writable tmpfs mounts (watched by the init).
    capped_tmpfs: Vec<PathBuf>,
    /// A bind covers `/etc` (nothing is synthesized there).
    etc_bound: bool,
}

/// The profile's mounts (its host binds left out when an image is the root;
/// the run's /tmp size replacing the profile's) and the spec's binds,
/// sorted parents first.
fn plan_mounts(spec: &SandboxSpec, image_root: bool) -> Result<PlannedMounts, SandboxError> {
    let profile = &spec.profile;
    if spec.limits.tmp == Some(0) || spec.limits.workspace == Some(0) {
        return Err(SandboxError::Spec("a disk limit must be positive".into()));
    }
    let mut mounts = Vec::new();
    let mut capped_tmpfs = Vec::new();
    let mut tmp_sized = false;
    for m in profile.mounts() {
        mounts.push(match m {
            MountEntry::HostBind { .. } if image_root => continue,
            MountEntry::HostBind {
                source,
                destination,
                optional,
                noexec,
            } => Planned::Bind {
                source: source.clone(),
                destination: destination.clone(),
                writable: false,
                optional: *optional,
                noexec: *noexec,
            },
            MountEntry::Tmpfs {
                destination,
                flags,
                data,
                size,
            } => {
                // The run's /tmp size replaces the profile's.
                let data = match spec.limits.tmp {
                    Some(bytes) if destination == Path::new("/tmp") => {
                        tmp_sized = true;
                        with_size(data, bytes)
                    }
                    _ => data.clone(),
                };
                if size.is_some() && !flags.readonly {
                    capped_tmpfs.push(destination.clone());
                }
                Planned::Tmpfs {
                    destination: destination.clone(),
                    flags: *flags,
                    data,
                }
            }
            MountEntry::Proc { destination } => Planned::Proc {
                destination: destination.clone(),
            },
            MountEntry::Devpts { destination, data } => Planned::Devpts {
                destination: destination.clone(),
                data: data.clone(),
            },
        });
    }
    if spec.limits.tmp.is_some() && !tmp_sized {
        return Err(SandboxError::Spec(format!(
            "a /tmp size was given but profile {} mounts no tmpfs at /tmp",
            profile.name()
        )));
    }
    let mut etc_bound = false;
    for (binds, writable) in [(&spec.ro_binds, false), (&spec.binds, true)] {
        for b in binds {
            let source = check_bind(&b.source, &b.destination)?;
            etc_bound |= b.destination == Path::new("/etc");
            mounts.push(Planned::Bind {
                source,
                destination: b.destination.clone(),
                writable,
                optional: false,
                noexec: false,
            });
        }
    }
    child::order_mounts(&mut mounts);
    Ok(PlannedMounts {
        mounts,
        capped_tmpfs,
        etc_bound,
    })
}

/// The plan for the child, minus the fds.
fn plan(spec: &SandboxSpec, uid: u32, gid: u32) -> Result<Plan, SandboxError> {
    if spec.argv.is_empty() {
        return Err(SandboxError::Spec("no command given".into()));
    }
    let profile = &spec.profile;
    let rootfs = match &spec.rootfs {
        Some(r) => {
            let c = std::fs::canonicalize(r)
                .map_err(|e| SandboxError::Spec(format!("rootfs {}: {e}", r.display())))?;
            if !c.is_dir() || c == Path::new("/") {
                return Err(SandboxError::Spec(format!(
                    "rootfs {} is not an image directory",
                    c.display()
                )));
            }
            Some(c)
        }
        None => None,
    };
    let PlannedMounts {
        mounts,
        capped_tmpfs,
        etc_bound,
    } = plan_mounts(spec, rootfs.is_some())?;
    // Any /etc entry in the image (a directory or a link) is the image's own;
    // it is never written to.
    let image_has_etc = rootfs
        .as_ref()
        .is_some_and(|r| std::fs::symlink_metadata(r.join("etc")).is_ok());
    let etc = if etc_bound || image_has_etc {
        Vec::new()
    } else {
        etc_files(uid, gid)
    };
    let workdir = spec
        .workdir
        .clone()
        .unwrap_or_else(|| profile.cwd().to_path_buf());
    if !is_clean_absolute(&workdir) {
        return Err(SandboxError::Spec(format!(
            "workdir {} must be a clean absolute path",
            workdir.display()
        )));
    }
    let env_pairs = spec.environment();
    let mut env = Vec::new();
    for (k, v) in &env_pairs {
        if k.is_empty() || k.contains('=') {
            return Err(SandboxError::Spec(format!(
                "invalid environment variable name {k:?}"
            )));
        }
        env.push(cstring(&format!("{k}={v}"), "environment")?);
    }
    let path_dirs = env_pairs
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| {
            v.split(':')
                .filter(|d| d.starts_with('/'))
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    let argv = spec
        .argv
        .iter()
        .map(|a| cstring(a, "command"))
        .collect::<Result<Vec<_>, _>>()?;
    let cap_last = sys::cap_last_cap().map_err(io("find the kernel's last capability"))?;
    Ok(Plan {
        mounts,
        rootfs,
        etc_files: etc,
        masked: profile.masked_paths().to_vec(),
        readonly: profile.readonly_paths().to_vec(),
        hostname: profile.hostname().to_string(),
        workdir,
        argv,
        env,
        path_dirs,
        rlimits: profile.rlimits().to_vec(),
        programs: profile.seccomp().programs().to_vec(),
        stdio: [None; 3],
        report_fd: -1,
        go_fd: -1,
        uid,
        gid,
        cap_last,
        trace: crate::trace::enabled(),
        capped_tmpfs,
        host_network: spec.network == crate::spec::Network::Host,
    })
}

/// tmpfs mount data with its `size=` option set to `bytes`.
fn with_size(data: &str, bytes: u64) -> String {
    let mut options: Vec<String> = data
        .split(',')
        .filter(|o| !o.is_empty() && !o.starts_with("size="))
        .map(str::to_string)
        .collect();
    options.push(format!("size={bytes}"));
    options.join(",")
}

static RUN_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Creates the run's cgroup when any limit is requested. Returns the limits
/// that could not be applied (only when the profile marks them optional).
fn setup_cgroup(
    spec: &SandboxSpec,
    limits: &crate::spec::Limits,
) -> Result<(Option<Cgroup>, Vec<LimitKind>), SandboxError> {
    let mut requested = Vec::new();
    if limits.memory.is_some() {
        requested.push(LimitKind::Memory);
    }
    if limits.pids.is_some() {
        requested.push(LimitKind::Pids);
    }
    if limits.cpus.is_some() {
        requested.push(LimitKind::Cpu);
    }
    if requested.is_empty() {
        return Ok((None, Vec::new()));
    }
    let cg_limits = CgroupLimits {
        memory: limits.memory,
        pids: limits.pids,
        cpus: limits.cpus,
    };
    let name = format!(
        "cloister-{}-{}",
        std::process::id(),
        RUN_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let created = Layout::detect().and_then(|layout| {
        Cgroup::create(&layout, spec.cgroup_parent.as_deref(), &name, &cg_limits)
    });
    match created {
        Ok(cg) => Ok((Some(cg), Vec::new())),
        Err(source) => {
            let optional = spec.profile.optional_limits();
            if requested.iter().all(|k| optional.contains(k)) {
                Ok((None, requested))
            } else {
                let limits: Vec<String> = requested
                    .iter()
                    .filter(|k| !optional.contains(k))
                    .map(|k| k.to_string())
                    .collect();
                Err(SandboxError::Cgroup {
                    limits: limits.join(", "),
                    source,
                })
            }
        }
    }
}

static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    INTERRUPTED.store(sig, Ordering::SeqCst);
}

fn catch_termination_signals() -> Result<(), SandboxError> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: the handler only stores into an atomic, which is
        // async-signal-safe; no other handler is replaced that anyone relies on
        // (the runner is a single-purpose process while it runs a sandbox).
        unsafe { sigaction(sig, &action) }.map_err(|e| SandboxError::Io {
            what: "install signal handlers",
            source: e.into(),
        })?;
    }
    Ok(())
}

/// Runs `spec` in a fresh sandbox. Must be called from a single-threaded
/// process (it forks); returns when every process of the run is gone.
///
/// The steps, in order: plan (and measure the workspace), the command's
/// streams, the channels to the init, the clone, the release (cgroup,
/// workspace watcher, the word to the init), the wait, the end (kill and
/// reap), the watcher's final measurement, the report read, the
/// measurements, the cleanup, and the outcome from the init's messages.
pub fn run(spec: &SandboxSpec) -> Result<Outcome, SandboxError> {
    crate::trace::mark("runner: run() entered");
    reap_released();
    let threads = thread_count()?;
    if threads != 1 {
        return Err(SandboxError::Threads(threads));
    }
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let isolation = IsolationFacts::for_spec(spec);
    let limits = spec.effective_limits();
    let mut plan = plan(spec, uid, gid)?;
    crate::trace::mark("runner: plan");
    let mut unapplied_limits = Vec::new();
    let workspace = workspace_baseline(spec, &plan, &limits, &mut unapplied_limits)?;
    let keep = standard_streams(spec, &mut plan)?;
    let channels = open_channels(&mut plan)?;
    catch_termination_signals()?;
    let start = Instant::now();
    let (pid, ends) = clone_init(&plan, channels, keep)?;
    let mut started = release_init(
        spec,
        &limits,
        pid,
        workspace.as_ref(),
        &ends.go,
        &mut unapplied_limits,
    )?;
    let RunnerEnds { go, mut report } = ends;
    let deadline = limits.timeout.map(|t| start + t);
    let mut waited = wait_for_init(&started, deadline, &mut report);
    let wait = end_run(&started, &waited);
    let wall = start.elapsed();
    finish_watcher(started.watcher.take(), &mut waited);
    let workspace_limit = workspace.as_ref().map_or(u64::MAX, |w| w.limit);
    let (workspace_over, workspace_growth_bytes) = match &waited.watcher_report {
        Some(disk::Report::Over(n)) => (true, Some(*n)),
        Some(disk::Report::Final(n)) => (*n > workspace_limit, Some(*n)),
        _ => (false, None),
    };
    crate::trace::mark(if waited.released {
        "runner: command's processes gone (init exiting)"
    } else {
        "runner: init reaped"
    });
    // Held open until now: the init takes a closed channel to mean the
    // runner died.
    drop(go);
    if !waited.released {
        let _ = report.read_to_end(&mut waited.text);
    }
    let (messages, unreadable) =
        match InitMessage::decode_all(&String::from_utf8_lossy(&waited.text)) {
            Ok(messages) => (messages, None),
            Err(e) => (Vec::new(), Some(e)),
        };
    let measured = measure(&started, &messages, waited.timed_out, workspace_over);
    if let Some(cg) = &started.cgroup {
        cg.remove();
    }
    crate::trace::mark("runner: measured, cgroup removed");
    if waited.interrupted != 0 {
        return Err(SandboxError::Interrupted(waited.interrupted));
    }
    if let Some(disk::Report::Error(m)) = &waited.watcher_report
        && !waited.timed_out
    {
        return Err(SandboxError::Disk(format!("{m}; the run was stopped")));
    }
    if let Some(e) = unreadable {
        return Err(SandboxError::Setup {
            stage: Stage::Init,
            message: e.to_string(),
        });
    }
    let (exit_code, signal) = command_status(
        messages,
        waited.timed_out,
        wait,
        measured.limit_hit,
        plan.trace,
    )?;
    Ok(Outcome {
        exit_code,
        signal,
        wall,
        cpu: measured.cpu,
        peak_memory_bytes: measured.peak_memory_bytes,
        limit_hit: measured.limit_hit,
        unapplied_limits,
        limits,
        workspace_growth_bytes,
        isolation,
    })
}

/// The command's standard streams into the plan; returns the fds opened
/// here (held until the clone).
fn standard_streams(spec: &SandboxSpec, plan: &mut Plan) -> Result<Vec<OwnedFd>, SandboxError> {
    let mut keep: Vec<OwnedFd> = Vec::new();
    for (i, stdio) in [&spec.stdin, &spec.stdout, &spec.stderr]
        .into_iter()
        .enumerate()
    {
        plan.stdio[i] = match stdio {
            Stdio::Inherit => None,
            Stdio::Null => {
                let f = std::fs::OpenOptions::new()
                    .read(i == 0)
                    .write(i != 0)
                    .open("/dev/null")
                    .map_err(io("open /dev/null"))?;
                let fd: OwnedFd = f.into();
                let raw = fd.as_raw_fd();
                keep.push(fd);
                Some(raw)
            }
            Stdio::Fd(fd) => Some(fd.as_raw_fd()),
        };
    }
    Ok(keep)
}

/// Both ends of the channels between the runner and the init.
struct Channels {
    go_init: OwnedFd,
    go_runner: OwnedFd,
    report_r: OwnedFd,
    report_w: OwnedFd,
}

/// The runner's ends, once the init is cloned.
struct RunnerEnds {
    /// The go channel: the word about the cgroup; closed when the runner
    /// is done (the init takes a close before the word as the runner gone).
    go: OwnedFd,
    /// The init's report pipe.
    report: std::fs::File,
}

/// The go channel (a socket pair, so that the runner's word about the
/// cgroup can carry the v1 `tasks` fds, opened after the clone) and the
/// report pipe, the init's ends noted in the plan.
fn open_channels(plan: &mut Plan) -> Result<Channels, SandboxError> {
    let pipes = (|| {
        let go = sys::seqpacket_pair()?;
        let report = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        Ok::<_, std::io::Error>((go, report))
    })();
    let ((go_init, go_runner), (report_r, report_w)) =
        pipes.map_err(|source| SandboxError::Io {
            what: "create pipes",
            source,
        })?;
    plan.go_fd = go_init.as_raw_fd();
    plan.report_fd = report_w.as_raw_fd();
    Ok(Channels {
        go_init,
        go_runner,
        report_r,
        report_w,
    })
}

/// Clones the sandbox init into its new namespaces (it never returns
/// here); the runner keeps its ends of the channels and lets go of the
/// init's and of the stream fds.
fn clone_init(
    plan: &Plan,
    channels: Channels,
    keep: Vec<OwnedFd>,
) -> Result<(libc::pid_t, RunnerEnds), SandboxError> {
    let Channels {
        go_init,
        go_runner,
        report_r,
        report_w,
    } = channels;
    let mut flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    if plan.host_network {
        // `Network::Host`: the one namespace shared (see `spec::Network`).
        flags &= !libc::CLONE_NEWNET;
    }
    crate::trace::mark("runner: ready to clone");
    let pid = match sys::clone_fork(flags) {
        Ok(Forked::Child) => {
            drop(go_runner);
            drop(report_r);
            child::sandbox_init(plan)
        }
        Ok(Forked::Parent(pid)) => pid,
        Err(e) => {
            return Err(SandboxError::Setup {
                stage: Stage::Namespaces,
                message: format!("clone into new namespaces: {e}"),
            });
        }
    };
    crate::trace::mark("runner: clone returned");
    drop(go_init);
    drop(report_w);
    drop(keep);
    Ok((
        pid,
        RunnerEnds {
            go: go_runner,
            report: std::fs::File::from(report_r),
        },
    ))
}

/// A run the init was released into.
struct Started {
    pid: libc::pid_t,
    pidfd: OwnedFd,
    cgroup: Option<Cgroup>,
    /// The runner moved the init into the run's cgroup (v2): the run ends
    /// when the init is gone, not at its status.
    runner_attaches: bool,
    watcher: Option<Watcher>,
}

/// The release: the run's cgroup is made now, while the init builds the
/// root (it only needs the cgroup before it forks the command), the
/// workspace watcher started, and the init told about the cgroup on the go
/// channel: on v1 with the `tasks` fds it moves itself in and out by, on v2
/// once the runner has moved it in. On a failure the init is killed and
/// reaped, the watcher ended and the cgroup removed before the error
/// returns.
fn release_init(
    spec: &SandboxSpec,
    limits: &crate::spec::Limits,
    pid: libc::pid_t,
    workspace: Option<&Workspace>,
    go: &OwnedFd,
    unapplied_limits: &mut Vec<LimitKind>,
) -> Result<Started, SandboxError> {
    let mut cgroup: Option<Cgroup> = None;
    let mut runner_attaches = false;
    let mut watcher: Option<Watcher> = None;
    let release = (|| {
        let unapplied;
        (cgroup, unapplied) = setup_cgroup(spec, limits)?;
        unapplied_limits.extend(unapplied);
        crate::trace::mark("runner: cgroup created");
        // The workspace watcher starts while the init still waits for the
        // word below (so it is still dumpable and its user namespace can
        // be opened; a rootless watcher joins it).
        if let Some(w) = workspace {
            match start_watcher(pid, w) {
                Ok(started) => watcher = Some(started),
                Err(_) if spec.profile.optional_limits().contains(&LimitKind::Disk) => {
                    unapplied_limits.push(LimitKind::Disk);
                }
                Err(e) => return Err(SandboxError::Disk(e)),
            }
        }
        let cgroup_error = |e: CgroupError| SandboxError::Setup {
            stage: Stage::Cgroup,
            message: e.to_string(),
        };
        let self_attach = cgroup
            .as_ref()
            .map(Cgroup::self_attach_files)
            .transpose()
            .map_err(cgroup_error)?
            .flatten();
        runner_attaches = cgroup.is_some() && self_attach.is_none();
        let sent = match (&cgroup, &self_attach) {
            (_, Some(files)) => {
                let fds: Vec<RawFd> = files
                    .join
                    .iter()
                    .chain(&files.leave)
                    .map(AsRawFd::as_raw_fd)
                    .collect();
                let joins = u8::try_from(files.join.len()).expect("a few hierarchies");
                sys::send_with_fds(go.as_raw_fd(), &[b'j', joins], &fds)
            }
            (Some(cg), None) => {
                cg.add_pid(pid).map_err(cgroup_error)?;
                sys::send_with_fds(go.as_raw_fd(), b"g", &[])
            }
            (None, None) => sys::send_with_fds(go.as_raw_fd(), b"n", &[]),
        };
        // EPIPE means the init already failed; its report says why.
        if let Err(e) = sent
            && e.raw_os_error() != Some(libc::EPIPE)
        {
            return Err(SandboxError::Io {
                what: "tell the sandbox init about its cgroup",
                source: e,
            });
        }
        Ok(())
    })();
    let pidfd = sys::pidfd_open(pid);
    let (release, pidfd) = match (release, pidfd) {
        (Ok(()), Ok(fd)) => (Ok(()), Some(fd)),
        (Err(e), _) => (Err(e), None),
        (Ok(()), Err(e)) => (
            Err(SandboxError::Io {
                what: "pidfd_open",
                source: e,
            }),
            None,
        ),
    };
    if let Err(e) = release {
        let _ = sys::kill(pid, libc::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        if let Some(w) = watcher {
            w.end();
        }
        if let Some(cg) = &cgroup {
            cg.remove();
        }
        return Err(e);
    }
    Ok(Started {
        pid,
        pidfd: pidfd.expect("pidfd present when release succeeded"),
        cgroup,
        runner_attaches,
        watcher,
    })
}

/// How the wait ended.
struct Waited {
    timed_out: bool,
    /// The termination signal the runner got (0: none).
    interrupted: i32,
    /// The init's status arrived and the init need not be waited for.
    released: bool,
    /// What the init reported so far.
    text: Vec<u8>,
    /// What the workspace watcher reported, if it did.
    watcher_report: Option<disk::Report>,
}

/// Waits for the init, with the timeout and termination signals, reading
/// its report as it comes, and for the workspace watcher's word. The init's
/// final status line is written once the command and everything it started
/// are dead and reaped; if the init is not in the run's cgroup (cgroup v1,
/// where the command's process joins it, or no cgroup) that is the end of
/// the run: the init has nothing left to do but exit, and its exit
/// (tearing down the namespaces) is not waited for. Otherwise (cgroup v2)
/// the run ends when the init is gone.
fn wait_for_init(
    started: &Started,
    deadline: Option<Instant>,
    report: &mut std::fs::File,
) -> Waited {
    let release_on_status = !started.runner_attaches;
    let mut waited = Waited {
        timed_out: false,
        interrupted: 0,
        released: false,
        text: Vec::new(),
        watcher_report: None,
    };
    let mut report_open = true;
    let mut watcher_text: Vec<u8> = Vec::new();
    loop {
        let sig = INTERRUPTED.load(Ordering::SeqCst);
        if sig != 0 {
            waited.interrupted = sig;
            break;
        }
        let mut slice = Duration::from_millis(250);
        if let Some(d) = deadline {
            let now = Instant::now();
            if now >= d {
                waited.timed_out = true;
                break;
            }
            slice = slice.min(d - now);
        }
        let report_fd = if report_open { report.as_raw_fd() } else { -1 };
        let watcher_fd = started
            .watcher
            .as_ref()
            .map_or(-1, |w| w.report.as_raw_fd());
        let ready = sys::poll_fds(&[started.pidfd.as_raw_fd(), report_fd, watcher_fd], slice)
            .unwrap_or_else(|_| vec![false; 3]);
        let (exited, readable) = (ready[0], ready[1]);
        if let (true, Some(w)) = (ready[2], &started.watcher) {
            // The watcher speaks once: the workspace grew past its limit,
            // or it could not measure it (or died): the run stops either way.
            let r = read_watcher(&w.report, &mut watcher_text);
            if r.is_some() {
                waited.watcher_report = r;
                break;
            }
        }
        if readable {
            let mut buf = [0u8; 4096];
            match nix::unistd::read(&*report, &mut buf) {
                Ok(0) => report_open = false,
                Ok(n) => waited.text.extend_from_slice(&buf[..n]),
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => report_open = false,
            }
            if release_on_status && has_status_line(&waited.text) {
                waited.released = true;
                break;
            }
        }
        if exited {
            break;
        }
    }
    waited
}

/// Kills the run when it was stopped (timeout, signal, the workspace
/// watcher), then reaps the init: now if it is already gone, later
/// (`reap_released`) when it was released at its status; otherwise waits
/// for it and returns its wait status.
fn end_run(started: &Started, waited: &Waited) -> Option<nix::Result<WaitStatus>> {
    let pid = started.pid;
    if waited.timed_out || waited.interrupted != 0 || waited.watcher_report.is_some() {
        if let Some(cg) = &started.cgroup {
            cg.kill_all();
        }
        let _ = sys::kill(pid, libc::SIGKILL);
    }
    if waited.released {
        if !sys::try_reap(pid) {
            if let Ok(mut pending) = RELEASED.lock() {
                pending.push(pid);
            }
        }
        None
    } else {
        Some(loop {
            match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other,
            }
        })
    }
}

/// The last measurement of the workspace, now that nothing writes to it
/// (unless the watcher already reported), then the watcher's end.
fn finish_watcher(watcher: Option<Watcher>, waited: &mut Waited) {
    let Some(mut w) = watcher else {
        return;
    };
    if waited.watcher_report.is_none() {
        w.ask_final();
        let mut text = Vec::new();
        let deadline = Instant::now() + WATCHER_FINAL_WAIT;
        while waited.watcher_report.is_none() && Instant::now() < deadline {
            if sys::poll_fds(&[w.report.as_raw_fd()], Duration::from_millis(200))
                .is_ok_and(|r| r[0])
            {
                waited.watcher_report = read_watcher(&w.report, &mut text);
            }
        }
        if waited.watcher_report.is_none() {
            waited.watcher_report = Some(disk::Report::Error(
                "the final measurement of the workspace did not finish".into(),
            ));
        }
    }
    w.end();
}

/// What the run used and the limit that stopped it.
struct Measured {
    cpu: Duration,
    peak_memory_bytes: Option<u64>,
    limit_hit: Option<LimitKind>,
}

/// CPU time and peak memory: the cgroup's, else as the init measured them
/// (every process of the run, reaped by it), else this process's reaped
/// children (the init, and what it reaped, when it died before reporting);
/// and which limit, if any, stopped the run.
fn measure(
    started: &Started,
    messages: &[InitMessage],
    timed_out: bool,
    workspace_over: bool,
) -> Measured {
    let cgroup = &started.cgroup;
    let reported_usage = messages.iter().find_map(|m| match m {
        InitMessage::Usage { cpu_us, maxrss_kb } => {
            Some((Duration::from_micros(*cpu_us), *maxrss_kb))
        }
        _ => None,
    });
    let (rusage_cpu, maxrss_kb) = reported_usage.unwrap_or_else(|| {
        let usage = sys::rusage(true);
        (
            tv(usage.ru_utime) + tv(usage.ru_stime),
            usage.ru_maxrss.max(0) as u64,
        )
    });
    let cpu = cgroup
        .as_ref()
        .and_then(Cgroup::cpu_time)
        .unwrap_or(rusage_cpu);
    let peak_memory_bytes = cgroup
        .as_ref()
        .and_then(Cgroup::peak_memory)
        .or(Some(maxrss_kb * 1024));
    let tmpfs_full = messages
        .iter()
        .any(|m| matches!(m, InitMessage::TmpfsFull(_)));
    let limit_hit = if timed_out {
        Some(LimitKind::Timeout)
    } else if cgroup.as_ref().is_some_and(Cgroup::oom_killed) {
        Some(LimitKind::Memory)
    } else if tmpfs_full || workspace_over {
        Some(LimitKind::Disk)
    } else if cgroup.as_ref().is_some_and(Cgroup::pids_limit_hit) {
        Some(LimitKind::Pids)
    } else {
        None
    };
    Measured {
        cpu,
        peak_memory_bytes,
        limit_hit,
    }
}

/// The command's exit code or signal from the init's messages (trace stamps
/// recorded on the way), or the setup failure they report: 127/126 at exec
/// for a command not found / not executable.
fn command_status(
    messages: Vec<InitMessage>,
    timed_out: bool,
    wait: Option<nix::Result<WaitStatus>>,
    limit_hit: Option<LimitKind>,
    trace: bool,
) -> Result<(Option<i32>, Option<i32>), SandboxError> {
    let mut error: Option<(Stage, String)> = None;
    let mut status: Option<CommandStatus> = None;
    for m in messages {
        match m {
            InitMessage::Failed { stage, message } if error.is_none() => {
                error = Some((stage, message));
            }
            InitMessage::Status(s) => status = Some(s),
            InitMessage::Trace { stage, ns } if trace => crate::trace::record(stage, ns),
            _ => {}
        }
    }
    if let Some((stage, message)) = error {
        if stage == Stage::Exec && !timed_out {
            return Err(match status {
                Some(CommandStatus::Exited(127)) => SandboxError::CommandNotFound(message),
                Some(CommandStatus::Exited(126)) => SandboxError::NotExecutable(message),
                _ => SandboxError::Setup { stage, message },
            });
        }
        if !timed_out {
            return Err(SandboxError::Setup { stage, message });
        }
    }
    Ok(match (status, timed_out) {
        (_, true) => (None, Some(libc::SIGKILL)),
        (Some(CommandStatus::Exited(code)), _) => (Some(code), None),
        (Some(CommandStatus::Signaled(sig)), _) => (None, Some(sig)),
        (None, false) => {
            // The init died without reporting: killed by the OOM killer (v2
            // memory.oom.group) or by someone else.
            match wait {
                Some(Ok(WaitStatus::Signaled(_, sig, _))) if limit_hit.is_some() => {
                    (None, Some(sig as i32))
                }
                other => {
                    return Err(SandboxError::Setup {
                        stage: Stage::Init,
                        message: format!("the sandbox init ended without a status ({other:?})"),
                    });
                }
            }
        }
    })
}

/// How long the runner waits for the watcher's final measurement.
const WATCHER_FINAL_WAIT: Duration = Duration::from_secs(120);

/// The writable binds to watch, measured before the run.
struct Workspace {
    roots: Vec<disk::Root>,
    baseline: u64,
    limit: u64,
}

/// Opens and measures the writable binds when a workspace limit is in
/// force. One that cannot be measured is an error, unless the profile marks
/// disk optional (then it is reported as not applied).
fn workspace_baseline(
    spec: &SandboxSpec,
    plan: &Plan,
    limits: &crate::spec::Limits,
    unapplied: &mut Vec<LimitKind>,
) -> Result<Option<Workspace>, SandboxError> {
    let Some(limit) = limits.workspace else {
        return Ok(None);
    };
    let sources: Vec<&Path> = plan
        .mounts
        .iter()
        .filter_map(|m| match m {
            Planned::Bind {
                source,
                writable: true,
                ..
            } => Some(source.as_path()),
            _ => None,
        })
        .collect();
    if sources.is_empty() {
        return Ok(None);
    }
    let measured = sources
        .iter()
        .map(|p| disk::Root::open(p))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|roots| Ok((disk::usage(&roots)?, roots)));
    match measured {
        Ok((baseline, roots)) => Ok(Some(Workspace {
            roots,
            baseline,
            limit,
        })),
        Err(_) if spec.profile.optional_limits().contains(&LimitKind::Disk) => {
            unapplied.push(LimitKind::Disk);
            Ok(None)
        }
        Err(e) => Err(SandboxError::Disk(format!("measuring the workspace: {e}"))),
    }
}

/// Starts the workspace watcher for the init `pid`'s run; a rootless one
/// joins the init's user namespace.
fn start_watcher(pid: libc::pid_t, w: &Workspace) -> Result<Watcher, String> {
    let userns = if nix::unistd::geteuid().is_root() {
        None
    } else {
        let path = format!("/proc/{pid}/ns/user");
        let fd = std::fs::File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
        Some(OwnedFd::from(fd))
    };
    Watcher::spawn(&w.roots, userns.as_ref(), w.baseline, w.limit)
        .map_err(|e| format!("start the workspace watcher: {e}"))
}

/// Reads what the watcher wrote; its report once a whole line is there, an
/// error if it closed its end without one (it died).
fn read_watcher(fd: &OwnedFd, text: &mut Vec<u8>) -> Option<disk::Report> {
    let mut buf = [0u8; 512];
    match nix::unistd::read(fd, &mut buf) {
        Ok(0) => Some(
            disk::Report::decode(text)
                .unwrap_or_else(|| disk::Report::Error("the workspace watcher died".into())),
        ),
        Ok(n) => {
            text.extend_from_slice(&buf[..n]);
            disk::Report::decode(text)
        }
        Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => None,
        Err(e) => Some(disk::Report::Error(format!(
            "reading the workspace watcher: {e}"
        ))),
    }
}

/// Whether the report holds the init's final status (in a whole line).
fn has_status_line(text: &[u8]) -> bool {
    InitMessage::decode_all(&String::from_utf8_lossy(text))
        .is_ok_and(|m| m.iter().any(|m| matches!(m, InitMessage::Status(_))))
}

/// Inits of released runs (see `run`) not reaped yet: their exit tears the
/// namespaces down after the run returned. Reaped without waiting at the
/// next run, so a long-lived caller collects no zombies.
static RELEASED: std::sync::Mutex<Vec<libc::pid_t>> = std::sync::Mutex::new(Vec::new());

fn reap_released() {
    if let Ok(mut pending) = RELEASED.lock() {
        pending.retain(|pid| !sys::try_reap(*pid));
    }
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}
