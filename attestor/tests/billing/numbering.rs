//! Gapless numbering with real processes: several `billing close` runs at
//! once against one database issue numbers 1..N, none twice, one invoice
//! per tenant; a closer killed with SIGKILL mid-run and run again ends with
//! the same set, no gap, no duplicate. On both backends (PostgreSQL is the
//! several-attestors case).

use super::*;
use crate::both_backends;
use crate::support::{Backend, TestDb, bin};
use cloister_attestor::storage::billing::{InvoiceFilter, InvoiceStatus};
use std::process::{Command, Stdio};
use std::time::Duration;

both_backends!(
    concurrent_closer_processes_number_gaplessly,
    killed_closer_then_rerun_leaves_no_gap
);

/// `n` tenants with one November event each (one batch).
async fn seed(s: &dyn Storage, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    let mut batch = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("tn_{i:04}");
        tenant(s, &id, Plan::Starter, "2026-10-01T00:00:00Z").await;
        batch.push(UsageWrite {
            tenant_id: id.clone(),
            event: V,
            units: 1,
            key: UsageKey::Generated(format!("k{i}")),
            request_hash: "h".into(),
            at_ms: ms("2026-11-10T00:00:00Z") + i as i64,
            response: StoredResponse {
                status: 200,
                body: bytes::Bytes::new(),
            },
        });
        ids.push(id);
    }
    for chunk in batch.chunks(1000) {
        s.commit_usage(chunk, 0).await.unwrap();
    }
    ids
}

fn closer(db: &TestDb) -> Command {
    let mut c = Command::new(bin());
    c.args(["billing", "close", "--period", "2026-11", "--json"])
        .arg("--state-dir")
        .arg(db.dir.path().join("state"))
        .arg("--database-url")
        .arg(&db.url)
        .env_remove("CLOISTER_ATTESTOR_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn keygen(db: &TestDb) {
    let out = Command::new(bin())
        .args(["keygen", "--state-dir"])
        .arg(db.dir.path().join("state"))
        .env_remove("CLOISTER_ATTESTOR_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every issued number is `PREFIX-YEAR-000001` … `000n`, each tenant once.
async fn assert_gapless(s: &dyn Storage, tenants: &[String]) {
    let rows = s
        .billing()
        .invoices(&InvoiceFilter {
            include_drafts: true,
            ..InvoiceFilter::default()
        })
        .await
        .unwrap();
    assert!(
        rows.iter().all(|r| r.status == InvoiceStatus::Finalized),
        "every invoice issued: {:?}",
        rows.iter()
            .filter(|r| r.status != InvoiceStatus::Finalized)
            .count()
    );
    let mut numbers: Vec<String> = rows.iter().filter_map(|r| r.number.clone()).collect();
    numbers.sort();
    let year = Period::of_ms(cloister_attestor::clock::Clock::now_ms(
        &cloister_attestor::clock::SystemClock,
    ))
    .unwrap()
    .year;
    let want: Vec<String> = (1..=tenants.len())
        .map(|i| format!("CLO-{year}-{i:06}"))
        .collect();
    assert_eq!(
        numbers, want,
        "numbers must be 1..N without gaps or duplicates"
    );
    let mut by_tenant: Vec<&str> = rows.iter().map(|r| r.tenant_id.as_str()).collect();
    by_tenant.sort();
    let mut expected: Vec<&str> = tenants.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(by_tenant, expected, "one invoice per tenant");
}

async fn concurrent_closer_processes_number_gaplessly(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    let tenants = seed(s.as_ref(), 60).await;
    keygen(&db);
    let children: Vec<_> = (0..4).map(|_| closer(&db).spawn().unwrap()).collect();
    let mut issued_now = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "closer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for t in report["tenants"].as_array().unwrap() {
            match t["outcome"].as_str().unwrap() {
                "issued" => issued_now += 1,
                "existing" => {}
                other => panic!("unexpected outcome {other}: {t}"),
            }
        }
    }
    // Each invoice was issued by exactly one of the four closers.
    assert_eq!(issued_now, tenants.len());
    assert_gapless(s.as_ref(), &tenants).await;
    s.close().await;
}

async fn killed_closer_then_rerun_leaves_no_gap(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    let tenants = seed(s.as_ref(), 150).await;
    keygen(&db);
    let mut child = closer(&db).spawn().unwrap();
    // Kill once a few invoices are issued, well before the end.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let at_kill = loop {
        let n = s
            .billing()
            .invoices(&InvoiceFilter::default())
            .await
            .unwrap()
            .len();
        if n >= 10 {
            break n;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the closer ended before it could be killed"
        );
        assert!(std::time::Instant::now() < deadline, "no invoice issued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let after_kill = s
        .billing()
        .invoices(&InvoiceFilter::default())
        .await
        .unwrap()
        .len();
    assert!(
        after_kill < tenants.len(),
        "the kill must land mid-run ({at_kill} then {after_kill} of {})",
        tenants.len()
    );
    let out = closer(&db).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_gapless(s.as_ref(), &tenants).await;
    // And once more: nothing new.
    let out = closer(&db).output().unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["outcome"] == "existing"),
        "a rerun issues nothing"
    );
    assert_gapless(s.as_ref(), &tenants).await;
    s.close().await;
}
