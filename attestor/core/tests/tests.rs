//! Integration tests for cloister-attestor-core.
//!
//! - `golden`: wire formats against committed files (statement from a build
//!   record, envelope, bundle); regenerate with `CLOISTER_UPDATE_GOLDEN=1`.
//! - `tamper`: every tampering case, each rejected with its reason code.
//! - `accept`: what must verify (both algorithms, all input forms, policies).

mod accept;
mod golden;
mod support;
mod tamper;
