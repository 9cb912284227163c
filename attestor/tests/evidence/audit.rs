//! Audit engagements over real HTTP: the auditor key's scope, expiry and
//! revocation, deny-by-default on every tenant endpoint, notes (a third is
//! refused), the frozen tag, and the auditor tenant's plan.

use super::{context, open, signed_record};
use crate::both_backends;
use crate::support::{Backend, REPO, TestServer};
use cloister_attestor::clock::{Clock as _, ManualClock};
use cloister_attestor::evidence::archive;
use cloister_attestor::evidence::engagement;
use cloister_attestor::storage::Plan;
use cloister_attestor_core::digest::Sha256Digest;
use std::sync::Arc;

both_backends!(
    auditor_keys_are_scoped_expire_and_revoke,
    frozen_tag_leaves_later_attestations_out,
);

const T0: i64 = 1_776_211_200_000;

fn art(c: char) -> String {
    super::digest_of(c)
}

async fn auditor_keys_are_scoped_expire_and_revoke(b: Backend) {
    let clock = Arc::new(ManualClock::new(T0));
    let s = TestServer::start_with_clock(b, |c| c.auth.cache_ttl_ms = 0, clock.clone()).await;
    let (_, tenant_key) = s.tenant("acme").await;
    s.sign(&signed_record(REPO, "v1.4.0", &art('a'))).await;
    s.sign(&signed_record(REPO, "v1.4.0", &art('b'))).await;
    s.sign(&signed_record(REPO, "v2.0.0", &art('c'))).await;
    let ctx = context(&s, clock.now_ms(), None);
    let one = open(&ctx, "v1.4.0", "Jane Auditor").await;
    let two = open(&ctx, "v2.0.0", "Bob Auditor").await;
    assert!(one.key.starts_with("clsa_"));
    assert_eq!(one.engagement.attestations, 2);

    // The auditor tenant is on its own plan, never billed.
    let tenant = s
        .storage()
        .find_tenant(&one.engagement.tenant_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tenant.plan, Plan::Auditor);
    assert!(!tenant.plan.billed());

    // Its own engagement: listed, shown, attestations, pack.
    let id = &one.engagement.id;
    let list = s.get("/v1/engagements", Some(&one.key)).await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    assert_eq!(list.json()["engagements"][0]["id"], id.as_str());
    let shown = s
        .get(&format!("/v1/engagements/{id}"), Some(&one.key))
        .await;
    assert_eq!(shown.status, 200);
    let shown = shown.json();
    assert_eq!(shown["engagement"]["tag"], "v1.4.0");
    assert_eq!(shown["frozen"].as_array().unwrap().len(), 2);
    assert_eq!(shown["pack"]["sha256"], one.pack.sha256.as_str());
    assert_eq!(shown["log"][0]["action"], "opened");
    let atts = s
        .get(
            &format!("/v1/engagements/{id}/attestations?limit=1"),
            Some(&one.key),
        )
        .await
        .json();
    assert_eq!(atts["attestations"].as_array().unwrap().len(), 1);
    let cursor = atts["nextCursor"].as_str().unwrap().to_owned();
    let rest = s
        .get(
            &format!("/v1/engagements/{id}/attestations?after={cursor}"),
            Some(&one.key),
        )
        .await
        .json();
    assert_eq!(rest["attestations"].as_array().unwrap().len(), 1);
    assert!(rest["nextCursor"].is_null());
    let pack = s
        .get(&format!("/v1/engagements/{id}/pack"), Some(&one.key))
        .await;
    assert_eq!(pack.status, 200);
    assert_eq!(pack.headers["content-type"], "application/gzip");
    assert_eq!(Sha256Digest::of(&pack.body).hex(), one.pack.sha256);
    assert_eq!(pack.headers["x-pack-sha256"], one.pack.sha256.as_str());
    assert!(
        archive::read(&pack.body)
            .unwrap()
            .contains_key("MANIFEST.json")
    );

    // Another engagement's endpoints: refused, whichever.
    let other = &two.engagement.id;
    for path in [
        format!("/v1/engagements/{other}"),
        format!("/v1/engagements/{other}/attestations"),
        format!("/v1/engagements/{other}/pack"),
    ] {
        let r = s.get(&path, Some(&one.key)).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (403, "engagement_out_of_scope".into()),
            "{path}"
        );
    }
    let r = s
        .post(
            &format!("/v1/engagements/{other}/notes"),
            &[("authorization", &format!("Bearer {}", one.key))],
            r#"{"note":"not mine"}"#,
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (403, "engagement_out_of_scope".into())
    );

    // Deny by default: every tenant endpoint refuses an auditor key (usage,
    // keys, attestations; billing's will too, they take the same extractor).
    for path in ["/v1/usage", "/v1/keys", "/v1/attestations?repo=x"] {
        let r = s.get(path, Some(&one.key)).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (403, "auditor_key_not_allowed".into()),
            "{path}"
        );
    }
    // And a tenant key is not an auditor key.
    let r = s
        .get(&format!("/v1/engagements/{id}"), Some(&tenant_key))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (403, "auditor_key_required".into())
    );
    assert_eq!(s.get("/v1/engagements", None).await.status, 401);

    // Verify: allowed, never metered, store lookups only in the frozen set.
    let r = s.verify(&one.key, None, &verify_body('a')).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["verified"], true);
    let r = s.verify(&one.key, None, &verify_body('c')).await.json();
    assert_eq!(r["reasons"][0]["code"], "provenance_not_found", "{r}");
    let r = s.verify(&tenant_key, None, &verify_body('c')).await.json();
    assert_eq!(r["verified"], true);
    let counts = s
        .storage()
        .usage_counts(&one.engagement.tenant_id, 0, i64::MAX)
        .await
        .unwrap();
    assert!(
        counts.is_empty(),
        "auditor verifications are not metered: {counts:?}"
    );

    // Notes: two, then refused; each in the decisions log with its hash.
    for (i, text) in ["first finding", "second finding"].iter().enumerate() {
        let r = s
            .post(
                &format!("/v1/engagements/{id}/notes"),
                &[("authorization", &format!("Bearer {}", one.key))],
                serde_json::json!({ "note": text }).to_string(),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_eq!(r.json()["seq"], i as i64 + 1);
        assert_eq!(
            r.json()["sha256"],
            Sha256Digest::of(text.as_bytes()).hex().as_str()
        );
    }
    let r = s
        .post(
            &format!("/v1/engagements/{id}/notes"),
            &[("authorization", &format!("Bearer {}", one.key))],
            r#"{"note":"third"}"#,
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (409, "note_limit".into()));
    assert!(r.json()["message"].as_str().unwrap().contains("at most 2"));
    let view = engagement::show(s.storage().as_ref(), id).await.unwrap();
    assert_eq!(view.notes.len(), 2);
    let note_entries: Vec<_> = view.log.iter().filter(|l| l.action == "note").collect();
    assert_eq!(note_entries.len(), 2);
    assert_eq!(
        note_entries[0].sha256.as_deref(),
        Some(view.notes[0].sha256.as_str())
    );
    assert!(note_entries[0].actor.starts_with("auditor:Jane Auditor"));

    // Revoked: refused at once with its own reason.
    engagement::revoke(s.storage().as_ref(), other, "operator:test", clock.now_ms())
        .await
        .unwrap();
    let r = s.get("/v1/engagements", Some(&two.key)).await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (401, "auditor_key_revoked".into())
    );
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    assert!(matches!(
        engagement::revoke(s.storage().as_ref(), other, "operator:test", clock.now_ms()).await,
        Err(engagement::EngagementError::AlreadyRevoked(_))
    ));

    // Expired on the service clock: refused with its own reason, also on verify.
    assert_eq!(s.get("/v1/engagements", Some(&one.key)).await.status, 200);
    clock.set(one.engagement.expires_at_ms);
    let r = s.get("/v1/engagements", Some(&one.key)).await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (401, "auditor_key_expired".into())
    );
    assert!(r.json()["message"].as_str().unwrap().contains("expired at"));
    let r = s.verify(&one.key, None, &verify_body('a')).await;
    assert_eq!(r.code(), "auditor_key_expired");
}

