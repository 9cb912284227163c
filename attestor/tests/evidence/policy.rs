//! The policy gate: provenance produced under a profile or seccomp policy
//! the signed manifest does not list fails with `policy_not_signed`, over
//! HTTP (configured manifest, or one sent with the request) and offline
//! (`verify --policy-manifest`); policy signature coverage and the pack-time
//! histogram in `/metrics`.

use super::{context, default_digests, digest_of, open, record, sign_shipped_policies};
use crate::both_backends;
use crate::support::{Backend, REPO, TestServer, bin};
use cloister_attestor_core::keys::{Algorithm, KeyPair};
use cloister_attestor_core::policy::{self, PolicyEntry, PolicyKind, PolicyManifest};
use std::process::Command;

both_backends!(policy_gate_and_coverage_over_http);

async fn policy_gate_and_coverage_over_http(b: Backend) {
    let s = TestServer::start(b, |c| {
        c.policy.manifest = Some(sign_shipped_policies(&c.state_dir, Algorithm::EcdsaP256));
        c.policy.profiles_dir = Some(super::profiles_dir());
    })
    .await;
    let (_, key) = s.tenant("acme").await;
    let (profile, seccomp) = default_digests();
    let unsigned_profile = digest_of('9');
    let good = s
        .sign(&record(REPO, "v1.0.0", &profile, &seccomp, &digest_of('a')))
        .await;
    let bad = s
        .sign(&record(
            REPO,
            "v1.0.0",
            &unsigned_profile,
            &seccomp,
            &digest_of('b'),
        ))
        .await;
    let body = |artifact: char, prov: &serde_json::Value| {
        serde_json::json!({"artifactDigest": digest_of(artifact), "sourceUri": REPO,
            "provenance": prov["envelope"]})
    };

    // The configured manifest applies to every verification.
    let r = s.verify(&key, None, &body('a', &good)).await.json();
    assert_eq!(r["verified"], true, "{r}");
    let r = s.verify(&key, None, &body('b', &bad)).await.json();
    assert_eq!(r["verified"], false);
    assert_eq!(r["reasons"][0]["code"], "policy_not_signed", "{r}");
    assert!(
        r["reasons"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&unsigned_profile)
    );
    assert!(r["slsaLevel"].is_null());
    // Store lookups too.
    let lookup = serde_json::json!({"artifactDigest": digest_of('b'), "sourceUri": REPO});
    let r = s.verify(&key, None, &lookup).await.json();
    assert_eq!(r["reasons"][0]["code"], "policy_not_signed", "{r}");

    // A manifest sent with the request, signed by the attestor key, replaces it.
    let app = &s.running.as_ref().unwrap().app;
    let signer = app.keyring.active_signer().unwrap();
    let listing_bad = PolicyManifest::new(vec![
        PolicyEntry {
            name: "local".into(),
            kind: PolicyKind::Profile,
            sha256: unsigned_profile.trim_start_matches("sha256:").into(),
        },
        PolicyEntry {
            name: "default".into(),
            kind: PolicyKind::Seccomp,
            sha256: seccomp.trim_start_matches("sha256:").into(),
        },
    ])
    .unwrap();
    let sent = policy::sign(&listing_bad, signer.as_ref()).unwrap();
    let mut with = body('b', &bad);
    with["policyManifest"] = serde_json::from_str(&sent.to_json()).unwrap();
    let r = s.verify(&key, None, &with).await.json();
    assert_eq!(r["verified"], true, "{r}");
    let mut with = body('a', &good);
    with["policyManifest"] = serde_json::from_str(&sent.to_json()).unwrap();
    let r = s.verify(&key, None, &with).await.json();
    assert_eq!(r["reasons"][0]["code"], "policy_not_signed", "{r}");
    // One signed by another key is refused, not ignored.
    let stranger = KeyPair::generate(Algorithm::Ed25519).unwrap();
    let forged = policy::sign(&listing_bad, &stranger).unwrap();
    let mut with = body('b', &bad);
    with["policyManifest"] = serde_json::from_str(&forged.to_json()).unwrap();
    let r = s.verify(&key, None, &with).await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (422, "invalid_policy_manifest".into())
    );

    // Coverage: in use are the signed default profile and seccomp policy and
    // the unsigned profile: 2 of 3.
    let state = cloister_attestor::service::AppState(app.clone());
    let cov = cloister_attestor::service::audit::refresh(&state)
        .await
        .unwrap();
    assert_eq!((cov.in_use, cov.signed), (3, 2));
    let unsigned: Vec<_> = cov.policies.iter().filter(|p| !p.signed).collect();
    assert_eq!(unsigned.len(), 1);
    assert_eq!(unsigned[0].digest, unsigned_profile);
    // Time to pack: one engagement opened → one observation.
    let ctx = context(&s, 1_000, None);
    let opened = open(&ctx, "v1.0.0", "Jane").await;
    cloister_attestor::service::audit::refresh(&state)
        .await
        .unwrap();
    cloister_attestor::service::audit::refresh(&state)
        .await
        .unwrap();
    let m = String::from_utf8(s.get("/metrics", None).await.body.to_vec()).unwrap();
    for needle in [
        "cloister_policy_signature_coverage 0.6666",
        "cloister_policies_in_use 3",
        "cloister_policies_signed 2",
        "cloister_pack_seconds_count 1",
    ] {
        assert!(m.contains(needle), "{needle} not in\n{m}");
    }
    assert!(m.trim_end().ends_with("# EOF"));
    assert_eq!(m.matches("# EOF").count(), 1);
    // The sign-off pack reports the failing one with its reason.
    let files = cloister_attestor::evidence::archive::read(
        &cloister_attestor::evidence::engagement::pack(s.storage().as_ref(), &opened.engagement.id)
            .await
            .unwrap()
            .content
            .unwrap(),
    )
    .unwrap();
    let results: serde_json::Value =
        serde_json::from_slice(&files["verification/results.json"]).unwrap();
    assert_eq!(
        (results["verified"].as_u64(), results["failed"].as_u64()),
        (Some(1), Some(1))
    );
    let failed = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["verified"] == false)
        .unwrap();
    assert_eq!(failed["reasons"][0]["code"], "policy_not_signed");
    let pv: serde_json::Value =
        serde_json::from_slice(&files["policies/verification.json"]).unwrap();
    assert_eq!(pv["verified"], true);
    assert_eq!(pv["coverage"]["signed"], 2);
    assert!(files.contains_key("policies/seccomp/default.json"));
}

