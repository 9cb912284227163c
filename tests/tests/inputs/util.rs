//! Helpers for the inputs suite: running the CLI against a private store,
//! building trees, crafting raw (hostile) tar archives and computing digests.

use sha2::{Digest as _, Sha256};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A test's private store and scratch space.
pub struct Env {
    pub tmp: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Env {
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }
    pub fn store(&self) -> PathBuf {
        self.tmp.path().join("store")
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }
    /// `cloister-runner ARGS` with this env's store.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(cloister_tests::bin("cloister-runner"));
        c.args(args)
            .env("CLOISTER_STORE", self.store())
            .env_remove("SOURCE_DATE_EPOCH");
        c.stdin(Stdio::null());
        c
    }
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run cloister-runner")
    }
    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "cloister-runner {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }
    /// Runs with --json appended and parses the object.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(self.ok(&a).trim()).expect("JSON output")
    }
    /// Runs and expects failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "cloister-runner {args:?} should fail; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
    /// Names of entries under store/<sub>.
    pub fn store_entries(&self, sub: &str) -> Vec<String> {
        match fs::read_dir(self.store().join(sub)) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

pub use cloister_tests::gnu_tar;

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A tree with everything the format must handle: files, directories, an
/// executable, symlinks (short, long target, into a subdirectory, upward),
/// empty directories, names longer than 100 bytes, non-ASCII names.
pub fn make_tree(root: &Path) {
    let long_dir = "d".repeat(120);
    let long_file = format!("{}-{}", "f".repeat(90), "é".repeat(10));
    for d in [
        "a",
        "a/b",
        "empty",
        "nested/empty/deeper",
        &long_dir,
        "zz-ünïcödé",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    write(root, "README", b"hello\n", 0o644);
    write(root, "a/b/run.sh", b"#!/bin/sh\necho hi\n", 0o755);
    write(
        root,
        "a/data.bin",
        &(0..=255u8).cycle().take(70_000).collect::<Vec<_>>(),
        0o600,
    );
    write(root, "a-b", b"sorts between a and a/ bytewise\n", 0o644);
    write(
        root,
        &format!("{long_dir}/{long_file}"),
        b"long name\n",
        0o644,
    );
    write(
        root,
        "zz-ünïcödé/ファイル.txt",
        "non-ascii\n".as_bytes(),
        0o644,
    );
    write(root, "exactly-512", &[b'x'; 512], 0o644);
    write(root, "zero", b"", 0o644);
    symlink("README", root.join("link-to-readme")).unwrap();
    symlink("../README", root.join("a/up-link")).unwrap();
    symlink(
        format!("{long_dir}/{long_file}"),
        root.join("long-target-link"),
    )
    .unwrap();
    symlink("a/b", root.join("dir-link")).unwrap();
}

pub fn write(root: &Path, rel: &str, data: &[u8], mode: u32) {
    let p = root.join(rel);
    fs::write(&p, data).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Waits past the warm-path cache's racy window (100 ms) so that the next
/// snapshot may record its stat cache. Not a performance threshold: a tree
/// changed within the window is correctly never cached.
pub fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(250));
}

/// A raw tar writer for crafting archives the `tar` crate's builder would
/// refuse to produce (absolute paths, `..`, devices, setuid, ...).
#[derive(Default)]
pub struct RawTar(pub Vec<u8>);

impl RawTar {
    pub fn entry(
        &mut self,
        name: &[u8],
        typ: u8,
        mode: u32,
        data: &[u8],
        link: &[u8],
    ) -> &mut Self {
        self.entry_sized(name, typ, mode, data, link, data.len() as u64)
    }
    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name.as_bytes(), b'0', 0o644, data, b"")
    }
    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name.as_bytes(), b'5', 0o755, b"", b"")
    }
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name.as_bytes(), b'2', 0o777, b"", target.as_bytes())
    }
    /// An entry whose header claims `size` bytes (data may be shorter).
    pub fn entry_sized(
        &mut self,
        name: &[u8],
        typ: u8,
        mode: u32,
        data: &[u8],
        link: &[u8],
        size: u64,
    ) -> &mut Self {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name);
        put_octal(&mut h[100..108], u64::from(mode));
        put_octal(&mut h[108..116], 0);
        put_octal(&mut h[116..124], 0);
        put_numeric(&mut h[124..136], size);
        put_octal(&mut h[136..148], 0);
        h[156] = typ;
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        put_octal(&mut h[148..155], u64::from(sum));
        self.0.extend_from_slice(&h);
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }
    pub fn finish(&mut self) -> Vec<u8> {
        let mut v = self.0.clone();
        v.extend(std::iter::repeat_n(0u8, 1024));
        v
    }
}

/// Octal when it fits, else base-256 (GNU's encoding for large sizes).
fn put_numeric(field: &mut [u8], v: u64) {
    if v < 1 << (3 * (field.len() - 1)) {
        put_octal(field, v);
    } else {
        field.fill(0);
        field[0] = 0x80;
        let n = field.len();
        field[n - 8..].copy_from_slice(&v.to_be_bytes());
    }
}

fn put_octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Every path under `dir` (relative), sorted, for "nothing else was written" checks.
pub fn listing(dir: &Path) -> Vec<String> {
    fn go(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                go(base, &p, out);
            }
        }
    }
    let mut v = Vec::new();
    go(dir, dir, &mut v);
    v.sort();
    v
}
