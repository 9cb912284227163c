//! One job, start to end: resolve the source into a fresh workspace,
//! snapshot vendored dependencies, run the build by spawning
//! `cloister-runner run --json …` (the daemon never forks itself: the sandbox
//! is set up by that child process), stream its output into the job log,
//! collect and hash the declared outputs, then hand the observed facts to the
//! attestor and write the provenance beside the artifacts. The workspace is
//! deleted whatever happens.

use super::log::{JobLog, LogSink, Stream};
use super::outputs;
use super::record::{self, Observed, SnapshotFact, ToolchainFact};
use super::source;
use super::spec::JobSpec;
use super::store::{Artifact, JobResult, JobState, JobStore, now_rfc3339};
use crate::config::{Config, Limits};
use crate::job::metrics::RunnerMetrics;
use crate::toolchains::{SANDBOX_TOOLCHAINS, Toolchain, Toolchains};
use cloister_inputs::Pin;
use cloister_sandbox::RunReport;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Where the workspace is mounted inside the sandbox (also the build's cwd).
pub const SANDBOX_WORKSPACE: &str = "/workspace";
/// Where vendored snapshot N is mounted inside the sandbox.
pub const SANDBOX_VENDOR: &str = "/cloister/vendor";

/// Why a running job was asked to stop.
#[derive(Debug, Clone)]
pub struct StopReason {
    pub state: JobState,
    pub reason: String,
}

/// A cancel handle for one job.
#[derive(Debug, Clone, Default)]
pub struct Stopper {
    token: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

impl Stopper {
    /// Asks the job to stop; the first reason wins.
    pub fn stop(&self, state: JobState, reason: impl Into<String>) {
        let mut r = self.reason.lock().expect("stop reason lock");
        if r.is_none() {
            *r = Some(StopReason {
                state,
                reason: reason.into(),
            });
        }
        drop(r);
        self.token.cancel();
    }

    /// How a step that failed with `reason` ends the job: as the stop
    /// asked (cancelled, or failed by a drain) when the job was stopped,
    /// else failed with `reason`.
    fn ending(&self, reason: String) -> (JobState, String) {
        if !self.token.is_cancelled() {
            return (JobState::Failed, reason);
        }
        match self.reason.lock().expect("stop reason lock").clone() {
            Some(r) => (r.state, r.reason),
            None => (JobState::Cancelled, "cancelled".into()),
        }
    }
}

/// How a job ended.
#[derive(Debug)]
pub struct Ending {
    pub state: JobState,
    pub reason: Option<String>,
    pub exit_code: Option<i64>,
    pub result: Option<JobResult>,
    /// A failure that keeps the outputs (hashed, in the artifacts
    /// directory) and the build record for a later `cloister-runner
    /// attest`: the attestor stayed unreachable for the retry window.
    pub outputs_kept: bool,
}

/// Everything the executor needs from the daemon.
#[derive(Debug)]
pub struct Executor {
    pub config: Arc<Config>,
    /// The `cloister-runner` binary to re-execute for the sandbox.
    pub runner_exe: PathBuf,
    pub store: JobStore,
    /// The configured toolchains' current snapshots.
    pub toolchains: Arc<Toolchains>,
    /// The daemon's metrics (phase durations, limit hits, attestations).
    pub metrics: Arc<RunnerMetrics>,
}

/// A step's failure: the job's reason.
struct Fail(String);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail(e.to_string())
    }
}

impl Executor {
    pub fn work_dir(&self, id: &str) -> PathBuf {
        self.config.state_dir.join("work").join(id)
    }

    pub fn artifacts_dir(&self, id: &str) -> PathBuf {
        self.config.state_dir.join("artifacts").join(id)
    }

    /// Runs a job already moved to `preparing`; always returns how it ended
    /// (the caller records it) and always removes the workspace. A job that
    /// did not succeed leaves no artifacts behind, whichever step failed.
    pub async fn run(&self, id: &str, spec: &JobSpec, stop: &Stopper) -> Ending {
        let ending = self.run_to_end(id, spec, stop).await;
        if ending.state != JobState::Succeeded && !ending.outputs_kept {
            let _ = tokio::fs::remove_dir_all(self.artifacts_dir(id)).await;
            let _ = self.store.clear_attest_record(id).await;
        }
        ending
    }

