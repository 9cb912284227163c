//! Build record parser (the signing socket's input) and its mapping to a statement: never panics;
//! every statement produced validates.
#![no_main]
use cloister_attestor_core::json;
use cloister_attestor_core::record::{BuildRecord, to_statement};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = json::parse::<BuildRecord>(data, json::MAX_DOCUMENT_BYTES)
        && let Ok(st) = to_statement(&record)
    {
        st.validate().expect("to_statement output validates");
    }
});
