//! Benchmark (a program, not a test): snapshotting a real vendored tree —
//! `cargo vendor` of this workspace's own dependencies — against GNU tar + gzip
//! in the same run.
//!
//! ```sh
//! cargo run --release -p cloister-inputs --example bench-snapshot [-- --vendor-dir DIR] [--runs N] [--level L]
//! ```
//!
//! Prints, for each measurement, the best and median wall time of N runs and
//! the ratio to the anchor `tar --sort=name --mtime=@0 --owner=0 --group=0
//! --numeric-owner --format=posix -cf - . | gzip -n`:
//! - cold: digest + `.tar.gz` of the tree (no store), and the same with the
//!   store's read-only materialized copy (fresh store each run);
//! - warm: re-snapshot of the unchanged tree into the same store (stat cache
//!   hit), with and without writing the `.tar.gz`.
//!
//! It also checks the digest equals the documented GNU tar command line's and
//! a copy of the tree with other mtimes, owners and mode noise.

use cloister_inputs::{NoProgress, SnapshotOptions, SnapshotRequest, Store};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut vendor: Option<PathBuf> = None;
    let mut runs = 5usize;
    let mut level = cloister_inputs::DEFAULT_LEVEL;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--vendor-dir" => vendor = args.next().map(PathBuf::from),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--level" => level = args.next().and_then(|v| v.parse().ok()).expect("--level L"),
            other => panic!("unknown argument {other} (use --vendor-dir DIR, --runs N, --level L)"),
        }
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = match vendor {
        Some(d) => d,
        None => {
            let d = scratch.path().join("vendor");
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
            eprintln!(
                "cargo vendor of {} into {} ...",
                manifest.display(),
                d.display()
            );
            let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["vendor", "--locked", "--quiet", "--manifest-path"])
                .arg(&manifest)
                .arg(&d)
                .stdout(std::process::Stdio::null())
                .status()
                .expect("run cargo vendor");
            assert!(st.success(), "cargo vendor failed");
            d
        }
    };
    let (files, bytes) = tree_size(&dir);
    println!(
        "tree: {} ({} files, {:.1} MiB)",
        dir.display(),
        files,
        bytes as f64 / (1 << 20) as f64
    );
    println!(
        "threads: {}, gzip level (libdeflate): {level}, runs: {runs}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // warm the page cache for both sides
    let _ = Command::new("tar")
        .arg("-cf")
        .arg("/dev/null")
        .arg("-C")
        .arg(&dir)
        .arg(".")
        .status();
    let opts = SnapshotOptions::default();

    let anchor_out = scratch.path().join("anchor.tar.gz");
    let anchor_cmd = format!(
        "tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=posix -C '{}' -cf - . | gzip -n > '{}'",
        dir.display(),
        anchor_out.display()
    );
    let anchor = measure(runs, || {
        let st = Command::new("sh")
            .arg("-c")
            .arg(&anchor_cmd)
            .status()
            .expect("sh");
        assert!(st.success());
    });
    let anchor_size = std::fs::metadata(&anchor_out).map(|m| m.len()).unwrap_or(0);

    let ours_out = scratch.path().join("ours.tar.gz");
    let mut digest = None;
    let cold = measure(runs, || {
        let p = cloister_inputs::snapshot_to_file(&dir, &opts, &ours_out, level, &NoProgress)
            .expect("snapshot");
        digest = Some(p.digest);
    });
    let digest = digest.expect("ran");
    let ours_size = std::fs::metadata(&ours_out).map(|m| m.len()).unwrap_or(0);

    let mut n = 0;
    let cold_store = measure(runs, || {
        n += 1;
        let store = Store::open(&scratch.path().join(format!("store-{n}"))).expect("store");
        let req = SnapshotRequest {
            opts,
            out: Some(ours_out.clone()),
            level,
        };
        let s = store
            .snapshot_with(&dir, &req, &NoProgress)
            .expect("snapshot");
        assert!(!s.cached);
        assert_eq!(s.digest, digest);
    });
    // remove the cold stores (gigabytes) before the warm runs
    for i in 1..=n {
        let _ = cloister_inputs_remove(&scratch.path().join(format!("store-{i}")));
    }

    let store = Store::open(&scratch.path().join("store-warm")).expect("store");
    std::thread::sleep(Duration::from_millis(200)); // past the stat cache's racy window
    store
        .snapshot_with(
            &dir,
            &SnapshotRequest {
                opts,
                out: Some(ours_out.clone()),
                level,
            },
            &NoProgress,
        )
        .expect("first snapshot");
    let warm_digest_only = measure(runs, || {
        let s = store
            .snapshot_with(
                &dir,
                &SnapshotRequest {
                    opts,
                    out: None,
                    level,
                },
                &NoProgress,
            )
            .expect("warm");
        assert!(s.cached, "warm run must hit the stat cache");
        assert_eq!(s.digest, digest);
    });
    let warm_out = measure(runs, || {
        let req = SnapshotRequest {
            opts,
            out: Some(ours_out.clone()),
            level,
        };
        let s = store.snapshot_with(&dir, &req, &NoProgress).expect("warm");
        assert!(s.cached);
    });

    println!();
    println!("{:<52} {:>9} {:>9} {:>8}", "", "best", "median", "ratio");
    row("anchor: GNU tar --format=posix | gzip -n", &anchor, &anchor);
    row("cold: digest + .tar.gz (no store)", &cold, &anchor);
    row(
        "cold: digest + .tar.gz + store materialization",
        &cold_store,
        &anchor,
    );
    row(
        "warm: re-snapshot, unchanged tree (digest)",
        &warm_digest_only,
        &anchor,
    );
    row(
        "warm: re-snapshot + .tar.gz copy to --out",
        &warm_out,
        &anchor,
    );
    println!();
    println!(
        "sizes: ours {:.1} MiB, anchor {:.1} MiB (ours/anchor {:.2})",
        ours_size as f64 / (1 << 20) as f64,
        anchor_size as f64 / (1 << 20) as f64,
        ours_size as f64 / anchor_size.max(1) as f64
    );

    // digest checks: documented GNU tar command line, and a noisy copy
    let gnu = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar --create --file=- --format=gnu --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
             --mode=go-rwx,u+rwX,go=u,go-w,a-st --hard-dereference --directory='{}' . | sha256sum",
            dir.display()
        ))
        .output()
        .expect("tar");
    let gnu = String::from_utf8_lossy(&gnu.stdout);
    let gnu_hex = gnu.split_whitespace().next().unwrap_or("");
    println!("digest: {digest}");
    println!(
        "GNU tar (documented command) digest matches: {}",
        gnu_hex == digest.hex()
    );
    let copy = scratch.path().join("noisy-copy");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cp -a '{}' '{}' && cd '{}' && find . -exec touch -h -d '2011-11-11 11:11' {{}} + && chmod -R g+w,o-r . && chown -R 4242:4242 .",
            dir.display(),
            copy.display(),
            copy.display()
        ))
        .status()
        .expect("sh");
    assert!(st.success());
    let again = cloister_inputs::snapshot_digest(&copy, &opts).expect("digest of copy");
    println!(
        "copy with other mtimes/owners/mode noise has the same digest: {}",
        again == digest
    );
    let rerun = cloister_inputs::snapshot_digest(&dir, &opts).expect("digest");
    println!("digest identical across runs: {}", rerun == digest);
}

fn cloister_inputs_remove(p: &Path) -> std::io::Result<()> {
    let _ = Command::new("chmod").arg("-R").arg("u+w").arg(p).status();
    std::fs::remove_dir_all(p)
}

struct Stats {
    best: Duration,
    median: Duration,
}

fn measure(runs: usize, mut f: impl FnMut()) -> Stats {
    let mut times: Vec<Duration> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    Stats {
        best: times[0],
        median: times[times.len() / 2],
    }
}

fn row(name: &str, s: &Stats, anchor: &Stats) {
    println!(
        "{:<52} {:>8.3}s {:>8.3}s {:>7.1}x",
        name,
        s.best.as_secs_f64(),
        s.median.as_secs_f64(),
        anchor.median.as_secs_f64() / s.median.as_secs_f64()
    );
}

fn tree_size(dir: &Path) -> (u64, u64) {
    let entries = cloister_inputs::walk::walk(dir).expect("walk");
    cloister_inputs::snapshot::totals(&entries)
}
