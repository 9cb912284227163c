//! Benchmark (a program, not a test): snapshotting a real vendored tree —
//! `cargo vendor` of this workspace's own dependencies — against GNU tar + gzip
//! in the same run.
//!
//! ```sh
//! cargo run --release -p cloister-inputs --example bench-snapshot [-- --vendor-dir DIR] [--runs N] [--levels 2,5,6] [--profile]
//! ```
//!
//! The anchor is `tar --sort=name --mtime=@0 --owner=0 --group=0
//! --numeric-owner --format=posix -cf - . | gzip -n` (gzip's default level,
//! 6). First, untimed, a size probe: our `.tar.gz` at libdeflate levels 1, 2,
//! … until one is no larger than the anchor's — the lowest "equal size"
//! level, the like-for-like comparison. The levels timed are 2 (our
//! default), that one and 6, unless `--levels` names others.
//!
//! Measurements are interleaved round by round (anchor, then ours at each
//! level), so load that comes and goes on a shared machine hits all of them
//! alike. For each it prints the best and median wall time of N rounds, the
//! median CPU time (user + system, all threads; for the anchor, of tar and
//! gzip), the ratio of the anchor's median wall time to its own, and the
//! ratio of CPU times (what the work costs, whatever else the machine runs):
//! - cold: digest + `.tar.gz` of the tree without a store, and the default
//!   command `cloister-runner snapshot DIR --out FILE.tar.gz` (digest,
//!   `.tar.gz`, and the store's read-only materialized copy, synced and
//!   committed; a fresh store each round) at each level, and the store
//!   without a `.tar.gz` (what the daemon does for a job's vendor dir);
//! - warm: re-snapshot of the unchanged tree into the same store (stat cache
//!   hit), with and without writing the `.tar.gz`.
//!
//! and, in the same rounds, the floors that bound the cold figures: the
//! digest alone (walk, read, SHA-256; no `.tar.gz`, no store), deflate
//! alone at each level — libdeflate over the canonical tar already in
//! memory, in the same 1 MiB pieces, on as many threads as ours uses — and
//! the work floor: the least CPU time of deflate alone plus that of the store
//! without a `.tar.gz`, divided by the cores (what a perfect pipeline doing
//! both would take), with each cold figure's share of them (floor / ours).
//! The last line gives the equal-size comparison: the lowest equal-size
//! level's cold snapshot into the store against the anchor.
//!
//! Store trees removed between rounds are left to age past ext4's
//! recently-deleted window before the next cold snapshot into a store
//! (`settle`). `--profile` (with `--vendor-dir`) runs only ours cold into
//! the store, N times per level, for `perf record`.
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
    let mut levels: Option<Vec<i32>> = None;
    let mut only_ours = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--vendor-dir" => vendor = args.next().map(PathBuf::from),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--profile" => only_ours = true,
            "--levels" => {
                levels = Some(
                    args.next()
                        .map(|v| v.split(',').map(|l| l.parse().expect("level")).collect())
                        .expect("--levels L1,L2"),
                )
            }
            other => panic!(
                "unknown argument {other} (use --vendor-dir DIR, --runs N, --levels L1,L2,..., --profile)"
            ),
        }
    }
    let runs = runs.max(1);
    let scratch = tempfile::tempdir().expect("tempdir");
    // When the last store tree was removed (see `settle`).
    let mut removed: Option<Instant> = None;
    if only_ours {
        let dir = vendor.expect("--profile needs --vendor-dir");
        let levels = levels.unwrap_or_else(|| vec![cloister_inputs::DEFAULT_LEVEL]);
        for round in 0..runs {
            for &level in &levels {
                let root = scratch.path().join(format!("store-{round}-{level}"));
                settle(&mut removed);
                let s = measure_self(|| {
                    let store = Store::open(&root).expect("store");
                    let req = SnapshotRequest {
                        opts: SnapshotOptions::default(),
                        out: Some(scratch.path().join("ours.tar.gz")),
                        level,
                        ..Default::default()
                    };
                    store
                        .snapshot_with(&dir, &req, &NoProgress)
                        .expect("snapshot");
                });
                println!(
                    "level {level}: {:.3}s wall {:.3}s cpu",
                    s.wall.as_secs_f64(),
                    s.cpu.as_secs_f64()
                );
                // in a child process, so that a profile of this one shows
                // the snapshot alone
                let _ = Command::new("rm").arg("-rf").arg(&root).status();
                removed = Some(Instant::now());
            }
        }
        return;
    }
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
    println!("load average at start: {}", loadavg());

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
    // Untimed: the anchor's size, and the size of ours at each level up
    // from 1 until one is no larger (the "equal size" level).
    let st = Command::new("sh")
        .arg("-c")
        .arg(&anchor_cmd)
        .status()
        .expect("sh");
    assert!(st.success(), "the anchor command failed");
    let anchor_size = std::fs::metadata(&anchor_out).expect("anchor output").len();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let probe = scratch.path().join("probe.tar.gz");
    let mut equal_level = None;
    for level in 1..=12 {
        let p = cloister_inputs::snapshot_to_file(&dir, &opts, &probe, level, &NoProgress)
            .expect("snapshot");
        let size = p.gz_bytes.expect("gz written");
        println!(
            "size probe: level {level:>2}: {:.1} MiB, {:.3} of gzip -6's {:.1} MiB",
            mib(size),
            size as f64 / anchor_size as f64,
            mib(anchor_size)
        );
        if size <= anchor_size {
            equal_level = Some(level);
            break;
        }
    }
    let _ = std::fs::remove_file(&probe);
    let equal_level = equal_level.expect("no level up to 12 is as small as gzip -6");
    let levels = levels.unwrap_or_else(|| {
        let mut l = vec![cloister_inputs::DEFAULT_LEVEL, equal_level, 6];
        l.sort();
        l.dedup();
        l
    });
    println!(
        "threads: {}, gzip levels (libdeflate): {levels:?}, rounds: {runs}; lowest level whose .tar.gz is no larger than gzip -6's: {equal_level}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let mut anchor = Samples::default();
    let mut cold: Vec<Samples> = levels.iter().map(|_| Samples::default()).collect();
    let mut cold_store: Vec<Samples> = levels.iter().map(|_| Samples::default()).collect();
    let mut sizes = vec![0u64; levels.len()];
    let mut digest = None;
    let mut stores = Vec::new();
    let tar = canonical_tar(&dir, &opts, scratch.path());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut deflate_floor: Vec<Samples> = levels.iter().map(|_| Samples::default()).collect();
    let mut digest_only = Samples::default();
    let mut store_only = Samples::default();
    for round in 0..runs {
        anchor.push(measure_children(|| {
            let st = Command::new("sh")
                .arg("-c")
                .arg(&anchor_cmd)
                .status()
                .expect("sh");
            assert!(st.success());
        }));
        for (li, &level) in levels.iter().enumerate() {
            let out = scratch.path().join(format!("ours-{level}.tar.gz"));
            cold[li].push(measure_self(|| {
                let p = cloister_inputs::snapshot_to_file(&dir, &opts, &out, level, &NoProgress)
                    .expect("snapshot");
                assert!(digest.is_none_or(|d| d == p.digest), "digest moved");
                digest = Some(p.digest);
            }));
            sizes[li] = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            let root = scratch.path().join(format!("store-{round}-{level}"));
            stores.push(root.clone());
            settle(&mut removed);
            cold_store[li].push(measure_self(|| {
                let store = Store::open(&root).expect("store");
                let req = SnapshotRequest {
                    opts,
                    out: Some(out.clone()),
                    level,
                    ..Default::default()
                };
                let s = store
                    .snapshot_with(&dir, &req, &NoProgress)
                    .expect("snapshot");
                assert!(!s.cached);
                assert_eq!(Some(s.digest), digest);
            }));
            deflate_floor[li].push(measure_self(|| {
                std::hint::black_box(deflate_chunks(&tar, level, threads));
            }));
        }
        let root = scratch.path().join(format!("store-{round}-plain"));
        stores.push(root.clone());
        settle(&mut removed);
        store_only.push(measure_self(|| {
            let store = Store::open(&root).expect("store");
            let req = SnapshotRequest {
                opts,
                ..Default::default()
            };
            let s = store
                .snapshot_with(&dir, &req, &NoProgress)
                .expect("snapshot");
            assert!(!s.cached);
            assert_eq!(Some(s.digest), digest);
        }));
        digest_only.push(measure_self(|| {
            let d = cloister_inputs::snapshot_digest(&dir, &opts).expect("digest");
            assert!(digest.is_none_or(|x| x == d), "digest moved");
        }));
        // Each cold store holds a copy of the tree: with many rounds on a
        // shared disk they would not all fit. Removing them is slow on some
        // filesystems (synchronous discard), so it happens between rounds,
        // followed by a sync, outside every measurement.
        for s in stores.drain(..) {
            let _ = remove_store(&s);
        }
        removed = Some(Instant::now());
        let _ = Command::new("sync").status();
    }
    let digest = digest.expect("ran");

    let level = levels[0];
    let ours_out = scratch.path().join("ours-warm.tar.gz");
    let store = Store::open(&scratch.path().join("store-warm")).expect("store");
    std::thread::sleep(Duration::from_millis(200)); // past the stat cache's racy window
    store
        .snapshot_with(
            &dir,
            &SnapshotRequest {
                opts,
                out: Some(ours_out.clone()),
                level,
                ..Default::default()
            },
            &NoProgress,
        )
        .expect("first snapshot");
    let mut warm_digest_only = Samples::default();
    let mut warm_out = Samples::default();
    for _ in 0..runs {
        warm_digest_only.push(measure_self(|| {
            let s = store
                .snapshot_with(
                    &dir,
                    &SnapshotRequest {
                        opts,
                        out: None,
                        level,
                        ..Default::default()
                    },
                    &NoProgress,
                )
                .expect("warm");
            assert!(s.cached, "warm run must hit the stat cache");
            assert_eq!(s.digest, digest);
        }));
        warm_out.push(measure_self(|| {
            let req = SnapshotRequest {
                opts,
                out: Some(ours_out.clone()),
                level,
                ..Default::default()
            };
            let s = store.snapshot_with(&dir, &req, &NoProgress).expect("warm");
            assert!(s.cached);
        }));
    }
    let load_end = loadavg();

    println!();
    println!(
        "{:<58} {:>8} {:>8} {:>8} {:>7} {:>8}",
        "", "best", "median", "cpu", "ratio", "cpu ratio"
    );
    let anchor = anchor.stats();
    row(
        "anchor: GNU tar --format=posix | gzip -n (level 6)",
        &anchor,
        &anchor,
    );
    for (li, level) in levels.iter().enumerate() {
        row(
            &format!("cold, level {level}: digest + .tar.gz (no store)"),
            &cold[li].stats(),
            &anchor,
        );
    }
    for (li, level) in levels.iter().enumerate() {
        row(
            &format!("cold, level {level}: snapshot DIR --out (store + .tar.gz)"),
            &cold_store[li].stats(),
            &anchor,
        );
    }
    row(
        "cold: snapshot DIR, store only (the daemon's vendor path)",
        &store_only.stats(),
        &anchor,
    );
    row(
        "floor: digest only (walk, read, sha256)",
        &digest_only.stats(),
        &anchor,
    );
    for (li, level) in levels.iter().enumerate() {
        row(
            &format!("floor: deflate alone, level {level}, {threads} threads"),
            &deflate_floor[li].stats(),
            &anchor,
        );
    }
    row(
        "warm: re-snapshot, unchanged tree (digest)",
        &warm_digest_only.stats(),
        &anchor,
    );
    row(
        &format!("warm: re-snapshot + .tar.gz copy to --out (level {level})"),
        &warm_out.stats(),
        &anchor,
    );
    println!("load average at end: {load_end}");
    println!();
    for (li, level) in levels.iter().enumerate() {
        println!(
            "size: ours level {level} {:.1} MiB (ours/anchor {:.3}){}",
            mib(sizes[li]),
            sizes[li] as f64 / anchor_size.max(1) as f64,
            if sizes[li] <= anchor_size {
                ", equal size"
            } else {
                ""
            }
        );
    }
    println!("size: anchor (gzip -6) {:.1} MiB", mib(anchor_size));
    println!();
    // Two floors per level: deflate alone (the compression's wall time on
    // our threads), and the work floor: the least CPU time of deflate alone
    // plus that of the store path without compression (walk, read, SHA-256,
    // the materialized tree, syncfs), spread perfectly over the cores, which
    // is the best a pipeline doing both can reach.
    let store_cpu = store_only.stats().least_cpu.as_secs_f64();
    for (li, level) in levels.iter().enumerate() {
        let floor = deflate_floor[li].stats();
        let work = (floor.least_cpu.as_secs_f64() + store_cpu) / threads as f64;
        let floor = floor.median.as_secs_f64();
        let store = cold_store[li].stats().median.as_secs_f64();
        let plain = cold[li].stats().median.as_secs_f64();
        println!(
            "level {level}: deflate floor {floor:.3}s, cold (no store) at {:.2} of it, cold into the store at {:.2}; \
             work floor (least CPU of deflate + of the store path without .tar.gz, over {threads} cores) {work:.3}s, cold into the store at {:.2} of it{}",
            floor / plain,
            floor / store,
            work / store,
            if sizes[li] <= anchor_size {
                " (equal size)"
            } else {
                ""
            }
        );
    }
    let eq = levels
        .iter()
        .position(|&l| l == equal_level)
        .map(|li| (li, cold_store[li].stats().median));
    if let Some((li, t)) = eq {
        println!();
        println!(
            "equal size: level {equal_level}, the lowest whose .tar.gz is no larger than gzip -6's ({:.3} of it): \
             cold into the store + .tar.gz {:.3}s against GNU tar + gzip -6 {:.3}s = {:.2}x",
            sizes[li] as f64 / anchor_size as f64,
            t.as_secs_f64(),
            anchor.median.as_secs_f64(),
            anchor.median.as_secs_f64() / t.as_secs_f64()
        );
    }
    println!();

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
    let all_hold = gnu_hex == digest.hex() && again == digest && rerun == digest;
    let _ = remove_store(&scratch.path().join("store-warm"));
    if !all_hold {
        eprintln!("FAILED: a digest check above does not hold");
        std::process::exit(1);
    }
}