/// `verify --policy-manifest` through the real binary: the same gate
/// offline, exit 1 with the reason; a manifest by another key is a usage
/// error (exit 2), never skipped.
#[test]
fn offline_verify_requires_signed_policies_with_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("state");
    let manifest = sign_shipped_policies(&st, Algorithm::EcdsaP256);
    let run = |args: &[&str]| {
        Command::new(bin())
            .args(args)
            .env_remove("CLOISTER_ATTESTOR_STATE_DIR")
            .output()
            .unwrap()
    };
    let pubkey = dir.path().join("pub.pem");
    let out = run(&["keys", "export", "--state-dir", st.to_str().unwrap()]);
    assert!(out.status.success());
    std::fs::write(&pubkey, &out.stdout).unwrap();
    // Two statements from the golden one: under the default policies, and
    // under an unsigned profile.
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("../../core/tests/golden/statement.json")).unwrap();
    let (profile, seccomp) = default_digests();
    let sign = |name: &str, profile: &str| {
        let mut st_json = golden.clone();
        let iso = &mut st_json["predicate"]["buildDefinition"]["internalParameters"]["isolation"];
        iso["profile"] = profile.into();
        iso["seccompPolicy"] = seccomp.as_str().into();
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, st_json.to_string()).unwrap();
        let prefix = dir.path().join(name);
        let out = run(&[
            "sign",
            "--state-dir",
            st.to_str().unwrap(),
            "--statement",
            path.to_str().unwrap(),
            "--out",
            prefix.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir.path().join(format!("{name}.intoto.jsonl"))
    };
    let good = sign("good", &profile);
    let bad = sign("bad", &digest_of('9'));
    let artifact = format!(
        "sha256:{}",
        golden["subject"][0]["digest"]["sha256"].as_str().unwrap()
    );
    let verify = |prov: &std::path::Path, manifest: &std::path::Path| {
        run(&[
            "verify",
            "--provenance",
            prov.to_str().unwrap(),
            "--public-key",
            pubkey.to_str().unwrap(),
            "--artifact-digest",
            &artifact,
            "--source-uri",
            "github.com/example/repo-a",
            "--policy-manifest",
            manifest.to_str().unwrap(),
            "--json",
        ])
    };
    let out = verify(&good, &manifest);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = verify(&bad, &manifest);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["reasons"][0]["code"], "policy_not_signed");
    // Without the manifest the same provenance verifies (the gate is opt-in offline).
    let out = run(&[
        "verify",
        "--provenance",
        bad.to_str().unwrap(),
        "--public-key",
        pubkey.to_str().unwrap(),
        "--artifact-digest",
        &artifact,
        "--source-uri",
        "github.com/example/repo-a",
    ]);
    assert_eq!(out.status.code(), Some(0));
    // A manifest signed by a key that is not trusted: usage error, exit 2.
    let other = dir.path().join("other");
    let forged = sign_shipped_policies(&other, Algorithm::Ed25519);
    let out = verify(&good, &forged);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("untrusted_key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `policy sign` through the binary signs the digests the runner reports.
    let out = run(&[
        "policy",
        "sign",
        super::profiles_dir().to_str().unwrap(),
        "--out",
        dir.path().join("cli.dsse.json").to_str().unwrap(),
        "--state-dir",
        st.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<String> = j["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}:sha256:{}",
                e["kind"].as_str().unwrap(),
                e["sha256"].as_str().unwrap()
            )
        })
        .collect();
    assert!(listed.contains(&format!("profile:{profile}")), "{listed:?}");
    assert!(listed.contains(&format!("seccomp:{seccomp}")), "{listed:?}");
    let out = run(&[
        "policy",
        "verify",
        dir.path().join("cli.dsse.json").to_str().unwrap(),
        "--public-key",
        pubkey.to_str().unwrap(),
    ]);
    assert!(out.status.success());
}

