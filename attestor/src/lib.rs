//! The attestor: key management, the signing and verification command line,
//! and (later) the HTTP service with its store and metering, on top of
//! `cloister-attestor-core`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod keyring;
pub mod service;
pub mod storage;
