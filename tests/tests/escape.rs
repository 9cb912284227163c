//! The sandbox escape suite: `cloister-probe` runs inside `cloister-runner
//! run` and reports every isolation property; these tests assert each one,
//! once as root and once as the unprivileged test user (created by
//! `.ci/setup.d/10-sandbox.sh`). Missing tools or users fail the tests.
//!
//! Module tree:
//! - `harness`: staging binaries for the test user, delegated cgroups,
//!   watchdogs, JSON results
//! - `suite`: the probe's property checks and the syscall table against an
//!   unsandboxed control
//! - `limits`: memory, pids, cpu and timeout limits; whole-tree kill on
//!   timeout, on exit and on runner death
//! - `cli`: exit codes, JSON result, stream redirection, environment,
//!   binds and workdir, image root filesystems, profile refusal
//! - `nesting`: read-only binds (and snapshots) inside writable ones and the
//!   reverse, in every command-line order
//! - `sockets`: socket address families outside the network namespace
//!   refused (AF_VSOCK to a VM's host), against an unsandboxed control;
//!   socketpairs, loopback TCP, Unix sockets and node on localhost working
//! - `disk`: a full `/tmp` and a workspace past its limit stop the run
//!   (`limitHit: "disk"`), the host keeping its free space

#[macro_use]
#[path = "escape/harness.rs"]
mod harness;

#[path = "escape/suite.rs"]
mod suite;

#[path = "escape/limits.rs"]
mod limits;

#[path = "escape/cli.rs"]
mod cli;

#[path = "escape/nesting.rs"]
mod nesting;

#[path = "escape/sockets.rs"]
mod sockets;

#[path = "escape/disk.rs"]
mod disk;
