//! Exactly-once metering with group commit.
//!
//! A handler hands its [`UsageWrite`] to the [`Meter`] and waits; one
//! committer task takes everything queued (up to `metering.max_batch`),
//! writes it in one durable transaction through [`Storage::commit_usage`],
//! and answers each waiter with its [`UsageOutcome`]. While one batch is on
//! its way to disk the next one fills up, so an fsync is paid per batch, not
//! per request, and durability does not cost throughput.
//!
//! Invariants: a waiter is answered only after the transaction holding its
//! event has committed (or failed: then nothing of the batch was recorded
//! and every waiter gets an error, so the client's retry is counted once);
//! the idempotency window is `metering.idempotency_window_hours` from the
//! service's clock.

use super::clock::Clock;
use super::metrics::{EventLabels, Metrics};
use crate::storage::{Storage, UsageOutcome, UsageWrite};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Errors from metering: the storage failed and nothing was recorded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MeterError {
    #[error("usage commit failed: {0}")]
    Commit(String),
    #[error("the metering task has stopped")]
    Stopped,
}

struct Job {
    write: UsageWrite,
    reply: oneshot::Sender<Result<UsageOutcome, MeterError>>,
}

/// The handle handlers use; cloning is cheap.
#[derive(Debug, Clone)]
pub struct Meter {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl Meter {
    /// Starts the committer task. It ends when every [`Meter`] is dropped,
    /// after committing what is queued.
    pub fn start(
        storage: Arc<dyn Storage>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        window_ms: i64,
        max_batch: usize,
    ) -> (Meter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(max_batch * 4);
        let task = tokio::spawn(committer(rx, storage, metrics, clock, window_ms, max_batch));
        (Meter { tx }, task)
    }

    /// Records `write` durably; returns what happened to it.
    pub async fn commit(&self, write: UsageWrite) -> Result<UsageOutcome, MeterError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { write, reply })
            .await
            .map_err(|_| MeterError::Stopped)?;
        rx.await.map_err(|_| MeterError::Stopped)?
    }
}

async fn committer(
    mut rx: mpsc::Receiver<Job>,
    storage: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    window_ms: i64,
    max_batch: usize,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(max_batch);
    loop {
        if rx.recv_many(&mut jobs, max_batch).await == 0 {
            break;
        }
        let writes: Vec<UsageWrite> = jobs.iter().map(|j| j.write.clone()).collect();
        let replay_since = clock.now_ms() - window_ms;
        let started = Instant::now();
        let result = storage.commit_usage(&writes, replay_since).await;
        metrics
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        metrics.commit_batch.observe(writes.len() as f64);
        match result {
            Ok(outcomes) if outcomes.len() == jobs.len() => {
                for (job, outcome) in jobs.drain(..).zip(outcomes) {
                    let labels = EventLabels {
                        event: job.write.event,
                    };
                    match outcome {
                        UsageOutcome::Recorded => {
                            metrics.usage_committed.get_or_create(&labels).inc();
                        }
                        UsageOutcome::Replay(_) => {
                            metrics.usage_replayed.get_or_create(&labels).inc();
                        }
                        UsageOutcome::KeyReused => {}
                    }
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Ok(outcomes) => {
                let e = MeterError::Commit(format!(
                    "storage returned {} outcomes for {} events",
                    outcomes.len(),
                    jobs.len()
                ));
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = jobs.len(), "usage commit failed");
                let e = MeterError::Commit(e.to_string());
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}
