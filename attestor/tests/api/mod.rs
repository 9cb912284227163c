//! The consumer API over real HTTP, on both backends.

use crate::both_backends;
use crate::support::{Backend, TestServer};
use cloister_attestor::clock::ManualClock;
use cloister_attestor::storage::{AttestationRow, SubjectRow};
use std::sync::Arc;

mod sign;
mod verify;

both_backends!(
    every_v1_route_requires_a_valid_key,
    revoked_keys_are_refused,
    rate_limit_answers_429_with_retry_after,
    downloads_are_metered_and_replayed_once,
    download_queries_are_validated,
    usage_shows_only_the_callers_own_counts,
    usage_period_defaults_to_this_month,
    readiness_and_health,
    metrics_expose_routes_and_no_tenant_ids,
    unknown_routes_and_methods_are_json_errors,
);

async fn every_v1_route_requires_a_valid_key(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let digest = format!("sha256:{}", "a".repeat(64));
    let bad_keys = [None, Some("clst_0000000000000000_nope"), Some("not-a-key")];
    for key in bad_keys {
        for path in [
            "/v1/usage".to_owned(),
            format!("/v1/attestations?subject={digest}"),
            "/v1/keys".to_owned(),
        ] {
            let r = s.get(&path, key).await;
            assert_eq!(r.status, 401, "{path} with {key:?}");
            assert_eq!(r.code(), "unauthorized");
            assert_eq!(r.headers["www-authenticate"], "Bearer");
        }
        let mut h = vec![("content-type", "application/json")];
        let auth;
        if let Some(k) = key {
            auth = format!("Bearer {k}");
            h.push(("authorization", &auth));
        }
        let r = s.post("/v1/verify", &h, "{}").await;
        assert_eq!(r.status, 401);
    }
    // The OpenAPI document and operations endpoints are public.
    assert_eq!(s.get("/v1/openapi.json", None).await.status, 200);
    assert_eq!(s.get("/healthz", None).await.status, 200);
}

async fn revoked_keys_are_refused(b: Backend) {
    let s = TestServer::start(b, |c| c.auth.cache_ttl_ms = 0).await;
    let (_, key) = s.tenant("acme").await;
    assert_eq!(s.get("/v1/usage", Some(&key)).await.status, 200);
    let key_id = key.split('_').nth(1).unwrap();
    s.storage().revoke_api_key(key_id, 5).await.unwrap();
    assert_eq!(s.get("/v1/usage", Some(&key)).await.status, 401);
}

async fn rate_limit_answers_429_with_retry_after(b: Backend) {
    let s = TestServer::start(b, |c| {
        c.rate_limit.per_second = 1;
        c.rate_limit.burst = 3;
    })
    .await;
    let (_, key) = s.tenant("acme").await;
    let (_, other) = s.tenant("beta").await;
    // The burst passes; soon after, a request is refused (bounded attempts,
    // no timing assumptions beyond "faster than one refill per request").
    let mut ok = 0;
    let r = loop {
        let r = s.get("/v1/usage", Some(&key)).await;
        if r.status != 200 {
            break r;
        }
        ok += 1;
        assert!(ok < 20, "never rate limited");
    };
    assert!(ok >= 3, "the burst of 3 must pass, got {ok}");
    assert_eq!(r.status, 429);
    assert_eq!(r.code(), "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    // Per key: another key is unaffected.
    assert_eq!(s.get("/v1/usage", Some(&other)).await.status, 200);
}

fn stored(id: &str, digest: &str) -> AttestationRow {
    AttestationRow {
        id: id.into(),
        created_at_ms: 1_700_000_000_000,
        keyid: "abc".into(),
        builder_id: "https://cloister.dev/builder".into(),
        source_uri: "git+https://example.com/a".into(),
        subjects: vec![SubjectRow {
            name: "out.tar".into(),
            digest: digest.into(),
        }],
        envelope: "{\"payloadType\":\"x\",\"payload\":\"e30=\",\"signatures\":[]}".into(),
        bundle: "{\"mediaType\":\"m\"}".into(),
    }
}

async fn downloads_are_metered_and_replayed_once(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let (_, key) = s.tenant("acme").await;
    let digest = format!("sha256:{}", "c".repeat(64));
    s.storage()
        .insert_attestation(&stored("0190a", &digest))
        .await
        .unwrap();
    let path = format!("/v1/attestations?subject={digest}");
    let auth = format!("Bearer {key}");
    let get = |idem: Option<&'static str>| {
        let mut h = vec![("authorization".to_owned(), auth.clone())];
        if let Some(k) = idem {
            h.push(("idempotency-key".to_owned(), k.to_owned()));
        }
        let url = format!("{}{path}", s.base);
        let c = s.client.clone();
        async move {
            c.send(hyper::Method::GET, &url, &h, bytes::Bytes::new())
                .await
        }
    };
    let r = get(Some("dl-1")).await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["attestations"][0]["id"], "0190a");
    assert_eq!(
        j["attestations"][0]["subjects"][0]["digest"],
        digest.as_str()
    );
    assert_eq!(j["attestations"][0]["envelope"]["payload"], "e30=");
    assert!(r.headers.get("idempotent-replayed").is_none());
    let again = get(Some("dl-1")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body, r.body);
    get(None).await;
    get(None).await;
    let u = s.get("/v1/usage", Some(&key)).await.json();
    assert_eq!(u["events"]["portal.download"], 3, "one keyed + two unkeyed");
    assert_eq!(u["events"]["attestation.verify"], 0);
}

