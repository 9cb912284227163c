//! The scheduler: a bounded priority queue of job ids (bounded by the
//! configured capacity, counted over queued jobs) feeding at most
//! `concurrency` jobs at once. Jobs are persisted before they are queued, so
//! a restart loses none: queued jobs are resumed, in-flight ones are marked
//! failed. On drain the dispatcher stops taking jobs (they stay queued for
//! the next start), running jobs get the grace period, then are stopped and
//! marked failed.
//!
//! Order ([`JobQueue`]): the job with the highest *effective* priority starts
//! next, the oldest first among equals. Effective priority is the job's rank
//! (low 0, normal 1, release 2) plus one per `priority_aging` it has waited,
//! so a release build overtakes everything queued at the same time, and a
//! low job waiting two aging periods ranks with a fresh release build (and
//! wins, being older): no job starves while others keep arriving.

use crate::config::Config;
use crate::job::exec::{Executor, Stopper};
use crate::job::metrics::{self, RunnerMetrics};
use crate::job::spec::{JobSpec, Priority};
use crate::job::store::{JobRecord, JobState, JobStore, StoreError};
use crate::toolchains::Toolchains;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, watch};
use tokio_util::task::TaskTracker;

/// Errors submitting or cancelling.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("the queue is full ({0} jobs waiting)")]
    QueueFull(usize),
    #[error("the daemon is shutting down and takes no new jobs")]
    Draining,
    #[error("no job {0}")]
    NotFound(String),
    #[error("job {id} is already {state}")]
    Finished { id: String, state: JobState },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `attest`: the job has no attestation to request again.
    #[error("{0}")]
    NotAttestable(String),
    /// `attest`: the attestor did not sign.
    #[error("{0}")]
    Attestor(String),
}

/// One waiting job.
#[derive(Debug, Clone)]
struct Waiting {
    id: String,
    priority: Priority,
    /// When it started waiting (for a recovered job: its submission).
    since: Instant,
    /// Submission order (ties go to the smaller).
    seq: u64,
}

/// The jobs waiting for a build slot, in the order of [`JobQueue::pop`].
/// A plain vector: a pick scans it (the queue is bounded by
/// `queue_capacity`, and a pick happens once per job start).
#[derive(Debug)]
pub struct JobQueue {
    waiting: Vec<Waiting>,
    next_seq: u64,
    aging: Duration,
}

impl JobQueue {
    /// An empty queue where waiting `aging` raises a job one level.
    pub fn new(aging: Duration) -> JobQueue {
        JobQueue {
            waiting: Vec::new(),
            next_seq: 0,
            aging: aging.max(Duration::from_millis(1)),
        }
    }

    /// Adds a job that has been waiting since `since`.
    pub fn push(&mut self, id: String, priority: Priority, since: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.waiting.push(Waiting {
            id,
            priority,
            since,
            seq,
        });
    }

    /// The effective priority at `now`: rank plus one per aging period waited.
    fn effective(&self, w: &Waiting, now: Instant) -> u64 {
        let waited = now.saturating_duration_since(w.since);
        let boost = waited.as_millis() / self.aging.as_millis().max(1);
        w.priority.rank() + u64::try_from(boost).unwrap_or(u64::MAX / 2)
    }

    /// The sort key: higher effective priority first, then older.
    fn key(&self, w: &Waiting, now: Instant) -> (std::cmp::Reverse<u64>, u64) {
        (std::cmp::Reverse(self.effective(w, now)), w.seq)
    }

    /// Takes the job that starts next at `now`: (id, priority, time waited).
    pub fn pop(&mut self, now: Instant) -> Option<(String, Priority, Duration)> {
        let best = (0..self.waiting.len()).min_by_key(|&i| self.key(&self.waiting[i], now))?;
        let w = self.waiting.remove(best);
        Some((w.id, w.priority, now.saturating_duration_since(w.since)))
    }

    /// Removes a job (cancelled while waiting); whether it was there.
    pub fn remove(&mut self, id: &str) -> bool {
        match self.waiting.iter().position(|w| w.id == id) {
            Some(i) => {
                self.waiting.remove(i);
                true
            }
            None => false,
        }
    }

