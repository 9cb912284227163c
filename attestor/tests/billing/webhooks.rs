//! `invoice.created` webhooks against a real receiver (Python, the Standard
//! Webhooks reference library `standardwebhooks` verifying every request),
//! on both backends: signatures verify; a receiver that fails twice gets the
//! message a third time with the same `webhook-id`; `Retry-After` is
//! honoured; 410 disables the endpoint; after the last attempt the message
//! is dead-lettered, listed, and replayed (CLI-equivalent storage call and
//! `POST /v1/webhooks/replay`); a killed attestor delivers after restart;
//! the delivery log has every attempt; metrics carry no tenant id.

use super::*;
use crate::both_backends;
use crate::support::{Backend, TestDb, TestServer, bin, issue_key};
use cloister_attestor::billing::webhooks::generate_secret;
use cloister_attestor::clock::{Clock as _, SystemClock};
use cloister_attestor::storage::billing::{EndpointRow, OutboxFilter};
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

both_backends!(
    signed_retried_with_one_id_and_retry_after_honoured,
    gone_disables_dead_letters_and_replay_resends,
    undelivered_messages_survive_kill_9_of_the_attestor,
    claims_are_exclusive_leased_and_fenced,
);

/// A Python receiver process.
pub struct Receiver {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    pub behavior: PathBuf,
}

