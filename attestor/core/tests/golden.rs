//! Golden files for every wire format we write.

use cloister_attestor_core::keys::KeyPair;
use cloister_attestor_core::sign_statement;
use cloister_attestor_core::verify::verify;

use crate::support::*;

fn check_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("CLOISTER_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        actual, expected,
        "{name} differs from its golden file (CLOISTER_UPDATE_GOLDEN=1 regenerates)"
    );
}

fn test_key() -> KeyPair {
    KeyPair::from_pem(
        &std::fs::read_to_string(golden_path("ed25519-test-key.pem")).unwrap(),
        None,
    )
    .unwrap()
}

#[test]
fn statement_from_build_record_matches_golden() {
    let st = statement();
    check_golden(
        "statement.json",
        &(serde_json::to_string_pretty(&st).unwrap() + "\n"),
    );
    // The compact form is what gets signed: same content.
    let compact: serde_json::Value = serde_json::from_slice(&st.to_json_bytes()).unwrap();
    assert_eq!(compact, serde_json::to_value(&st).unwrap());
}

#[test]
fn envelope_and_bundle_match_golden() {
    // Ed25519 signatures are deterministic, so the signed outputs are stable.
    let signed = sign_statement(&statement(), &test_key()).unwrap();
    check_golden("provenance.intoto.jsonl", &signed.intoto_jsonl());
    check_golden("provenance.sigstore.json", &signed.sigstore_json());
    check_golden(
        "ed25519-test-key.pub.pem",
        &test_key().public_key().to_pem(),
    );
    check_golden("ed25519-test-key.keyid", &format!("{}\n", signed.keyid));
}

#[test]
fn golden_outputs_verify() {
    let trusted = [test_key().public_key().clone()];
    for name in ["provenance.intoto.jsonl", "provenance.sigstore.json"] {
        let bytes = std::fs::read(golden_path(name)).unwrap();
        let v = verify(&bytes, &trusted, &request());
        assert!(v.verified, "{name}: {:?}", v.reasons);
    }
}

#[test]
fn statement_golden_has_the_documented_shape() {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden_path("statement.json")).unwrap())
            .unwrap();
    let bd = &v["predicate"]["buildDefinition"];
    assert_eq!(
        bd["buildType"],
        "https://cloister.dev/buildtypes/hermetic/v1"
    );
    let iso = &bd["internalParameters"]["isolation"];
    assert_eq!(iso["network"], "none");
    assert_eq!(iso["capabilities"], serde_json::json!([]));
    assert_eq!(iso["noNewPrivs"], true);
    for k in ["namespaces", "seccompPolicy", "profile", "rootless"] {
        assert!(!iso[k].is_null(), "isolation.{k}");
    }
    assert_eq!(
        bd["internalParameters"]["runner"]["hostId"],
        "build-host-01"
    );
    assert_eq!(
        bd["resolvedDependencies"][0]["uri"],
        "git+https://github.com/example/repo-a@refs/tags/v1.2.3"
    );
    assert_eq!(
        bd["resolvedDependencies"][0]["digest"]["gitCommit"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(
        v["predicate"]["runDetails"]["metadata"]["invocationId"],
        "job-0193f2a4-7c1e-7b3a-9d2e-5f4c3b2a1908"
    );
}

#[test]
fn every_reason_code_is_documented_in_the_cookbook() {
    let doc_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../cookbook/verification-reasons.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    for code in cloister_attestor_core::verify::ReasonCode::ALL {
        assert!(
            doc.contains(&format!("| `{}` |", code.as_str())),
            "{code} is missing from {}",
            doc_path.display()
        );
    }
    // And nothing documented that does not exist.
    let documented = doc.lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(
        documented,
        cloister_attestor_core::verify::ReasonCode::ALL.len()
    );
}
