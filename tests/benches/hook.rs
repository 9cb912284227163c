//! Container-hook benchmark (a program, not a test):
//!
//! ```sh
//! cargo run --release -p cloister-tests --bin bench-hook
//! ```
//!
//! Per-step overhead of the GitHub Actions container hooks, as the runner
//! pays it: `prepare_job`, `run_script_step` of a `true` step and
//! `cleanup_job`, each from the JSON request through the shipped entry
//! script (`bash --noprofile --norc -e -o pipefail ENTRY.sh`, as the runner
//! starts it) to the exit (and the response file), against the anchor: a
//! bare sandbox start on the same image (`cloister-runner run --image
//! DIGEST -- true`). Runs alternate between the two; medians are printed
//! side by side with the ratio, the run step alone, and the load average
//! (the machine is shared: compare ratios, not absolute figures).
//!
//! Environment: `BENCH_RUNS` (rounds, default 100). Needs root (or user
//! namespaces) and busybox-static, like the hook tests.
#![forbid(unsafe_code)]

use cloister_tests::hook::RunnerHost;
use cloister_tests::workspace_root;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Builds `cloister-runner` (front and full) in this benchmark's profile;
/// returns the front's path.
fn build_runner() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("the profile directory").to_path_buf();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root()).args([
        "build",
        "--quiet",
        "-p",
        "cloister-runner",
        "--bin",
        "cloister-runner",
        "--bin",
        "cloister-runner-full",
    ]);
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
    let front = dir.join("cloister-runner");
    if !ok || !front.exists() {
        eprintln!(
            "bench-hook: building cloister-runner failed ({})",
            front.display()
        );
        std::process::exit(1);
    }
    front
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let runner = build_runner();
    let host = RunnerHost::with_runner(&runner);
    let check = |what: &str, ok: bool, out: &std::process::Output| {
        if !ok {
            eprintln!(
                "bench-hook: {what} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::process::exit(1);
        }
    };
    let mut step = host.request("run-script-step", &json!({}), "unused");
    step["args"]["entryPoint"] = json!("true");
    step["args"]["entryPointArgs"] = json!([]);
    let prepare = host.request("prepare-job", &json!({}), "");

    let (mut hook_total, mut hook_run, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    let (mut hook_prepare, mut hook_cleanup, mut shell) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..runs + 3 {
        // The anchor: a bare sandbox on the same image.
        let t = Instant::now();
        let out = Command::new(&runner)
            .args(["run", "--store"])
            .arg(&host.store)
            .args(["--image", &host.image, "--", "true"])
            .output()
            .unwrap();
        let bare_t = t.elapsed();
        check("bare sandbox", out.status.success(), &out);

        // The floor of any hook call: the runner's bash starting a script.
        let t = Instant::now();
        let out = Command::new("bash")
            .args([
                "--noprofile",
                "--norc",
                "-e",
                "-o",
                "pipefail",
                "-c",
                "exit 0",
            ])
            .output()
            .unwrap();
        let shell_t = t.elapsed();
        check("bash", out.status.success(), &out);

        // Ours: prepare + run + cleanup through the entry script.
        let t = Instant::now();
        let (out, response) = host.drive(&prepare, &[]);
        let prepare_t = t.elapsed();
        check("prepare_job", out.status.success(), &out);
        let state = serde_json::from_str::<serde_json::Value>(&response).unwrap()["state"].clone();
        let mut req = step.clone();
        req["state"] = state.clone();
        let t_run = Instant::now();
        let (out, _) = host.drive(&req, &[]);
        let run_t = t_run.elapsed();
        check("run_script_step", out.status.success(), &out);
        let mut cleanup = host.request("cleanup-job", &state, "");
        cleanup["state"] = state;
        let t_cleanup = Instant::now();
        let (out, _) = host.drive(&cleanup, &[]);
        let cleanup_t = t_cleanup.elapsed();
        check("cleanup_job", out.status.success(), &out);
        let total_t = t.elapsed();
        if round >= 3 {
            // The first rounds warm caches.
            bare.push(bare_t);
            hook_total.push(total_t);
            hook_run.push(run_t);
            hook_prepare.push(prepare_t);
            hook_cleanup.push(cleanup_t);
            shell.push(shell_t);
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let (b, h, r) = (
        median(&mut bare),
        median(&mut hook_total),
        median(&mut hook_run),
    );
    println!(
        "container hooks, {runs} alternating rounds (medians), load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "  bare sandbox start (run --image, true)        {:8.2} ms",
        ms(b)
    );
    let line = |what: &str, d: Duration| println!("  {what:<45} {:8.2} ms", ms(d));
    line(
        "bash starting a script (each call's floor)",
        median(&mut shell),
    );
    line("hook: prepare_job", median(&mut hook_prepare));
    line("hook: cleanup_job", median(&mut hook_cleanup));
    println!(
        "  hook: run_script_step of `true`               {:8.2} ms   ratio to bare {:.2}",
        ms(r),
        ms(r) / ms(b)
    );
    println!(
        "  hook: prepare_job + run + cleanup_job          {:8.2} ms   ratio to bare {:.2}",
        ms(h),
        ms(h) / ms(b)
    );
    println!(
        "  per-step overhead over a bare start           {:8.2} ms   (target: whole cycle under 50 ms: {})",
        ms(h) - ms(b),
        if ms(h) < 50.0 { "met" } else { "NOT met" }
    );
}