impl Receiver {
    pub fn start(
        dir: &std::path::Path,
        name: &str,
        secret: &str,
        behavior: &str,
        port: u16,
    ) -> Self {
        let log = dir.join(format!("{name}.jsonl"));
        let behavior_file = dir.join(format!("{name}.behavior"));
        std::fs::write(&behavior_file, behavior).unwrap();
        let mut child = Command::new(billing_python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/billing/receiver.py"
            ))
            .args(["--secret", secret, "--port", &port.to_string()])
            .arg("--log")
            .arg(&log)
            .arg("--behavior-file")
            .arg(&behavior_file)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("receiver said {line:?}"))
            .parse()
            .unwrap();
        Self {
            child,
            port,
            log,
            behavior: behavior_file,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    pub fn set(&self, behavior: &str) {
        std::fs::write(&self.behavior, behavior).unwrap();
    }

    /// Logged requests so far.
    pub fn entries(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until `n` requests were logged (fails after 60 s).
    pub async fn wait_for(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let e = self.entries();
            if e.len() >= n {
                return e;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "receiver got {} of {n} requests: {e:?}",
                e.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn endpoint(s: &dyn Storage, tenant: &str, url: &str) -> EndpointRow {
    let now = SystemClock.now_ms();
    let e = EndpointRow {
        id: format!("ep_{}", uuid::Uuid::now_v7().simple()),
        tenant_id: tenant.to_owned(),
        url: url.to_owned(),
        secret: generate_secret().unwrap(),
        enabled: true,
        disabled_reason: None,
        created_at_ms: now,
        updated_at_ms: now,
    };
    s.billing().add_endpoint(&e).await.unwrap();
    e
}

pub fn now_rfc3339() -> String {
    cloister_attestor::billing::period::rfc3339(SystemClock.now_ms())
}

/// Issues the tenant's November invoice now (its outbox rows included).
pub async fn issue(s: &dyn Storage, tenant_id: &str) -> String {
    usage(s, tenant_id, V, 2, "2026-11-05T00:00:00Z").await;
    let r = close_at(
        s,
        &config_with(""),
        "2026-11",
        Some(tenant_id),
        &now_rfc3339(),
        false,
    )
    .await;
    issued(outcome(&r, tenant_id))
}

fn fast(c: &mut cloister_attestor::config::Config, schedule: &[&str]) {
    c.billing.webhooks.retry_schedule = schedule.iter().map(|s| s.to_string()).collect();
    c.billing.webhooks.poll_interval_ms = 50;
    c.billing.webhooks.timeout_ms = 3_000;
}

async fn outbox_row(
    s: &dyn Storage,
    tenant: &str,
) -> cloister_attestor::storage::billing::OutboxRow {
    let rows = s
        .billing()
        .outbox(&OutboxFilter {
            tenant_id: Some(tenant),
            limit: 10,
            ..OutboxFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0].clone()
}

async fn wait_state(s: &dyn Storage, tenant: &str, state: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = outbox_row(s, tenant).await;
        if r.state == state {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "still {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn signed_retried_with_one_id_and_retry_after_honoured(b: Backend) {
    let srv = TestServer::start(b, |c| fast(c, &["0s", "100ms", "100ms", "100ms"])).await;
    let s = srv.storage();
    let dir = srv.db.dir.path();
    tenant(s.as_ref(), "tn_hooks", Plan::Pro, "2026-10-01T00:00:00Z").await;
    tenant(s.as_ref(), "tn_later", Plan::Pro, "2026-10-01T00:00:00Z").await;
    // No endpoint: finalizing writes no message.
    let quiet = issue(s.as_ref(), "tn_later").await;
    assert!(
        s.billing()
            .outbox(&OutboxFilter {
                tenant_id: Some("tn_later"),
                limit: 10,
                ..OutboxFilter::default()
            })
            .await
            .unwrap()
            .is_empty(),
        "{quiet} queued a message for a tenant without endpoints"
    );
    // A disabled endpoint gets no delivery (the outbox holds one row below).
    let disabled = endpoint(s.as_ref(), "tn_hooks", "http://127.0.0.1:9/").await;
    s.billing()
        .set_endpoint_enabled(&disabled.id, false, Some("test"), 1)
        .await
        .unwrap();
    let rx_ep_secret = generate_secret().unwrap();
    let rx = Receiver::start(dir, "r1", &rx_ep_secret, "fail:2", 0);
    let ep = EndpointRow {
        id: "ep_hooks".into(),
        tenant_id: "tn_hooks".into(),
        url: rx.url(),
        secret: rx_ep_secret.clone(),
        enabled: true,
        disabled_reason: None,
        created_at_ms: 1,
        updated_at_ms: 1,
    };
    s.billing().add_endpoint(&ep).await.unwrap();
    let number = issue(s.as_ref(), "tn_hooks").await;
    let got = rx.wait_for(3).await;
    wait_state(s.as_ref(), "tn_hooks", "delivered").await;
    assert!(got.iter().all(|e| e["verified"] == true), "{got:?}");
    let ids: Vec<&str> = got.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]) && ids[0].starts_with("msg_"),
        "{ids:?}"
    );
    assert_eq!(
        got.iter()
            .map(|e| e["status"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [500, 500, 204]
    );
    assert!(got.iter().all(|e| e["body"] == got[0]["body"]));
    let body: serde_json::Value = serde_json::from_str(got[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "invoice.created");
    assert_eq!(body["data"]["number"], number.as_str());
    assert_eq!(body["data"]["tenantId"], "tn_hooks");
    assert_eq!(body["data"]["totalMicros"], 10_000);
    let row = outbox_row(s.as_ref(), "tn_hooks").await;
    assert_eq!(row.attempts, 3);
    assert_eq!(row.message_id, ids[0]);
    // The delivery log: every attempt, its status and timing.
    let log = s
        .billing()
        .delivery_log(Some("tn_hooks"), Some(ids[0]), 10)
        .await
        .unwrap();
    let mut statuses: Vec<(i64, Option<i64>)> =
        log.iter().map(|l| (l.attempt, l.status_code)).collect();
    statuses.sort();
    assert_eq!(statuses, [(1, Some(500)), (2, Some(500)), (3, Some(204))]);
    assert!(
        log.iter()
            .all(|l| l.duration_ms >= 0 && l.worker.starts_with("wk_"))
    );

    // Retry-After: 1 s asked, the schedule says 100 ms: the retry waits 1 s.
    let rx2_secret = generate_secret().unwrap();
    let rx2 = Receiver::start(dir, "r2", &rx2_secret, "retry-after:1:1", 0);
    s.billing()
        .add_endpoint(&EndpointRow {
            id: "ep_later".into(),
            tenant_id: "tn_later".into(),
            url: rx2.url(),
            secret: rx2_secret,
            enabled: true,
            disabled_reason: None,
            created_at_ms: 1,
            updated_at_ms: 1,
        })
        .await
        .unwrap();
    s.billing()
        .void_invoice(&quiet, "reissue with an endpoint", 1)
        .await
        .unwrap();
    let r = close_at(
        s.as_ref(),
        &config_with(""),
        "2026-11",
        Some("tn_later"),
        &now_rfc3339(),
        false,
    )
    .await;
    issued(outcome(&r, "tn_later"));
    let got = rx2.wait_for(2).await;
    wait_state(s.as_ref(), "tn_later", "delivered").await;
    assert_eq!(got[0]["status"], 503);
    let t0: i64 = got[0]["timestamp"].as_str().unwrap().parse().unwrap();
    let t1: i64 = got[1]["timestamp"].as_str().unwrap().parse().unwrap();
    let log = s
        .billing()
        .delivery_log(Some("tn_later"), None, 10)
        .await
        .unwrap();
    let mut at: Vec<i64> = log.iter().map(|l| l.attempted_at_ms).collect();
    at.sort();
    assert!(
        at[1] - at[0] >= 1_000,
        "the retry came {} ms after a Retry-After of 1 s (timestamps {t0}, {t1})",
        at[1] - at[0]
    );

    // Metrics: attempts by outcome, no tenant ids.
    let m = String::from_utf8(srv.get("/metrics", None).await.body.to_vec()).unwrap();
    assert!(
        m.contains("cloister_attestor_webhook_attempts_total{outcome=\"retry\"}"),
        "{m}"
    );
    assert!(m.contains("cloister_attestor_webhook_attempts_total{outcome=\"delivered\"}"));
    assert!(!m.contains("tn_hooks") && !m.contains("tn_later"));
}

async fn gone_disables_dead_letters_and_replay_resends(b: Backend) {
    let srv = TestServer::start(b, |c| fast(c, &["0s", "100ms", "100ms"])).await;
    let s = srv.storage();
    let dir = srv.db.dir.path();
    tenant(s.as_ref(), "tn_gone", Plan::Pro, "2026-10-01T00:00:00Z").await;
    let key = issue_key(s.as_ref(), "tn_gone").await;
    let secret = generate_secret().unwrap();
    let rx = Receiver::start(dir, "gone", &secret, "gone", 0);
    s.billing()
        .add_endpoint(&EndpointRow {
            id: "ep_gone".into(),
            tenant_id: "tn_gone".into(),
            url: rx.url(),
            secret,
            enabled: true,
            disabled_reason: None,
            created_at_ms: 1,
            updated_at_ms: 1,
        })
        .await
        .unwrap();
    let since = now_rfc3339();
    issue(s.as_ref(), "tn_gone").await;
    rx.wait_for(1).await;
    wait_state(s.as_ref(), "tn_gone", "dead").await;
    let eps = s.billing().endpoints(Some("tn_gone")).await.unwrap();
    assert!(!eps[0].enabled, "410 disables the endpoint");
    assert!(eps[0].disabled_reason.as_deref().unwrap().contains("410"));
    assert_eq!(rx.entries().len(), 1, "no retry after 410");
    let dead = outbox_row(s.as_ref(), "tn_gone").await;
    assert!(
        dead.last_error.as_deref().unwrap().contains("410"),
        "{dead:?}"
    );
    // Replay of nothing (the endpoint is disabled): a clear error, nothing changed.
    let auth = format!("Bearer {key}");
    let body = serde_json::json!({"since": since}).to_string();
    let r = srv
        .post(
            "/v1/webhooks/replay",
            &[("authorization", &auth)],
            body.clone(),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.code(), "nothing_to_replay");
    assert_eq!(outbox_row(s.as_ref(), "tn_gone").await, dead);
    let r = srv
        .post(
            "/v1/webhooks/replay",
            &[("authorization", &auth)],
            "{\"since\": \"yesterday\"}",
        )
        .await;
    assert_eq!(r.status, 422);
    // The receiver is fixed, the endpoint enabled: replay over HTTP delivers.
    rx.set("ok");
    s.billing()
        .set_endpoint_enabled("ep_gone", true, None, 2)
        .await
        .unwrap();
    let r = srv
        .post("/v1/webhooks/replay", &[("authorization", &auth)], body)
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["replayed"], 1);
    let got = rx.wait_for(2).await;
    wait_state(s.as_ref(), "tn_gone", "delivered").await;
    assert_eq!(got[1]["id"], got[0]["id"], "a replay keeps the webhook-id");
    assert_eq!(got[1]["verified"], true);

    // Every attempt failing: dead-lettered after the last, then replayed.
    tenant(
        s.as_ref(),
        "tn_dead",
        Plan::Enterprise,
        "2026-10-01T00:00:00Z",
    )
    .await;
    let secret = generate_secret().unwrap();
    let rx = Receiver::start(dir, "dead", &secret, "fail:1000", 0);
    s.billing()
        .add_endpoint(&EndpointRow {
            id: "ep_dead".into(),
            tenant_id: "tn_dead".into(),
            url: rx.url(),
            secret,
            enabled: true,
            disabled_reason: None,
            created_at_ms: 1,
            updated_at_ms: 1,
        })
        .await
        .unwrap();
    let since_ms = SystemClock.now_ms();
    issue(s.as_ref(), "tn_dead").await;
    rx.wait_for(3).await;
    wait_state(s.as_ref(), "tn_dead", "dead").await;
    let dead = s
        .billing()
        .outbox(&OutboxFilter {
            state: Some("dead"),
            tenant_id: Some("tn_dead"),
            limit: 10,
            ..OutboxFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].last_status, Some(500));
    // Not replayed for a later `since`.
    assert_eq!(
        s.billing()
            .replay_dead(Some("tn_dead"), SystemClock.now_ms() + 60_000, 5)
            .await
            .unwrap(),
        0
    );
    rx.set("ok");
    assert_eq!(
        s.billing()
            .replay_dead(None, since_ms, SystemClock.now_ms())
            .await
            .unwrap(),
        1
    );
    srv.running.as_ref().unwrap().app.billing.wake.notify_one();
    rx.wait_for(4).await;
    wait_state(s.as_ref(), "tn_dead", "delivered").await;
}

/// The real binary: messages queued while the receiver is down, the
/// attestor SIGKILLed mid-retries, then restarted with the receiver up.
async fn undelivered_messages_survive_kill_9_of_the_attestor(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    tenant(s.as_ref(), "tn_kill", Plan::Pro, "2026-10-01T00:00:00Z").await;
    // A port nobody listens on (yet).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let secret = generate_secret().unwrap();
    s.billing()
        .add_endpoint(&EndpointRow {
            id: "ep_kill".into(),
            tenant_id: "tn_kill".into(),
            url: format!("http://127.0.0.1:{port}/hooks"),
            secret: secret.clone(),
            enabled: true,
            disabled_reason: None,
            created_at_ms: 1,
            updated_at_ms: 1,
        })
        .await
        .unwrap();
    issue(s.as_ref(), "tn_kill").await;
    let cfg = db.dir.path().join("attestor.toml");
    std::fs::write(
        &cfg,
        "[billing.webhooks]\nretry_schedule = [\"0s\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\"]\npoll_interval_ms = 50\ntimeout_ms = 1000\n",
    )
    .unwrap();
    let log = db.dir.path().join("serve.log");
    let serve = || {
        Command::new(bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                &db.url,
            ])
            .arg("--state-dir")
            .arg(db.dir.path().join("state"))
            .arg("--config")
            .arg(&cfg)
            .env_remove("CLOISTER_ATTESTOR_CONFIG")
            .env("CLOISTER_ATTESTOR_LOG_LEVEL", "trace")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap()
    };
    let mut first = serve();
    // Wait until it has tried (and failed) at least twice.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = outbox_row(s.as_ref(), "tn_kill").await;
        if r.attempts >= 2 {
            assert_eq!(r.state, "pending");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no attempts: {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let rx = Receiver::start(db.dir.path(), "kill", &secret, "ok", port);
    let mut second = serve();
    let got = rx.wait_for(1).await;
    wait_state(s.as_ref(), "tn_kill", "delivered").await;
    assert_eq!(got[0]["verified"], true);
    let r = outbox_row(s.as_ref(), "tn_kill").await;
    assert!(r.attempts >= 3, "{r:?}");
    second.kill().unwrap();
    second.wait().unwrap();
    // Trace-level logs of both runs: attempts are logged, the secret never.
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("webhook attempt"), "{logs}");
    let key_b64 = secret.trim_start_matches("whsec_");
    assert!(
        !logs.contains(key_b64),
        "the endpoint secret reached the logs"
    );
    s.close().await;
}

/// Two claimants on one database (two attestors) never hold the same row;
/// a claimed row is not claimed again until its lease expires; only the
/// lease's owner records an attempt.
async fn claims_are_exclusive_leased_and_fenced(b: Backend) {
    use cloister_attestor::storage::billing::{AttemptResult, Next};
    let db = TestDb::new(b).await;
    let s1 = db.open().await;
    let s2 = db.open().await;
    let n = 30;
    for i in 0..n {
        let t = format!("tn_c{i:02}");
        tenant(s1.as_ref(), &t, Plan::Pro, "2026-10-01T00:00:00Z").await;
        endpoint(s1.as_ref(), &t, "http://127.0.0.1:9/").await;
        usage(s1.as_ref(), &t, V, 1, "2026-11-05T00:00:00Z").await;
    }
    close_at(
        s1.as_ref(),
        &config_with(""),
        "2026-11",
        None,
        "2026-12-01T01:00:00Z",
        false,
    )
    .await;
    let now = ms("2026-12-01T02:00:00Z");
    let (a, b2) = tokio::join!(
        s1.billing().claim_deliveries("wk_a", now, 60_000, 20),
        s2.billing().claim_deliveries("wk_b", now, 60_000, 20),
    );
    let (a, b2) = (a.unwrap(), b2.unwrap());
    assert_eq!(a.len() + b2.len(), n, "every due row claimed once");
    let ids_a: std::collections::BTreeSet<i64> = a.iter().map(|c| c.outbox_id).collect();
    assert!(
        b2.iter().all(|c| !ids_a.contains(&c.outbox_id)),
        "no row claimed twice"
    );
    // Leased: nothing to claim until the lease expires, then everything.
    assert!(
        s1.billing()
            .claim_deliveries("wk_c", now + 59_000, 60_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let again = s2
        .billing()
        .claim_deliveries("wk_c", now + 60_000, 60_000, 100)
        .await
        .unwrap();
    assert_eq!(again.len(), n);
    // wk_a's lease is gone: its result is not recorded; wk_c's is.
    let result = |c: &cloister_attestor::storage::billing::Claimed| AttemptResult {
        outbox_id: c.outbox_id,
        endpoint_id: c.endpoint_id.clone(),
        attempt: 1,
        attempted_at_ms: now,
        duration_ms: 1,
        status_code: Some(204),
        error: None,
        next: Next::Delivered,
    };
    let stale = s1
        .billing()
        .complete_deliveries("wk_a", &a.iter().map(result).collect::<Vec<_>>(), now)
        .await
        .unwrap();
    assert_eq!(stale, 0, "a lapsed lease records nothing");
    let done = s2
        .billing()
        .complete_deliveries("wk_c", &again.iter().map(result).collect::<Vec<_>>(), now)
        .await
        .unwrap();
    assert_eq!(done, n as u64);
    assert_eq!(
        s1.billing().stats().await.unwrap().outbox_delivered,
        n as i64
    );
    s1.close().await;
    s2.close().await;
}
