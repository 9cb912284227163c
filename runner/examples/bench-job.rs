//! Benchmark (a program, not a test): control-plane overhead per job for
//! repo A with a warm store, beside the bare build time, in the same run.
//!
//! ```sh
//! cargo build --release -p cloister-runner -p cloister-attestor
//! cargo run --release -p cloister-runner --example bench-job [-- ROUNDS]
//! ```
//!
//! It starts `cloister-attestor serve` and `cloister-runner serve` from
//! `target/release/`, makes repo A a git repository, runs one warm-up job
//! (fills the store), then alternates, ROUNDS times (default 7):
//! - ours: one job through the daemon (`startedAt` → `finishedAt`: source
//!   checkout, snapshot, sandbox setup, the build, output hashing, signing);
//! - anchor: the bare build, `cargo build --release --frozen --offline` in a
//!   fresh copy of the same commit, no sandbox, no daemon.
//!
//! Overhead = job − bare build (medians), printed with the ratio and the
//! per-step medians read from the job logs' timestamps.

use cloister_runner::client::Endpoint;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@cloister.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let ty = e.file_type().unwrap();
        if ty.is_dir() && e.file_name() != "target" && e.file_name() != ".git" {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else if ty.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn wait_socket(child: &mut Child, socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "daemon exited early");
        assert!(
            Instant::now() < deadline,
            "{} never opened",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
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
    let bin_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf(); // target/<profile>
    let runner_bin = bin_dir.join("cloister-runner");
    let attestor_bin = bin_dir.join("cloister-attestor");
    for b in [&runner_bin, &attestor_bin] {
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
    copy_tree(&fixture, &repo);
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "repo A"]);
    let commit = git(&repo, &["rev-parse", "HEAD"]);
    let sysroot = String::from_utf8(
        Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();

    let att_state = d.join("attestor");
    let mut attestor = Command::new(&attestor_bin)
        .args(["serve", "--state-dir"])
        .arg(&att_state)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_socket(&mut attestor, &att_state.join("sign.sock"));
    let config = d.join("runner.toml");
    let api = d.join("api.sock");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\nattestor_socket = {:?}\nconcurrency = 1\n[api]\nsocket = {:?}\n[toolchains]\nrust = {sysroot:?}\n",
            d.join("runner").display().to_string(),
            att_state.join("sign.sock").display().to_string(),
            api.display().to_string()
        ),
    )
    .unwrap();
    let mut runner = Command::new(&runner_bin)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_socket(&mut runner, &api);

    let spec = serde_json::json!({
        "source": {"path": repo, "commit": commit, "uri": "git+https://github.com/cloister-dev/repo-a", "ref": "refs/heads/main"},
        "vendor": [{"path": "vendor"}],
        "toolchains": ["rust"],
        "command": ["cargo", "build", "--release", "--frozen", "--offline"],
        "outputs": ["target/release/repo-a"],
    });
    let ep = Endpoint::Unix(api);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let run_job = || -> (f64, f64, String) {
        rt.block_on(async {
            let job: serde_json::Value = ep
                .json(
                    hyper::Method::POST,
                    "/v1/jobs",
                    Some(spec.to_string().into_bytes()),
                )
                .await
                .unwrap();
            let id = job["id"].as_str().unwrap().to_string();
            loop {
                let job: serde_json::Value = ep
                    .json(hyper::Method::GET, &format!("/v1/jobs/{id}"), None)
                    .await
                    .unwrap();
                match job["state"].as_str().unwrap() {
                    "succeeded" => {
                        let total = parse_ts(job["finishedAt"].as_str().unwrap())
                            - parse_ts(job["startedAt"].as_str().unwrap());
                        let sandbox_ms = job["result"]["sandbox"]["wallMs"].as_f64().unwrap();
                        let log = ep
                            .call(hyper::Method::GET, &format!("/v1/jobs/{id}/logs"), None)
                            .await
                            .unwrap();
                        return (
                            total,
                            sandbox_ms / 1000.0,
                            String::from_utf8_lossy(&log).into_owned(),
                        );
                    }
                    "failed" | "cancelled" => panic!("job failed: {job}"),
                    _ => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        })
    };
    let bare = |i: usize| -> f64 {
        let copy = d.join(format!("bare-{i}"));
        copy_tree(&repo, &copy);
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
    let _ = Command::new("kill")
        .args(["-TERM", &runner.id().to_string()])
        .status();
    let _ = runner.wait();
    let _ = attestor.kill();
    let _ = attestor.wait();

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
