//! Stored attestations for the portal's tests (plain HTTP and browser):
//! records like the runner's, signed by the running attestor's key, and
//! the cases every chip level needs (tampered, without isolation claims,
//! signed by a key the attestor does not trust) plus hostile names.

#![allow(dead_code)]

use base64::Engine as _;
use cloister_attestor::service::App;
use cloister_attestor::storage::{AttestationRow, SubjectRow};
use cloister_attestor_core::attest::sign_statement;
use cloister_attestor_core::keys::{Algorithm, KeyPair, Signer};
use cloister_attestor_core::record::{BuildRecord, to_statement};
use cloister_attestor_core::statement::Statement;
use cloister_attestor_core::verify::normalize_source_uri;

/// The golden build record with another repository, ref and subject.
pub fn record(repo_uri: &str, git_ref: &str, subject: &str, digest: &str) -> serde_json::Value {
    let mut r: serde_json::Value =
        serde_json::from_str(include_str!("../golden/build-record.json")).unwrap();
    r["source"]["uri"] = repo_uri.into();
    r["source"]["ref"] = git_ref.into();
    r["subjects"] = serde_json::json!([{ "name": subject, "digest": digest }]);
    // A job of its own: the signing socket answers a job id it signed
    // before with that attestation (issue 20).
    r["invocationId"] = format!("job-{}", uuid::Uuid::now_v7()).into();
    r
}

/// `sha256:` + 64 hex digits made from `n`.
pub fn digest(n: u64) -> String {
    format!("sha256:{n:064x}")
}

/// A row as the signing endpoint stores it, for `statement` signed by
/// `signer`.
pub fn row(statement: &Statement, signer: &dyn Signer, source_uri: &str) -> AttestationRow {
    let signed = sign_statement(statement, signer).unwrap();
    AttestationRow {
        id: uuid::Uuid::now_v7().to_string(),
        created_at_ms: 1_770_000_000_000,
        keyid: signed.keyid.clone(),
        builder_id: statement.predicate.run_details.builder.id.clone(),
        source_uri: normalize_source_uri(source_uri),
        subjects: statement
            .subject
            .iter()
            .map(|s| SubjectRow {
                name: s.name.clone().unwrap_or_default(),
                digest: s.sha256().unwrap().to_string(),
            })
            .collect(),
        envelope: signed.envelope.to_json(),
        bundle: serde_json::to_string(&signed.bundle).unwrap(),
    }
}

fn statement_of(record: &serde_json::Value) -> Statement {
    let r: BuildRecord = serde_json::from_value(record.clone()).unwrap();
    to_statement(&r).unwrap()
}

/// Signed by the attestor's active key: verifies (SLSA Build L3).
pub fn l3(app: &App, record: &serde_json::Value) -> AttestationRow {
    let signer = app.keyring.active_signer().unwrap();
    row(
        &statement_of(record),
        signer.as_ref(),
        record["source"]["uri"].as_str().unwrap(),
    )
}

/// Signed by the attestor's key, but without the isolation claims
/// (SLSA Build L2, `isolation_claim_missing`).
pub fn l2(app: &App, record: &serde_json::Value) -> AttestationRow {
    let mut st = statement_of(record);
    st.predicate.build_definition.internal_parameters = Some(serde_json::json!({}));
    let signer = app.keyring.active_signer().unwrap();
    row(
        &st,
        signer.as_ref(),
        record["source"]["uri"].as_str().unwrap(),
    )
}

/// Signed by a key the attestor does not know (SLSA Build L1,
/// `untrusted_key`).
pub fn l1(record: &serde_json::Value) -> AttestationRow {
    let key = KeyPair::generate(Algorithm::EcdsaP256).unwrap();
    row(
        &statement_of(record),
        &key,
        record["source"]["uri"].as_str().unwrap(),
    )
}

/// An L3 row whose payload was changed after signing (the ref now says
/// another tag): `signature_invalid`.
pub fn tampered(app: &App, record: &serde_json::Value) -> AttestationRow {
    let mut r = l3(app, record);
    let mut env: serde_json::Value = serde_json::from_str(&r.envelope).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64.decode(env["payload"].as_str().unwrap()).unwrap();
    let text = String::from_utf8(payload).unwrap();
    let changed = text.replace("0123456789abcdef", "fedcba9876543210");
    assert_ne!(text, changed, "the fixture's commit is in the payload");
    env["payload"] = b64.encode(changed).into();
    r.envelope = env.to_string();
    r
}
