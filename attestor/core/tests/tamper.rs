//! The tamper suite: each case is one way provenance can be forged, mangled
//! or mismatched, and each must be rejected with its own reason code. Cases
//! on the wire run against both input forms (`.intoto.jsonl` and
//! `.sigstore.json`) and both algorithms where the form matters.

use cloister_attestor_core::bundle::Bundle;
use cloister_attestor_core::dsse::Envelope;
use cloister_attestor_core::keys::{Algorithm, KeyPair, PublicKey};
use cloister_attestor_core::verify::{ReasonCode, Verdict, VerifyRequest, verify};

use crate::support::*;

const ALGS: [Algorithm; 2] = [Algorithm::EcdsaP256, Algorithm::Ed25519];

/// Both file forms of one envelope.
fn forms(env: &Envelope) -> [(&'static str, Vec<u8>); 2] {
    [
        ("intoto.jsonl", env.to_jsonl_line().into_bytes()),
        (
            "sigstore.json",
            Bundle::from_envelope(env.clone())
                .unwrap()
                .to_json_pretty()
                .into_bytes(),
        ),
    ]
}

#[track_caller]
fn assert_only(v: &Verdict, code: ReasonCode) {
    assert!(!v.verified, "expected {code}, but verified");
    let codes: Vec<ReasonCode> = v.reasons.iter().map(|r| r.code).collect();
    assert_eq!(codes, vec![code], "reasons: {:?}", v.reasons);
    assert!(v.slsa_level.is_none());
    assert!(
        v.reasons[0].message.len() > 10,
        "a human sentence: {:?}",
        v.reasons[0].message
    );
}

/// Runs `tamper` on a freshly signed envelope for each algorithm and form.
fn each_form(code: ReasonCode, tamper: impl Fn(&mut Envelope, &KeyPair)) {
    for alg in ALGS {
        let k = key(alg);
        let mut env = envelope(&statement(), &k);
        tamper(&mut env, &k);
        for (form, bytes) in forms(&env) {
            let v = verify(&bytes, &[k.public_key().clone()], &request());
            assert!(!v.verified, "{alg} {form}: tampered provenance verified");
            assert_only(&v, code);
        }
    }
}

/// Verifies an untampered envelope with a modified request.
fn with_request(code: ReasonCode, change: impl Fn(&mut VerifyRequest)) {
    let k = key(Algorithm::EcdsaP256);
    let env = envelope(&statement(), &k);
    let mut req = request();
    change(&mut req);
    for (form, bytes) in forms(&env) {
        let v = verify(&bytes, &[k.public_key().clone()], &req);
        assert!(!v.verified, "{form}");
        assert_only(&v, code);
    }
}

/// A statement changed (as JSON) and re-signed by the trusted key: what a
/// compromised or buggy signer could produce; the verifier's policy must catch it.
fn resigned(code: ReasonCode, change: impl Fn(&mut serde_json::Value)) {
    let k = key(Algorithm::Ed25519);
    let mut value = serde_json::to_value(statement()).unwrap();
    change(&mut value);
    let env = envelope_over(&value, &k);
    for (form, bytes) in forms(&env) {
        let v = verify(&bytes, &[k.public_key().clone()], &request());
        assert_only(&v, code);
        let _ = form;
    }
}

#[test]
fn payload_bit_flip() {
    each_form(ReasonCode::SignatureInvalid, |env, _| {
        env.payload[40] ^= 0x01
    });
}

#[test]
fn signature_swapped_from_another_envelope() {
    each_form(ReasonCode::SignatureInvalid, |env, k| {
        let mut other = statement();
        other
            .predicate
            .run_details
            .metadata
            .as_mut()
            .unwrap()
            .invocation_id = Some("job-other".into());
        env.signatures[0].sig = crate::support::envelope(&other, k).signatures[0]
            .sig
            .clone();
    });
}

#[test]
fn signature_bytes_truncated() {
    each_form(ReasonCode::SignatureInvalid, |env, _| {
        env.signatures[0].sig.pop();
    });
}

#[test]
fn payload_type_changed() {
    each_form(ReasonCode::PayloadTypeMismatch, |env, _| {
        env.payload_type = "application/json".into()
    });
}

#[test]
fn keyid_changed() {
    each_form(ReasonCode::KeyidMismatch, |env, _| {
        env.signatures[0].keyid = "0".repeat(64)
    });
}

#[test]
fn keyid_removed() {
    each_form(ReasonCode::KeyidMismatch, |env, _| {
        env.signatures[0].keyid.clear()
    });
}

#[test]
fn bundle_hint_changed() {
    let k = key(Algorithm::EcdsaP256);
    let mut b = Bundle::from_envelope(envelope(&statement(), &k)).unwrap();
    b.verification_material.public_key.as_mut().unwrap().hint = "f".repeat(64);
    let v = verify(
        b.to_json_pretty().as_bytes(),
        &[k.public_key().clone()],
        &request(),
    );
    assert_only(&v, ReasonCode::KeyidMismatch);
}

#[test]
fn signature_by_an_untrusted_key() {
    for alg in ALGS {
        let trusted = key(alg);
        let attacker = key(alg);
        for (_, bytes) in forms(&envelope(&statement(), &attacker)) {
            assert_only(
                &verify(&bytes, &[trusted.public_key().clone()], &request()),
                ReasonCode::UntrustedKey,
            );
        }
    }
}

#[test]
fn untrusted_key_claiming_a_trusted_keyid() {
    let trusted = key(Algorithm::EcdsaP256);
    let attacker = key(Algorithm::EcdsaP256);
    let mut env = envelope(&statement(), &attacker);
    env.signatures[0].keyid = trusted.keyid().to_owned();
    for (_, bytes) in forms(&env) {
        assert_only(
            &verify(&bytes, &[trusted.public_key().clone()], &request()),
            ReasonCode::SignatureInvalid,
        );
    }
}

#[test]
fn subject_digest_changed_in_the_signed_payload() {
    each_form(ReasonCode::SignatureInvalid, |env, _| {
        let mut v: serde_json::Value = serde_json::from_slice(&env.payload).unwrap();
        v["subject"][0]["digest"]["sha256"] = "0".repeat(64).into();
        env.payload = serde_json::to_vec(&v).unwrap();
    });
}

#[test]
fn wrong_artifact() {
    with_request(ReasonCode::ArtifactDigestMismatch, |r| {
        r.artifact_digest = format!("sha256:{}", "1".repeat(64));
    });
}

#[test]
fn wrong_source_uri() {
    with_request(ReasonCode::SourceUriMismatch, |r| {
        r.source_uri = "github.com/example/repo-b".into()
    });
    with_request(ReasonCode::SourceUriMismatch, |r| {
        r.source_uri = "https://gitlab.com/example/repo-a".into()
    });
}

#[test]
fn wrong_tag() {
    with_request(ReasonCode::SourceTagMismatch, |r| {
        r.source_tag = Some("v1.2.4".into())
    });
}

#[test]
fn wrong_versioned_tag() {
    with_request(ReasonCode::SourceVersionedTagMismatch, |r| {
        r.source_versioned_tag = Some("v1.3".into())
    });
    with_request(ReasonCode::SourceVersionedTagMismatch, |r| {
        r.source_versioned_tag = Some("v2".into())
    });
}

#[test]
fn wrong_branch() {
    // The golden build ran from a tag, so any branch expectation fails.
    with_request(ReasonCode::SourceBranchMismatch, |r| {
        r.source_branch = Some("main".into())
    });
}

#[test]
fn wrong_builder_id() {
    with_request(ReasonCode::BuilderIdMismatch, |r| {
        r.builder_id = Some("https://cloister.example.com/builders/other".into())
    });
    with_request(ReasonCode::BuilderIdMismatch, |r| {
        r.builder_id = Some("https://cloister.example.com/builders/isolated@v2".into())
    });
}

#[test]
fn missing_isolation_claim() {
    resigned(ReasonCode::IsolationClaimMissing, |v| {
        v["predicate"]["buildDefinition"]["internalParameters"]
            .as_object_mut()
            .unwrap()
            .remove("isolation");
    });
    resigned(ReasonCode::IsolationClaimMissing, |v| {
        let iso = &mut v["predicate"]["buildDefinition"]["internalParameters"]["isolation"];
        iso.as_object_mut().unwrap().remove("network");
    });
    resigned(ReasonCode::IsolationClaimMissing, |v| {
        v["predicate"]["buildDefinition"]["internalParameters"]["isolation"]["seccompPolicy"] =
            "none".into();
    });
    resigned(ReasonCode::IsolationClaimMissing, |v| {
        v["predicate"]["buildDefinition"]
            .as_object_mut()
            .unwrap()
            .remove("internalParameters");
    });
}

#[test]
fn isolation_network_not_none() {
    resigned(ReasonCode::IsolationNetworkNotNone, |v| {
        v["predicate"]["buildDefinition"]["internalParameters"]["isolation"]["network"] =
            "host".into();
    });
}

#[test]
fn isolation_claim_insufficient() {
    resigned(ReasonCode::IsolationClaimInsufficient, |v| {
        v["predicate"]["buildDefinition"]["internalParameters"]["isolation"]["capabilities"] =
            serde_json::json!(["CAP_SYS_ADMIN"]);
    });
    resigned(ReasonCode::IsolationClaimInsufficient, |v| {
        v["predicate"]["buildDefinition"]["internalParameters"]["isolation"]["noNewPrivs"] =
            false.into();
    });
}

#[test]
fn statement_and_predicate_and_build_types() {
    resigned(ReasonCode::StatementTypeMismatch, |v| {
        v["_type"] = "https://in-toto.io/Statement/v0.1".into()
    });
    resigned(ReasonCode::PredicateTypeMismatch, |v| {
        v["predicateType"] = "https://slsa.dev/provenance/v0.2".into()
    });
    resigned(ReasonCode::BuildTypeMismatch, |v| {
        v["predicate"]["buildDefinition"]["buildType"] = "https://example.com/other/v1".into();
    });
}

#[test]
fn signed_payload_with_unknown_keys_or_garbage() {
    resigned(ReasonCode::InvalidStatement, |v| {
        v["predicate"]["extra"] = 1.into()
    });
    resigned(ReasonCode::InvalidStatement, |v| {
        v["subject"][0]["digest"] = serde_json::json!({"sha1": "abcd"});
    });
    let k = key(Algorithm::Ed25519);
    let env = Envelope::sign(
        cloister_attestor_core::dsse::PAYLOAD_TYPE,
        b"not json".to_vec(),
        &k,
    )
    .unwrap();
    assert_only(
        &verify(
            env.to_json().as_bytes(),
            &[k.public_key().clone()],
            &request(),
        ),
        ReasonCode::InvalidStatement,
    );
}

#[test]
fn source_dependency_missing() {
    resigned(ReasonCode::SourceMissing, |v| {
        v["predicate"]["buildDefinition"]
            .as_object_mut()
            .unwrap()
            .remove("resolvedDependencies");
    });
}

#[test]
fn source_in_parameters_disagrees_with_dependency() {
    resigned(ReasonCode::SourceUriMismatch, |v| {
        v["predicate"]["buildDefinition"]["externalParameters"]["source"]["uri"] =
            "git+https://github.com/evil/repo".into();
    });
}

#[test]
fn truncated_json() {
    let k = key(Algorithm::EcdsaP256);
    for (form, bytes) in forms(&envelope(&statement(), &k)) {
        for cut in [1, bytes.len() / 2, bytes.len() - 3] {
            let v = verify(&bytes[..cut], &[k.public_key().clone()], &request());
            assert_only(&v, ReasonCode::MalformedJson);
            let _ = form;
        }
    }
}

#[test]
fn malformed_json() {
    let k = key(Algorithm::EcdsaP256);
    for bytes in [&b"{"[..], b"[]x", b"\x00\xff", b"", b"{\"payloadType\":}"] {
        assert_only(
            &verify(bytes, &[k.public_key().clone()], &request()),
            ReasonCode::MalformedJson,
        );
    }
    // Well-formed JSON that is not provenance.
    for bytes in [&b"[]"[..], b"42", br#"{"hello":"world"}"#] {
        assert_only(
            &verify(bytes, &[k.public_key().clone()], &request()),
            ReasonCode::UnrecognizedFormat,
        );
    }
}

#[test]
fn duplicate_json_keys() {
    let k = key(Algorithm::EcdsaP256);
    let env = envelope(&statement(), &k);
    let trusted = [k.public_key().clone()];
    // In the envelope: a second payloadType would be read by some parsers.
    let json = env.to_json();
    let dup = json.replacen(
        "{\"payloadType\"",
        "{\"payloadType\":\"x\",\"payloadType\"",
        1,
    );
    assert_only(
        &verify(dup.as_bytes(), &trusted, &request()),
        ReasonCode::DuplicateJsonKey,
    );
    // In the bundle.
    let b = Bundle::from_envelope(env.clone()).unwrap().to_json_pretty();
    let dup = b.replacen("\"mediaType\"", "\"mediaType\": \"x\",\n  \"mediaType\"", 1);
    assert_only(
        &verify(dup.as_bytes(), &trusted, &request()),
        ReasonCode::DuplicateJsonKey,
    );
    // In the signed statement: a second subject list would be read by some parsers.
    let payload = String::from_utf8(env.payload.clone()).unwrap();
    let dup = payload.replacen("\"subject\":", "\"subject\":[],\"subject\":", 1);
    let env2 = Envelope::sign(
        cloister_attestor_core::dsse::PAYLOAD_TYPE,
        dup.into_bytes(),
        &k,
    )
    .unwrap();
    for (_, bytes) in forms(&env2) {
        assert_only(
            &verify(&bytes, &trusted, &request()),
            ReasonCode::DuplicateJsonKey,
        );
    }
}

#[test]
fn non_base64() {
    let k = key(Algorithm::EcdsaP256);
    let env = envelope(&statement(), &k);
    let trusted = [k.public_key().clone()];
    let mut v: serde_json::Value = serde_json::from_str(&env.to_json()).unwrap();
    v["payload"] = "!!not base64!!".into();
    assert_only(
        &verify(v.to_string().as_bytes(), &trusted, &request()),
        ReasonCode::InvalidBase64,
    );
    let mut v: serde_json::Value = serde_json::from_str(&env.to_json()).unwrap();
    v["signatures"][0]["sig"] = "*".into();
    assert_only(
        &verify(v.to_string().as_bytes(), &trusted, &request()),
        ReasonCode::InvalidBase64,
    );
    let mut b: serde_json::Value =
        serde_json::from_str(&Bundle::from_envelope(env).unwrap().to_json_pretty()).unwrap();
    b["dsseEnvelope"]["payload"] = "%%%".into();
    assert_only(
        &verify(b.to_string().as_bytes(), &trusted, &request()),
        ReasonCode::InvalidBase64,
    );
}

#[test]
fn huge_inputs() {
    let k = key(Algorithm::EcdsaP256);
    let trusted = [k.public_key().clone()];
    let line = envelope(&statement(), &k).to_jsonl_line();
    // Over the byte limit, however well-formed.
    let big = format!("{{\"payloadType\":\"{}\"}}", "x".repeat(9 << 20));
    assert_only(
        &verify(big.as_bytes(), &trusted, &request()),
        ReasonCode::InputTooLarge,
    );
    // Too many envelopes in one jsonl.
    let many = line.repeat(65);
    assert_only(
        &verify(many.as_bytes(), &trusted, &request()),
        ReasonCode::InputTooLarge,
    );
    // Too many signatures on one envelope.
    let mut env = envelope(&statement(), &k);
    env.signatures = vec![env.signatures[0].clone(); 17];
    assert_only(
        &verify(env.to_json().as_bytes(), &trusted, &request()),
        ReasonCode::InputTooLarge,
    );
    // Deep nesting.
    let deep = format!("{{\"payloadType\":{}}}", "[".repeat(200_000));
    assert_only(
        &verify(deep.as_bytes(), &trusted, &request()),
        ReasonCode::MalformedJson,
    );
}

#[test]
fn signature_count() {
    let k = key(Algorithm::EcdsaP256);
    let trusted = [k.public_key().clone()];
    let mut env = envelope(&statement(), &k);
    let sig = env.signatures[0].clone();
    env.signatures.clear();
    assert_only(
        &verify(env.to_json().as_bytes(), &trusted, &request()),
        ReasonCode::SignatureCount,
    );
    // A bundle must carry exactly one signature.
    env.signatures = vec![sig.clone(), sig];
    let mut b: serde_json::Value = serde_json::from_str(
        &Bundle::from_envelope(envelope(&statement(), &k))
            .unwrap()
            .to_json_pretty(),
    )
    .unwrap();
    b["dsseEnvelope"] = serde_json::from_str(&env.to_json()).unwrap();
    assert_only(
        &verify(b.to_string().as_bytes(), &trusted, &request()),
        ReasonCode::SignatureCount,
    );
}

#[test]
fn unsupported_bundles() {
    let k = key(Algorithm::EcdsaP256);
    let trusted = [k.public_key().clone()];
    let base: serde_json::Value = serde_json::from_str(
        &Bundle::from_envelope(envelope(&statement(), &k))
            .unwrap()
            .to_json_pretty(),
    )
    .unwrap();
    let mut b = base.clone();
    b["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.1".into();
    assert_only(
        &verify(b.to_string().as_bytes(), &trusted, &request()),
        ReasonCode::UnsupportedBundle,
    );
    let mut b = base.clone();
    b["verificationMaterial"] =
        serde_json::json!({"certificate": {"rawBytes": "AAAA"}, "tlogEntries": []});
    assert_only(
        &verify(b.to_string().as_bytes(), &trusted, &request()),
        ReasonCode::UnsupportedBundle,
    );
    let mut b = base;
    b["verificationMaterial"]["tlogEntries"] = serde_json::json!([{"logIndex": "1"}]);
    assert_only(
        &verify(b.to_string().as_bytes(), &trusted, &request()),
        ReasonCode::UnsupportedBundle,
    );
}

#[test]
fn no_trusted_keys_and_invalid_requests() {
    let k = key(Algorithm::EcdsaP256);
    let bytes = envelope(&statement(), &k).to_jsonl_line();
    assert_only(
        &verify(bytes.as_bytes(), &[], &request()),
        ReasonCode::NoTrustedKeys,
    );
    let mut req = request();
    req.artifact_digest = "sha256:xyz".into();
    assert_only(
        &verify(bytes.as_bytes(), &[k.public_key().clone()], &req),
        ReasonCode::InvalidRequest,
    );
}

#[test]
fn key_of_the_other_algorithm_is_not_trusted() {
    let ec = key(Algorithm::EcdsaP256);
    let ed = key(Algorithm::Ed25519);
    let bytes = envelope(&statement(), &ed).to_jsonl_line();
    let trusted: Vec<PublicKey> = vec![ec.public_key().clone()];
    assert_only(
        &verify(bytes.as_bytes(), &trusted, &request()),
        ReasonCode::UntrustedKey,
    );
}

#[test]
fn jsonl_with_only_bad_envelopes_reports_each() {
    let k = key(Algorithm::EcdsaP256);
    let attacker = key(Algorithm::EcdsaP256);
    let mut flipped = envelope(&statement(), &k);
    flipped.payload[10] ^= 1;
    let text = format!(
        "{}{}",
        envelope(&statement(), &attacker).to_jsonl_line(),
        flipped.to_jsonl_line()
    );
    let v = verify(text.as_bytes(), &[k.public_key().clone()], &request());
    let codes: Vec<_> = v.reasons.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        [ReasonCode::UntrustedKey, ReasonCode::SignatureInvalid]
    );
    assert!(v.reasons[1].message.starts_with("envelope 2: "));
}

/// Writes `v` as JSON with the `target`-th object member (pre-order) written twice.
fn write_with_duplicate(
    v: &serde_json::Value,
    target: usize,
    counter: &mut usize,
    out: &mut String,
) -> Option<String> {
    let mut found = None;
    match v {
        serde_json::Value::Object(m) => {
            out.push('{');
            let mut first = true;
            for (k, val) in m {
                let idx = *counter;
                *counter += 1;
                let mut sub = String::new();
                if let Some(f) = write_with_duplicate(val, target, counter, &mut sub) {
                    found = Some(f);
                }
                let times = if idx == target { 2 } else { 1 };
                if idx == target {
                    found = Some(k.clone());
                }
                for _ in 0..times {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push(':');
                    out.push_str(&sub);
                }
            }
            out.push('}');
        }
        serde_json::Value::Array(a) => {
            out.push('[');
            for (i, val) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if let Some(f) = write_with_duplicate(val, target, counter, out) {
                    found = Some(f);
                }
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap()),
    }
    found
}

/// Every variant of `doc` with one member duplicated, with that member's key.
fn each_duplicate(doc: &serde_json::Value) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for target in 0.. {
        let mut out = String::new();
        match write_with_duplicate(doc, target, &mut 0, &mut out) {
            Some(key) => all.push((key, out)),
            None => break,
        }
    }
    all
}