async fn download_queries_are_validated(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let (_, key) = s.tenant("acme").await;
    for q in [
        "",
        "?subject=sha256:abc",
        "?subject=sha256:aa&repo=x",
        "?repo=x&limit=0",
        "?repo=x&limit=101",
        "?repo=x&bogus=1",
        "?repo=x&limit=ten",
    ] {
        let r = s.get(&format!("/v1/attestations{q}"), Some(&key)).await;
        assert_eq!(r.status, 400, "{q}");
        assert_eq!(r.code(), "invalid_query", "{q}");
    }
    let u = s.get("/v1/usage", Some(&key)).await.json();
    assert_eq!(
        u["events"]["portal.download"], 0,
        "rejected requests are not metered"
    );
}

async fn usage_shows_only_the_callers_own_counts(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let (a_id, a_key) = s.tenant("a").await;
    let (b_id, b_key) = s.tenant("b").await;
    for _ in 0..2 {
        s.get("/v1/attestations?repo=x", Some(&a_key)).await;
    }
    s.get("/v1/attestations?repo=x", Some(&b_key)).await;
    let ua = s.get("/v1/usage", Some(&a_key)).await.json();
    let ub = s.get("/v1/usage", Some(&b_key)).await.json();
    assert_eq!(ua["tenant"], a_id.as_str());
    assert_eq!(ua["events"]["portal.download"], 2);
    assert_eq!(ub["tenant"], b_id.as_str());
    assert_eq!(ub["events"]["portal.download"], 1);
    // No parameter lets a tenant ask for another's usage.
    let r = s
        .get(&format!("/v1/usage?tenant={a_id}"), Some(&b_key))
        .await;
    assert_eq!(r.status, 400);
}

async fn usage_period_defaults_to_this_month(b: Backend) {
    // 2026-04-15T00:00:00Z
    let clock = Arc::new(ManualClock::new(1_776_211_200_000));
    let s = TestServer::start_with_clock(b, |_| {}, clock.clone()).await;
    let (_, key) = s.tenant("acme").await;
    s.get("/v1/attestations?repo=x", Some(&key)).await;
    let u = s.get("/v1/usage", Some(&key)).await.json();
    assert_eq!(u["from"], "2026-04-01T00:00:00Z");
    assert_eq!(u["to"], "2026-05-01T00:00:00Z");
    assert_eq!(u["events"]["portal.download"], 1);
    let may = s
        .get("/v1/usage?from=2026-05-01&to=2026-06-01", Some(&key))
        .await
        .json();
    assert_eq!(may["events"]["portal.download"], 0);
    let r = s
        .get("/v1/usage?from=2026-05-01&to=2026-04-01", Some(&key))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (400, "invalid_query")
    );
    let r = s.get("/v1/usage?from=last-week", Some(&key)).await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (400, "invalid_query")
    );
}