    async fn run_to_end(&self, id: &str, spec: &JobSpec, stop: &Stopper) -> Ending {
        let log_limit = effective_limits(self.config.limits, spec).log_bytes;
        let log_path = super::log::log_path(&self.config.state_dir, id);
        let log = match JobLog::create(log_path, log_limit).await {
            Ok(log) => log,
            Err(e) => return failed(format!("cannot create the job log: {e}"), None),
        };
        let work = self.work_dir(id);
        let sink = log.sink();
        let mut exit_code = None;
        let started_on = now_rfc3339();
        let outcome = tokio::select! {
            r = self.steps(id, spec, &work, &sink, &mut exit_code) => r,
            _ = stop.token.cancelled() => Err(Fail(String::new())),
        };
        if let Err(e) = tokio::fs::remove_dir_all(&work).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                sink.say(format!("warning: could not delete the workspace: {e}"));
            }
        }
        let mut observed = match outcome {
            Ok(observed) => observed,
            Err(Fail(reason)) => {
                let (state, reason) = stop.ending(reason);
                sink.say(format!("job {state}: {reason}"));
                drop(sink);
                let _ = log.finish().await;
                return Ending {
                    state,
                    reason: Some(reason),
                    exit_code,
                    result: None,
                    outputs_kept: false,
                };
            }
        };
        sink.say(format!(
            "build finished; {} output(s) collected; requesting attestation",
            observed.subjects.len()
        ));
        drop(sink);
        let (log_digest, log_dropped_bytes) = match log.finish().await {
            Ok(closed) => (closed.digest, closed.dropped_bytes),
            Err(e) => return failed(format!("cannot close the job log: {e}"), exit_code),
        };
        observed.started_on = started_on;
        observed.finished_on = now_rfc3339();
        observed.log_digest = log_digest.clone();
        match self
            .store
            .transition(id, &[JobState::Running], JobState::Attesting)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return failed(
                    "the job left the running state while its build finished".into(),
                    exit_code,
                );
            }
            Err(e) => return failed(e.to_string(), exit_code),
        }
        let attest_start = std::time::Instant::now();
        let attested = tokio::select! {
            r = self.attest(id, &observed) => r,
            _ = stop.token.cancelled() => Err(Attest::Failed(Fail(String::new()))),
        };
        self.metrics.phase("attest", attest_start.elapsed());
        match attested {
            Ok((artifacts, signed)) => Ending {
                state: JobState::Succeeded,
                reason: None,
                exit_code,
                result: Some(JobResult {
                    artifacts,
                    log_digest: Some(log_digest),
                    attestation_id: signed.attestation_id,
                    keyid: Some(signed.keyid),
                    sandbox: Some(
                        serde_json::to_value(&observed.sandbox_result)
                            .expect("a run report serializes"),
                    ),
                    log_dropped_bytes: (log_dropped_bytes > 0).then_some(log_dropped_bytes),
                }),
                outputs_kept: false,
            },
            Err(Attest::Failed(Fail(reason))) => {
                let (state, reason) = stop.ending(reason);
                // Stopped by a drain (not a client's cancel) while signing:
                // the outputs are hashed, so they stay for `attest`.
                let keep = stop.token.is_cancelled() && state == JobState::Failed;
                Ending {
                    state,
                    reason: Some(if keep {
                        format!("{reason}; {}", kept_note(id))
                    } else {
                        reason
                    }),
                    exit_code,
                    result: None,
                    outputs_kept: keep,
                }
            }
            Err(Attest::Unreachable(reason)) => Ending {
                state: JobState::Failed,
                reason: Some(reason),
                exit_code,
                result: None,
                outputs_kept: true,
            },
        }
    }

    /// Preparing and running: returns the facts observed so far.
    async fn steps(
        &self,
        id: &str,
        spec: &JobSpec,
        work: &Path,
        log: &LogSink,
        exit_code: &mut Option<i64>,
    ) -> Result<Observed, Fail> {
        let prepare_start = std::time::Instant::now();
        let workspace = self.checkout(id, spec, work, log).await?;
        let mut inputs = self.vendor(spec, &workspace, log).await?;
        let rootfs = self.image_rootfs(spec, &mut inputs.pins).await?;
        let toolchains = self.job_toolchains(spec, log)?;
        let limits = effective_limits(self.config.limits, spec);
        self.start_running(id, spec, prepare_start, inputs.snapshot_time)
            .await?;
        let toolchain_facts: Vec<ToolchainFact> = toolchains
            .iter()
            .map(|t| ToolchainFact {
                name: t.name.clone(),
                path: t.path_str().to_string(),
                digest: t.digest.to_string(),
            })
            .collect();
        let (sandbox, status) = self
            .run_sandbox(
                spec,
                work,
                &workspace,
                Mounted {
                    mounts: &inputs.mounts,
                    rootfs: rootfs.as_deref(),
                    pins: inputs.pins,
                    toolchains,
                },
                limits,
                log,
            )
            .await?;
        self.check_exit(&sandbox, status, exit_code)?;
        log.say("build command exited 0; collecting outputs");
        let collected = self
            .collect_outputs(id, spec, &workspace, &sandbox, log)
            .await?;
        let cfg = &self.config;
        Ok(Observed {
            job_id: id.to_string(),
            spec: spec.clone(),
            builder_id: cfg.builder_id.clone(),
            label: cfg.label.clone(),
            host_id: cfg.host_id.clone(),
            snapshots: inputs.snapshots,
            toolchains: toolchain_facts,
            subjects: collected,
            started_on: String::new(),
            finished_on: String::new(),
            log_digest: String::new(),
            sandbox_result: sandbox,
        })
    }

    /// Checks the profile against the signed policies (when configured) and
    /// checks the source out into a fresh `work` directory: the workspace.
    async fn checkout(
        &self,
        id: &str,
        spec: &JobSpec,
        work: &Path,
        log: &LogSink,
    ) -> Result<PathBuf, Fail> {
        log.say(format!(
            "job {id}: source {} at {}",
            spec.source.path.display(),
            spec.source.commit
        ));
        if let Some(gate) = &self.config.policy {
            let (profile, seccomp) = gate
                .check_profile(&spec.profile)
                .map_err(|e| Fail(e.to_string()))?;
            log.say(format!(
                "policies signed: profile {profile}, seccomp {seccomp}"
            ));
        }
        if tokio::fs::try_exists(work).await? {
            tokio::fs::remove_dir_all(work).await?;
        }
        tokio::fs::create_dir_all(work).await?;
        // Git runs in a sandbox: the checkout's config is the client's.
        let workspace = source::fetch_sandboxed(&self.runner_exe, &spec.source, work).await?;
        log.say("source checked out into a fresh workspace (git ran in a sandbox)");
        Ok(workspace)
    }

    /// Vendored dependencies: snapshotted from the pinned tree (or the host
    /// path) into the content-addressed store, mounted read-only.
    async fn vendor(
        &self,
        spec: &JobSpec,
        workspace: &Path,
        log: &LogSink,
    ) -> Result<Vendored, Fail> {
        let mut vendored = Vendored::default();
        // What vendor paths must stay inside, resolved once per job: the
        // workspace, and the operator's roots when a host path is named.
        let canonical_workspace = tokio::fs::canonicalize(workspace).await?;
        let mut canonical_roots = Vec::new();
        if spec.vendor.iter().any(|v| v.path.is_absolute()) {
            for root in &self.config.vendor_roots {
                canonical_roots.push(tokio::fs::canonicalize(root).await?);
            }
        }
        for v in &spec.vendor {
            let from = if v.path.is_absolute() {
                v.path.clone()
            } else {
                workspace.join(&v.path)
            };
            let meta = tokio::fs::symlink_metadata(&from)
                .await
                .map_err(|e| Fail(format!("vendor {}: {e}", v.path.display())))?;
            if meta.file_type().is_symlink() {
                return Err(Fail(format!(
                    "vendor {} is a symlink: name the directory itself",
                    v.path.display()
                )));
            }
            if !meta.is_dir() {
                return Err(Fail(format!(
                    "vendor {} is not a directory",
                    v.path.display()
                )));
            }
            // No symlink on the way may lead out of the workspace (or, for
            // a host path, out of the operator's vendor roots): the daemon
            // must never snapshot, say, the attestor's key directory. The
            // directory is opened once; the path checked is the kernel's
            // name for that open directory, and the snapshot must walk that
            // same directory (device and inode), so a path swapped after
            // the check is refused instead of snapshotted.
            let (real, root_id) = open_checked_dir(&from)
                .map_err(|e| Fail(format!("vendor {}: {e}", v.path.display())))?;
            let allowed = if v.path.is_absolute() {
                canonical_roots.iter().any(|root| real.starts_with(root))
            } else {
                real.starts_with(&canonical_workspace)
            };
            if !allowed {
                return Err(Fail(if v.path.is_absolute() {
                    format!(
                        "vendor {} is not under the runner's vendor_roots",
                        v.path.display()
                    )
                } else {
                    format!(
                        "vendor {} leads out of the workspace through a symlink",
                        v.path.display()
                    )
                }));
            }
            let store_root = self.config.store.clone();
            let warm = v.path.is_absolute();
            let snap_start = std::time::Instant::now();
            let snap = tokio::task::spawn_blocking(move || {
                crate::inputs_glue::snapshot(&store_root, &real, warm, root_id)
            })
            .await
            .map_err(|e| Fail(format!("snapshot task: {e}")))?
            .map_err(|e| Fail(format!("vendor {}: {e}", v.path.display())))?;
            vendored.snapshot_time += snap_start.elapsed();
            self.metrics.snapshot(snap.reused);
            // The snapshot is mounted read-only at /cloister/vendor/N and the
            // workspace's `dest` becomes a symlink to it (replacing what the
            // checkout had there): no mount is nested inside the writable
            // workspace bind.
            let mount_point = format!("{SANDBOX_VENDOR}/{}", vendored.mounts.len());
            link_vendor_dest(workspace, v.dest(), &mount_point).await?;
            log.say(format!(
                "vendor {} → {} ({} files, {})",
                v.path.display(),
                snap.digest,
                snap.files,
                if snap.reused {
                    "reused from the store: unchanged since its last snapshot"
                } else if snap.already_stored {
                    "already in the store: same digest"
                } else {
                    "snapshotted into the store"
                }
            ));
            vendored.mounts.push((snap.tree.clone(), mount_point));
            vendored.snapshots.push(SnapshotFact {
                path: v.path.display().to_string(),
                digest: snap.digest,
            });
            vendored.pins.push(snap.pin);
        }
        Ok(vendored)
    }

    /// The job's builder image, unpacked in the store and pinned for the
    /// job (`pins`), as the sandbox's root filesystem.
    async fn image_rootfs(
        &self,
        spec: &JobSpec,
        pins: &mut Vec<Pin>,
    ) -> Result<Option<PathBuf>, Fail> {
        let Some(image) = &spec.image else {
            return Ok(None);
        };
        let (store_root, image) = (self.config.store.clone(), image.clone());
        let (rootfs, pin) =
            tokio::task::spawn_blocking(move || crate::inputs_glue::image(&store_root, &image))
                .await
                .map_err(|e| Fail(format!("image task: {e}")))?
                .map_err(Fail)?;
        pins.push(pin);
        Ok(Some(rootfs))
    }

    /// Toolchains: the daemon's current snapshot of each (held for the
    /// whole job, so a SIGHUP re-snapshot cannot pull it from under it).
    fn job_toolchains(&self, spec: &JobSpec, log: &LogSink) -> Result<Vec<Arc<Toolchain>>, Fail> {
        let mut toolchains: Vec<Arc<Toolchain>> = Vec::new();
        for name in &spec.toolchains {
            let Some(t) = self.toolchains.get(name) else {
                return Err(Fail(format!(
                    "toolchain {name:?} is not configured on this runner"
                )));
            };
            log.say(format!(
                "toolchain {name} → {} (snapshot of {}, {} files)",
                t.digest,
                t.path.display(),
                t.files
            ));
            toolchains.push(t);
        }
        Ok(toolchains)
    }

    /// Moves the job from preparing to running and records the preparation
    /// phases (snapshots apart from the rest).
    async fn start_running(
        &self,
        id: &str,
        spec: &JobSpec,
        prepare_start: std::time::Instant,
        snapshot_time: std::time::Duration,
    ) -> Result<(), Fail> {
        match self
            .store
            .transition(id, &[JobState::Preparing], JobState::Running)
            .await?
        {
            true => {}
            false => return Err(Fail("the job left the preparing state".into())),
        }
        if !spec.vendor.is_empty() {
            self.metrics.phase("snapshot", snapshot_time);
        }
        self.metrics.phase(
            "prepare",
            prepare_start.elapsed().saturating_sub(snapshot_time),
        );
        Ok(())
    }

    /// Runs the build through `cloister-runner run`, its output streamed
    /// into the log, and reads back its report. The inputs' pins and the
    /// toolchains are released once the sandbox is gone.
    async fn run_sandbox(
        &self,
        spec: &JobSpec,
        work: &Path,
        workspace: &Path,
        mounted: Mounted<'_>,
        limits: Limits,
        log: &LogSink,
    ) -> Result<(RunReport, std::process::ExitStatus), Fail> {
        let Mounted {
            mounts,
            rootfs,
            pins,
            toolchains,
        } = mounted;
        let result_path = work.join("sandbox-result.json");
        let argv = sandbox_argv(
            spec,
            workspace,
            mounts,
            rootfs,
            &toolchains,
            limits,
            &result_path,
        );
        log.say(format!("running: {}", shell_words(&spec.command)));
        let mut cmd = super::sandbox_command(&self.runner_exe);
        cmd.args(&argv)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in ["CLOISTER_PROFILE_DIR", "RUST_BACKTRACE"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        let run_start = std::time::Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| Fail(format!("cannot start the sandbox: {e}")))?;
        let out = tokio::spawn(
            log.clone()
                .pump(Stream::Stdout, child.stdout.take().expect("piped")),
        );
        let err = tokio::spawn(
            log.clone()
                .pump(Stream::Stderr, child.stderr.take().expect("piped")),
        );
        // If this future is dropped (cancel), kill_on_drop kills the sandbox
        // process, which takes its whole tree with it (die-with-parent).
        let status = child.wait().await?;
        let run_time = run_start.elapsed();
        self.metrics.phase("run", run_time);
        let _ = out.await;
        let _ = err.await;
        let sandbox = super::read_sandbox_result(&result_path)
            .await
            .map_err(Fail)?;
        drop(pins);
        drop(toolchains);
        let sandbox = match sandbox {
            None => {
                return Err(Fail(format!(
                    "the sandbox could not run the build (status {status})"
                )));
            }
            Some(cloister_sandbox::RunResult::Failed(f)) => {
                return Err(Fail(format!(
                    "the sandbox could not be set up: {}",
                    f.error
                )));
            }
            Some(cloister_sandbox::RunResult::Ran(report)) => report,
        };
        self.metrics.sandbox_startup.observe(
            run_time
                .saturating_sub(std::time::Duration::from_millis(sandbox.wall_ms))
                .as_secs_f64(),
        );
        Ok((sandbox, status))
    }

    /// The build's exit: its code (or 128 + signal) into `exit_code`, and a
    /// failure unless it exited 0 within its limits.
    fn check_exit(
        &self,
        sandbox: &RunReport,
        status: std::process::ExitStatus,
        exit_code: &mut Option<i64>,
    ) -> Result<(), Fail> {
        let code = sandbox.exit_code.map(i64::from);
        let signal = sandbox.signal.map(i64::from);
        *exit_code = code.or(signal.map(|s| 128 + s));
        if let Some(limit) = sandbox.limit_hit {
            self.metrics.limit_hit(limit);
            return Err(Fail(format!("the build hit its {limit} limit")));
        }
        match (code, signal) {
            (Some(0), _) => Ok(()),
            (Some(c), _) => Err(Fail(format!("the build command exited with status {c}"))),
            (None, Some(s)) => Err(Fail(format!("the build command was killed by signal {s}"))),
            (None, None) => Err(Fail(format!(
                "the sandbox reported no exit status (status {status})"
            ))),
        }
    }

    /// Checks the run's isolation facts against the signed policies (when
    /// configured), then hashes the declared outputs into the job's
    /// artifacts directory.
    async fn collect_outputs(
        &self,
        id: &str,
        spec: &JobSpec,
        workspace: &Path,
        sandbox: &RunReport,
        log: &LogSink,
    ) -> Result<Vec<outputs::Collected>, Fail> {
        if let Some(gate) = &self.config.policy {
            gate.check_facts(&sandbox.isolation)
                .map_err(|e| Fail(e.to_string()))?;
        }
        let ws = workspace.to_path_buf();
        let globs = spec.outputs.clone();
        let out_dir = self.artifacts_dir(id);
        let _ = tokio::fs::remove_dir_all(&out_dir).await;
        let collected =
            tokio::task::spawn_blocking(move || outputs::collect(&ws, &globs, &out_dir))
                .await
                .map_err(|e| Fail(format!("output task: {e}")))??;
        for c in &collected {
            log.say(format!("output {} {}", c.relative, c.digest));
        }
        Ok(collected)
    }

    /// Gets the observed facts signed: the record is kept in the job
    /// database first (a daemon restart or a long outage leaves it for
    /// `cloister-runner attest`), then sent with retries for the configured
    /// window (the attestor answers a repeated record with the same signed
    /// result), then the provenance is written beside the artifacts.
    async fn attest(
        &self,
        id: &str,
        observed: &Observed,
    ) -> Result<(Vec<Artifact>, record::Signed), Attest> {
        let fail = |e: &dyn std::fmt::Display| Attest::Failed(Fail(e.to_string()));
        let body = record::record_bytes(observed).map_err(|e| fail(&e))?;
        self.store
            .set_attest_record(id, &body)
            .await
            .map_err(|e| fail(&e))?;
        let socket = &self.config.attestor_socket;
        let window = self.config.attestor_retry;
        let signed = record::sign_retrying(socket, &body, window, |outcome, next| {
            self.metrics.attestation(outcome);
            if let Some((e, pause)) = next {
                tracing::warn!(job = %id, error = %e, retry_in_ms = pause.as_millis() as u64, "attestor not answering; the job stays attesting");
            }
        })
        .await
        .map_err(|f| {
            if f.retryable {
                Attest::Unreachable(format!(
                    "{} for {}s ({} attempts): {}; {}",
                    record::UNREACHABLE_PREFIX,
                    window.as_secs(),
                    f.attempts,
                    f.error,
                    kept_note(id)
                ))
            } else {
                fail(&f.error)
            }
        })?;
        let artifacts = write_provenance(&observed.subjects, &signed)
            .await
            .map_err(|e| fail(&e))?;
        let _ = self.store.clear_attest_record(id).await;
        Ok((artifacts, signed))
    }
}

