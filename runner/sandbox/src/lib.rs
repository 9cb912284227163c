//! The sandbox: runs one untrusted command in fresh Linux namespaces with no
//! network, a synthesized root, resource limits, no capabilities and a seccomp
//! filter. With `cloister-nss` (one FFI call), this is the only crate in the
//! workspace that uses `unsafe`: most of it in `sys`; besides, one signal
//! handler installation in `run`, one fd borrow in `child`, and the raw
//! `socket`/`syscall` calls of the probes in `probe` (which must reach the
//! kernel unfiltered by libc wrappers).
//!
//! API: [`Profile`] (validated OCI runtime-spec profile), [`SeccompPolicy`],
//! [`SandboxSpec`] (what to run), [`run`] → [`Outcome`], [`IsolationFacts`]
//! (what provenance records about the isolation).

mod bpf;
pub mod cgroup;
mod child;
mod derive;
mod disk;
pub mod facts;
mod limit;
mod lookup;
mod message;
pub mod mountinfo;
mod precomputed;
pub mod probe;
pub mod profile;
pub mod report;
mod run;
pub mod seccomp;
pub mod spec;
mod sys;
pub mod trace;

pub use facts::IsolationFacts;
pub use message::Stage;
pub use profile::{Profile, ProfileError};
pub use report::{LimitsReport, ReportError, RunFailure, RunReport, RunResult};
pub use run::{Outcome, SandboxError, run};
pub use seccomp::{PolicyError, SeccompPolicy};
// The one size syntax lives in `cloister-size` (the attestor reads it too).
pub use cloister_size::{SizeError, parse_size};
pub use limit::{LimitKind, MilliCpus};
pub use spec::{Bind, Limits, Network, SandboxSpec, Stdio};
