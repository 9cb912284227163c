//! The runner: the `cloister-runner` command line and job daemon, built on
//! the sandbox (`cloister-sandbox`) and hermetic inputs (`cloister-inputs`)
//! crates.
#![forbid(unsafe_code)]

pub mod binaries;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod hook;
mod inputs_glue;
pub mod job;
pub mod policy_gate;
pub mod stack;
pub mod toolchains;