#[test]
fn duplicate_keys_anywhere_are_rejected_by_every_parser() {
    use cloister_attestor_core::json::JsonError;
    use cloister_attestor_core::statement::{Statement, StatementError};

    let k = key(Algorithm::Ed25519);
    let mut st = serde_json::to_value(statement()).unwrap();
    // Cover annotations (a map of free-form values) too.
    st["subject"][0]["annotations"] = serde_json::json!({"note": {"deep": [{"x": 1}]}});
    let env = envelope_over(&st, &k);
    let cases = each_duplicate(&st);
    assert!(cases.len() > 60, "walked {} members", cases.len());
    for (dup_key, text) in cases {
        match Statement::parse(text.as_bytes()) {
            Err(StatementError::Json(JsonError::DuplicateKey(k))) => assert_eq!(k, dup_key),
            other => panic!("statement with duplicate {dup_key:?} gave {other:?}"),
        }
    }
    let env_value: serde_json::Value = serde_json::from_str(&env.to_json()).unwrap();
    for (dup_key, text) in each_duplicate(&env_value) {
        let err = Envelope::parse(text.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("duplicate"), "{dup_key}: {err}");
        assert_only(
            &verify(text.as_bytes(), &[k.public_key().clone()], &request()),
            ReasonCode::DuplicateJsonKey,
        );
    }
    let bundle: serde_json::Value =
        serde_json::from_str(&Bundle::from_envelope(env).unwrap().to_json_pretty()).unwrap();
    for (dup_key, text) in each_duplicate(&bundle) {
        let err = Bundle::parse(text.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("duplicate"), "{dup_key}: {err}");
        assert_only(
            &verify(text.as_bytes(), &[k.public_key().clone()], &request()),
            ReasonCode::DuplicateJsonKey,
        );
    }
    // The statement with annotations verifies when nothing is duplicated.
    let good = envelope_over(&st, &k).to_jsonl_line();
    assert!(verify(good.as_bytes(), &[k.public_key().clone()], &request()).verified);
}
