//! The audit-engagement gauges the business dashboard and its alerts read
//! (issue 20): open engagements, open ones past their key's expiry, and
//! engagements over the note limit, as the service exports them.

use super::{context, open, signed_record};
use crate::both_backends;
use crate::support::{Backend, REPO, TestServer};
use cloister_attestor::clock::{Clock as _, ManualClock};
use cloister_attestor::evidence::engagement;
use std::sync::Arc;

both_backends!(engagement_gauges_count_open_expired_and_over_the_note_limit);

const T0: i64 = 1_776_211_200_000;

/// The value of an unlabelled gauge in the exposition.
fn gauge(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

async fn engagement_gauges_count_open_expired_and_over_the_note_limit(b: Backend) {
    let clock = Arc::new(ManualClock::new(T0));
    let s = TestServer::start_with_clock(b, |_| {}, clock.clone()).await;
    s.sign(&signed_record(REPO, "v1.4.0", &super::digest_of('a')))
        .await;
    let ctx = context(&s, clock.now_ms(), None);
    let one = open(&ctx, "v1.4.0", "Jane Auditor").await;
    let two = open(&ctx, "v1.4.0", "Bob Auditor").await;
    let storage = s.storage();
    for n in 0..2 {
        engagement::add_note(
            storage.as_ref(),
            &one.engagement.id,
            "Jane Auditor",
            &format!("note {n}"),
            clock.now_ms(),
            "auditor:test",
        )
        .await
        .unwrap();
    }
    let state = cloister_attestor::service::AppState(s.running.as_ref().unwrap().app.clone());
    let metrics =
        || async { String::from_utf8(s.get("/metrics", None).await.body.to_vec()).unwrap() };
    cloister_attestor::service::audit::refresh(&state)
        .await
        .unwrap();
    let m = metrics().await;
    assert_eq!(gauge(&m, "cloister_audit_engagements_open"), 2.0);
    assert_eq!(gauge(&m, "cloister_audit_engagements_expired"), 0.0);
    // two notes is the limit, not over it
    assert_eq!(gauge(&m, "cloister_audit_engagements_over_note_limit"), 0.0);

    // The 7-day keys run out; both engagements are still open.
    clock.advance_ms(8 * 86_400_000);
    cloister_attestor::service::audit::refresh(&state)
        .await
        .unwrap();
    let m = metrics().await;
    assert_eq!(gauge(&m, "cloister_audit_engagements_open"), 2.0);
    assert_eq!(gauge(&m, "cloister_audit_engagements_expired"), 2.0);

    // Signing one off takes it out of both.
    let ctx = context(&s, clock.now_ms(), None);
    engagement::sign_off(&ctx, &two.engagement.id, "operator:test")
        .await
        .unwrap();
    cloister_attestor::service::audit::refresh(&state)
        .await
        .unwrap();
    let m = metrics().await;
    assert_eq!(gauge(&m, "cloister_audit_engagements_open"), 1.0);
    assert_eq!(gauge(&m, "cloister_audit_engagements_expired"), 1.0);
    // No tenant, auditor or engagement id in the exposition.
    for needle in [
        &one.engagement.id,
        &one.engagement.tenant_id,
        &"Jane".to_string(),
    ] {
        assert!(!m.contains(needle.as_str()), "{needle} in\n{m}");
    }
}
