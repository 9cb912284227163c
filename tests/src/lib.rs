//! Shared helpers for Cloister's cross-crate test suite: locating the
//! workspace's binaries, fixtures and external verifiers, GNU tar's form of
//! a snapshot, and (`oci`) test image layouts.
//!
//! Test tree (one integration binary per area, under `tests/tests/`):
//! - `escape.rs`: the sandbox probe suite (root and rootless)
//! - `inputs.rs`: snapshots, store, images, vendoring recipes
//! - `interop.rs`: our envelopes and bundles against external verifiers
//! - `e2e.rs`: jobs end to end through both daemons
//! - `github.rs`: the Actions runner container hooks, the workflows' lint
#![forbid(unsafe_code)]

pub mod hook;
pub mod oci;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
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
/// `cloister-runner-full`, `cloister-attestor`, `cloister-probe`), building
/// it first when it is missing so that `cargo test -p cloister-tests` works
/// on its own.
pub fn bin(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    let package = match name {
        "cloister-runner" | "cloister-runner-full" => "cloister-runner",
        "cloister-attestor" => "cloister-attestor",
        _ => "cloister-tests",
    };
    // Always ask cargo: it is a no-op when up to date and rebuilds a stale binary.
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root())
        .args(["build", "--quiet", "-p", package, "--bin", name]);
    if name == "cloister-runner" {
        // The front executes the full binary for every subcommand but `run`.
        cmd.args(["--bin", "cloister-runner-full"]);
    }
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

/// The documented GNU tar command line of a snapshot
/// (`cookbook/snapshot-format.md`), without `--mtime` and the directory.
pub const GNU_TAR_ARGS: &[&str] = &[
    "--create",
    "--file=-",
    "--format=gnu",
    "--sort=name",
    "--owner=0",
    "--group=0",
    "--numeric-owner",
    "--mode=go-rwx,u+rwX,go=u,go-w,a-st",
    "--hard-dereference",
];

fn gnu_tar_command(dir: &Path, epoch: u64) -> Command {
    let mut cmd = Command::new("tar");
    cmd.args(GNU_TAR_ARGS)
        .arg(format!("--mtime=@{epoch}"))
        .arg(format!("--directory={}", dir.display()))
        .arg(".");
    cmd
}

/// The uncompressed tar GNU tar writes for `dir` with the documented options.
pub fn gnu_tar(dir: &Path, epoch: u64) -> Vec<u8> {
    let out = gnu_tar_command(dir, epoch)
        .output()
        .expect("GNU tar must be installed");
    assert!(
        out.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `sha256:<hex>` of [`gnu_tar`]'s output, streamed (for large trees such
/// as a Rust sysroot): a snapshot's digest computed without Cloister.
pub fn gnu_tar_digest(dir: &Path) -> String {
    use sha2::Digest as _;
    use std::io::Read;
    let mut child = gnu_tar_command(dir, 0)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("GNU tar must be installed");
    let mut stdout = child.stdout.take().expect("piped");
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = stdout.read(&mut buf).expect("read tar output");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    assert!(child.wait().expect("wait for tar").success(), "tar failed");
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// The Python with securesystemslib (`CLOISTER_INTEROP_PYTHON`, set by
/// `.ci/setup.d/30-interop.sh`); panics naming the fix when it is missing.
pub fn interop_python() -> PathBuf {
    let p = std::env::var_os("CLOISTER_INTEROP_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        panic!("CLOISTER_INTEROP_PYTHON is not set: source .ci/setup.d/30-interop.sh (it installs securesystemslib)")
    });
    assert!(
        p.exists(),
        "CLOISTER_INTEROP_PYTHON={} does not exist: run .ci/setup.d/30-interop.sh",
        p.display()
    );
    p
}

/// The node_modules with @sigstore/verify (`CLOISTER_INTEROP_NODE_MODULES`,
/// set by `.ci/setup.d/30-interop.sh`); panics naming the fix when missing.
pub fn interop_node_modules() -> PathBuf {
    let p = std::env::var_os("CLOISTER_INTEROP_NODE_MODULES").map(PathBuf::from).unwrap_or_else(|| {
        panic!("CLOISTER_INTEROP_NODE_MODULES is not set: source .ci/setup.d/30-interop.sh (it installs @sigstore/verify)")
    });
    assert!(
        p.join("@sigstore/verify").is_dir(),
        "{} has no @sigstore/verify: run .ci/setup.d/30-interop.sh",
        p.display()
    );
    p
}

/// The venv bin directory with check-jsonschema and zizmor
/// (`.ci/setup.d/65-github.sh` exports `CLOISTER_GITHUB_TOOLS`); panics
/// naming the setup script when it is missing.
pub fn github_tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("CLOISTER_GITHUB_TOOLS").unwrap_or_else(|| {
        panic!(
            "CLOISTER_GITHUB_TOOLS is not set: run .ci/setup.d/65-github.sh (it installs {name})"
        )
    });
    let path = PathBuf::from(dir).join(name);
    assert!(
        path.is_file(),
        "{} is missing: run .ci/setup.d/65-github.sh",
        path.display()
    );
    path
}

/// A YAML file (a workflow, Prometheus rules, Grafana provisioning) as
/// JSON, read by the ruamel.yaml of `.ci/setup.d/65-github.sh`'s tools (the
/// parser check-jsonschema uses); panics with python's error.
pub fn yaml_as_json(path: &Path) -> serde_json::Value {
    let out = Command::new(github_tool("python"))
        .args([
            "-c",
            "import json, sys\nfrom ruamel.yaml import YAML\nprint(json.dumps(YAML(typ='safe').load(open(sys.argv[1]))))",
        ])
        .arg(path)
        .output()
        .expect("run the tools' python");
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
