//! Shared helpers for Cloister's cross-crate test suite: locating the
//! workspace's binaries and fixtures.
//!
//! Test tree (one integration binary per area, under `tests/tests/`):
//! - `escape.rs`: the sandbox probe suite (root and rootless)
//! - `inputs.rs`: snapshots, store, images, vendoring recipes
//! - `interop.rs`: our envelopes and bundles against external verifiers
//! - `e2e.rs`: jobs end to end through both daemons
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The cargo target directory this test binary was built into.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            workspace_root().join(dir)
        };
    }
    // current_exe is target/<profile>/deps/<test>-<hash>
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// Path to a binary built from this workspace (`cloister-runner`,
/// `cloister-attestor`, `cloister-probe`), building it first when it is
/// missing so that `cargo test -p cloister-tests` works on its own.
pub fn bin(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    let package = match name {
        "cloister-runner" => "cloister-runner",
        "cloister-attestor" => "cloister-attestor",
        _ => "cloister-tests",
    };
    // Always ask cargo: it is a no-op when up to date and rebuilds a stale binary.
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root())
        .args(["build", "--quiet", "-p", package, "--bin", name]);
    if profile_dir().file_name().is_some_and(|p| p == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "cargo build of {name} failed");
    assert!(path.exists(), "{} missing after build", path.display());
    path
}

/// Path to a fixture under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    workspace_root().join("tests/fixtures").join(rel)
}
