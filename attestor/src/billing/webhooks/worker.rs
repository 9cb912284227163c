//! The delivery worker inside `serve`: claims due outbox rows (a lease per
//! row, so each message has one claimant at a time, also across attestors
//! sharing PostgreSQL), posts them concurrently, and records every attempt
//! (delivery log) and each row's next state in one transaction per batch.
//!
//! Outcomes: 2xx delivered; 410 disables the endpoint (its pending rows are
//! dead-lettered); anything else (another status, a transport error, the
//! time limit) is retried after the schedule's next delay, or later when the
//! receiver's `Retry-After` asks for more; after the last attempt the row is
//! dead-lettered (`webhooks failed`, `webhooks replay`). At least once: a
//! worker killed mid-batch leaves leased rows that another (or the
//! restarted) worker claims when the lease expires; the `webhook-id` is the
//! same on every attempt, so receivers deduplicate.

use super::client::WebhookClient;
use super::{secret_key, sign};
use crate::billing::config::WebhooksConfig;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::storage::Storage;
use crate::storage::billing::{AttemptResult, Claimed, Next};
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Claim-send-record loops per worker.
const LOOPS: usize = 2;

/// The worker's settings, from `[billing.webhooks]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Delay before each attempt (the first is applied when the message is
    /// written).
    pub schedule_ms: Vec<i64>,
    pub timeout: Duration,
    pub concurrency: usize,
    pub poll_interval: Duration,
    pub max_retry_after_ms: i64,
}

impl Settings {
    pub fn from_config(c: &WebhooksConfig) -> Result<Self, String> {
        Ok(Self {
            schedule_ms: c.schedule_ms()?,
            timeout: Duration::from_millis(c.timeout_ms),
            concurrency: c.concurrency,
            poll_interval: Duration::from_millis(c.poll_interval_ms),
            max_retry_after_ms: i64::try_from(c.max_retry_after_ms).unwrap_or(i64::MAX),
        })
    }

    /// How long a claim holds a row: one attempt's limit plus room to
    /// record its result.
    pub fn lease_ms(&self) -> i64 {
        i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX / 2) + 10_000
    }

    /// What follows attempt `attempt` (1-based) that was not a success.
    pub fn after_failure(&self, attempt: i64, now_ms: i64, retry_after_ms: Option<i64>) -> Next {
        let Some(&delay) = usize::try_from(attempt)
            .ok()
            .and_then(|i| self.schedule_ms.get(i))
        else {
            return Next::Dead;
        };
        let asked = retry_after_ms
            .unwrap_or(0)
            .clamp(0, self.max_retry_after_ms);
        Next::Retry {
            at_ms: now_ms.saturating_add(delay.max(asked)),
        }
    }
}

/// The worker.
pub struct Worker {
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    client: WebhookClient,
    settings: Settings,
    id: String,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Worker {
    pub fn new(
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        settings: Settings,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            client: WebhookClient::new(settings.timeout),
            id: format!("wk_{}", uuid::Uuid::now_v7().simple()),
            storage,
            clock,
            metrics,
            settings,
            wake,
        }
    }

    /// This worker's lease owner id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs until `shutdown`; the batches in flight then finish. Two loops
    /// share the work (each claiming up to half of `concurrency`), so one
    /// batch's transaction overlaps the other's requests; the leases keep
    /// their batches apart.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(worker = %self.id, "webhook delivery worker started");
        let me = Arc::new(self);
        let mut loops = JoinSet::new();
        for _ in 0..LOOPS {
            let (me, shutdown) = (me.clone(), shutdown.clone());
            loops.spawn(async move { me.run_loop(shutdown).await });
        }
        while loops.join_next().await.is_some() {}
        tracing::info!(worker = %me.id, "webhook delivery worker stopped");
    }

    async fn run_loop(&self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.round().await {
                Ok(0) => {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(self.settings.poll_interval) => {}
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "webhook delivery round failed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(self.settings.poll_interval) => {}
                    }
                }
            }
        }
    }

    /// One batch: claim, send, record. Returns how many rows were attempted.
    pub async fn round(&self) -> Result<usize, String> {
        let now = self.clock.now_ms();
        let claimed = self
            .storage
            .billing()
            .claim_deliveries(
                &self.id,
                now,
                self.settings.lease_ms(),
                u32::try_from(self.settings.concurrency.div_ceil(LOOPS)).unwrap_or(u32::MAX),
            )
            .await
            .map_err(|e| e.to_string())?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let n = claimed.len();
        let mut set = JoinSet::new();
        for c in claimed {
            let client = self.client.clone();
            let clock = self.clock.clone();
            let settings = self.settings.clone();
            set.spawn(async move { attempt(&client, clock.as_ref(), &settings, c).await });
        }
        let mut results = Vec::with_capacity(n);
        while let Some(r) = set.join_next().await {
            match r {
                Ok(r) => results.push(r),
                Err(e) => tracing::error!(error = %e, "a webhook attempt task failed"),
            }
        }
        results.sort_by_key(|r| r.outbox_id);
        for r in &results {
            let outcome = match r.next {
                Next::Delivered => "delivered",
                Next::Retry { .. } => "retry",
                Next::Dead => "dead",
                Next::DisableEndpoint => "gone",
            };
            self.metrics.webhook_attempt(outcome);
        }
        let now = self.clock.now_ms();
        self.storage
            .billing()
            .complete_deliveries(&self.id, &results, now)
            .await
            .map_err(|e| e.to_string())?;
        Ok(n)
    }
}

