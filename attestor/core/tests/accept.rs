//! What must verify: both algorithms, every input form, the documented
//! matching rules for source URI, tags and builder ids, rotated keys.

use cloister_attestor_core::bundle::Bundle;
use cloister_attestor_core::keys::Algorithm;
use cloister_attestor_core::record::to_statement;
use cloister_attestor_core::verify::{VerifyRequest, verify};

use crate::support::*;

#[test]
fn verifies_both_algorithms_both_forms_and_reports_the_subject() {
    for alg in [Algorithm::EcdsaP256, Algorithm::Ed25519] {
        let k = key(alg);
        let env = envelope(&statement(), &k);
        let jsonl = env.to_jsonl_line();
        let bundle = Bundle::from_envelope(env.clone()).unwrap().to_json_pretty();
        let bare = env.to_json();
        for bytes in [jsonl.as_bytes(), bundle.as_bytes(), bare.as_bytes()] {
            let v = verify(bytes, &[k.public_key().clone()], &request());
            assert!(v.verified, "{alg}: {:?}", v.reasons);
            assert!(v.reasons.is_empty());
            assert_eq!(v.slsa_level, Some(3));
            assert_eq!(
                v.builder_id.as_deref(),
                Some("https://cloister.example.com/builders/isolated@v1")
            );
            assert_eq!(v.subject.as_ref().unwrap().name.as_deref(), Some("repo-a"));
            assert_eq!(v.keyid.as_deref(), Some(k.public_key().keyid()));
            // The verified payload is exactly the signed bytes.
            assert_eq!(v.payload.as_deref(), Some(env.payload.as_slice()));
            let json = serde_json::to_value(&v).unwrap();
            let keys: Vec<&str> = json
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                keys,
                ["builderId", "reasons", "slsaLevel", "subject", "verified"]
            );
        }
    }
}

#[test]
fn matching_rules_that_pass() {
    let k = key(Algorithm::EcdsaP256);
    let bytes = envelope(&statement(), &k).to_jsonl_line();
    let ok = |change: fn(&mut VerifyRequest)| {
        let mut r = request();
        change(&mut r);
        let v = verify(bytes.as_bytes(), &[k.public_key().clone()], &r);
        assert!(v.verified, "{r:?}: {:?}", v.reasons);
    };
    ok(|r| r.source_uri = "https://github.com/example/repo-a".into());
    ok(|r| r.source_uri = "git+https://github.com/example/repo-a".into());
    ok(|r| r.source_tag = Some("v1.2.3".into()));
    ok(|r| r.source_versioned_tag = Some("v1".into()));
    ok(|r| r.source_versioned_tag = Some("v1.2".into()));
    ok(|r| r.source_versioned_tag = Some("v1.2.3".into()));
    ok(|r| r.builder_id = Some("https://cloister.example.com/builders/isolated".into()));
    ok(|r| r.builder_id = Some("https://cloister.example.com/builders/isolated@v1".into()));
}

#[test]
fn branch_builds_match_their_branch() {
    let k = key(Algorithm::Ed25519);
    let mut rec = record();
    rec.source.git_ref = "refs/heads/main".into();
    let bytes = envelope(&to_statement(&rec).unwrap(), &k).to_jsonl_line();
    let mut r = request();
    r.source_branch = Some("main".into());
    assert!(verify(bytes.as_bytes(), &[k.public_key().clone()], &r).verified);
}

#[test]
fn any_trusted_key_may_have_signed_and_jsonl_picks_the_good_line() {
    let old = key(Algorithm::EcdsaP256);
    let new = key(Algorithm::Ed25519);
    let attacker = key(Algorithm::EcdsaP256);
    let trusted = [new.public_key().clone(), old.public_key().clone()];
    let text = format!(
        "{}\n{}",
        envelope(&statement(), &attacker).to_jsonl_line(),
        envelope(&statement(), &old).to_jsonl_line()
    );
    let v = verify(text.as_bytes(), &trusted, &request());
    assert!(v.verified, "{:?}", v.reasons);
    assert_eq!(v.keyid.as_deref(), Some(old.public_key().keyid()));
}

#[test]
fn multi_signature_envelope_with_one_trusted_signature() {
    let trusted = key(Algorithm::EcdsaP256);
    let other = key(Algorithm::Ed25519);
    let mut env = envelope(&statement(), &other);
    env.signatures
        .push(envelope(&statement(), &trusted).signatures[0].clone());
    let v = verify(
        env.to_json().as_bytes(),
        &[trusted.public_key().clone()],
        &request(),
    );
    assert!(v.verified, "{:?}", v.reasons);
}
