//! The attestor: key management, the signing and verification command line,
//! the HTTP service (`service`) with its storage and metering, and billing
//! (`billing`: rating, invoices, webhooks), on top of `cloister-attestor-core`.
#![forbid(unsafe_code)]

pub mod billing;
pub mod cli;
pub mod config;
pub mod evidence;
pub mod keyring;
pub mod portal;
pub mod service;
pub mod storage;
