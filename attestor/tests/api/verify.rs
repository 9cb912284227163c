//! Verify tests (after attestor-core).
