//! Both daemons in a temporary directory (`cloister_runner::stack`, the
//! code `quickstart` runs), driven through the CLI; fixture repositories
//! committed at a fixed date; the verifiers (ours and the external ones).
//! Every stack's runner uses one store shared by all tests ([`shared_store`]),
//! so the Rust toolchain is copied into it once per target directory, and
//! that toolchain is the host's without its documentation
//! ([`rust_toolchain`]): CI machines have little disk to spare.

use cloister_runner::stack::{self, StackOptions};
use cloister_tests::{bin, fixture, interop_node_modules, interop_python, workspace_root};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The content-addressed store every test daemon uses: under cargo's
/// per-target scratch directory; the store is safe for concurrent use.
pub fn shared_store() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cloister-store")
}

/// The host's Rust toolchain (for repo A) without `share/doc` (~800 MB of
/// its ~1.3 GB, never used by a build): a tree of hard links (copies across
/// filesystems) beside the store, made once per toolchain version.
pub fn rust_toolchain() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let sysroot = stack::rust_sysroot().unwrap_or_else(|e| panic!("{e}"));
        let version = Command::new(sysroot.join("bin/rustc"))
            .arg("-vV")
            .output()
            .expect("rustc -vV");
        assert!(version.status.success(), "rustc -vV failed");
        let mut id = sysroot.as_os_str().as_encoded_bytes().to_vec();
        id.extend_from_slice(&version.stdout);
        let hex = cloister_inputs::Digest::of(&id).hex()[..16].to_string();
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let dest = tmp.join(format!("rust-toolchain-{hex}"));
        if !dest.is_dir() {
            let staging = tmp.join(format!(".rust-toolchain-{hex}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&staging);
            link_tree(&sysroot, &staging, Path::new(""));
            if std::fs::rename(&staging, &dest).is_err() {
                // another test process made it first
                assert!(dest.is_dir(), "could not create {}", dest.display());
                std::fs::remove_dir_all(&staging).expect("remove staging toolchain");
            }
        }
        dest
    })
    .clone()
}

/// Recreates `from` at `to`: directories, symlinks as they are, files hard
/// linked (copied when linking fails), `share/doc` left out.
fn link_tree(from: &Path, to: &Path, rel: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read toolchain dir") {
        let entry = entry.expect("read toolchain dir");
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let rel = rel.join(entry.file_name());
        let ty = entry.file_type().expect("file type");
        if ty.is_dir() {
            if rel != Path::new("share/doc") {
                link_tree(&src, &dst, &rel);
            }
        } else if ty.is_symlink() {
            let target = std::fs::read_link(&src).expect("readlink");
            std::os::unix::fs::symlink(target, &dst).expect("symlink");
        } else if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).expect("copy toolchain file");
        }
    }
}

/// A running attestor + runner pair in a temporary directory (the fields of
/// `cloister_runner::stack::Stack` through `Deref`), with the attestor's
/// public key exported to `public_key`.
pub struct Stack {
    inner: stack::Stack,
    pub public_key: PathBuf,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for Stack {
    type Target = stack::Stack;
    fn deref(&self) -> &stack::Stack {
        &self.inner
    }
}

/// Mutable access to the daemons (e.g. to kill and restart the attestor).
impl std::ops::DerefMut for Stack {
    fn deref_mut(&mut self) -> &mut stack::Stack {
        &mut self.inner
    }
}

impl Stack {
    /// Starts the attestor, then the runner (with `concurrency` and the
    /// host's Rust toolchain as toolchain `rust`, see [`rust_toolchain`]).
    pub fn start(concurrency: usize) -> Stack {
        Stack::start_with(concurrency, &[])
    }

    /// [`Stack::start`] with more toolchains.
    pub fn start_with(concurrency: usize, toolchains: &[(&str, &Path)]) -> Stack {
        let dir = tempfile::Builder::new()
            .prefix("ce2e-")
            .tempdir()
            .expect("tempdir");
        let mut all = BTreeMap::from([("rust".to_string(), rust_toolchain())]);
        for (name, path) in toolchains {
            all.insert(name.to_string(), path.to_path_buf());
        }
        let opts = StackOptions {
            runner_bin: bin("cloister-runner"),
            attestor_bin: bin("cloister-attestor"),
            concurrency,
            shutdown_grace_secs: 120,
            store: Some(shared_store()),
            toolchains: all,
        };
        let inner = stack::Stack::start(dir.path(), &opts).unwrap_or_else(|e| panic!("{e}"));
        let public_key = dir.path().join("public.pem");
        inner
            .export_public_key(&public_key)
            .unwrap_or_else(|e| panic!("{e}"));
        Stack {
            inner,
            public_key,
            dir,
        }
    }

    pub fn start_runner(&mut self) {
        self.inner.start_runner().unwrap_or_else(|e| panic!("{e}"));
    }

    /// SIGTERM the runner daemon and wait for it (it drains).
    pub fn stop_runner(&mut self) {
        let status = self
            .inner
            .stop_runner(Duration::from_secs(600))
            .expect("runner running");
        assert!(status.success(), "runner exit: {status}");
    }

