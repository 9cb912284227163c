//! `POST /v1/verify`, the signing socket and `/v1/keys`, on both backends.

use crate::both_backends;
use crate::support::{ARTIFACT, Backend, REPO, TestServer, build_record, unix_request};
use cloister_attestor::clock::ManualClock;
use hyper::Method;
use serde_json::json;
use std::sync::Arc;

both_backends!(
    signed_provenance_verifies_inline_from_bundle_and_from_the_store,
    failed_verification_is_200_with_reason_codes_and_is_metered,
    malformed_requests_are_400_or_422_and_not_metered,
    oversize_bodies_are_413,
    idempotent_retries_replay_and_count_once,
    concurrent_duplicates_count_once,
    idempotency_window_expires_after_24_hours,
    a_tenant_sees_only_its_own_idempotency_records,
    signing_socket_validates_records_and_is_not_on_tcp,
    keys_endpoint_lists_the_signing_key,
    key_rotation_and_expiry_reach_verification_and_the_verdict_cache,
    every_stored_envelope_is_tried_and_every_failure_reported,
);

fn request(provenance: Option<&serde_json::Value>) -> serde_json::Value {
    let mut r = json!({ "artifactDigest": ARTIFACT, "sourceUri": "github.com/example/repo-a", "sourceTag": "v1.2.3" });
    if let Some(p) = provenance {
        r["provenance"] = p.clone();
    }
    r
}

async fn signed_provenance_verifies_inline_from_bundle_and_from_the_store(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let (_, key) = s.tenant("acme").await;
    let signed = s.sign(&build_record()).await;
    assert!(signed["attestationId"].is_string());
    assert_eq!(
        signed["bundle"]["verificationMaterial"]["publicKey"]["hint"],
        signed["keyid"]
    );

    for (what, body) in [
        ("envelope", request(Some(&signed["envelope"]))),
        ("bundle", request(Some(&signed["bundle"]))),
        ("store", request(None)),
    ] {
        let r = s.verify(&key, None, &body).await;
        assert_eq!(r.status, 200, "{what}");
        let v = r.json();
        assert_eq!(v["verified"], true, "{what}: {v}");
        assert_eq!(v["reasons"], json!([]));
        assert_eq!(v["slsaLevel"], 3);
        assert_eq!(
            v["builderId"],
            "https://cloister.example.com/builders/isolated@v1"
        );
        assert_eq!(v["subject"]["name"], "repo-a");
        assert!(v.get("provenance").is_none(), "only on request");
    }
    let mut with = request(None);
    with["includeProvenance"] = json!(true);
    let v = s.verify(&key, None, &with).await.json();
    assert_eq!(
        v["provenance"]["predicateType"],
        "https://slsa.dev/provenance/v1"
    );
    assert_eq!(s.count(&key, "attestation.verify").await, 4);

    // The store serves the same envelope and bundle by subject and by repo.
    let by_subject = s
        .get(&format!("/v1/attestations?subject={ARTIFACT}"), Some(&key))
        .await
        .json();
    assert_eq!(
        by_subject["attestations"][0]["envelope"],
        signed["envelope"]
    );
    assert_eq!(by_subject["attestations"][0]["bundle"], signed["bundle"]);
    assert_eq!(by_subject["attestations"][0]["keyid"], signed["keyid"]);
    let by_repo = s
        .get(
            "/v1/attestations?repo=git%2Bhttps://github.com/example/repo-a",
            Some(&key),
        )
        .await
        .json();
    assert_eq!(by_repo["attestations"][0]["id"], signed["attestationId"]);
    let by_builder = s
        .get(
            "/v1/attestations?builder=https://cloister.example.com/builders/isolated@v1",
            Some(&key),
        )
        .await
        .json();
    assert_eq!(by_builder["attestations"].as_array().unwrap().len(), 1);
}