    /// The ids in the order they would start at `now`.
    pub fn order(&self, now: Instant) -> Vec<String> {
        let mut v: Vec<&Waiting> = self.waiting.iter().collect();
        v.sort_by_key(|w| self.key(w, now));
        v.into_iter().map(|w| w.id.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Per priority (lowest first): how many wait and the longest wait.
    pub fn stats(&self, now: Instant) -> [PriorityStats; 3] {
        Priority::ALL.map(|p| {
            let of_p = self.waiting.iter().filter(|w| w.priority == p);
            PriorityStats {
                priority: p,
                queued: of_p.clone().count(),
                oldest_wait: of_p.map(|w| now.saturating_duration_since(w.since)).max(),
            }
        })
    }
}

/// The queue of one priority at one moment (for metrics and `jobs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriorityStats {
    pub priority: Priority,
    pub queued: usize,
    pub oldest_wait: Option<Duration>,
}

/// Jobs started since the daemon started, per priority, with the total
/// time they waited (a Prometheus summary's count and sum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartedStats {
    pub priority: Priority,
    pub started: u64,
    pub waited_total: Duration,
}

/// Shared scheduler state.
#[derive(Debug)]
pub struct Scheduler {
    pub store: JobStore,
    pub config: Arc<Config>,
    executor: Arc<Executor>,
    queue: Mutex<JobQueue>,
    /// Woken when a job is queued.
    wake: Notify,
    dispatching: AtomicBool,
    /// Started jobs and their summed wait in microseconds, per priority rank.
    started: [AtomicU64; 3],
    waited_us: [AtomicU64; 3],
    queued: AtomicUsize,
    draining: AtomicBool,
    running: Mutex<HashMap<String, Stopper>>,
    tracker: TaskTracker,
    /// Bumped whenever any job changes state (for log followers).
    changes: watch::Sender<u64>,
    metrics: Arc<RunnerMetrics>,
    /// One `attest` (re-attestation) at a time.
    reattesting: tokio::sync::Mutex<()>,
}

impl Scheduler {
    pub fn new(
        config: Arc<Config>,
        store: JobStore,
        runner_exe: std::path::PathBuf,
        toolchains: Arc<Toolchains>,
    ) -> Arc<Scheduler> {
        let aging = config.priority_aging;
        let metrics = Arc::new(RunnerMetrics::new());
        let executor = Arc::new(Executor {
            config: config.clone(),
            runner_exe,
            store: store.clone(),
            toolchains,
            metrics: metrics.clone(),
        });
        Arc::new(Scheduler {
            store,
            config,
            executor,
            queue: Mutex::new(JobQueue::new(aging)),
            wake: Notify::new(),
            dispatching: AtomicBool::new(false),
            started: Default::default(),
            waited_us: Default::default(),
            queued: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            running: Mutex::new(HashMap::new()),
            tracker: TaskTracker::new(),
            changes: watch::channel(0).0,
            metrics,
            reattesting: tokio::sync::Mutex::new(()),
        })
    }

    /// The daemon's metrics.
    pub fn metrics(&self) -> &Arc<RunnerMetrics> {
        &self.metrics
    }

    /// The metrics with the gauges read now (queue, jobs in flight, store),
    /// as Prometheus text.
    pub async fn metrics_text(&self) -> Result<String, StoreError> {
        let m = &self.metrics;
        // Whether the attestor answers now (not only at the last job).
        let up = crate::job::record::attestor_health(&self.config.attestor_socket).await;
        m.attestor_up.set(i64::from(up.is_ok()));
        for st in self.queue_stats() {
            let priority = metrics::priority_label(st.priority);
            m.queue_depth
                .get_or_create(&metrics::PriorityLabels { priority })
                .set(st.queued as i64);
            m.queue_oldest_wait
                .get_or_create(&metrics::PriorityLabels { priority })
                .set(st.oldest_wait.map_or(0.0, |d| d.as_secs_f64()));
        }
        let active = self.store.count_active().await?;
        for state in [
            JobState::Queued,
            JobState::Preparing,
            JobState::Running,
            JobState::Attesting,
        ] {
            let n = active
                .iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n);
            m.jobs_active
                .get_or_create(&metrics::StateLabels {
                    state: state.as_str(),
                })
                .set(n);
        }
        let root = self.config.store.clone();
        let (space, bytes) = tokio::task::spawn_blocking(move || {
            let space = metrics::filesystem_space(&root);
            // Looked at, never created: an absent store holds nothing.
            let bytes = if root.join("snapshots").is_dir() {
                cloister_inputs::Store::open(&root)
                    .and_then(|s| s.list())
                    .map(|l| l.iter().map(|e| e.bytes).sum::<u64>())
                    .ok()
            } else {
                Some(0)
            };
            (space, bytes)
        })
        .await
        .unwrap_or((Err("store task".into()), None));
        if let Ok((free, size)) = space {
            m.set_store_filesystem(free, size);
        }
        if let Some(bytes) = bytes {
            m.store_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        Ok(m.encode())
    }