/// One attempt of one claimed row.
async fn attempt(
    client: &WebhookClient,
    clock: &dyn Clock,
    settings: &Settings,
    c: Claimed,
) -> AttemptResult {
    let attempt = c.attempts + 1;
    let at_ms = clock.now_ms();
    let started = Instant::now();
    let result = match secret_key(&c.secret) {
        Err(e) => Err(e.to_string()),
        Ok(key) => {
            let ts = at_ms.div_euclid(1000);
            let headers = [
                ("content-type", "application/json".to_owned()),
                (
                    "user-agent",
                    concat!("cloister-attestor/", env!("CARGO_PKG_VERSION")).to_owned(),
                ),
                ("webhook-id", c.message_id.clone()),
                ("webhook-timestamp", ts.to_string()),
                (
                    "webhook-signature",
                    sign(&key, &c.message_id, ts, c.payload.as_bytes()),
                ),
            ];
            client
                .post(&c.url, &headers, Bytes::from(c.payload.clone()))
                .await
        }
    };
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let now = clock.now_ms();
    let (status_code, error, next) = match result {
        Ok(a) if (200..300).contains(&a.status) => {
            (Some(i64::from(a.status)), None, Next::Delivered)
        }
        Ok(a) if a.status == 410 => (
            Some(i64::from(a.status)),
            Some("410 Gone: endpoint disabled".to_owned()),
            Next::DisableEndpoint,
        ),
        Ok(a) => (
            Some(i64::from(a.status)),
            Some(format!("HTTP {}", a.status)),
            settings.after_failure(attempt, now, a.retry_after_ms),
        ),
        Err(e) => (None, Some(e), settings.after_failure(attempt, now, None)),
    };
    tracing::debug!(
        message = %c.message_id,
        endpoint = %c.endpoint_id,
        attempt,
        status = status_code,
        duration_ms,
        "webhook attempt"
    );
    AttemptResult {
        outbox_id: c.outbox_id,
        endpoint_id: c.endpoint_id,
        attempt,
        attempted_at_ms: at_ms,
        duration_ms,
        status_code,
        error,
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_and_retry_after() {
        let s = Settings {
            schedule_ms: vec![0, 5_000, 300_000],
            timeout: Duration::from_secs(1),
            concurrency: 1,
            poll_interval: Duration::from_secs(1),
            max_retry_after_ms: 60_000,
        };
        assert_eq!(s.after_failure(1, 100, None), Next::Retry { at_ms: 5_100 });
        assert_eq!(
            s.after_failure(2, 100, None),
            Next::Retry { at_ms: 300_100 }
        );
        assert_eq!(s.after_failure(3, 100, None), Next::Dead);
        // Retry-After beyond the schedule's delay is honoured, up to the cap.
        assert_eq!(
            s.after_failure(1, 100, Some(20_000)),
            Next::Retry { at_ms: 20_100 }
        );
        assert_eq!(
            s.after_failure(1, 100, Some(10_000_000)),
            Next::Retry { at_ms: 60_100 }
        );
        assert_eq!(
            s.after_failure(1, 100, Some(1)),
            Next::Retry { at_ms: 5_100 }
        );
    }
}