async fn failed_verification_is_200_with_reason_codes_and_is_metered(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let (_, key) = s.tenant("acme").await;
    let signed = s.sign(&build_record()).await;
    let mut tampered = signed["envelope"].clone();
    let mut sig = tampered["signatures"][0]["sig"]
        .as_str()
        .unwrap()
        .to_owned();
    sig.replace_range(4..8, if &sig[4..8] == "AAAA" { "BBBB" } else { "AAAA" });
    tampered["signatures"][0]["sig"] = json!(sig);
    let other_digest = format!("sha256:{}", "0".repeat(64));
    let cases = [
        (
            json!({ "artifactDigest": other_digest, "sourceUri": REPO, "provenance": signed["envelope"] }),
            "artifact_digest_mismatch",
        ),
        (
            json!({ "artifactDigest": ARTIFACT, "sourceUri": "github.com/evil/repo", "provenance": signed["envelope"] }),
            "source_uri_mismatch",
        ),
        (
            json!({ "artifactDigest": ARTIFACT, "sourceUri": REPO, "sourceBranch": "main", "provenance": signed["envelope"] }),
            "source_branch_mismatch",
        ),
        (
            json!({ "artifactDigest": ARTIFACT, "sourceUri": REPO, "builderId": "https://other", "provenance": signed["envelope"] }),
            "builder_id_mismatch",
        ),
        (
            json!({ "artifactDigest": ARTIFACT, "sourceUri": REPO, "provenance": tampered }),
            "signature_invalid",
        ),
        (
            json!({ "artifactDigest": ARTIFACT, "sourceUri": REPO, "provenance": {"hello": 1} }),
            "unrecognized_format",
        ),
        (
            json!({ "artifactDigest": other_digest, "sourceUri": REPO }),
            "provenance_not_found",
        ),
    ];
    for (body, code) in &cases {
        let r = s.verify(&key, None, body).await;
        assert_eq!(r.status, 200, "{code}");
        let v = r.json();
        assert_eq!(v["verified"], false, "{code}");
        assert_eq!(v["reasons"][0]["code"], *code, "{v}");
        assert!(!v["reasons"][0]["message"].as_str().unwrap().is_empty());
        assert_eq!(v["slsaLevel"], serde_json::Value::Null);
    }
    assert_eq!(
        s.count(&key, "attestation.verify").await,
        cases.len() as i64
    );
    let m = String::from_utf8(s.get("/metrics", None).await.body.to_vec()).unwrap();
    for (_, code) in &cases {
        assert!(
            m.contains(&format!(
                "cloister_attestor_verify_outcomes_total{{outcome=\"failed\",reason=\"{code}\"}}"
            )),
            "{code} missing from metrics"
        );
    }
}

async fn malformed_requests_are_400_or_422_and_not_metered(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let (_, key) = s.tenant("acme").await;
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"not json".to_vec(), 400, "invalid_json"),
        (b"{\"artifactDigest\": ".to_vec(), 400, "invalid_json"),
        (b"".to_vec(), 400, "invalid_json"),
        (json!({ "sourceUri": REPO }).to_string().into_bytes(), 422, "invalid_request"),
        (json!({ "artifactDigest": ARTIFACT, "sourceUri": REPO, "extra": 1 }).to_string().into_bytes(), 422, "invalid_request"),
        (json!({ "artifactDigest": 5, "sourceUri": REPO }).to_string().into_bytes(), 422, "invalid_request"),
        (json!({ "artifactDigest": "sha256:xyz", "sourceUri": REPO }).to_string().into_bytes(), 422, "invalid_request"),
        (json!({ "artifactDigest": ARTIFACT, "sourceUri": "" }).to_string().into_bytes(), 422, "invalid_request"),
        (json!({ "artifactDigest": ARTIFACT, "sourceUri": REPO, "sourceTag": "v1", "sourceVersionedTag": "v1" }).to_string().into_bytes(), 422, "invalid_request"),
        (json!({ "artifactDigest": ARTIFACT, "sourceUri": REPO, "provenance": "a string" }).to_string().into_bytes(), 422, "invalid_request"),
        (json!([1, 2]).to_string().into_bytes(), 422, "invalid_request"),
    ];
    for (body, status, code) in cases {
        let r = s.verify_raw(&key, None, body.clone()).await;
        assert_eq!(
            (r.status.as_u16(), r.code().as_str()),
            (status, code),
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert!(!r.json()["message"].as_str().unwrap().is_empty());
    }
    // A bad Idempotency-Key is a 400 too.
    let r = s.verify(&key, Some("has space"), &request(None)).await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (400, "invalid_idempotency_key")
    );
    assert_eq!(s.count(&key, "attestation.verify").await, 0);
}

