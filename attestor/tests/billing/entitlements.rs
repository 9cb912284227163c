//! Entitlements per plan over real HTTP, on both backends: a tenant over
//! its plan's monthly hard cap gets 429 `usage_cap_reached` and is not
//! metered; a feature the plan lacks is refused with 403
//! `feature_not_in_plan` (nothing metered); the per-plan rate limit
//! applies to the plan's keys only, and a plan change takes effect at once.

use super::*;
use crate::both_backends;
use crate::support::{ARTIFACT, Backend, TestServer, build_record, issue_key};
use cloister_attestor::clock::{Clock as _, SystemClock};
use serde_json::json;

both_backends!(
    starter_over_its_cap_is_refused_and_not_metered,
    a_feature_off_is_refused_with_its_code,
    per_plan_rate_limit_and_plan_change_at_once,
);

const CAPPED: &str = "[Starter]\nfeatures = [\"portal_downloads\"]\n\
[Starter.events.\"attestation.verify\"]\nunit_price_micros = 10000\nhard_cap_units = 3\n\
[Starter.events.\"portal.download\"]\nunit_price_micros = 0\n";

fn plans(c: &mut cloister_attestor::config::Config, toml_plans: &str) {
    c.billing.plans = Some(toml::from_str(toml_plans).unwrap());
    c.auth.cache_ttl_ms = 0;
}

async fn verify_body(s: &TestServer) -> serde_json::Value {
    let signed = s.sign(&build_record()).await;
    json!({"artifactDigest": ARTIFACT, "sourceUri": "github.com/example/repo-a", "provenance": signed["envelope"]})
}

async fn starter_over_its_cap_is_refused_and_not_metered(b: Backend) {
    let s = TestServer::start(b, |c| plans(c, CAPPED)).await;
    tenant(
        s.storage().as_ref(),
        "tn_cap",
        Plan::Starter,
        "2026-01-01T00:00:00Z",
    )
    .await;
    let key = issue_key(s.storage().as_ref(), "tn_cap").await;
    // Usage already committed this month counts against the cap.
    usage_at_ms(
        s.storage().as_ref(),
        "tn_cap",
        V,
        1,
        SystemClock.now_ms() - 1,
    )
    .await;
    let body = verify_body(&s).await;
    for i in 0..2 {
        let r = s.verify(&key, Some(&format!("cap-{i}")), &body).await;
        assert_eq!(r.status, 200, "{i}: {}", String::from_utf8_lossy(&r.body));
    }
    let r = s.verify(&key, Some("cap-over"), &body).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.code(), "usage_cap_reached");
    assert!(r.headers.contains_key("retry-after"));
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("3 attestation.verify")
    );
    // Refused, not metered; other events are not capped.
    assert_eq!(s.count(&key, V).await, 3);
    let r = s
        .get(&format!("/v1/attestations?subject={ARTIFACT}"), Some(&key))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(s.count(&key, D).await, 1);
    let m = String::from_utf8(s.get("/metrics", None).await.body.to_vec()).unwrap();
    assert!(
        m.contains("cloister_attestor_billing_refusals_total{reason=\"usage_cap_reached\"} 1"),
        "{m}"
    );
}

async fn a_feature_off_is_refused_with_its_code(b: Backend) {
    // Starter without portal downloads (nor webhooks).
    let s = TestServer::start(b, |c| {
        plans(
            c,
            "[Starter]\nfeatures = []\n[Starter.events.\"attestation.verify\"]\nunit_price_micros = 10000\n\
             [Starter.events.\"portal.download\"]\nunit_price_micros = 0\n",
        )
    })
    .await;
    tenant(
        s.storage().as_ref(),
        "tn_nofeat",
        Plan::Starter,
        "2026-01-01T00:00:00Z",
    )
    .await;
    let key = issue_key(s.storage().as_ref(), "tn_nofeat").await;
    let r = s
        .get(&format!("/v1/attestations?subject={ARTIFACT}"), Some(&key))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "feature_not_in_plan");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("portal_downloads")
    );
    assert_eq!(
        s.count(&key, D).await,
        0,
        "a refused download is not metered"
    );
    let auth = format!("Bearer {key}");
    let r = s
        .post(
            "/v1/webhooks/replay",
            &[("authorization", &auth)],
            "{\"since\": \"2026-01-01\"}",
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "feature_not_in_plan");
    // Verification is not a feature: still served and metered.
    let body = verify_body(&s).await;
    assert_eq!(s.verify(&key, None, &body).await.status, 200);
    assert_eq!(s.count(&key, V).await, 1);
}

async fn per_plan_rate_limit_and_plan_change_at_once(b: Backend) {
    let s = TestServer::start(b, |c| {
        plans(
            c,
            "[Starter]\nrate_limit = { per_second = 1, burst = 2 }\nfeatures = [\"portal_downloads\"]\n\
             [Starter.events.\"attestation.verify\"]\nunit_price_micros = 10000\n\
             [Starter.events.\"portal.download\"]\nunit_price_micros = 0\n",
        )
    })
    .await;
    tenant(
        s.storage().as_ref(),
        "tn_slow",
        Plan::Starter,
        "2026-01-01T00:00:00Z",
    )
    .await;
    tenant(
        s.storage().as_ref(),
        "tn_fast",
        Plan::Pro,
        "2026-01-01T00:00:00Z",
    )
    .await;
    let slow = issue_key(s.storage().as_ref(), "tn_slow").await;
    let fast = issue_key(s.storage().as_ref(), "tn_fast").await;
    let mut ok = 0;
    let refused = loop {
        let r = s.get("/v1/usage", Some(&slow)).await;
        if r.status != 200 {
            break r;
        }
        ok += 1;
        assert!(ok < 20, "the Starter plan's limit never applied");
    };
    assert_eq!(refused.status, 429);
    assert_eq!(refused.code(), "rate_limited");
    // Pro has no own limit: the config's (100k/s in tests) applies.
    for _ in 0..10 {
        assert_eq!(s.get("/v1/usage", Some(&fast)).await.status, 200);
    }
    // Moving the tenant to Pro lifts the Starter limit at once.
    s.storage()
        .billing()
        .change_plan("tn_slow", "Pro", SystemClock.now_ms())
        .await
        .unwrap();
    for _ in 0..10 {
        assert_eq!(s.get("/v1/usage", Some(&slow)).await.status, 200);
    }
    let history = s.storage().billing().plan_history("tn_slow").await.unwrap();
    let plans: Vec<&str> = history.iter().map(|h| h.plan.as_str()).collect();
    assert_eq!(
        plans,
        ["Starter", "Pro"],
        "the change is recorded for rating"
    );
}
