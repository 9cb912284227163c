//! Statement parser (the verified payload): never panics; what parses validates and round-trips.
#![no_main]
use cloister_attestor_core::statement::Statement;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(st) = Statement::parse(data) {
        st.validate().expect("parsed statements are valid");
        assert_eq!(
            Statement::parse(&st.to_json_bytes()).expect("round trip"),
            st
        );
    }
});