async fn oversize_bodies_are_413(b: Backend) {
    let s = TestServer::start(b, |c| c.limits.max_body_bytes = 2048).await;
    let (_, key) = s.tenant("acme").await;
    let mut body = request(None);
    body["sourceBranch"] = json!("x".repeat(4096));
    let r = s.verify(&key, None, &body).await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (413, "payload_too_large")
    );
    // Also on the signing socket.
    let sock = s.running.as_ref().unwrap().sign_socket.clone();
    let r = unix_request(&sock, Method::POST, "/v1/sign", vec![b' '; 4096]).await;
    assert_eq!(r.status, 413);
    // Just under the limit is fine.
    assert_eq!(s.verify(&key, None, &request(None)).await.status, 200);
    assert_eq!(s.count(&key, "attestation.verify").await, 1);
}

async fn idempotent_retries_replay_and_count_once(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let (_, key) = s.tenant("acme").await;
    let signed = s.sign(&build_record()).await;
    let body = request(Some(&signed["envelope"]));
    let first = s.verify(&key, Some("order-42"), &body).await;
    assert_eq!(first.status, 200);
    assert!(first.headers.get("idempotent-replayed").is_none());
    for _ in 0..3 {
        let again = s.verify(&key, Some("order-42"), &body).await;
        assert_eq!(again.status, 200);
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert_eq!(again.body, first.body);
    }
    // Same key, another request: refused, not counted.
    let r = s.verify(&key, Some("order-42"), &request(None)).await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (422, "idempotency_key_reused")
    );
    assert_eq!(s.count(&key, "attestation.verify").await, 1);
    // Without a key every request counts.
    s.verify(&key, None, &body).await;
    s.verify(&key, None, &body).await;
    assert_eq!(s.count(&key, "attestation.verify").await, 3);
}

async fn concurrent_duplicates_count_once(b: Backend) {
    let s = Arc::new(TestServer::start(b, |_| {}).await);
    let (_, key) = s.tenant("acme").await;
    let signed = s.sign(&build_record()).await;
    let body = request(Some(&signed["envelope"]));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (s, key, body) = (s.clone(), key.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let k = format!("dup-{}", i % 4);
            let r = s.verify(&key, Some(&k), &body).await;
            assert_eq!(r.status, 200);
            (k, r.body)
        }));
    }
    let mut bodies = std::collections::BTreeMap::new();
    for t in tasks {
        let (k, b) = t.await.unwrap();
        let prev = bodies.entry(k).or_insert_with(|| b.clone());
        assert_eq!(*prev, b, "every duplicate gets the same answer");
    }
    assert_eq!(s.count(&key, "attestation.verify").await, 4);
}

async fn idempotency_window_expires_after_24_hours(b: Backend) {
    let clock = Arc::new(ManualClock::new(1_776_211_200_000));
    let s = TestServer::start_with_clock(b, |_| {}, clock.clone()).await;
    let (_, key) = s.tenant("acme").await;
    let body = request(None);
    s.verify(&key, Some("k"), &body).await;
    clock.advance_ms(24 * 3_600_000 - 1);
    let r = s.verify(&key, Some("k"), &body).await;
    assert_eq!(
        r.headers["idempotent-replayed"], "true",
        "still inside 24 h"
    );
    clock.advance_ms(2);
    let r = s.verify(&key, Some("k"), &body).await;
    assert!(
        r.headers.get("idempotent-replayed").is_none(),
        "past 24 h it counts again"
    );
    assert_eq!(s.count(&key, "attestation.verify").await, 2);
}

