//! The runner daemon's Prometheus metrics (`GET /metrics` on the API socket
//! and, when configured, the TCP listener) and its readiness (`GET /readyz`).
//!
//! Metrics (prefix `cloister_runner_`): jobs by final state, failure reason
//! and priority; queue depth and the longest wait now, queue wait of started
//! jobs; phase durations (prepare, snapshot, run, attest); sandbox start-up
//! overhead; limit hits by kind; store snapshots by hit/miss, store size and
//! its filesystem's free space; attestation requests by outcome and whether
//! the attestor answered last; jobs in flight by state; build info.
//!
//! Invariant: every label value is one of a fixed set of words chosen here
//! (`&'static str`): never a repository, a source URI, a job id, a command
//! or anything else a client chooses, so the label sets stay bounded
//! whatever jobs are submitted (tested: `labels_are_bounded`).

use crate::job::spec::Priority;
use crate::job::store::JobState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// `succeeded`, `failed` or `cancelled`.
    pub state: &'static str,
    /// [`REASONS`]: `none` for a succeeded job.
    pub reason: &'static str,
    /// `low`, `normal` or `release`.
    pub priority: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PriorityLabels {
    pub priority: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// `prepare`, `snapshot`, `run` or `attest`.
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `timeout`, `memory`, `pids`, `cpu` or `disk`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `hit` or `miss`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// [`ATTEST_OUTCOMES`].
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Why a job did not succeed: the `reason` label of
/// `cloister_runner_jobs_finished_total` (`none` when it succeeded).
pub const REASONS: &[&str] = &[
    "none",
    "cancelled",
    "shutdown",
    "timeout",
    "limit_memory",
    "limit_pids",
    "limit_disk",
    "limit_cpu",
    "build_failed",
    "sandbox",
    "prepare",
    "outputs",
    "attestor_unreachable",
    "attestation",
    "internal",
];

/// The `outcome` label of `cloister_runner_attestation_requests_total`:
/// `signed`; `unreachable` (no connection, or it broke: retried);
/// `unavailable` (the attestor answered 5xx: retried); `refused` (4xx: the
/// record was not accepted; not retried); `invalid` (an answer that is not a
/// signed result).
pub const ATTEST_OUTCOMES: &[&str] =
    &["signed", "unreachable", "unavailable", "refused", "invalid"];

/// The phases whose durations are observed.
pub const PHASES: &[&str] = &["prepare", "snapshot", "run", "attest"];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    // 10 ms … ~11 h (factor 4): builds, queue waits and retries alike.
    Histogram::new(exponential_buckets(0.01, 4.0, 12))
}

fn startup_histogram() -> Histogram {
    // 1 ms … ~4 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 13))
}

/// Every metric the runner daemon exports.
#[derive(Debug)]
pub struct RunnerMetrics {
    registry: Registry,
    pub jobs_finished: Family<JobLabels, Counter>,
    pub jobs_active: Family<StateLabels, Gauge>,
    pub queue_depth: Family<PriorityLabels, Gauge>,
    pub queue_oldest_wait: Family<PriorityLabels, Gauge<f64, AtomicU64>>,
    pub queue_wait: HistogramFamily<PriorityLabels>,
    pub phase_seconds: HistogramFamily<PhaseLabels>,
    pub sandbox_startup: Histogram,
    pub limit_hits: Family<KindLabels, Counter>,
    pub store_snapshots: Family<ResultLabels, Counter>,
    pub store_bytes: Gauge,
    pub store_free_bytes: Gauge,
    pub store_size_bytes: Gauge,
    pub attestation_requests: Family<OutcomeLabels, Counter>,
    pub attestor_up: Gauge,
}