    /// The configured toolchains and their current snapshots.
    pub fn toolchains(&self) -> &Arc<Toolchains> {
        &self.executor.toolchains
    }

    /// A receiver notified on every state change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    fn enqueue(&self, id: String, priority: Priority, since: Instant) {
        self.queue
            .lock()
            .expect("queue lock")
            .push(id, priority, since);
        self.wake.notify_one();
    }

    /// Marks interrupted jobs failed and re-queues queued ones (each aged
    /// from its submission, so a restart does not reset its wait); returns
    /// (failed, requeued).
    pub async fn recover(&self) -> Result<(u64, usize), StoreError> {
        let (failed, queued) = self.store.recover().await?;
        // The job log says so too (it ended without a last line otherwise).
        for (id, reason) in &failed {
            let log = crate::job::log::log_path(&self.config.state_dir, id);
            if let Err(e) =
                crate::job::log::append_daemon_line(&log, &format!("job failed: {reason}")).await
            {
                tracing::warn!(job = %id, error = %e, "cannot note the interruption in the job log");
            }
        }
        let failed = failed.len() as u64;
        let n = queued.len();
        let now = Instant::now();
        for id in queued {
            let (priority, since) = match self.store.get(&id).await? {
                Some(job) => (job.spec.priority, now - waited_since(&job.created_at)),
                None => continue,
            };
            self.queued.fetch_add(1, Ordering::SeqCst);
            self.enqueue(id, priority, since);
        }
        Ok((failed, n))
    }

    /// Jobs waiting now.
    pub fn queue_depth(&self) -> usize {
        self.queue.lock().expect("queue lock").len()
    }

    /// Per priority: jobs waiting and the longest wait, now.
    pub fn queue_stats(&self) -> [PriorityStats; 3] {
        self.queue.lock().expect("queue lock").stats(Instant::now())
    }

    /// Per priority: jobs started since the daemon started and their total wait.
    pub fn started_stats(&self) -> [StartedStats; 3] {
        Priority::ALL.map(|p| {
            let i = p.rank() as usize;
            StartedStats {
                priority: p,
                started: self.started[i].load(Ordering::Relaxed),
                waited_total: Duration::from_micros(self.waited_us[i].load(Ordering::Relaxed)),
            }
        })
    }

    /// Every waiting job's position (1 = starts next), as of now.
    pub fn queue_positions(&self) -> HashMap<String, usize> {
        let order = self.queue.lock().expect("queue lock").order(Instant::now());
        order
            .into_iter()
            .enumerate()
            .map(|(i, id)| (id, i + 1))
            .collect()
    }

    /// Persists and queues a new job.
    pub async fn submit(&self, spec: JobSpec) -> Result<JobRecord, SchedulerError> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(SchedulerError::Draining);
        }
        let cap = self.config.queue_capacity;
        // Reserve a queue slot first so concurrent submits cannot overshoot.
        if self
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                (q < cap).then_some(q + 1)
            })
            .is_err()
        {
            return Err(SchedulerError::QueueFull(cap));
        }
        let id = uuid::Uuid::now_v7().to_string();
        match self.store.insert(&id, &spec).await {
            Ok(record) => {
                self.enqueue(id, spec.priority, Instant::now());
                self.changed();
                Ok(record)
            }
            Err(e) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                Err(e.into())
            }
        }
    }

    /// Cancels a queued or running job.
    pub async fn cancel(&self, id: &str) -> Result<JobRecord, SchedulerError> {
        let Some(job) = self.store.get(id).await? else {
            return Err(SchedulerError::NotFound(id.into()));
        };
        if job.state.is_terminal() {
            return Err(SchedulerError::Finished {
                id: id.into(),
                state: job.state,
            });
        }
        let stopper = self.running.lock().expect("running lock").get(id).cloned();
        match stopper {
            Some(s) => s.stop(JobState::Cancelled, "cancelled by a client"),
            None => {
                // Still queued: out of the queue now (and, should the
                // dispatcher have taken it meanwhile, the conditional start
                // below fails and it is skipped).
                if self.queue.lock().expect("queue lock").remove(id) {
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                }
                if self
                    .store
                    .finish(
                        id,
                        JobState::Cancelled,
                        Some("cancelled by a client"),
                        None,
                        None,
                    )
                    .await?
                {
                    self.metrics
                        .job_finished(JobState::Cancelled, "cancelled", job.spec.priority);
                }
                self.changed();
            }
        }
        // Wait (briefly) for the running job to record its end.
        let mut rx = self.subscribe();
        for _ in 0..100 {
            let job = self
                .store
                .get(id)
                .await?
                .ok_or_else(|| SchedulerError::NotFound(id.into()))?;
            if job.state.is_terminal() {
                return Ok(job);
            }
            let _ = tokio::time::timeout(std::time::Duration::from_millis(100), rx.changed()).await;
        }
        self.store
            .get(id)
            .await?
            .ok_or_else(|| SchedulerError::NotFound(id.into()))
    }

    /// `cloister-runner attest JOB`: asks the attestor again to sign a job
    /// that failed because it stayed unreachable (or was interrupted while
    /// attesting by a daemon restart). The kept build record is sent as it
    /// was (the attestor answers a record it already signed with that same
    /// signature), after each kept output is checked against its recorded
    /// digest; then the provenance is written and the job becomes
    /// succeeded. One attempt: an attestor still down is an error, and the
    /// job stays as it was.
    pub async fn attest_again(&self, id: &str) -> Result<JobRecord, SchedulerError> {
        use cloister_attestor_core::record::BuildRecord;
        let _one = self.reattesting.lock().await;
        let Some(job) = self.store.get(id).await? else {
            return Err(SchedulerError::NotFound(id.into()));
        };
        if job.state != JobState::Failed {
            return Err(SchedulerError::NotAttestable(format!(
                "job {id} is {}: only a job that failed waiting for the attestor can be attested again",
                job.state
            )));
        }
        let Some(body) = self.store.pending_attestation(id).await? else {
            return Err(SchedulerError::NotAttestable(format!(
                "job {id} has no attestation pending (its outputs were not kept: it failed {})",
                job.reason.as_deref().unwrap_or("before attesting")
            )));
        };
        let record: BuildRecord =
            serde_json::from_slice(&body).map_err(|e| StoreError::Corrupt {
                id: id.into(),
                message: format!("kept build record: {e}"),
            })?;
        let out_dir = self.executor.artifacts_dir(id);
        let subjects: Vec<(String, String)> = record
            .subjects
            .iter()
            .map(|s| (s.name.clone(), s.digest.to_string()))
            .collect();
        let collected = tokio::task::spawn_blocking(move || {
            let mut collected = Vec::new();
            for (name, digest) in subjects {
                let path = out_dir.join(&name);
                let actual = crate::job::outputs::sha256_file(&path)
                    .map_err(|e| format!("kept output {}: {e}", path.display()))?;
                if actual != digest {
                    return Err(format!(
                        "kept output {} no longer matches its recorded digest {digest}",
                        path.display()
                    ));
                }
                collected.push(crate::job::outputs::Collected {
                    relative: name.clone(),
                    name,
                    digest,
                    path,
                });
            }
            Ok(collected)
        })
        .await
        .map_err(|e| SchedulerError::NotAttestable(format!("output check task: {e}")))?
        .map_err(SchedulerError::NotAttestable)?;
        let signed = match crate::job::record::sign_bytes(&self.config.attestor_socket, body).await
        {
            Ok(signed) => {
                self.metrics.attestation("signed");
                signed
            }
            Err(e) => {
                self.metrics.attestation(crate::job::record::outcome(&e));
                return Err(SchedulerError::Attestor(e.to_string()));
            }
        };
        let artifacts = crate::job::exec::write_provenance(&collected, &signed)
            .await
            .map_err(|e| SchedulerError::Attestor(format!("writing provenance: {e}")))?;
        let result = crate::job::store::JobResult {
            artifacts,
            log_digest: Some(record.log_digest.to_string()),
            attestation_id: signed.attestation_id,
            keyid: Some(signed.keyid),
            sandbox: None,
            log_dropped_bytes: None,
        };
        self.store.attested_later(id, &result).await?;
        tracing::info!(job = %id, "job attested later; now succeeded");
        self.changed();
        self.store
            .get(id)
            .await?
            .ok_or_else(|| SchedulerError::NotFound(id.into()))
    }

    /// Whether the daemon is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Runs the dispatcher until drain begins.
    pub async fn dispatch(self: Arc<Self>) {
        assert!(
            !self.dispatching.swap(true, Ordering::SeqCst),
            "dispatch runs once"
        );
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        'slots: loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
                _ = self.drain_started() => break,
            };
            // The pick happens when a slot is free, so the order is decided
            // with every job queued by then (and their waits as of now).
            let (id, priority, waited) = loop {
                let next = self.queue.lock().expect("queue lock").pop(Instant::now());
                if let Some(next) = next {
                    break next;
                }
                // `notify_one` keeps a wake-up for a job queued between the
                // pop above and this wait.
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = self.drain_started() => break 'slots,
                }
            };
            self.queued.fetch_sub(1, Ordering::SeqCst);
            let rank = priority.rank() as usize;
            self.started[rank].fetch_add(1, Ordering::Relaxed);
            self.waited_us[rank].fetch_add(
                u64::try_from(waited.as_micros()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            self.metrics.job_started(priority, waited);
            let record = match self.store.get(&id).await {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(job = %id, error = %e, "cannot load queued job");
                    continue;
                }
            };
            // A job cancelled while queued is skipped here.
            match self
                .store
                .transition(&id, &[JobState::Queued], JobState::Preparing)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::error!(job = %id, error = %e, "cannot start job");
                    continue;
                }
            }
            let stopper = Stopper::default();
            self.running
                .lock()
                .expect("running lock")
                .insert(id.clone(), stopper.clone());
            self.changed();
            let this = self.clone();
            self.tracker.spawn(async move {
                tracing::info!(job = %id, %priority, waited_ms = waited.as_millis() as u64, "job started");
                let ending = this.executor.run(&id, &record.spec, &stopper).await;
                // The state it ended from (preparing, running, attesting)
                // says in which phase it failed.
                let phase = this.store.get(&id).await.ok().flatten().map(|j| j.state);
                this.metrics.job_finished(
                    ending.state,
                    metrics::failure_reason(ending.state, phase, ending.reason.as_deref().unwrap_or("")),
                    priority,
                );
                let r = this
                    .store
                    .finish(&id, ending.state, ending.reason.as_deref(), ending.exit_code, ending.result.as_ref())
                    .await;
                if let Err(e) = r {
                    tracing::error!(job = %id, error = %e, "cannot record the job's end");
                }
                tracing::info!(job = %id, state = %ending.state, reason = ?ending.reason, "job finished");
                this.running.lock().expect("running lock").remove(&id);
                this.changed();
                drop(permit);
            });
        }
    }

    async fn drain_started(&self) {
        let mut rx = self.subscribe();
        while !self.is_draining() {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Drain: refuse new jobs, let running ones finish within the grace
    /// period, then stop the rest (marked failed).
    pub async fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.changed();
        self.tracker.close();
        let grace = self.config.shutdown_grace;
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            let running: Vec<Stopper> = self
                .running
                .lock()
                .expect("running lock")
                .values()
                .cloned()
                .collect();
            tracing::warn!(
                jobs = running.len(),
                "grace period over; stopping running jobs"
            );
            for s in running {
                s.stop(
                    JobState::Failed,
                    format!(
                        "killed: the daemon shut down and the {}s grace period ran out",
                        grace.as_secs()
                    ),
                );
            }
            self.tracker.wait().await;
        }
    }
}