/// What a failed job's reason says when its outputs are kept.
fn kept_note(id: &str) -> String {
    format!("the outputs are kept: `cloister-runner attest {id}` requests the attestation again")
}

/// Why attesting did not succeed.
enum Attest {
    Failed(Fail),
    /// The attestor stayed unreachable for the retry window (the reason).
    Unreachable(String),
}

/// What `vendor` prepared: the facts for the record, the read-only mounts
/// (store tree, mount point), the store pins held for the job and the time
/// spent snapshotting.
#[derive(Default)]
struct Vendored {
    snapshots: Vec<SnapshotFact>,
    mounts: Vec<(PathBuf, String)>,
    pins: Vec<Pin>,
    snapshot_time: std::time::Duration,
}

/// The prepared inputs a sandbox run gets: the vendor mounts and the image
/// root (borrowed), the pins and toolchains it holds until the run is over.
struct Mounted<'a> {
    mounts: &'a [(PathBuf, String)],
    rootfs: Option<&'a Path>,
    pins: Vec<Pin>,
    toolchains: Vec<Arc<Toolchain>>,
}

/// Makes the workspace's vendor `dest` a symlink to `mount_point`,
/// replacing what the checkout had there.
async fn link_vendor_dest(workspace: &Path, dest: &Path, mount_point: &str) -> Result<(), Fail> {
    let link = workspace.join(dest);
    // The checkout is the client's: a symlinked parent of `dest` must
    // not make the daemon delete or create anything outside it.
    let mut prefix = workspace.to_path_buf();
    let parents: Vec<_> = dest.components().collect();
    for c in &parents[..parents.len().saturating_sub(1)] {
        prefix.push(c);
        if let Ok(m) = tokio::fs::symlink_metadata(&prefix).await {
            if m.file_type().is_symlink() {
                return Err(Fail(format!(
                    "vendor dest {} passes through a symlink in the checkout",
                    dest.display()
                )));
            }
        }
    }
    match tokio::fs::symlink_metadata(&link).await {
        Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(&link).await?,
        Ok(_) => tokio::fs::remove_file(&link).await?,
        Err(_) => {}
    }
    if let Some(parent) = link.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    tokio::fs::symlink(mount_point, &link).await?;
    Ok(())
}