impl Default for RunnerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RunnerMetrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("cloister_runner");
        let jobs_finished = Family::<JobLabels, Counter>::default();
        r.register(
            "jobs_finished",
            "Jobs that ended, by final state, failure reason (a fixed set of words) and priority",
            jobs_finished.clone(),
        );
        let jobs_active = Family::<StateLabels, Gauge>::default();
        r.register(
            "jobs",
            "Jobs not ended yet, by state (queued, preparing, running, attesting)",
            jobs_active.clone(),
        );
        let queue_depth = Family::<PriorityLabels, Gauge>::default();
        r.register(
            "queue_depth",
            "Jobs waiting for a build slot, by priority",
            queue_depth.clone(),
        );
        let queue_oldest_wait = Family::<PriorityLabels, Gauge<f64, AtomicU64>>::default();
        r.register(
            "queue_oldest_wait_seconds",
            "How long the longest-waiting queued job has waited, by priority (0 when none waits)",
            queue_oldest_wait.clone(),
        );
        let queue_wait: HistogramFamily<PriorityLabels> =
            Family::new_with_constructor(seconds_histogram);
        r.register(
            "queue_wait_seconds",
            "Time a job waited in the queue before it started, by priority",
            queue_wait.clone(),
        );
        let phase_seconds: HistogramFamily<PhaseLabels> =
            Family::new_with_constructor(seconds_histogram);
        r.register(
            "job_phase_seconds",
            "Duration of a job's phases: prepare (checkout, policy, image, toolchains; without snapshots), snapshot (vendored dependencies), run (the sandbox process), attest (signing, retries included)",
            phase_seconds.clone(),
        );
        let sandbox_startup = startup_histogram();
        r.register(
            "sandbox_startup_seconds",
            "Sandbox overhead per build: the sandbox process's lifetime minus the build command's own wall time (set-up and tear-down)",
            sandbox_startup.clone(),
        );
        let limit_hits = Family::<KindLabels, Counter>::default();
        r.register(
            "limit_hits",
            "Builds stopped by a limit, by kind",
            limit_hits.clone(),
        );
        let store_snapshots = Family::<ResultLabels, Counter>::default();
        r.register(
            "store_snapshots",
            "Vendored-dependency snapshots taken for jobs: hit when the store's warm path reused a stored snapshot without reading a file",
            store_snapshots.clone(),
        );
        let store_bytes = Gauge::default();
        r.register(
            "store_bytes",
            "Bytes held by the content-addressed store's snapshots and images",
            store_bytes.clone(),
        );
        let store_free_bytes = Gauge::default();
        r.register(
            "store_filesystem_free_bytes",
            "Free bytes (for unprivileged users) on the store's filesystem",
            store_free_bytes.clone(),
        );
        let store_size_bytes = Gauge::default();
        r.register(
            "store_filesystem_size_bytes",
            "Size in bytes of the store's filesystem",
            store_size_bytes.clone(),
        );
        let attestation_requests = Family::<OutcomeLabels, Counter>::default();
        r.register(
            "attestation_requests",
            "Signing requests to the attestor, by outcome (signed, unreachable, unavailable, refused, invalid)",
            attestation_requests.clone(),
        );
        let attestor_up = Gauge::default();
        r.register(
            "attestor_up",
            "1 when the attestor's signing socket answered the last request or readiness check, 0 when it did not",
            attestor_up.clone(),
        );
        r.register(
            "build",
            "Build information",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        // Every fixed series exists from the start (at 0), so rates and
        // ratios have a baseline and dashboards show no gaps.
        for p in Priority::ALL {
            let priority = priority_label(p);
            queue_depth
                .get_or_create(&PriorityLabels { priority })
                .set(0);
            queue_oldest_wait
                .get_or_create(&PriorityLabels { priority })
                .set(0.0);
            for state in ["succeeded", "failed", "cancelled"] {
                let reason = match state {
                    "succeeded" => "none",
                    "cancelled" => "cancelled",
                    _ => "build_failed",
                };
                let _ = jobs_finished.get_or_create(&JobLabels {
                    state,
                    reason,
                    priority,
                });
            }
        }
        for state in ["queued", "preparing", "running", "attesting"] {
            jobs_active.get_or_create(&StateLabels { state }).set(0);
        }
        for outcome in ATTEST_OUTCOMES {
            let _ = attestation_requests.get_or_create(&OutcomeLabels { outcome });
        }
        for result in ["hit", "miss"] {
            let _ = store_snapshots.get_or_create(&ResultLabels { result });
        }
        for kind in ["timeout", "memory", "pids", "cpu", "disk"] {
            let _ = limit_hits.get_or_create(&KindLabels { kind });
        }
        attestor_up.set(1);
        RunnerMetrics {
            registry: r,
            jobs_finished,
            jobs_active,
            queue_depth,
            queue_oldest_wait,
            queue_wait,
            phase_seconds,
            sandbox_startup,
            limit_hits,
            store_snapshots,
            store_bytes,
            store_free_bytes,
            store_size_bytes,
            attestation_requests,
            attestor_up,
        }
    }

    /// A job ended.
    pub fn job_finished(&self, state: JobState, reason: &'static str, priority: Priority) {
        self.jobs_finished
            .get_or_create(&JobLabels {
                state: state.as_str(),
                reason,
                priority: priority_label(priority),
            })
            .inc();
    }

    /// A job left the queue after `waited`.
    pub fn job_started(&self, priority: Priority, waited: Duration) {
        self.queue_wait
            .get_or_create(&PriorityLabels {
                priority: priority_label(priority),
            })
            .observe(waited.as_secs_f64());
    }

    /// One phase of a job took `d` (`phase` one of [`PHASES`]).
    pub fn phase(&self, phase: &'static str, d: Duration) {
        debug_assert!(PHASES.contains(&phase));
        self.phase_seconds
            .get_or_create(&PhaseLabels { phase })
            .observe(d.as_secs_f64());
    }

    /// A build was stopped by a limit.
    pub fn limit_hit(&self, kind: cloister_sandbox::LimitKind) {
        use cloister_sandbox::LimitKind as K;
        let kind = match kind {
            K::Timeout => "timeout",
            K::Memory => "memory",
            K::Pids => "pids",
            K::Cpu => "cpu",
            K::Disk => "disk",
        };
        self.limit_hits.get_or_create(&KindLabels { kind }).inc();
    }

    /// A vendored-dependency snapshot was taken (`cached`: the warm path).
    pub fn snapshot(&self, cached: bool) {
        let result = if cached { "hit" } else { "miss" };
        self.store_snapshots
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// One signing request ended with `outcome` (one of [`ATTEST_OUTCOMES`]).
    pub fn attestation(&self, outcome: &'static str) {
        debug_assert!(ATTEST_OUTCOMES.contains(&outcome));
        self.attestation_requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.attestor_up.set(i64::from(matches!(
            outcome,
            "signed" | "refused" | "invalid"
        )));
    }

    /// The store's filesystem: (free bytes, size in bytes).
    pub fn set_store_filesystem(&self, free: u64, size: u64) {
        self.store_free_bytes
            .set(i64::try_from(free).unwrap_or(i64::MAX));
        self.store_size_bytes
            .set(i64::try_from(size).unwrap_or(i64::MAX));
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The `priority` label.
pub fn priority_label(p: Priority) -> &'static str {
    p.as_str()
}

/// The `reason` label of a job that ended in `state` with `reason`, having
/// failed while it was in `phase` (its state at the end, before the final
/// one: preparing, running or attesting). The reasons are the texts
/// `job::exec` and the scheduler write; anything not recognised is
/// `internal`, so the label set stays [`REASONS`] whatever a message says.
pub fn failure_reason(state: JobState, phase: Option<JobState>, reason: &str) -> &'static str {
    match state {
        JobState::Succeeded => return "none",
        JobState::Cancelled => return "cancelled",
        _ => {}
    }
    if reason.starts_with("killed: the daemon shut down") {
        return "shutdown";
    }
    if let Some(rest) = reason.strip_prefix("the build hit its ") {
        return match rest.strip_suffix(" limit") {
            Some("timeout") => "timeout",
            Some("memory") => "limit_memory",
            Some("pids") => "limit_pids",
            Some("disk") => "limit_disk",
            Some("cpu") => "limit_cpu",
            _ => "internal",
        };
    }
    if reason.starts_with("the build command exited with status")
        || reason.starts_with("the build command was killed by signal")
    {
        return "build_failed";
    }
    if reason.starts_with("the sandbox ") || reason.starts_with("cannot start the sandbox") {
        return "sandbox";
    }
    if reason.starts_with(crate::job::record::UNREACHABLE_PREFIX) {
        return "attestor_unreachable";
    }
    match phase {
        Some(JobState::Preparing) => "prepare",
        Some(JobState::Running) => "outputs",
        Some(JobState::Attesting) => "attestation",
        _ => "internal",
    }
}