/// How long ago an RFC 3339 creation time was (zero when unparsable or in
/// the future): a recovered job keeps the wait it had before the restart.
fn waited_since(created_at: &str) -> Duration {
    let Ok(t) =
        time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
    else {
        return Duration::ZERO;
    };
    let age = time::OffsetDateTime::now_utc() - t;
    // An Instant cannot go before the process's start by much; cap the age.
    Duration::try_from(age)
        .unwrap_or(Duration::ZERO)
        .min(Duration::from_secs(86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGING: Duration = Duration::from_secs(60);

    fn ids(q: &JobQueue, now: Instant) -> Vec<String> {
        q.order(now)
    }

    #[test]
    fn higher_priority_first_fifo_within_one() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(AGING);
        q.push("n1".into(), Priority::Normal, t0);
        q.push("l1".into(), Priority::Low, t0);
        q.push("n2".into(), Priority::Normal, t0);
        q.push("r1".into(), Priority::Release, t0);
        q.push("r2".into(), Priority::Release, t0);
        q.push("l2".into(), Priority::Low, t0);
        let now = t0 + Duration::from_secs(1);
        assert_eq!(ids(&q, now), ["r1", "r2", "n1", "n2", "l1", "l2"]);
        let mut popped = Vec::new();
        while let Some((id, _, _)) = q.pop(now) {
            popped.push(id);
        }
        assert_eq!(popped, ["r1", "r2", "n1", "n2", "l1", "l2"]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_release_job_queued_later_starts_before_earlier_normal_ones() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(AGING);
        q.push("n1".into(), Priority::Normal, t0);
        q.push("n2".into(), Priority::Normal, t0 + Duration::from_secs(1));
        q.push("r".into(), Priority::Release, t0 + Duration::from_secs(2));
        let (first, p, waited) = q.pop(t0 + Duration::from_secs(3)).unwrap();
        assert_eq!((first.as_str(), p), ("r", Priority::Release));
        assert_eq!(waited, Duration::from_secs(1));
    }

    #[test]
    fn an_old_low_job_ages_past_newer_release_jobs() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(AGING);
        q.push("low".into(), Priority::Low, t0);
        // One aging period: low ranks with normal, still below release.
        q.push("r1".into(), Priority::Release, t0 + AGING);
        assert_eq!(q.pop(t0 + AGING).unwrap().0, "r1");
        // Two periods: it ranks with a fresh release job and is older.
        q.push("r2".into(), Priority::Release, t0 + 2 * AGING);
        assert_eq!(q.pop(t0 + 2 * AGING).unwrap().0, "low");
        assert_eq!(q.pop(t0 + 2 * AGING).unwrap().0, "r2");
    }

    #[test]
    fn under_a_steady_stream_of_release_jobs_a_low_job_starts_within_two_periods() {
        // One release job arrives and one job starts every 10 s; the low job
        // must not wait forever.
        let t0 = Instant::now();
        let step = Duration::from_secs(10);
        let mut q = JobQueue::new(AGING);
        q.push("low".into(), Priority::Low, t0);
        let mut started_low_at = None;
        for i in 0..100u32 {
            let now = t0 + step * i;
            q.push(format!("r{i}"), Priority::Release, now);
            if q.pop(now).unwrap().0 == "low" {
                started_low_at = Some(step * i);
                break;
            }
        }
        let at = started_low_at.expect("the low job starved");
        assert!(at <= 2 * AGING, "started after {at:?}");
    }

    #[test]
    fn removed_jobs_leave_the_order_and_stats_count_per_priority() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(AGING);
        q.push("a".into(), Priority::Normal, t0);
        q.push("b".into(), Priority::Low, t0 + Duration::from_secs(5));
        q.push("c".into(), Priority::Normal, t0 + Duration::from_secs(7));
        assert!(q.remove("a"));
        assert!(!q.remove("a"));
        let now = t0 + Duration::from_secs(10);
        assert_eq!(ids(&q, now), ["c", "b"]);
        let stats = q.stats(now);
        assert_eq!(stats[0].priority, Priority::Low);
        assert_eq!(
            (stats[0].queued, stats[0].oldest_wait),
            (1, Some(Duration::from_secs(5)))
        );
        assert_eq!(
            (stats[1].queued, stats[1].oldest_wait),
            (1, Some(Duration::from_secs(3)))
        );
        assert_eq!((stats[2].queued, stats[2].oldest_wait), (0, None));
    }

    #[test]
    fn a_recovered_job_keeps_its_age() {
        let old = "2000-01-01T00:00:00.000Z";
        assert_eq!(waited_since(old), Duration::from_secs(86_400));
        assert_eq!(waited_since("not a time"), Duration::ZERO);
        let now = crate::job::store::now_rfc3339();
        assert!(waited_since(&now) < Duration::from_secs(5));
    }
}
