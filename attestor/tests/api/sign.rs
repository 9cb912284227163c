//! The signing socket is idempotent per job (issue 20): a runner retrying
//! after a lost reply (an attestor restart) gets the attestation it was
//! given the first time, never a second signature; another record under a
//! job id already signed is refused. On both backends.

use crate::both_backends;
use crate::support::{ARTIFACT, Backend, TestServer, build_record, unix_request};
use cloister_attestor::storage::{AttestationFilter, Page};
use hyper::Method;

both_backends!(
    a_repeated_record_gets_the_same_attestation,
    concurrent_duplicates_sign_once,
    another_record_under_a_signed_job_is_refused,
);

async fn stored_for(s: &TestServer, digest: &str) -> usize {
    s.storage()
        .find_attestations(
            &AttestationFilter::Subject(digest.into()),
            &Page {
                limit: 100,
                before: None,
            },
        )
        .await
        .unwrap()
        .len()
}

async fn a_repeated_record_gets_the_same_attestation(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let record = build_record();
    let first = s.sign(&record).await;
    // The same record again, its fields in another order and spacing (the
    // record is identified by its content, not its bytes).
    let reordered: serde_json::Map<String, serde_json::Value> = record
        .as_object()
        .unwrap()
        .iter()
        .rev()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let again = s.sign(&serde_json::Value::Object(reordered)).await;
    assert_eq!(first, again, "the same envelope, bundle and attestation id");
    assert_eq!(stored_for(&s, ARTIFACT).await, 1, "signed and stored once");
    // Another job (invocation) with the same facts is a new attestation.
    let mut other = record.clone();
    other["invocationId"] = "job-another".into();
    let third = s.sign(&other).await;
    assert_ne!(third["attestationId"], first["attestationId"]);
    assert_eq!(stored_for(&s, ARTIFACT).await, 2);
}

async fn concurrent_duplicates_sign_once(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let socket = s.running.as_ref().unwrap().sign_socket.clone();
    let body = serde_json::to_vec(&build_record()).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (socket, body) = (socket.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            unix_request(&socket, Method::POST, "/v1/sign", body).await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        ids.push(r.json()["attestationId"].as_str().unwrap().to_string());
    }
    ids.dedup();
    assert_eq!(
        ids.len(),
        1,
        "every duplicate got the one attestation: {ids:?}"
    );
    assert_eq!(stored_for(&s, ARTIFACT).await, 1);
}

async fn another_record_under_a_signed_job_is_refused(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let record = build_record();
    let first = s.sign(&record).await;
    let mut forged = record.clone();
    let other_digest = format!("sha256:{}", "e".repeat(64));
    forged["subjects"][0]["digest"] = other_digest.clone().into();
    let socket = &s.running.as_ref().unwrap().sign_socket;
    let r = unix_request(
        socket,
        Method::POST,
        "/v1/sign",
        serde_json::to_vec(&forged).unwrap(),
    )
    .await;
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.code(), "invocation_conflict");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains(record["invocationId"].as_str().unwrap()),
        "{}",
        r.json()
    );
    assert_eq!(stored_for(&s, &other_digest).await, 0, "nothing stored");
    // the original still answers as before
    assert_eq!(s.sign(&record).await, first);
}
