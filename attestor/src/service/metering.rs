//! Exactly-once metering with group commit.
//!
//! A handler hands its [`UsageWrite`] to the [`Meter`] and waits; one
//! committer task takes everything queued (up to `metering.max_batch`),
//! writes it in one durable transaction through [`Storage::commit_usage`],
//! and answers each waiter with its [`UsageOutcome`]. An fsync is paid per
//! batch, not per request, so durability does not cost throughput.
//!
//! Pipelining: the committer starts the next batch the moment a commit slot
//! frees ([`Storage::commit_concurrency`]: one for SQLite, whose single
//! writer serializes commits anyway; several for PostgreSQL), with
//! everything that queued up while the previous commit was on its way to
//! disk. So a commit is always in flight under load and the next batch is
//! the queue at that moment: batches grow with the load, bounded by
//! `metering.max_batch`.
//!
//! Invariants: a waiter is answered only after the transaction holding its
//! event has committed (or failed: then nothing of the batch was recorded
//! and every waiter gets an error, so the client's retry is counted once);
//! the idempotency window is `metering.idempotency_window_hours` from the
//! service's clock.

use crate::clock::Clock;
use crate::metrics::{EventLabels, Metrics};
use crate::storage::{Storage, UsageOutcome, UsageWrite};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

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
    let slots = Arc::new(Semaphore::new(storage.commit_concurrency().max(1)));
    let max_batch = max_batch.min(storage.max_batch()).max(1);
    let mut in_flight = JoinSet::new();
    let mut jobs: Vec<Job> = Vec::with_capacity(max_batch);
    loop {
        // Wait for a free commit slot first, then take the whole queue: what
        // arrived while the previous commit was in flight is the next batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        if rx.recv_many(&mut jobs, max_batch).await == 0 {
            break;
        }
        let (writes, replies): (Vec<UsageWrite>, Vec<_>) =
            jobs.drain(..).map(|j| (j.write, j.reply)).unzip();
        let storage = storage.clone();
        let metrics = metrics.clone();
        let replay_since = clock.now_ms() - window_ms;
        in_flight.spawn(async move {
            commit_batch(&*storage, &metrics, writes, replies, replay_since).await;
            drop(slot);
        });
        while in_flight.try_join_next().is_some() {}
    }
    // The channel is closed: finish what is in flight.
    while in_flight.join_next().await.is_some() {}
}

async fn commit_batch(
    storage: &dyn Storage,
    metrics: &Metrics,
    writes: Vec<UsageWrite>,
    replies: Vec<oneshot::Sender<Result<UsageOutcome, MeterError>>>,
    replay_since: i64,
) {
    let started = Instant::now();
    let result = storage.commit_usage(&writes, replay_since).await;
    metrics
        .commit_duration
        .observe(started.elapsed().as_secs_f64());
    metrics.commit_batch.observe(writes.len() as f64);
    match result {
        Ok(outcomes) if outcomes.len() == writes.len() => {
            // (event, recorded, replayed): a handful of events per batch.
            let mut counts: Vec<(&'static str, u64, u64)> = Vec::new();
            for ((write, reply), outcome) in writes.iter().zip(replies).zip(outcomes) {
                let i = match counts.iter().position(|c| c.0 == write.event) {
                    Some(i) => i,
                    None => {
                        counts.push((write.event, 0, 0));
                        counts.len() - 1
                    }
                };
                match &outcome {
                    UsageOutcome::Recorded => counts[i].1 += 1,
                    UsageOutcome::Replay(_) => counts[i].2 += 1,
                    UsageOutcome::KeyReused => {}
                }
                let _ = reply.send(Ok(outcome));
            }
            for (event, recorded, replayed) in counts {
                let labels = EventLabels { event };
                if recorded > 0 {
                    metrics
                        .usage_committed
                        .get_or_create(&labels)
                        .inc_by(recorded);
                }
                if replayed > 0 {
                    metrics
                        .usage_replayed
                        .get_or_create(&labels)
                        .inc_by(replayed);
                }
            }
        }
        Ok(outcomes) => {
            let e = MeterError::Commit(format!(
                "storage returned {} outcomes for {} events",
                outcomes.len(),
                writes.len()
            ));
            tracing::error!(error = %e, "usage commit failed");
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, batch = writes.len(), "usage commit failed");
            let e = MeterError::Commit(e.to_string());
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
