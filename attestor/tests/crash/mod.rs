//! The crash test: the real `cloister-attestor serve` binary under
//! concurrent verify load (each request with its own Idempotency-Key) is
//! killed with SIGKILL mid-load and restarted; every client retries each of
//! its keys until it gets a 2xx. The usage count must equal the number of
//! distinct keys exactly: none lost, none counted twice.

use crate::both_backends;
use crate::support::{
    ARTIFACT, Backend, Client, TestDb, bin, build_record, sign_at, tenant_with_key,
};
use bytes::Bytes;
use cloister_attestor::storage::EVENT_VERIFY;
use hyper::Method;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

both_backends!(sigkill_mid_load_loses_and_doubles_nothing);

const CLIENTS: usize = 8;
const KEYS_PER_CLIENT: usize = 50;

/// Starts the binary; returns the child and its consumer address.
async fn spawn_server(db: &TestDb, listen: &str) -> (Child, String) {
    let mut child = Command::new(bin())
        .args(["serve", "--listen", listen, "--database-url", &db.url])
        .arg("--state-dir")
        .arg(db.dir.path().join("state"))
        .env("CLOISTER_ATTESTOR_RATE_LIMIT_PER_SECOND", "1000000")
        .env("CLOISTER_ATTESTOR_RATE_LIMIT_BURST", "1000000")
        .env_remove("CLOISTER_ATTESTOR_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn cloister-attestor serve");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("server printed its address")
        .unwrap()
        .expect("a line on stdout");
    let addr = first
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected: {first}"))
        .to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

async fn sigkill_mid_load_loses_and_doubles_nothing(b: Backend) {
    let db = TestDb::new(b).await;
    let (tenant, key) = {
        let s = db.open().await;
        let t = tenant_with_key(s.as_ref(), "acme").await;
        s.close().await;
        t
    };
    let (mut child, addr) = spawn_server(&db, "127.0.0.1:0").await;
    let sock = db.dir.path().join("state/sign.sock");
    let signed = sign_at(&sock, &build_record()).await;
    let body = Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "artifactDigest": ARTIFACT,
            "sourceUri": "https://github.com/example/repo-a",
            "provenance": signed["envelope"],
        }))
        .unwrap(),
    );

    let url = Arc::new(format!("http://{addr}/v1/verify"));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (url, body, key, done, failures) = (
            url.clone(),
            body.clone(),
            key.clone(),
            done.clone(),
            failures.clone(),
        );
        clients.push(tokio::spawn(async move {
            let client = Client::new();
            let headers = |k: &str| {
                vec![
                    ("authorization".to_owned(), format!("Bearer {key}")),
                    ("content-type".to_owned(), "application/json".to_owned()),
                    ("idempotency-key".to_owned(), k.to_owned()),
                ]
            };
            for i in 0..KEYS_PER_CLIENT {
                let k = format!("crash-{c}-{i}");
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    assert!(attempts < 2000, "{k} never succeeded");
                    match client
                        .try_send(Method::POST, &url, &headers(&k), body.clone())
                        .await
                    {
                        Ok(r) if r.status.is_success() => {
                            assert_eq!(r.json()["verified"], true);
                            break;
                        }
                        Ok(r) => assert!(
                            r.status.is_server_error(),
                            "unexpected {} for {k}",
                            r.status
                        ),
                        Err(_) => {}
                    }
                    failures.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Kill once a fair part (but not all) of the load has been answered.
    let total = CLIENTS * KEYS_PER_CLIENT;
    while done.load(Ordering::Relaxed) < total / 4 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    let at_kill = done.load(Ordering::Relaxed);
    assert!(at_kill < total, "the kill must land mid-load");
    // Restart on the same address while the clients keep retrying.
    let (mut child, _) = spawn_server(&db, &addr).await;
    for c in clients {
        c.await.unwrap();
    }
    assert!(
        failures.load(Ordering::Relaxed) > 0,
        "some requests must have hit the dead server"
    );

    let s = db.open().await;
    let counts = s.usage_counts(&tenant, 0, i64::MAX).await.unwrap();
    assert_eq!(
        counts.get(EVENT_VERIFY).copied().unwrap_or(0),
        total as i64,
        "usage events must equal distinct Idempotency-Keys (killed after {at_kill} answers)"
    );
    s.close().await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}