    /// SIGHUP the runner and wait until it logged `needle` for the n-th time
    /// (`n` counts from 1).
    pub fn sighup_and_wait_log(&self, needle: &str, n: usize) {
        self.inner
            .runner
            .as_ref()
            .expect("runner running")
            .signal(nix::sys::signal::Signal::SIGHUP)
            .unwrap_or_else(|e| panic!("{e}"));
        let deadline = Instant::now() + Duration::from_secs(600);
        while self.runner_log().matches(needle).count() < n {
            assert!(
                Instant::now() < deadline,
                "the runner never logged {needle:?}:\n{}",
                self.runner_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `cloister-runner <args>` against this stack's socket.
    pub fn runner(&self, args: &[&str]) -> Output {
        Command::new(&self.runner_bin)
            .args(args)
            .env("CLOISTER_RUNNER_SOCKET", &self.api_socket)
            .output()
            .expect("run cloister-runner")
    }

    /// `cloister-runner build … --json -- CMD`: (exit code, final job record, stderr).
    pub fn build(
        &self,
        repo: &Path,
        extra: &[&str],
        command: &[&str],
    ) -> (i32, serde_json::Value, String) {
        let mut args = vec![
            "build",
            "--source",
            repo.to_str().unwrap(),
            "--json",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(command);
        let out = self.runner(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or("");
        let job = serde_json::from_str(last).unwrap_or(serde_json::Value::Null);
        (
            out.status.code().unwrap_or(-1),
            job,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// [`Stack::build`] that must succeed with one artifact whose provenance
    /// `cloister-attestor verify` accepts for `uri` on branch main; returns
    /// (the artifact's path, the statement).
    pub fn build_verified(
        &self,
        repo: &Path,
        uri: &str,
        flags: &[&str],
        command: &[&str],
    ) -> (PathBuf, serde_json::Value) {
        let mut extra = vec!["--uri", uri];
        extra.extend_from_slice(flags);
        let (code, job, stderr) = self.build(repo, &extra, command);
        let id = job["id"].as_str().unwrap_or("?");
        assert_eq!(code, 0, "{stderr}\n{job}\n{}", self.log(id));
        let a = &job["result"]["artifacts"][0];
        let (path, provenance) = (
            a["path"].as_str().unwrap(),
            a["provenance"].as_str().unwrap(),
        );
        let v = self.verify(provenance, path, uri, &["--source-branch", "main"]);
        assert_eq!(v["verified"], true, "{v}");
        (PathBuf::from(path), statement(provenance))
    }

    /// A job's log.
    pub fn log(&self, id: &str) -> String {
        String::from_utf8_lossy(&self.runner(&["logs", id]).stdout).into_owned()
    }

    /// `cloister-attestor verify --json` with this stack's public key.
    pub fn verify(
        &self,
        provenance: &str,
        artifact: &str,
        source_uri: &str,
        extra: &[&str],
    ) -> serde_json::Value {
        let out = Command::new(&self.attestor_bin)
            .args(["verify", "--provenance", provenance, "--public-key"])
            .arg(&self.public_key)
            .args(["--artifact", artifact, "--source-uri", source_uri, "--json"])
            .args(extra)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "verify printed no verdict: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

/// Runs git with a fixed identity and dates so commits are reproducible.
pub fn git(dir: &Path, args: &[&str]) -> String {
    stack::git(dir, args).unwrap_or_else(|e| panic!("{e}"))
}

/// A git repository made from `tests/fixtures/<name>`, committed; returns its path.
pub fn fixture_repo(parent: &Path, name: &str) -> PathBuf {
    let repo = parent.join(name);
    stack::copy_tree(
        &fixture(name),
        &repo,
        &["target", "node_modules", "dist", "build"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    stack::commit_all(&repo, name).unwrap_or_else(|e| panic!("{e}"));
    repo
}

/// A git repository with the given files.
pub fn repo_with(dir: &Path, files: &[(&str, &str)]) -> String {
    stack::repo_with(dir, files).unwrap_or_else(|e| panic!("{e}"))
}

/// The statement inside a `.intoto.jsonl` (decoded with coreutils' base64).
pub fn statement(jsonl: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(jsonl).unwrap();
    assert_eq!(
        text.lines().count(),
        1,
        "one envelope per line, one line: {text}"
    );
    let env: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
    let mut child = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(env["payload"].as_str().unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// securesystemslib (`tests/interop/verify_envelope.py`) on a `.intoto.jsonl`.
pub fn securesystemslib_verify(jsonl: &str, public: &Path) -> Output {
    Command::new(interop_python())
        .arg(workspace_root().join("tests/interop/verify_envelope.py"))
        .arg(jsonl)
        .arg(public)
        .output()
        .expect("run python")
}

/// sigstore-js (`tests/interop/verify_bundle.js`) on a `.sigstore.json`.
pub fn sigstore_js_verify(bundle: &str, public: &Path) -> Output {
    Command::new("node")
        .arg(workspace_root().join("tests/interop/verify_bundle.js"))
        .arg(bundle)
        .arg(public)
        .env("NODE_PATH", interop_node_modules())
        .output()
        .expect("run node")
}

/// sha256 of a file as `sha256:<hex>` (with sha256sum, independent of our code).
pub fn sha256_file(path: &str) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    let text = String::from_utf8_lossy(&out.stdout);
    format!(
        "sha256:{}",
        text.split_whitespace().next().expect("a digest")
    )
}
