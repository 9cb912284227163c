//! Sandbox benchmark (a program, not a test):
//!
//! ```sh
//! cargo run --release -p cloister-tests --bin bench-sandbox
//! ```
//!
//! In one run it measures, and prints side by side with the ratio:
//! 1. start-up: `cloister-runner run -- /bin/true` (profile, seccomp and a
//!    cgroup with the default pid limit included) against
//!    `bwrap --unshare-all --die-with-parent --new-session --cap-drop ALL`
//!    with comparable mounts: medians of wall time and of CPU time (the
//!    whole process tree's) over runs alternating between the two, then
//!    hyperfine's wall-time medians of the same two commands (run one after
//!    the other) as a cross-check;
//! 2. how many of the probe suite's checks each blocks;
//! 3. a real offline build (`tests/fixtures/repo-a`, a Rust crate with
//!    vendored dependencies: `cargo build --release --frozen --offline`)
//!    inside the sandbox against the same build on the host (medians of
//!    alternating fresh builds).
//!
//! Environment: `BENCH_RUNS` (start-up runs, default 200), `BENCH_BUILDS`
//! (builds per side, default 11: one build varies by ±5% from run to run
//! here), `BENCH_ONLY=startup` (skip 2 and 3). Needs
//! bubblewrap and hyperfine (`.ci/setup.d/10-sandbox.sh` installs both) and a
//! Rust toolchain.
#![forbid(unsafe_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, String>;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn need(tool: &str) -> Result<()> {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{tool} is not installed (apt-get install {}; see .ci/setup.d/10-sandbox.sh)",
            if tool == "bwrap" { "bubblewrap" } else { tool }
        ))
    }
}

/// Builds the release binaries this benchmark drives and returns their dir.
fn build_binaries() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "cloister-runner",
            "-p",
            "cloister-tests",
            "--bin",
            "cloister-runner",
            "--bin",
            "cloister-probe",
        ])
        .status()
        .map_err(|e| format!("run cargo: {e}"))?;
    if !status.success() {
        return Err("cargo build --release failed".into());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    Ok(exe.parent().expect("target/release").to_path_buf())
}

fn bwrap_base() -> Vec<String> {
    let mut v: Vec<&str> = vec![
        "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/sbin",
        "/sbin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--hostname",
        "cloister",
    ];
    if Path::new("/etc/alternatives").exists() {
        v.extend(["--ro-bind", "/etc/alternatives", "/etc/alternatives"]);
    }
    v.into_iter().map(str::to_string).collect()
}

fn quote(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-_.:=".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Children's CPU time (user + system) so far.
fn children_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(u.user_time()) + tv(u.system_time())
}

/// One timed start-up: spawn, wait; wall time and the CPU time of the whole
/// process tree (every process of a run is waited for by its parent, so the
/// runner's children's time includes the sandbox's). Output goes to
/// /dev/null.
fn time_once(argv: &[String]) -> Result<(Duration, Duration)> {
    let cpu0 = children_cpu();
    let start = Instant::now();
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("run {}: {e}", argv[0]))?;
    let took = start.elapsed();
    let cpu = children_cpu() - cpu0;
    if !status.success() {
        return Err(format!("{} failed ({status})", quote(argv)));
    }
    Ok((took, cpu))
}

/// Start-up medians (ms) of ours and bubblewrap, wall and CPU time,
/// measured alternately (ours, bwrap, bwrap, ours, ...) so that a noisy
/// machine weighs on both alike.
struct Startup {
    ours_wall: f64,
    bwrap_wall: f64,
    ours_cpu: f64,
    bwrap_cpu: f64,
}

/// The two start-up commands compared: `/bin/true` in our sandbox and in
/// bubblewrap's.
fn startup_commands(bin: &Path) -> (Vec<String>, Vec<String>) {
    let ours = vec![
        bin.join("cloister-runner").display().to_string(),
        "run".into(),
        "--".into(),
        "/bin/true".into(),
    ];
    let mut bwrap = bwrap_base();
    bwrap.push("/bin/true".into());
    (ours, bwrap)
}

