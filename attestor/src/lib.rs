//! The attestor: key management, the signing and verification command line,
//! and the HTTP service (`service`) with its storage and metering, on top of
//! `cloister-attestor-core`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod keyring;
pub mod portal;
pub mod service;
pub mod storage;
