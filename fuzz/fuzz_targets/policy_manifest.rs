//! Policy manifest envelopes (the service's `policyManifest`, the runner's
//! and `verify`'s manifest files): never panics; never verifies without the
//! trusted key's signature; a parsed payload round-trips.
#![no_main]
use cloister_attestor_core::keys::{Algorithm, KeyPair};
use cloister_attestor_core::policy::{self, PolicyManifest};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    let key = KEY.get_or_init(|| KeyPair::generate(Algorithm::Ed25519).expect("key"));
    assert!(policy::verify(data, &[key.public_key().clone()]).is_err(), "verified a forged manifest");
    if let Ok(m) = PolicyManifest::from_payload(data) {
        assert_eq!(PolicyManifest::from_payload(&m.to_payload()).expect("round trip"), m);
    }
});