fn startup(bin: &Path, runs: u32) -> Result<Startup> {
    let (ours, bwrap) = startup_commands(bin);
    for _ in 0..10 {
        time_once(&ours)?;
        time_once(&bwrap)?;
    }
    let (mut ow, mut oc, mut bw, mut bc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let mut one = |ours_turn: bool| -> Result<()> {
            if ours_turn {
                let (w, c) = time_once(&ours)?;
                ow.push(w);
                oc.push(c);
            } else {
                let (w, c) = time_once(&bwrap)?;
                bw.push(w);
                bc.push(c);
            }
            Ok(())
        };
        one(i % 2 == 0)?;
        one(i % 2 == 1)?;
    }
    Ok(Startup {
        ours_wall: median_ms(&mut ow),
        bwrap_wall: median_ms(&mut bw),
        ours_cpu: median_ms(&mut oc),
        bwrap_cpu: median_ms(&mut bc),
    })
}

/// The same comparison timed by hyperfine (its medians; ours first).
fn startup_hyperfine(bin: &Path, runs: u32) -> Result<(f64, f64)> {
    let (ours, bwrap) = startup_commands(bin);
    let json = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let status = Command::new("hyperfine")
        .args([
            "-N",
            "--warmup",
            "10",
            "--runs",
            &runs.to_string(),
            "--style",
            "basic",
        ])
        .arg("--export-json")
        .arg(json.path())
        .args(["-n", "cloister-runner run", &quote(&ours)])
        .args(["-n", "bwrap --unshare-all", &quote(&bwrap)])
        .status()
        .map_err(|e| format!("run hyperfine: {e}"))?;
    if !status.success() {
        return Err("hyperfine failed".into());
    }
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(json.path()).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let median = |i: usize| v["results"][i]["median"].as_f64().unwrap_or(f64::NAN) * 1000.0;
    Ok((median(0), median(1)))
}

fn probe_coverage(bin: &Path) -> Result<((usize, usize), (usize, usize))> {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let probe = bin.join("cloister-probe").display().to_string();
    let probe_args = [
        "suite".to_string(),
        "--tcp".into(),
        format!("127.0.0.1:{port}"),
        "--host-file".into(),
        "/etc/shadow".into(),
    ];
    let count = |out: std::process::Output| -> Result<(usize, usize)> {
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "probe output: {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        let checks = v["checks"].as_array().ok_or("no checks")?;
        Ok((
            checks.iter().filter(|c| c["blocked"] == true).count(),
            checks.len(),
        ))
    };
    // Both get the same leaked fd (7) from their caller.
    let leak = "exec 7</etc/hostname; exec \"$@\"";
    let mut ours = Command::new("bash");
    ours.args(["-c", leak, "bash"])
        .arg(bin.join("cloister-runner"))
        .args([
            "run",
            "--ro-bind",
            &format!("{probe}:/probe/cloister-probe"),
            "--",
        ])
        .arg("/probe/cloister-probe")
        .args(&probe_args);
    let mut bwrap = Command::new("bash");
    bwrap
        .args(["-c", leak, "bash"])
        .args(bwrap_base())
        .args([
            "--ro-bind",
            &probe,
            "/probe/cloister-probe",
            "/probe/cloister-probe",
        ])
        .args(&probe_args);
    let ours = count(ours.output().map_err(|e| e.to_string())?)?;
    let bwrap = count(bwrap.output().map_err(|e| e.to_string())?)?;
    Ok((ours, bwrap))
}

fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    let status = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cp -a {} failed", src.display()))
    }
}

