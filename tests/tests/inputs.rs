//! Hermetic inputs end to end, through the `cloister-runner` binary (and the
//! `cloister-inputs` library where a test needs small limits):
//! - `format`: the canonical tar, its GNU tar equivalent, determinism, refusals
//! - `store`: warm path, read-only trees, gc, crash safety, progress, export/import
//! - `extract`: one hostile archive per rejection rule
//! - `image`: OCI layouts built in the test from busybox-static
//! - `run`: `cloister-runner run --snapshot/--image` (read-only mounts, image roots)
//! - `vendoring`: each cookbook recipe as a real offline build in the sandbox
#![forbid(unsafe_code)]

#[path = "inputs/extract.rs"]
mod extract;
#[path = "inputs/format.rs"]
mod format;
#[path = "inputs/image.rs"]
mod image;
#[path = "inputs/run.rs"]
mod run;
#[path = "inputs/store.rs"]
mod store;
#[path = "inputs/util.rs"]
mod util;
#[path = "inputs/vendoring.rs"]
mod vendoring;