/// The canonical tar stream of `dir` in memory (decompressed from our own
/// `.tar.gz`, whose digest the rounds check).
fn canonical_tar(dir: &Path, opts: &SnapshotOptions, scratch: &Path) -> Vec<u8> {
    let gz = scratch.join("floor.tar.gz");
    let p = cloister_inputs::snapshot_to_file(dir, opts, &gz, 1, &NoProgress).expect("snapshot");
    let mut tar = Vec::with_capacity(p.tar_bytes as usize);
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(std::fs::File::open(&gz).expect("open")),
        &mut tar,
    )
    .expect("gunzip");
    assert_eq!(tar.len() as u64, p.tar_bytes);
    let _ = std::fs::remove_file(&gz);
    tar
}

/// Deflate alone: `data` in 1 MiB pieces, each a gzip member at `level`,
/// spread over `threads` threads; returns the compressed size.
fn deflate_chunks(data: &[u8], level: i32, threads: usize) -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let pieces: Vec<&[u8]> = data.chunks(1 << 20).collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut c = libdeflater::Compressor::new(
                        libdeflater::CompressionLvl::new(level).expect("level"),
                    );
                    let mut out = vec![0u8; c.gzip_compress_bound(1 << 20)];
                    let mut total = 0;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(p) = pieces.get(i) else {
                            return total;
                        };
                        total += c.gzip_compress(p, &mut out).expect("deflate");
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    })
}

