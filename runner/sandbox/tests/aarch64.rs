//! The sandbox crate compiles for arm64: `cargo check --target
//! aarch64-unknown-linux-gnu -p cloister-sandbox --all-targets`, in a target
//! directory of its own under this crate's test scratch space. Many
//! self-hosted runners are arm64; the seccomp policy and its promised
//! denials for aarch64 are checked by the unit tests (`seccomp`), this
//! checks the rest of the crate (system calls, constants, types) builds
//! there. Needs the aarch64 standard library (`.ci/setup.d/11-aarch64.sh`);
//! fails loudly without it.

use std::process::Command;

const TARGET: &str = "aarch64-unknown-linux-gnu";

#[test]
fn the_sandbox_crate_compiles_for_aarch64() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .expect("run rustup (the aarch64 check needs it)");
    assert!(
        String::from_utf8_lossy(&installed.stdout)
            .lines()
            .any(|l| l.trim() == TARGET),
        "the {TARGET} target is not installed: run .ci/setup.d/11-aarch64.sh"
    );
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("aarch64-check");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&workspace)
        .env("CARGO_TARGET_DIR", &target_dir)
        .args([
            "check",
            "--quiet",
            "--locked",
            "--target",
            TARGET,
            "-p",
            "cloister-sandbox",
            "--all-targets",
        ])
        .output()
        .expect("run cargo check");
    assert!(
        out.status.success(),
        "cargo check --target {TARGET} -p cloister-sandbox failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
