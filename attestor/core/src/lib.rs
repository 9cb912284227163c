//! Attestor core: the in-toto Statement v1 / SLSA v1 provenance model, DSSE
//! envelopes, Sigstore bundles, the `Signer` trait and offline verification.
//! Architecture invariant: this crate does no I/O.
#![forbid(unsafe_code)]
