//! Hermetic inputs: deterministic snapshots of vendored dependencies, the
//! content-addressed store they live in, safe tar extraction and OCI builder
//! images.
#![forbid(unsafe_code)]