/// The configured manifest's key rotated out (past its not-after on the
/// service clock): verifications fail with `policy_not_signed`; the gate is
/// never lifted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_whose_key_is_no_longer_trusted_fails_verifications() {
    use cloister_attestor::clock::ManualClock;
    let t0: i64 = 1_776_211_200_000;
    let clock = std::sync::Arc::new(ManualClock::new(t0));
    let at = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()
    };
    // The manifest is signed by the first key, which is then rotated out
    // with a not-after one minute later on the service clock.
    let s = TestServer::start_with_clock(
        Backend::Sqlite,
        |c| {
            c.policy.manifest = Some(sign_shipped_policies(&c.state_dir, Algorithm::EcdsaP256));
            let next = KeyPair::generate(Algorithm::EcdsaP256).unwrap();
            cloister_attestor::keyring::Keyring::open(&c.state_dir)
                .unwrap()
                .rotate_to(&next, at(t0), at(t0 + 60_000))
                .unwrap();
        },
        clock.clone(),
    )
    .await;
    let (_, key) = s.tenant("acme").await;
    let (profile, seccomp) = default_digests();
    let signed = s
        .sign(&record(REPO, "v1.0.0", &profile, &seccomp, &digest_of('a')))
        .await;
    let body = serde_json::json!({"artifactDigest": digest_of('a'), "sourceUri": REPO,
        "provenance": signed["envelope"]});
    // Both keys trusted: the manifest applies and the policies are signed.
    let r = s.verify(&key, None, &body).await.json();
    assert_eq!(r["verified"], true, "{r}");
    // The manifest's key expires: verified by the new key, still refused.
    clock.set(t0 + 60_000);
    let r = s.verify(&key, None, &body).await.json();
    assert_eq!(r["verified"], false, "{r}");
    assert_eq!(r["reasons"][0]["code"], "policy_not_signed");
    assert!(
        r["reasons"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no longer trusted"),
        "{r}"
    );
}
