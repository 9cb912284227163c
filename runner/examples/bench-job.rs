//! Benchmark (a program, not a test): control-plane overhead per job for
//! repo A with a warm store, beside the bare build time, in the same run.
//!
//! ```sh
//! cargo build --release -p cloister-runner -p cloister-attestor
//! cargo run --release -p cloister-runner --example bench-job [-- ROUNDS]
//! ```
//!
//! It starts `cloister-attestor serve` and `cloister-runner serve` from
//! the release directory it was built into (`target/<host triple>/release/`),
//! makes repo A a git repository, runs one warm-up job
//! (fills the store), then alternates, ROUNDS times (default 7):
//! - ours: one job through the daemon (`startedAt` → `finishedAt`: source
//!   checkout, snapshot, sandbox setup, the build, output hashing, signing);
//! - anchor: the bare build, `cargo build --release --frozen --offline` in a
//!   fresh copy of the same commit, no sandbox, no daemon.
//!
//! Overhead = job − bare build (medians), printed with the ratio and the
//! per-step medians read from the job logs' timestamps.

use cloister_runner::binaries;
use cloister_runner::stack::{self, Stack, StackOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn parse_ts(ts: &str) -> f64 {
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .expect("rfc3339");
    t.unix_timestamp_nanos() as f64 / 1e9
}

/// Seconds between the first log lines containing `a` and `b`.
fn span(log: &str, a: &str, b: &str) -> f64 {
    let at = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .map(|l| parse_ts(l.split(' ').next().unwrap()))
            .unwrap_or_else(|| panic!("no log line with {needle:?}"))
    };
    at(b) - at(a)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    let exe = std::env::current_exe().unwrap();
    // target/<triple>/release/examples/bench-job
    let bin_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let runner_bin = bin_dir.join(binaries::FRONT_BINARY);
    let attestor_bin = bin_dir.join("cloister-attestor");
    // The front hands `serve` to the full binary beside it.
    for b in [
        &runner_bin,
        &bin_dir.join(binaries::FULL_BINARY),
        &attestor_bin,
    ] {
        assert!(
            b.is_file(),
            "{} missing: cargo build --release -p cloister-runner -p cloister-attestor",
            b.display()
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("bench-job-")
        .tempdir()
        .unwrap();
    let d = dir.path();
    let fixture = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/repo-a"
    ));
    let repo = d.join("repo-a");
    stack::copy_tree(&fixture, &repo, &["target", ".git"]).unwrap();
    let commit = stack::commit_all(&repo, "repo A").unwrap();
    // The store the test suites share (target/tmp/cloister-store): the Rust
    // toolchain is copied into it once; this run's daemon takes the warm path.
    // The outermost directory cargo tagged: target/, not target/<triple>/.
    let target = bin_dir
        .ancestors()
        .filter(|d| d.join("CACHEDIR.TAG").is_file())
        .last()
        .expect("the cargo target directory above the binaries");
    let store = target.join("tmp/cloister-store");
    eprintln!("starting both daemons (store {}) …", store.display());
    let daemons = Stack::start(
        &d.join("stack"),
        &StackOptions {
            runner_bin,
            attestor_bin,
            concurrency: 1,
            shutdown_grace_secs: 30,
            store: Some(store),
            toolchains: BTreeMap::from([("rust".into(), stack::rust_sysroot().unwrap())]),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let spec = serde_json::json!({
        "source": {"path": repo, "commit": commit, "uri": "git+https://github.com/cloister-dev/repo-a", "ref": "refs/heads/main"},
        "vendor": [{"path": "vendor"}],
        "toolchains": ["rust"],
        "command": ["cargo", "build", "--release", "--frozen", "--offline"],
        "outputs": ["target/release/repo-a"],
    });
    let ep = daemons.endpoint();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let run_job = || -> (f64, f64, String) {
        rt.block_on(async {
            let job = stack::submit_job(&ep, &spec).await.unwrap();
            let id = job["id"].as_str().unwrap();
            let poll = Duration::from_millis(5);
            let job = stack::wait_job(&ep, id, poll, Duration::from_secs(3600))
                .await
                .unwrap();
            assert_eq!(job["state"], "succeeded", "job failed: {job}");
            let total = parse_ts(job["finishedAt"].as_str().unwrap())
                - parse_ts(job["startedAt"].as_str().unwrap());
            let sandbox_ms = job["result"]["sandbox"]["wallMs"].as_f64().unwrap();
            let log = stack::job_log(&ep, id).await.unwrap();
            (total, sandbox_ms / 1000.0, log)
        })
    };
    let bare = |i: usize| -> f64 {
        let copy = d.join(format!("bare-{i}"));
        stack::copy_tree(&repo, &copy, &["target", ".git"]).unwrap();
        let t = Instant::now();
        let out = Command::new("cargo")
            .current_dir(&copy)
            .args(["build", "--release", "--frozen", "--offline", "--quiet"])
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .output()
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "bare build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_dir_all(&copy).unwrap();
        secs
    };

    eprintln!("warm-up (fills the store) …");
    run_job();
    bare(usize::MAX);
    let (mut jobs, mut bares, mut inside) = (Vec::new(), Vec::new(), Vec::new());
    let (mut checkout, mut snapshot, mut collect, mut attest) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        let (total, sandbox, log) = run_job();
        let b = bare(i);
        eprintln!("round {}: job {:.3}s, bare build {:.3}s", i + 1, total, b);
        jobs.push(total);
        bares.push(b);
        inside.push(sandbox);
        checkout.push(span(&log, ": source ", "source checked out"));
        snapshot.push(span(&log, "source checked out", "vendor vendor"));
        collect.push(span(&log, "build command exited 0", "build finished;"));
        attest.push(total - span(&log, ": source ", "build finished;"));
    }
    drop(daemons);

    let (job, bare_m) = (median(jobs), median(bares));
    let overhead = job - bare_m;
    println!("repo A, warm store, {rounds} rounds (medians, same run):");
    println!("  job through the daemon (ours):   {:>8.1} ms", job * 1e3);
    println!(
        "  bare build (anchor):             {:>8.1} ms",
        bare_m * 1e3
    );
    println!(
        "  control-plane overhead per job:  {:>8.1} ms  (target < 300 ms)",
        overhead * 1e3
    );
    println!("  ratio job / bare build:          {:>8.3}", job / bare_m);
    println!(
        "  breakdown: checkout {:.1} ms, vendor snapshot {:.1} ms, outputs {:.1} ms, log close + signing {:.1} ms, sandbox wall {:.1} ms",
        median(checkout) * 1e3,
        median(snapshot) * 1e3,
        median(collect) * 1e3,
        median(attest) * 1e3,
        median(inside) * 1e3
    );
}
