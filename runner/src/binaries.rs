//! The file names of the runner's two binaries, installed side by side: the
//! CLI finds one from the other, and the daemon starts its sandboxes through
//! the front one. Kept apart from `cli` so `daemon` needs nothing of it.

/// The file name of the front binary, which starts sandboxes (the daemon
/// starts its sandboxes through it; see `cli::front_main`).
pub const FRONT_BINARY: &str = "cloister-runner";

/// The file name of the binary that holds every subcommand, installed
/// beside [`FRONT_BINARY`].
pub const FULL_BINARY: &str = "cloister-runner-full";