/// How long ext4 without a journal avoids reusing a freed inode: its
/// allocator skips inodes deleted less than 30 s ago (35 s while their
/// inode table block is dirty), scanning past every one of them from the
/// start of the block group on each allocation (`recently_deleted` in
/// `fs/ext4/ialloc.c`). Right after a removed store tree, a cold snapshot's
/// ~26k creates then cost 2–5x more (perf: `find_inode_bit`,
/// `recently_deleted`; 6.9 and 11.9 s instead of 2.6 s here).
const RECENTLY_DELETED: Duration = Duration::from_secs(36);

/// Waits, before a cold snapshot into a store, until the trees this
/// benchmark removed are past [`RECENTLY_DELETED`]: the benchmark's own
/// clean-up must not slow the next measurement (the anchor creates no inodes
/// and would not pay it).
fn settle(removed: &mut Option<Instant>) {
    if let Some(t) = removed.take()
        && let Some(left) = RECENTLY_DELETED.checked_sub(t.elapsed())
    {
        std::thread::sleep(left);
    }
}

fn remove_store(p: &Path) -> std::io::Result<()> {
    let _ = Command::new("chmod").arg("-R").arg("u+w").arg(p).status();
    std::fs::remove_dir_all(p)
}

/// One measurement: wall time and CPU time.
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