async fn readiness_and_health(b: Backend) {
    let mut s = TestServer::start(b, |_| {}).await;
    assert_eq!(s.get("/healthz", None).await.json()["status"], "ok");
    assert_eq!(s.get("/readyz", None).await.json()["status"], "ready");
    // Storage closed: not ready (503 with a JSON error), still alive.
    let storage = s.storage();
    storage.close().await;
    let r = s.get("/readyz", None).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.code(), "unavailable");
    assert_eq!(s.get("/healthz", None).await.status, 200);
    s.running.take().unwrap().shutdown();
}

async fn metrics_expose_routes_and_no_tenant_ids(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let (tenant, key) = s.tenant("acme").await;
    s.get("/v1/attestations?repo=x", Some(&key)).await;
    s.get("/v1/usage", None).await;
    s.get("/no/such/path/123", None).await;
    for path in [
        "/v1/keys",
        "/v1/openapi.json",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/engagements",
        "/v1/engagements/e",
        "/v1/engagements/e/attestations",
        "/v1/engagements/e/pack",
        "/v1/invoices",
        "/v1/invoices/CLO-2026-000001",
    ] {
        s.get(path, Some(&key)).await;
    }
    s.post("/v1/verify", &[], "{}").await;
    s.post("/v1/engagements/e/notes", &[], "{}").await;
    s.post("/v1/webhooks/replay", &[], "{}").await;
    for route in cloister_attestor::metrics::ROUTES {
        if route.starts_with("/portal") {
            s.get(
                &route.replace("{id}", "0193f2a4-7c1e-7b3a-9d2e-5f4c3b2a1908"),
                None,
            )
            .await;
        }
    }
    let m = String::from_utf8(s.get("/metrics", None).await.body.to_vec()).unwrap();
    // Every route the router serves has its own label (the label list is complete).
    for route in cloister_attestor::metrics::ROUTES {
        if *route != "/v1/sign" {
            assert!(
                m.contains(&format!("route=\"{route}\"")),
                "no label for {route} in\n{m}"
            );
        }
    }
    assert!(
        !m.contains("route=\"other\""),
        "a served route lacks a label:\n{m}"
    );
    for needle in [
        "cloister_attestor_http_requests_total{method=\"GET\",route=\"/v1/attestations\",status=\"200\"} 1",
        "cloister_attestor_http_requests_total{method=\"GET\",route=\"/v1/usage\",status=\"401\"} 1",
        "route=\"unmatched\",status=\"404\"",
        "cloister_attestor_http_request_duration_seconds_bucket",
        "cloister_attestor_usage_events_committed_total{event=\"portal.download\"} 1",
        "cloister_attestor_storage_commit_duration_seconds_count",
        "cloister_attestor_storage_commit_batch_size",
        "cloister_attestor_build_info{version=",
    ] {
        assert!(m.contains(needle), "missing {needle} in\n{m}");
    }
    assert!(!m.contains(&tenant), "tenant id leaked into metrics");
    assert!(
        !m.contains("/no/such/path"),
        "raw paths must not become labels"
    );
    assert!(!m.contains(&key[..20]));
}

async fn unknown_routes_and_methods_are_json_errors(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let r = s.get("/v2/nothing", None).await;
    assert_eq!((r.status.as_u16(), r.code().as_str()), (404, "not_found"));
    let r = s.post("/v1/usage", &[], "").await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (405, "method_not_allowed")
    );
}

/// Graceful shutdown: a request in flight when shutdown starts still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_and_closes_the_listener() {
    let mut s = TestServer::start(Backend::Sqlite, |_| {}).await;
    let (_, key) = s.tenant("acme").await;
    let addr = s.running.as_ref().unwrap().addr;
    let sock = s.running.as_ref().unwrap().sign_socket.clone();
    assert_eq!(s.get("/v1/usage", Some(&key)).await.status, 200);
    s.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
    assert!(!sock.exists(), "signing socket removed");
}
