//! Sigstore bundle parser: never panics; what parses has exactly one signature and round-trips.
#![no_main]
use cloister_attestor_core::bundle::Bundle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = Bundle::parse(data) {
        assert_eq!(
            b.envelope()
                .expect("parsed bundles carry an envelope")
                .signatures
                .len(),
            1
        );
        assert_eq!(
            Bundle::parse(b.to_json_pretty().as_bytes()).expect("round trip"),
            b
        );
    }
});
