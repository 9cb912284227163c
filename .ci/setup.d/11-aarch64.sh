# The sandbox's arm64 check (issue 15): the aarch64 standard library, so that
# `cargo check --target aarch64-unknown-linux-gnu -p cloister-sandbox` can
# compile the sandbox crate for arm64 on this x86_64 machine. The check itself
# is a test of the sandbox crate (runner/sandbox/tests/aarch64.rs), so
# `cargo test --workspace` runs it and fails loudly when this target is
# missing. Sourced by .ci/run (bash, set -euo pipefail, as root, from the
# repository root, so the toolchain is the one cargo uses here). Idempotent.
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
    rustup target add aarch64-unknown-linux-gnu
fi
echo "aarch64: rust target $(rustup target list --installed | grep -x aarch64-unknown-linux-gnu)"
