//! Shared fixtures: a build record, a signed statement, and helpers to
//! re-encode envelopes after tampering.

use cloister_attestor_core::dsse::Envelope;
use cloister_attestor_core::keys::{Algorithm, KeyPair};
use cloister_attestor_core::record::{BuildRecord, to_statement};
use cloister_attestor_core::statement::Statement;
use cloister_attestor_core::verify::VerifyRequest;
use cloister_attestor_core::{Signer, sign_statement};

pub const ARTIFACT_DIGEST: &str =
    "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

pub fn golden_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

pub fn record() -> BuildRecord {
    serde_json::from_slice(&std::fs::read(golden_path("build-record.json")).unwrap()).unwrap()
}

pub fn statement() -> Statement {
    to_statement(&record()).unwrap()
}

pub fn key(alg: Algorithm) -> KeyPair {
    KeyPair::generate(alg).unwrap()
}

/// The request the golden record satisfies.
pub fn request() -> VerifyRequest {
    VerifyRequest {
        artifact_digest: ARTIFACT_DIGEST.into(),
        source_uri: "github.com/example/repo-a".into(),
        ..Default::default()
    }
}

/// An envelope over `statement` signed by `signer`.
pub fn envelope(statement: &Statement, signer: &dyn Signer) -> Envelope {
    sign_statement(statement, signer).unwrap().envelope
}

/// An envelope over arbitrary JSON (bypassing statement validation, as an
/// attacker holding a trusted key could).
pub fn envelope_over(value: &serde_json::Value, signer: &dyn Signer) -> Envelope {
    Envelope::sign(
        cloister_attestor_core::dsse::PAYLOAD_TYPE,
        serde_json::to_vec(value).unwrap(),
        signer,
    )
    .unwrap()
}