/// Writes `<artifact>.intoto.jsonl` and `<artifact>.sigstore.json` beside
/// each collected output and returns the artifacts as the job records them.
pub(crate) async fn write_provenance(
    subjects: &[super::outputs::Collected],
    signed: &record::Signed,
) -> std::io::Result<Vec<Artifact>> {
    let mut artifacts = Vec::new();
    let line = format!("{}\n", serde_json::to_string(&signed.envelope)?);
    let bundle = serde_json::to_vec_pretty(&signed.bundle)?;
    for c in subjects {
        let [jsonl_suffix, bundle_suffix] = super::outputs::PROVENANCE_SUFFIXES;
        let provenance = PathBuf::from(format!("{}{jsonl_suffix}", c.path.display()));
        let bundle_path = PathBuf::from(format!("{}{bundle_suffix}", c.path.display()));
        tokio::fs::write(&provenance, &line).await?;
        tokio::fs::write(&bundle_path, &bundle).await?;
        artifacts.push(Artifact {
            name: c.name.clone(),
            path: c.path.display().to_string(),
            digest: c.digest.clone(),
            provenance: provenance.display().to_string(),
            bundle: bundle_path.display().to_string(),
        });
    }
    Ok(artifacts)
}

fn failed(reason: String, exit_code: Option<i64>) -> Ending {
    Ending {
        state: JobState::Failed,
        reason: Some(reason),
        exit_code,
        result: None,
        outputs_kept: false,
    }
}

