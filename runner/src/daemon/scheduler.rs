//! The scheduler: a bounded queue of job ids (bounded by the configured
//! capacity, counted over queued jobs) feeding at most `concurrency` jobs at
//! once. Jobs are persisted before they are queued, so a restart loses
//! none: queued jobs are resumed, in-flight ones are marked failed. On drain
//! the dispatcher stops taking jobs (they stay queued for the next start),
//! running jobs get the grace period, then are stopped and marked failed.

use crate::config::Config;
use crate::job::exec::{Executor, Stopper};
use crate::job::spec::JobSpec;
use crate::job::store::{JobRecord, JobState, JobStore, StoreError};
use crate::toolchains::Toolchains;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Semaphore, mpsc, watch};
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
}

/// Shared scheduler state.
#[derive(Debug)]
pub struct Scheduler {
    pub store: JobStore,
    pub config: Arc<Config>,
    executor: Arc<Executor>,
    tx: mpsc::UnboundedSender<String>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    queued: AtomicUsize,
    draining: AtomicBool,
    running: Mutex<HashMap<String, Stopper>>,
    tracker: TaskTracker,
    /// Bumped whenever any job changes state (for log followers).
    changes: watch::Sender<u64>,
}

impl Scheduler {
    pub fn new(
        config: Arc<Config>,
        store: JobStore,
        runner_exe: std::path::PathBuf,
        toolchains: Arc<Toolchains>,
    ) -> Arc<Scheduler> {
        let (tx, rx) = mpsc::unbounded_channel();
        let executor = Arc::new(Executor {
            config: config.clone(),
            runner_exe,
            store: store.clone(),
            toolchains,
        });
        Arc::new(Scheduler {
            store,
            config,
            executor,
            tx,
            rx: Mutex::new(Some(rx)),
            queued: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            running: Mutex::new(HashMap::new()),
            tracker: TaskTracker::new(),
            changes: watch::channel(0).0,
        })
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

    /// Marks interrupted jobs failed and re-queues queued ones; returns
    /// (failed, requeued).
    pub async fn recover(&self) -> Result<(u64, usize), StoreError> {
        let (failed, queued) = self.store.recover().await?;
        let n = queued.len();
        for id in queued {
            self.queued.fetch_add(1, Ordering::SeqCst);
            let _ = self.tx.send(id);
        }
        Ok((failed, n))
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
                let _ = self.tx.send(id);
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
                // Still queued: the dispatcher skips it when it comes up.
                self.store
                    .finish(
                        id,
                        JobState::Cancelled,
                        Some("cancelled by a client"),
                        None,
                        None,
                    )
                    .await?;
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

    /// Whether the daemon is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Runs the dispatcher until drain begins.
    pub async fn dispatch(self: Arc<Self>) {
        let mut rx = self
            .rx
            .lock()
            .expect("rx lock")
            .take()
            .expect("dispatch runs once");
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
                _ = self.drain_started() => break,
            };
            let id = tokio::select! {
                id = rx.recv() => match id { Some(id) => id, None => break },
                _ = self.drain_started() => break,
            };
            self.queued.fetch_sub(1, Ordering::SeqCst);
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
                tracing::info!(job = %id, "job started");
                let ending = this.executor.run(&id, &record.spec, &stopper).await;
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
