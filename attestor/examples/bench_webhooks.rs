//! Benchmark: webhook deliveries per second from the outbox to a local
//! receiver (SQLite, `synchronous=FULL`), beside the anchor: the same POSTs
//! (same client, bodies, headers and concurrency) sent straight, with no
//! outbox, no claim and no delivery log. Both against one in-process axum
//! receiver on loopback that answers 204 and checks every signature.
//!
//! ```sh
//! cargo run --release -p cloister-attestor --example bench-webhooks -- \
//!     [--messages 20000] [--concurrency 128] [--rounds 3]
//! ```
//!
//! A round queues the messages (one set-based insert, not timed), runs the
//! delivery worker as `serve` does (two loops that each claim a batch with
//! leases, post it concurrently and record the attempts and states in one
//! transaction) until none is pending, then sends the same number of POSTs
//! as the anchor.
//! Medians at the end; every line carries the load average (the machine is
//! shared). Not a test: record the figures, do not assert them.

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use cloister_attestor::billing::webhooks::client::WebhookClient;
use cloister_attestor::billing::webhooks::worker::{Settings, Worker};
use cloister_attestor::billing::webhooks::{generate_secret, secret_key, sign};
use cloister_attestor::clock::{Clock as _, SystemClock};
use cloister_attestor::metrics::Metrics;
use cloister_attestor::storage::billing::EndpointRow;
use cloister_attestor::storage::{Plan, Tenant};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

struct Receiver {
    key: Vec<u8>,
    received: AtomicU64,
    bad: AtomicU64,
}

