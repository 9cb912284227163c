//! The whole verifier on arbitrary provenance bytes (jsonl, envelope or bundle
//! detection included): never panics, never verifies without a valid signature.
#![no_main]
use std::sync::OnceLock;

use cloister_attestor_core::keys::{Algorithm, KeyPair, PublicKey};
use cloister_attestor_core::verify::{VerifyRequest, verify};
use libfuzzer_sys::fuzz_target;

fn trusted() -> &'static [PublicKey] {
    static KEY: OnceLock<Vec<PublicKey>> = OnceLock::new();
    // A fresh key nobody else holds: nothing the fuzzer writes can carry its signature.
    KEY.get_or_init(|| {
        vec![
            KeyPair::generate(Algorithm::Ed25519)
                .expect("key")
                .public_key()
                .clone(),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let req = VerifyRequest {
        artifact_digest: "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            .into(),
        source_uri: "github.com/example/repo-a".into(),
        ..Default::default()
    };
    let v = verify(data, trusted(), &req);
    assert!(
        !v.verified,
        "verified without a signature by the trusted key"
    );
    assert!(!v.reasons.is_empty());
});