/// The store's filesystem: (free bytes for unprivileged users, size), at
/// `path` or its nearest existing ancestor.
pub fn filesystem_space(path: &Path) -> Result<(u64, u64), String> {
    let mut at = path.to_path_buf();
    while !at.exists() && at.pop() {}
    let st = nix::sys::statvfs::statvfs(&at).map_err(|e| format!("{}: {e}", at.display()))?;
    let frag = st.fragment_size() as u64;
    Ok((
        st.blocks_available() as u64 * frag,
        st.blocks() as u64 * frag,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exposition's label values, per label name.
    fn label_values(text: &str) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((_, rest)) = line.split_once('{') else {
                continue;
            };
            let labels = rest.split_once('}').expect("closing brace").0;
            for pair in labels.split(',') {
                let (k, v) = pair.split_once('=').expect("k=v");
                let v = v.trim_matches('"').to_string();
                let e = out.entry(k.to_string()).or_default();
                if !e.contains(&v) {
                    e.push(v);
                }
            }
        }
        out
    }

    /// Whatever the failure messages say (repository names, paths, ids in
    /// them), the labels stay the fixed words.
    #[test]
    fn labels_are_bounded() {
        let m = RunnerMetrics::new();
        let hostile = [
            "vendor /srv/acme-secret-repo/vendor: No such file",
            "job 0192-abc: source git+https://github.com/tenant-42/private at deadbeef",
            "the build hit its bogus-kind limit",
            "the build command exited with status 3",
            "output glob \"tenant-7/*.tar\" matched no file",
            "attestor unreachable for 600s: attestor signing socket /run/x: refused",
        ];
        for (i, reason) in hostile.iter().enumerate() {
            for phase in [JobState::Preparing, JobState::Running, JobState::Attesting] {
                let r = failure_reason(JobState::Failed, Some(phase), reason);
                assert!(REASONS.contains(&r), "{r}");
                m.job_finished(JobState::Failed, r, Priority::ALL[i % 3]);
            }
        }
        m.job_finished(JobState::Succeeded, "none", Priority::Release);
        m.limit_hit(cloister_sandbox::LimitKind::Timeout);
        m.snapshot(true);
        m.attestation("unreachable");
        m.phase("attest", Duration::from_secs(3));
        m.job_started(Priority::Low, Duration::from_millis(5));
        let text = m.encode();
        for needle in ["acme", "tenant", "github", "0192", "/run/x", "deadbeef"] {
            assert!(!text.contains(needle), "{needle} leaked into:\n{text}");
        }
        let allowed: std::collections::BTreeMap<&str, Vec<&str>> = [
            (
                "state",
                vec![
                    "succeeded",
                    "failed",
                    "cancelled",
                    "queued",
                    "preparing",
                    "running",
                    "attesting",
                ],
            ),
            ("reason", REASONS.to_vec()),
            ("priority", vec!["low", "normal", "release"]),
            ("phase", PHASES.to_vec()),
            ("kind", vec!["timeout", "memory", "pids", "cpu", "disk"]),
            ("result", vec!["hit", "miss"]),
            ("outcome", ATTEST_OUTCOMES.to_vec()),
            ("version", vec![env!("CARGO_PKG_VERSION")]),
            ("le", vec![]),
        ]
        .into_iter()
        .collect();
        for (label, values) in label_values(&text) {
            let Some(ok) = allowed.get(label.as_str()) else {
                panic!("unexpected label {label}");
            };
            if label == "le" {
                continue;
            }
            for v in values {
                assert!(ok.contains(&v.as_str()), "{label}={v}");
            }
        }
        // the series a failure ratio needs exist before the first job
        let fresh = RunnerMetrics::new().encode();
        assert!(fresh.contains(
            "cloister_runner_jobs_finished_total{state=\"failed\",reason=\"build_failed\",priority=\"release\"} 0"
        ), "{fresh}");
    }

    #[test]
    fn failure_reasons_by_phase_and_message() {
        use JobState::*;
        let f = |phase, reason| failure_reason(Failed, Some(phase), reason);
        assert_eq!(failure_reason(Succeeded, None, ""), "none");
        assert_eq!(
            failure_reason(Cancelled, Some(Running), "cancelled by a client"),
            "cancelled"
        );
        assert_eq!(f(Running, "the build hit its timeout limit"), "timeout");
        assert_eq!(f(Running, "the build hit its memory limit"), "limit_memory");
        assert_eq!(
            f(Running, "the build command exited with status 1"),
            "build_failed"
        );
        assert_eq!(
            f(Running, "the build command was killed by signal 9"),
            "build_failed"
        );
        assert_eq!(f(Running, "the sandbox could not be set up: x"), "sandbox");
        assert_eq!(f(Running, "output glob \"x\" matched no file"), "outputs");
        assert_eq!(f(Preparing, "vendor x: gone"), "prepare");
        assert_eq!(
            f(
                Running,
                "killed: the daemon shut down and the 30s grace period ran out"
            ),
            "shutdown"
        );
        let unreachable = format!("{} for 10s: x", crate::job::record::UNREACHABLE_PREFIX);
        assert_eq!(f(Attesting, &unreachable), "attestor_unreachable");
        assert_eq!(f(Attesting, "attestation refused: 422"), "attestation");
        assert_eq!(
            failure_reason(Failed, None, "cannot create the job log"),
            "internal"
        );
    }
}