fn real_build(bin: &Path, builds: u32) -> Result<(f64, f64)> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("rustc: {e}"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    let fixture = workspace_root().join("tests/fixtures/repo-a");
    let mut bare = Vec::new();
    let mut sandboxed = Vec::new();
    // Two untimed builds first (one each way) so neither side pays for a
    // cold page cache.
    for i in 0..builds * 2 + 2 {
        let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
        let src = scratch.path().join("repo-a");
        copy_dir(&fixture, &src)?;
        let in_sandbox = i % 2 == 1;
        let mut cmd = if in_sandbox {
            let mut c = Command::new(bin.join("cloister-runner"));
            c.args(["run", "--ro-bind", &format!("{sysroot}:/toolchain")])
                .args(["--bind", &format!("{}:/src", src.display())])
                .args(["--workdir", "/src"])
                .args(["--env", "PATH=/toolchain/bin:/usr/bin:/bin"])
                .args(["--env", "CARGO_HOME=/tmp/cargo-home", "--"]);
            c.arg("cargo");
            c
        } else {
            let mut c = Command::new(format!("{sysroot}/bin/cargo"));
            c.current_dir(&src)
                .env_clear()
                .env("PATH", format!("{sysroot}/bin:/usr/bin:/bin"))
                .env("HOME", scratch.path())
                .env("CARGO_HOME", scratch.path().join("cargo-home"))
                .env("LANG", "C.UTF-8");
            c
        };
        cmd.args(["build", "--release", "--frozen", "--offline", "--quiet"]);
        let start = Instant::now();
        let status = cmd.status().map_err(|e| e.to_string())?;
        let took = start.elapsed();
        if !status.success() {
            return Err(format!(
                "{} build failed ({status})",
                if in_sandbox { "sandboxed" } else { "bare" }
            ));
        }
        if !src.join("target/release/repo-a").exists() {
            return Err("the build produced no artifact".into());
        }
        if i < 2 {
            continue;
        }
        if in_sandbox {
            sandboxed.push(took);
        } else {
            bare.push(took);
        }
    }
    Ok((median_ms(&mut sandboxed), median_ms(&mut bare)))
}

fn median_ms(v: &mut [Duration]) -> f64 {
    v.sort();
    let n = v.len();
    let m = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    };
    m.as_secs_f64() * 1000.0
}

fn run() -> Result<()> {
    need("bwrap")?;
    need("hyperfine")?;
    let runs: u32 = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let builds: u32 = std::env::var("BENCH_BUILDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11);
    // BENCH_ONLY=startup skips the probe coverage and the real build.
    let startup_only = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "startup");
    let bin = build_binaries()?;
    println!(
        "== sandbox start-up ({runs} runs each, alternating; load average {})",
        loadavg()
    );
    let st = startup(&bin, runs)?;
    let load_after = loadavg();
    println!("== the same, timed by hyperfine (sequential)");
    let (h_ours, h_bwrap) = startup_hyperfine(&bin, runs)?;
    let coverage_and_build = if startup_only {
        None
    } else {
        println!("\n== probe suite coverage");
        let coverage = probe_coverage(&bin)?;
        println!(
            "== real build: tests/fixtures/repo-a, cargo build --release --frozen --offline ({builds} each, alternating)"
        );
        Some((coverage, real_build(&bin, builds)?))
    };
    println!();
    println!(
        "start-up median wall (alternating)   cloister-runner run: {:8.2} ms   bwrap: {:8.2} ms   ratio ours/bwrap: {:.2}",
        st.ours_wall,
        st.bwrap_wall,
        st.ours_wall / st.bwrap_wall
    );
    println!(
        "start-up median CPU  (alternating)   cloister-runner run: {:8.2} ms   bwrap: {:8.2} ms   ratio ours/bwrap: {:.2}   (load average after: {load_after})",
        st.ours_cpu,
        st.bwrap_cpu,
        st.ours_cpu / st.bwrap_cpu
    );
    println!(
        "start-up median wall (hyperfine)     cloister-runner run: {h_ours:8.2} ms   bwrap: {h_bwrap:8.2} ms   ratio ours/bwrap: {:.2}",
        h_ours / h_bwrap
    );
    if let Some((((ob, ot), (bb, bt)), (inside, outside))) = coverage_and_build {
        println!(
            "probe checks blocked   cloister-runner: {ob}/{ot} ({:.0}%)   bwrap: {bb}/{bt} ({:.0}%)",
            100.0 * ob as f64 / ot as f64,
            100.0 * bb as f64 / bt as f64
        );
        println!(
            "real build median   sandboxed: {inside:8.0} ms   bare: {outside:8.0} ms   ratio: {:.3} ({:+.1}%)",
            inside / outside,
            100.0 * (inside / outside - 1.0)
        );
    }
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench-sandbox: {e}");
        std::process::exit(1);
    }
}
