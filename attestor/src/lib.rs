//! The attestor: key management, the signing and verification command line,
//! the HTTP service (`service`) with its storage and metering, the trust
//! portal (`portal`), billing (`billing`: rating, invoices, webhooks) and
//! audit evidence (`evidence`), on top of `cloister-attestor-core`.
//!
//! Top-level modules, each importing only those below it (the
//! `module_graph` test holds this): `cli` → `server` → `portal` →
//! `service` → `evidence` → `config` → `billing` → `http`, `metrics`,
//! `clock`, `api_key`, `keyring`, `storage`.
#![forbid(unsafe_code)]

pub mod api_key;
pub mod billing;
pub mod cli;
pub mod clock;
pub mod config;
pub mod evidence;
pub mod http;
pub mod keyring;
pub mod metrics;
pub mod portal;
pub mod server;
pub mod service;
pub mod storage;
