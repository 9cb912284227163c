//! DSSE envelope parser: never panics; what parses re-serializes to an envelope that parses equal.
#![no_main]
use cloister_attestor_core::dsse::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::parse(data) {
        assert_eq!(
            Envelope::parse(env.to_json().as_bytes()).expect("round trip"),
            env
        );
    }
});