#[derive(Default)]
struct Samples(Vec<Sample>);

impl Samples {
    fn push(&mut self, s: Sample) {
        self.0.push(s);
    }

    fn stats(&self) -> Stats {
        let mut wall: Vec<Duration> = self.0.iter().map(|s| s.wall).collect();
        let mut cpu: Vec<Duration> = self.0.iter().map(|s| s.cpu).collect();
        wall.sort();
        cpu.sort();
        Stats {
            best: wall[0],
            median: wall[wall.len() / 2],
            cpu: cpu[cpu.len() / 2],
            least_cpu: cpu[0],
        }
    }
}

struct Stats {
    best: Duration,
    median: Duration,
    /// Median CPU time (user + system).
    cpu: Duration,
    /// The least CPU time of the rounds (for floors: a round slowed by
    /// something else must not raise a lower bound).
    least_cpu: Duration,
}

/// User + system CPU time from `/proc/self/stat`: (this process, all its
/// threads; its waited-for children), in clock ticks.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // fields after the parenthesized command name; utime is field 14 overall
    let rest = stat.rsplit(')').next().expect("stat format");
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // f[0] is ppid (field 4): utime = field 14 -> f[10], stime f[11], cutime f[12], cstime f[13]
    (f[10] + f[11], f[12] + f[13])
}