async fn a_tenant_sees_only_its_own_idempotency_records(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let (_, a) = s.tenant("a").await;
    let (_, bk) = s.tenant("b").await;
    let signed = s.sign(&build_record()).await;
    let ra = s
        .verify(&a, Some("shared"), &request(Some(&signed["envelope"])))
        .await;
    assert_eq!(ra.json()["verified"], true);
    // b reuses a's key with another request: b gets its own fresh answer.
    let rb = s.verify(&bk, Some("shared"), &request(None)).await;
    assert_eq!(rb.status, 200);
    assert!(rb.headers.get("idempotent-replayed").is_none());
    assert_eq!(s.count(&a, "attestation.verify").await, 1);
    assert_eq!(s.count(&bk, "attestation.verify").await, 1);
}

async fn signing_socket_validates_records_and_is_not_on_tcp(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let sock = s.running.as_ref().unwrap().sign_socket.clone();
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    let mut unknown = build_record();
    unknown["subject"] = json!("forged");
    let mut bad_time = build_record();
    bad_time["startedOn"] = json!("yesterday");
    let mut no_subjects = build_record();
    no_subjects["subjects"] = json!([]);
    for (what, body, status) in [
        ("not json", b"{".to_vec(), 400),
        ("unknown field", serde_json::to_vec(&unknown).unwrap(), 422),
        ("bad time", serde_json::to_vec(&bad_time).unwrap(), 422),
        (
            "no subjects",
            serde_json::to_vec(&no_subjects).unwrap(),
            422,
        ),
    ] {
        let r = unix_request(&sock, Method::POST, "/v1/sign", body).await;
        assert_eq!(
            r.status.as_u16(),
            status,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // Nothing was stored for the rejected records.
    let (_, key) = s.tenant("acme").await;
    let got = s
        .get(&format!("/v1/attestations?subject={ARTIFACT}"), Some(&key))
        .await
        .json();
    assert_eq!(got["attestations"], json!([]));
    // The consumer listener has no signing route.
    let r = s
        .post(
            "/v1/sign",
            &[("authorization", &format!("Bearer {key}"))],
            serde_json::to_vec(&build_record()).unwrap(),
        )
        .await;
    assert_eq!(r.status, 404);
}

async fn keys_endpoint_lists_the_signing_key(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let (_, key) = s.tenant("acme").await;
    let signed = s.sign(&build_record()).await;
    let keys = s.get("/v1/keys", Some(&key)).await.json();
    let list = keys["keys"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["keyid"], signed["keyid"]);
    assert_eq!(list[0]["algorithm"], "ecdsa-p256");
    assert!(
        list[0]["publicKey"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
}

/// A rotation made by another process (the CLI) while the server runs is
/// picked up without a restart: the new key signs, provenance of both keys
/// verifies; once the old key's not-after passes on the service's clock its
/// provenance is refused with `untrusted_key`, although the verdict for that
/// exact request had been cached while the key was trusted.
async fn key_rotation_and_expiry_reach_verification_and_the_verdict_cache(b: Backend) {
    use cloister_attestor::keyring::Keyring;
    use cloister_attestor_core::keys::{Algorithm, KeyPair};
    let start_ms = 1_776_211_200_000;
    let clock = Arc::new(ManualClock::new(start_ms));
    let s = TestServer::start_with_clock(b, |_| {}, clock.clone()).await;
    let (_, key) = s.tenant("acme").await;
    let app = s.running.as_ref().unwrap().app.clone();
    let old = s.sign(&build_record()).await;
    let old_body = request(Some(&old["envelope"]));
    for _ in 0..2 {
        let v = s.verify(&key, None, &old_body).await.json();
        assert_eq!(v["verified"], true, "{v}");
    }
    let (hits, _) = app.verdicts.stats();
    assert!(
        hits >= 1,
        "the repeated request was answered from the cache"
    );

    let ring = Keyring::open(&app.config.state_dir).unwrap();
    let at = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()
    };
    let hour = 3_600_000;
    ring.rotate_to(
        &KeyPair::generate(Algorithm::EcdsaP256).unwrap(),
        at(start_ms),
        at(start_ms + hour),
    )
    .unwrap();
    // The server notices the changed keyring file (checked at most every
    // 500 ms); wait for it without assuming how long that takes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let keys = s.get("/v1/keys", Some(&key)).await.json();
        if keys["keys"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rotation never seen: {keys}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Another job (the signing socket answers a job it signed before with
    // that same attestation).
    let mut next = build_record();
    next["invocationId"] = "job-after-rotation".into();
    let new = s.sign(&next).await;
    assert_ne!(new["keyid"], old["keyid"], "the new active key signs");
    let new_body = request(Some(&new["envelope"]));
    for body in [&old_body, &new_body] {
        let v = s.verify(&key, None, body).await.json();
        assert_eq!(v["verified"], true, "{v}");
    }

    // Past the old key's not-after: the same request is no longer verified.
    clock.set(start_ms + hour + 1);
    let v = s.verify(&key, None, &old_body).await.json();
    assert_eq!(v["verified"], false, "{v}");
    assert_eq!(v["reasons"][0]["code"], "untrusted_key", "{v}");
    let v = s.verify(&key, None, &new_body).await.json();
    assert_eq!(v["verified"], true, "{v}");
    let keys = s.get("/v1/keys", Some(&key)).await.json();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    assert_eq!(keys["keys"][0]["keyid"], new["keyid"]);
}

/// Without provenance in the body the stored attestations of the digest
/// are tried newest first with the core's one rule (`verify_any`): when
/// none verifies, every envelope's reasons are listed (prefixed `envelope
/// N: `); a good one after bad ones verifies. Each request is counted once,
/// a replay not again.
async fn every_stored_envelope_is_tried_and_every_failure_reported(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let (_, key) = s.tenant("acme").await;
    // Each build its own job: signing is idempotent per invocation.
    let mut other_tag = build_record();
    other_tag["source"]["ref"] = json!("refs/tags/v1.0.0");
    other_tag["invocationId"] = json!("job-other-tag");
    let mut other_repo = build_record();
    other_repo["source"]["uri"] = json!("https://github.com/example/repo-b");
    other_repo["invocationId"] = json!("job-other-repo");
    s.sign(&other_tag).await;
    s.sign(&other_repo).await;

    let v = s.verify(&key, Some("two-bad"), &request(None)).await;
    assert_eq!(v.status, 200);
    let v = v.json();
    assert_eq!(v["verified"], false, "{v}");
    assert!(v["slsaLevel"].is_null() && v["builderId"].is_null(), "{v}");
    let reasons: Vec<(&str, &str)> = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["code"].as_str().unwrap(), r["message"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "source_uri_mismatch",
                "envelope 1: source https://github.com/example/repo-b does not match expected https://github.com/example/repo-a"
            ),
            (
                "source_tag_mismatch",
                "envelope 2: source ref \"refs/tags/v1.0.0\" is not tag \"v1.2.3\""
            ),
        ]
    );
    assert_eq!(s.count(&key, "attestation.verify").await, 1);
    let again = s.verify(&key, Some("two-bad"), &request(None)).await;
    assert_eq!(again.json(), v, "a replay answers the stored verdict");
    assert_eq!(s.count(&key, "attestation.verify").await, 1);

    // A good attestation, then another bad one (newest): tried bad first,
    // then the good one verifies.
    s.sign(&build_record()).await;
    other_repo["invocationId"] = json!("job-other-repo-again");
    s.sign(&other_repo).await;
    let v = s.verify(&key, None, &request(None)).await.json();
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["reasons"], json!([]));
    assert_eq!(v["slsaLevel"], 3);
    assert_eq!(v["subject"]["name"], "repo-a");
    assert_eq!(s.count(&key, "attestation.verify").await, 2);
}
