//! Attestor core: the in-toto Statement v1 / SLSA v1 provenance model, DSSE
//! envelopes, Sigstore bundles, the `Signer` trait and offline verification.
//!
//! Architecture invariant: this crate does no I/O (no files, no sockets, no
//! clock: callers pass time in) and touches private keys only through the
//! [`keys::Signer`] trait. Every parser of untrusted input here goes through
//! [`json`], which enforces size limits and rejects duplicate object keys.
#![forbid(unsafe_code)]

pub mod attest;
pub mod b64;
pub mod bundle;
pub mod cosign;
pub mod digest;
pub mod dsse;
pub mod json;
pub mod keys;
pub mod policy;
pub mod record;
pub mod statement;
pub mod verdict;
pub mod verify;

pub use attest::{Signed, sign_statement};
pub use digest::Sha256Digest;
pub use keys::{Algorithm, KeyPair, PublicKey, Signer};