fn ticks(t: u64) -> Duration {
    // USER_HZ is 100 on Linux
    Duration::from_millis(t * 10)
}

fn measure_self(f: impl FnOnce()) -> Sample {
    let (c0, _) = cpu_ticks();
    let t = Instant::now();
    f();
    let wall = t.elapsed();
    let (c1, _) = cpu_ticks();
    Sample {
        wall,
        cpu: ticks(c1 - c0),
    }
}

fn measure_children(f: impl FnOnce()) -> Sample {
    let (_, c0) = cpu_ticks();
    let t = Instant::now();
    f();
    let wall = t.elapsed();
    let (_, c1) = cpu_ticks();
    Sample {
        wall,
        cpu: ticks(c1 - c0),
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn row(name: &str, s: &Stats, anchor: &Stats) {
    println!(
        "{:<58} {:>7.3}s {:>7.3}s {:>7.3}s {:>6.1}x {:>8.2}x",
        name,
        s.best.as_secs_f64(),
        s.median.as_secs_f64(),
        s.cpu.as_secs_f64(),
        anchor.median.as_secs_f64() / s.median.as_secs_f64(),
        anchor.cpu.as_secs_f64() / s.cpu.as_secs_f64().max(0.01)
    );
}

fn tree_size(dir: &Path) -> (u64, u64) {
    let entries = cloister_inputs::walk::walk(dir).expect("walk");
    cloister_inputs::snapshot::totals(&entries)
}