/// The daemon's limits with the job's overrides, each capped by the daemon's.
pub fn effective_limits(defaults: Limits, spec: &JobSpec) -> Limits {
    fn capped<T: Ord + Copy>(job: Option<T>, daemon: T) -> T {
        job.unwrap_or(daemon).min(daemon)
    }
    let l = spec.limits;
    Limits {
        timeout_secs: capped(l.timeout_secs, defaults.timeout_secs),
        memory_bytes: capped(l.memory_bytes, defaults.memory_bytes),
        pids: capped(l.pids, defaults.pids),
        cpus: capped(l.cpus, defaults.cpus),
        log_bytes: capped(l.log_bytes, defaults.log_bytes),
        tmp_bytes: capped(l.tmp_bytes, defaults.tmp_bytes),
        workspace_bytes: capped(l.workspace_bytes, defaults.workspace_bytes),
    }
}

/// The `cloister-runner run` command line for a job.
fn sandbox_argv(
    spec: &JobSpec,
    workspace: &Path,
    ro_mounts: &[(PathBuf, String)],
    rootfs: Option<&Path>,
    toolchains: &[Arc<Toolchain>],
    limits: Limits,
    result_path: &Path,
) -> Vec<String> {
    let mut a: Vec<String> = vec!["run".into()];
    a.push("--result".into());
    a.push(result_path.display().to_string());
    a.push("--profile".into());
    a.push(spec.profile.clone());
    if let Some(rootfs) = rootfs {
        a.push("--rootfs".into());
        a.push(rootfs.display().to_string());
    }
    a.push("--bind".into());
    a.push(format!("{}:{SANDBOX_WORKSPACE}", workspace.display()));
    a.push("--workdir".into());
    a.push(SANDBOX_WORKSPACE.into());
    for (tree, dest) in ro_mounts {
        a.push("--ro-bind".into());
        a.push(format!("{}:{dest}", tree.display()));
    }
    let mut path = String::new();
    for t in toolchains {
        a.push("--ro-bind".into());
        a.push(format!(
            "{}:{SANDBOX_TOOLCHAINS}/{}",
            t.tree.display(),
            t.name
        ));
        path.push_str(&format!("{SANDBOX_TOOLCHAINS}/{}/bin:", t.name));
    }
    if !toolchains.is_empty() && !spec.env.contains_key("PATH") {
        a.push("--env".into());
        a.push(format!("PATH={path}/usr/local/bin:/usr/bin:/bin"));
    }
    for (k, v) in &spec.env {
        a.push("--env".into());
        a.push(format!("{k}={v}"));
    }
    a.extend([
        "--timeout".into(),
        limits.timeout_secs.to_string(),
        "--memory".into(),
        limits.memory_bytes.to_string(),
        "--pids".into(),
        limits.pids.to_string(),
        "--cpus".into(),
        limits.cpus.to_string(),
        "--tmp-size".into(),
        limits.tmp_bytes.to_string(),
        "--workspace-size".into(),
        limits.workspace_bytes.to_string(),
        "--".into(),
    ]);
    a.extend(spec.command.iter().cloned());
    a
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Opens directory `path` (following symlinks) and returns the kernel's
/// path of what was opened (`/proc/self/fd`, so no later lookup of `path`
/// is trusted) with its (device, inode).
fn open_checked_dir(path: &Path) -> std::io::Result<(PathBuf, (u64, u64))> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)?;
    let meta = dir.metadata()?;
    let real = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&dir)
    ))?;
    Ok((real, (meta.dev(), meta.ino())))
}
