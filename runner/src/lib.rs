//! The runner: the `cloister-runner` command line (and, later, the job daemon)
//! built on the sandbox (`cloister-sandbox`) and hermetic inputs
//! (`cloister-inputs`) crates.
#![forbid(unsafe_code)]

pub mod cli;