/// A store-lookup verification of the artifact `sha256:<c * 64>`.
fn verify_body(c: char) -> serde_json::Value {
    serde_json::json!({"artifactDigest": art(c), "sourceUri": REPO})
}

async fn frozen_tag_leaves_later_attestations_out(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let first = s.sign(&signed_record(REPO, "v1.4.0", &art('a'))).await;
    let second = s.sign(&signed_record(REPO, "v1.4.0", &art('b'))).await;
    s.sign(&signed_record(REPO, "v1.3.9", &art('d'))).await;
    let ctx = context(&s, 1_000, None);
    let opened = open(&ctx, "v1.4.0", "Jane").await;
    let late = s.sign(&signed_record(REPO, "v1.4.0", &art('c'))).await;
    let late_id = late["attestationId"].as_str().unwrap().to_owned();

    // The final pack (built after the late attestation) holds the frozen two.
    let ctx = context(&s, 2_000, None);
    let (e, pack) = engagement::sign_off(&ctx, &opened.engagement.id, "operator:test")
        .await
        .unwrap();
    assert_eq!(e.attestations, 2);
    assert_ne!(pack.sha256, opened.pack.sha256);
    let bytes = engagement::pack(s.storage().as_ref(), &e.id)
        .await
        .unwrap()
        .content
        .unwrap();
    let files = archive::read(&bytes).unwrap();
    let mut envelopes: Vec<&str> = files
        .keys()
        .filter_map(|k| {
            k.strip_prefix("attestations/")?
                .strip_suffix(".intoto.jsonl")
        })
        .collect();
    envelopes.sort_unstable();
    let mut frozen = vec![
        first["attestationId"].as_str().unwrap(),
        second["attestationId"].as_str().unwrap(),
    ];
    frozen.sort_unstable();
    assert_eq!(envelopes, frozen);
    assert!(!files.keys().any(|k| k.contains(&late_id)));
    let log: serde_json::Value = serde_json::from_slice(&files["decisions-log.json"]).unwrap();
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["opened", "pack_built", "signed_off"]);
    // Signed off: no more notes, no second sign-off.
    assert!(matches!(
        engagement::add_note(s.storage().as_ref(), &e.id, "Jane", "late", 3_000, "x").await,
        Err(engagement::EngagementError::Closed(_))
    ));
    assert!(matches!(
        engagement::sign_off(&ctx, &e.id, "operator:test").await,
        Err(engagement::EngagementError::AlreadySignedOff(_))
    ));
    // A new engagement sees all three; a tag without attestations opens none.
    assert_eq!(open(&ctx, "v1.4.0", "Bob").await.engagement.attestations, 3);
    assert!(matches!(
        engagement::open(
            &ctx,
            &engagement::OpenRequest {
                tag: "v9.9.9".into(),
                repo: None,
                auditor: "Bob".into(),
                valid_for_ms: 1,
                actor: "operator:test".into(),
                client_tenant: None,
            }
        )
        .await,
        Err(engagement::EngagementError::NoAttestations { .. })
    ));
}