async fn receive(
    axum::extract::State(r): axum::extract::State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ts: i64 = h("webhook-timestamp").parse().unwrap_or(0);
    if h("webhook-signature") != sign(&r.key, h("webhook-id"), ts, &body) {
        r.bad.fetch_add(1, Ordering::Relaxed);
        return StatusCode::BAD_REQUEST;
    }
    r.received.fetch_add(1, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

fn main() -> anyhow::Result<()> {
    let mut messages = 20_000u64;
    let mut concurrency = 128usize;
    let mut rounds = 3usize;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--messages" => messages = val()?.parse()?,
            "--concurrency" => concurrency = val()?.parse()?,
            "--rounds" => rounds = val()?.parse()?,
            "--help" | "-h" => {
                println!("bench-webhooks [--messages N] [--concurrency N] [--rounds N]");
                return Ok(());
            }
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(messages, concurrency, rounds))
}

async fn run(messages: u64, concurrency: usize, rounds: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let url = format!("sqlite://{}", tmp.path().join("bench.db").display());
    let store = cloister_attestor::storage::open(&url).await?;
    let secret = generate_secret()?;
    let rx = Arc::new(Receiver {
        key: secret_key(&secret)?,
        received: AtomicU64::new(0),
        bad: AtomicU64::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/hooks", post(receive))
        .with_state(rx.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let hook_url = format!("http://{addr}/hooks");
    store
        .create_tenant(&Tenant {
            id: "tn_bench".into(),
            name: "bench".into(),
            plan: Plan::Pro,
            created_at_ms: 1,
        })
        .await?;
    store
        .billing()
        .add_endpoint(&EndpointRow {
            id: "ep_bench".into(),
            tenant_id: "tn_bench".into(),
            url: hook_url.clone(),
            secret: secret.clone(),
            enabled: true,
            disabled_reason: None,
            created_at_ms: 1,
            updated_at_ms: 1,
        })
        .await?;
    let payload = serde_json::json!({
        "type": "invoice.created", "timestamp": "2026-12-01T09:30:00Z",
        "data": {"number": "CLO-2026-000001", "tenantId": "tn_bench", "period": "2026-11",
                 "periodStart": "2026-11-01T00:00:00Z", "periodEnd": "2026-12-01T00:00:00Z",
                 "issuedAt": "2026-12-01T09:30:00Z", "currency": "USD", "totalMicros": 37100000,
                 "sha256": "c72d19501fc43ed646ed2181862cc16d9b41de72470ffbb433c1a480ddad80e6",
                 "invoiceUrl": "/v1/invoices/CLO-2026-000001", "pdfUrl": "/v1/invoices/CLO-2026-000001.pdf"}
    })
    .to_string();
    println!(
        "bench-webhooks: {messages} messages per round, concurrency {concurrency}, SQLite, receiver {hook_url} (load {})",
        load()
    );
    let metrics = Arc::new(Metrics::new("sqlite"));
    let settings = Settings {
        schedule_ms: vec![0, 5_000],
        timeout: Duration::from_secs(10),
        concurrency,
        poll_interval: Duration::from_millis(10),
        max_retry_after_ms: 60_000,
    };
    let client = WebhookClient::new(Duration::from_secs(10));
    let pool = sqlx::SqlitePool::connect(&url).await?;
    let (mut ours_v, mut anchor_v, mut ratio_v) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let now = SystemClock.now_ms();
        sqlx::query(
            "INSERT INTO webhook_messages (id, tenant_id, event_type, payload, created_at_ms) \
             WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?1) \
             SELECT 'msg_r' || ?2 || '_' || i, 'tn_bench', 'invoice.created', ?3, ?4 FROM c",
        )
        .bind(i64::try_from(messages)?)
        .bind(i64::try_from(round)?)
        .bind(&payload)
        .bind(now)
        .execute(&pool)
        .await?;
        sqlx::query(
            "INSERT INTO webhook_outbox (message_id, endpoint_id, tenant_id, state, attempts, \
             next_attempt_at_ms, created_at_ms) \
             SELECT id, 'ep_bench', 'tn_bench', 'pending', 0, ?1, ?1 FROM webhook_messages \
             WHERE id LIKE 'msg_r' || ?2 || '\\_%' ESCAPE '\\'",
        )
        .bind(now)
        .bind(i64::try_from(round)?)
        .execute(&pool)
        .await?;
        // Ours: the worker until the outbox is empty.
        let worker = Worker::new(
            store.clone(),
            Arc::new(SystemClock),
            metrics.clone(),
            settings.clone(),
            Arc::new(tokio::sync::Notify::new()),
        );
        let before = rx.received.load(Ordering::Relaxed);
        let t = Instant::now();
        let stop = tokio_util::sync::CancellationToken::new();
        let running = tokio::spawn(worker.run(stop.clone()));
        loop {
            let s = store.billing().stats().await?;
            if s.outbox_pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ours = t.elapsed().as_secs_f64();
        stop.cancel();
        running.await?;
        let stats = store.billing().stats().await?;
        anyhow::ensure!(stats.outbox_pending == 0, "left pending: {stats:?}");
        anyhow::ensure!(
            rx.received.load(Ordering::Relaxed) - before == messages,
            "receiver count"
        );
        // Anchor: the same POSTs, straight.
        let key = secret_key(&secret)?;
        let t = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..messages {
            if set.len() >= concurrency {
                set.join_next().await.context("join")???;
            }
            let client = client.clone();
            let (url, body, key) = (hook_url.clone(), payload.clone(), key.clone());
            set.spawn(async move {
                let id = format!("msg_anchor_{i}");
                let ts = SystemClock.now_ms() / 1000;
                let headers = [
                    ("content-type", "application/json".to_owned()),
                    ("webhook-id", id.clone()),
                    ("webhook-timestamp", ts.to_string()),
                    ("webhook-signature", sign(&key, &id, ts, body.as_bytes())),
                ];
                let a = client
                    .post(&url, &headers, body.into())
                    .await
                    .map_err(anyhow::Error::msg)?;
                anyhow::ensure!(a.status == 204, "status {}", a.status);
                anyhow::Ok(())
            });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        let anchor = t.elapsed().as_secs_f64();
        let (o, an) = (messages as f64 / ours, messages as f64 / anchor);
        println!(
            "round {round}: ours {o:.0} deliveries/s | anchor (plain POSTs) {an:.0}/s | ratio {:.2} | load {}",
            o / an,
            load()
        );
        ours_v.push(o);
        anchor_v.push(an);
        ratio_v.push(o / an);
    }
    anyhow::ensure!(rx.bad.load(Ordering::Relaxed) == 0, "bad signatures");
    println!(
        "median: ours {:.0} deliveries/s, anchor {:.0}/s, ratio {:.2}",
        median(&mut ours_v),
        median(&mut anchor_v),
        median(&mut ratio_v)
    );
    pool.close().await;
    store.close().await;
    Ok(())
}
