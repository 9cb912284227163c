//! Benchmark: our sign / verify / hash rates beside `openssl speed` from
//! the same run, single-threaded (per core), with ratios.
//!
//! ```sh
//! cargo run --release -p cloister-attestor-core --example bench-attest [-- SECONDS_PER_FIGURE [ROUNDS]]
//! ```
//! - sign: `attest::sign_statement` on a full Cloister provenance statement
//!   (serialize, PAE, ECDSA P-256 / Ed25519, envelope + bundle), against
//!   `openssl speed ecdsap256 ed25519` raw signs;
//! - verify: `verify::verify` on a `.intoto.jsonl` line (strict JSON with
//!   duplicate-key checks, base64, PAE, signature, statement parse, policy),
//!   against openssl's raw verifies;
//! - hash: subject hashing (`Sha256Hasher`, 1 MiB chunks of a 256 MiB
//!   buffer), against `openssl speed -evp sha256` at 16 KiB blocks; and a
//!   subject hashed from a file as `cloister-attestor verify --artifact`
//!   does (`read` into a 1 MiB buffer, `Sha256Hasher`; a 256 MiB file in the
//!   page cache), against `openssl dgst -sha256 FILE` on the same file (CPU
//!   time of the child processes, start-up included); and the `sha2` crate
//!   the runner hashes build outputs with (256 KiB blocks).
//!
//! Targets (issue 4): ≥ 20k P-256 statements/s, ≥ 10k verifies/s, ≥ 1 GB/s;
//! (issue 21) subject hashing ≥ 0.9x openssl.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cpu_time::ThreadTime;

use cloister_attestor_core::digest::Sha256Hasher;
use cloister_attestor_core::keys::{Algorithm, KeyPair, Signer};
use cloister_attestor_core::record::{BuildRecord, to_statement};
use cloister_attestor_core::sign_statement;
use cloister_attestor_core::statement::Statement;
use cloister_attestor_core::verify::{VerifyOptions, VerifyRequest, verify, verify_with};

const RECORD: &str = include_str!("../tests/golden/build-record.json");

/// Runs `f` repeatedly for about `secs` seconds of this thread's CPU time;
/// returns operations per CPU second. CPU time, not wall time, because that
/// is what `openssl speed` reports by default (user CPU time) and what "per
/// core" means on a machine shared with other work.
fn rate(secs: f64, mut f: impl FnMut()) -> f64 {
    // Warm up.
    for _ in 0..50 {
        f();
    }
    let budget = Duration::from_secs_f64(secs);
    let wall_cap = Instant::now();
    let start = ThreadTime::now();
    let mut n = 0u64;
    while start.elapsed() < budget && wall_cap.elapsed() < budget * 20 {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

struct Ours {
    alg: Algorithm,
    sign: f64,
    ver: f64,
    ver_json: f64,
    raw_sign: f64,
    raw_verify: f64,
    len: usize,
}

struct OpensslFigures {
    p256: Option<(f64, f64)>,
    ed25519: Option<(f64, f64)>,
    sha256_16k_bytes_per_s: Option<f64>,
}

fn last_two_floats(line: &str) -> Option<(f64, f64)> {
    let nums: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match nums.as_slice() {
        [.., a, b] => Some((*a, *b)),
        _ => None,
    }
}

fn openssl(secs: u32) -> OpensslFigures {
    let run = |args: &[&str]| -> String {
        match Command::new("openssl").args(args).output() {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            Ok(o) => {
                eprintln!(
                    "openssl {args:?} failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                String::new()
            }
            Err(e) => {
                eprintln!("cannot run openssl: {e}");
                String::new()
            }
        }
    };
    let s = secs.to_string();
    let sig = run(&["speed", "-seconds", &s, "ecdsap256", "ed25519"]);
    let p256 = sig
        .lines()
        .find(|l| l.contains("(nistp256)"))
        .and_then(last_two_floats);
    let ed25519 = sig
        .lines()
        .find(|l| l.contains("(Ed25519)"))
        .and_then(last_two_floats);
    let sha = run(&["speed", "-seconds", &s, "-bytes", "16384", "-evp", "sha256"]);
    // "sha256   1455537.05k": thousands of bytes per second at 16 KiB blocks.
    let sha256_16k_bytes_per_s = sha
        .lines()
        .find(|l| l.starts_with("sha256"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|w| w.trim_end_matches('k').parse::<f64>().ok())
        .map(|k| k * 1000.0);
    OpensslFigures {
        p256,
        ed25519,
        sha256_16k_bytes_per_s,
    }
}

fn row(name: &str, ours: f64, anchor: Option<f64>, unit: &str, target: &str) {
    match anchor {
        Some(a) => println!(
            "{name:<34} {ours:>12.0} {a:>12.0} {:>7.2}  {unit:<12} {target}",
            ours / a
        ),
        None => println!(
            "{name:<34} {ours:>12.0} {:>12} {:>7}  {unit:<12} {target}",
            "n/a", "n/a"
        ),
    }
}

fn measure_ours(
    secs: f64,
    statement: &Statement,
    req: &VerifyRequest,
    keys: &[KeyPair],
) -> Vec<Ours> {
    let mut ours = Vec::new();
    for key in keys {
        let alg = key.algorithm();
        let sign = rate(secs, || {
            std::hint::black_box(sign_statement(statement, key).expect("sign"));
        });
        let line = sign_statement(statement, key).expect("sign").intoto_jsonl();
        let trusted = [key.public_key().clone()];
        assert!(verify(line.as_bytes(), &trusted, req).verified);
        let lean = VerifyOptions {
            include_statement: false,
        };
        let ver = rate(secs, || {
            let v = verify_with(std::hint::black_box(line.as_bytes()), &trusted, req, &lean);
            assert!(v.verified);
        });
        let ver_json = rate(secs, || {
            let v = verify(std::hint::black_box(line.as_bytes()), &trusted, req);
            assert!(v.verified && v.statement.is_some());
        });
        let env = sign_statement(statement, key).expect("sign").envelope;
        let (pae, sig) = (env.pae(), env.signatures[0].sig.clone());
        let raw_sign = rate(secs, || {
            std::hint::black_box(key.sign(&pae).expect("sign"));
        });
        let raw_verify = rate(secs, || assert!(key.public_key().verify(&pae, &sig)));
        ours.push(Ours {
            alg,
            sign,
            ver,
            ver_json,
            raw_sign,
            raw_verify,
            len: line.len(),
        });
    }
    ours
}

fn measure_hash(secs: f64, buf: &[u8]) -> f64 {
    let mut bytes = 0usize;
    let wall_cap = Instant::now();
    let start = ThreadTime::now();
    while start.elapsed() < Duration::from_secs_f64(secs)
        && wall_cap.elapsed() < Duration::from_secs_f64(secs * 20.0)
    {
        let mut h = Sha256Hasher::new();
        for chunk in buf.chunks(1 << 20) {
            h.update(chunk);
        }
        std::hint::black_box(h.finish());
        bytes += buf.len();
    }
    bytes as f64 / start.elapsed().as_secs_f64()
}

/// The same with the `sha2` crate, which the runner uses for the subjects it
/// collects from a build's outputs (SHA-NI detected at run time).
fn measure_hash_sha2(secs: f64, buf: &[u8]) -> f64 {
    use sha2::Digest as _;
    let mut bytes = 0usize;
    let wall_cap = Instant::now();
    let start = ThreadTime::now();
    while start.elapsed() < Duration::from_secs_f64(secs)
        && wall_cap.elapsed() < Duration::from_secs_f64(secs * 20.0)
    {
        let mut h = sha2::Sha256::new();
        for chunk in buf.chunks(256 << 10) {
            h.update(chunk);
        }
        std::hint::black_box(h.finalize());
        bytes += buf.len();
    }
    bytes as f64 / start.elapsed().as_secs_f64()
}

/// Subject hashing from a file, as the attestor's `hash_file` streams it:
/// bytes per CPU second of this thread (the `read`s' kernel time included).
fn measure_hash_file(secs: f64, path: &Path, len: usize) -> f64 {
    let mut bytes = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let wall_cap = Instant::now();
    let start = ThreadTime::now();
    while start.elapsed() < Duration::from_secs_f64(secs)
        && wall_cap.elapsed() < Duration::from_secs_f64(secs * 20.0)
    {
        let mut f = std::fs::File::open(path).expect("open");
        let mut h = Sha256Hasher::new();
        loop {
            let n = f.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        std::hint::black_box(h.finish());
        bytes += len;
    }
    bytes as f64 / start.elapsed().as_secs_f64()
}

/// `openssl dgst -sha256 FILE` run repeatedly for about `secs` seconds of
/// its CPU time: bytes per CPU second (user + system of the children).
fn openssl_dgst(secs: f64, path: &Path, len: usize) -> Option<f64> {
    let reps = ((secs * 2e9 / len as f64).ceil() as u64).max(3);
    let c0 = children_cpu_ticks()?;
    for _ in 0..reps {
        let out = Command::new("openssl")
            .args(["dgst", "-sha256"])
            .arg(path)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "openssl dgst failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
    }
    let ticks = children_cpu_ticks()? - c0;
    // USER_HZ is 100 on Linux
    (ticks > 0).then(|| (reps as f64 * len as f64) / (ticks as f64 / 100.0))
}

/// User + system CPU ticks of this process's waited-for children.
fn children_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit(')').next()?;
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // after the command name: f[0] is field 4 (ppid); cutime is field 16, cstime 17
    Some(f.get(12)? + f.get(13)?)
}

fn best(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn best2(a: Option<(f64, f64)>, b: Option<(f64, f64)>) -> Option<(f64, f64)> {
    match (a, b) {
        (Some(x), Some(y)) => Some((x.0.max(y.0), x.1.max(y.1))),
        (x, None) => x,
        (None, y) => y,
    }
}

/// A temporary file of pseudo-random bytes, removed on drop.
struct SubjectFile {
    path: PathBuf,
    len: usize,
}

impl SubjectFile {
    fn create(len: usize) -> Self {
        let path = std::env::temp_dir().join(format!("bench-attest-{}.bin", std::process::id()));
        let mut f = std::fs::File::create(&path).expect("create subject file");
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..len / block.len() {
            for w in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&block).expect("write subject file");
        }
        SubjectFile { path, len }
    }
}

impl Drop for SubjectFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1.0);
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let record: BuildRecord = serde_json::from_str(RECORD).expect("golden record");
    let statement = to_statement(&record).expect("statement");
    let req = VerifyRequest {
        artifact_digest: "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            .into(),
        source_uri: "github.com/example/repo-a".into(),
        source_versioned_tag: Some("v1.2".into()),
        builder_id: Some("https://cloister.example.com/builders/isolated".into()),
        ..Default::default()
    };
    let keys = [
        KeyPair::generate(Algorithm::EcdsaP256).expect("key"),
        KeyPair::generate(Algorithm::Ed25519).expect("key"),
    ];
    let buf = vec![0x5au8; 256 << 20];
    // The file-hashing subject: varied bytes, in the page cache.
    let file = SubjectFile::create(256 << 20);
    let secs_u = secs.ceil().max(1.0) as u32;

    // Ours and openssl alternate; the best round of each is kept, so a busy
    // machine penalizes neither side more than the other.
    let mut ours: Option<Vec<Ours>> = None;
    let mut hash_rate = 0f64;
    let mut sha2_rate = 0f64;
    let mut file_rate = 0f64;
    let mut dgst_rate: Option<f64> = None;
    let mut anchor = OpensslFigures {
        p256: None,
        ed25519: None,
        sha256_16k_bytes_per_s: None,
    };
    for round in 1..=rounds {
        eprintln!("round {round}/{rounds}…");
        let o = measure_ours(secs, &statement, &req, &keys);
        ours = Some(match ours {
            None => o,
            Some(prev) => prev
                .into_iter()
                .zip(o)
                .map(|(a, b)| Ours {
                    alg: a.alg,
                    sign: a.sign.max(b.sign),
                    ver: a.ver.max(b.ver),
                    ver_json: a.ver_json.max(b.ver_json),
                    raw_sign: a.raw_sign.max(b.raw_sign),
                    raw_verify: a.raw_verify.max(b.raw_verify),
                    len: a.len,
                })
                .collect(),
        });
        hash_rate = hash_rate.max(measure_hash(secs, &buf));
        sha2_rate = sha2_rate.max(measure_hash_sha2(secs, &buf));
        file_rate = file_rate.max(measure_hash_file(secs, &file.path, file.len));
        dgst_rate = best(dgst_rate, openssl_dgst(secs, &file.path, file.len));
        let a = openssl(secs_u);
        anchor = OpensslFigures {
            p256: best2(anchor.p256, a.p256),
            ed25519: best2(anchor.ed25519, a.ed25519),
            sha256_16k_bytes_per_s: best(anchor.sha256_16k_bytes_per_s, a.sha256_16k_bytes_per_s),
        };
    }
    let ours = ours.expect("at least one round");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    println!(
        "cloister-attestor-core benchmark: 1 thread, rates per CPU second (as `openssl speed` reports), best of {rounds} rounds of {secs}s CPU, ours and openssl alternating"
    );
    println!(
        "load average at the end: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<38} {:>10} {:>10} {:>7}  {:<11} target",
        "operation", "ours", "openssl", "ratio", "unit"
    );
    for o in &ours {
        let (a_sign, a_ver) = match o.alg {
            Algorithm::EcdsaP256 => (anchor.p256.map(|p| p.0), anchor.p256.map(|p| p.1)),
            Algorithm::Ed25519 => (anchor.ed25519.map(|p| p.0), anchor.ed25519.map(|p| p.1)),
        };
        let (st, vt) = match o.alg {
            Algorithm::EcdsaP256 => (">= 20000/s", ">= 10000/s"),
            Algorithm::Ed25519 => ("-", "-"),
        };
        let alg = o.alg;
        row(
            &format!("sign statement ({alg})"),
            o.sign,
            a_sign,
            "per second",
            st,
        );
        row(
            &format!("verify envelope ({alg}, {} B)", o.len),
            o.ver,
            a_ver,
            "per second",
            vt,
        );
        row(
            &format!("  + statement as JSON ({alg})"),
            o.ver_json,
            a_ver,
            "per second",
            "-",
        );
        row(
            &format!("  raw aws-lc sign ({alg})"),
            o.raw_sign,
            a_sign,
            "per second",
            "-",
        );
        row(
            &format!("  raw aws-lc verify ({alg})"),
            o.raw_verify,
            a_ver,
            "per second",
            "-",
        );
    }
    let mb = |x: f64| x / 1e6;
    row(
        "sha256 subject hashing",
        mb(hash_rate),
        anchor.sha256_16k_bytes_per_s.map(mb),
        "MB/s",
        ">= 0.9x openssl",
    );
    row(
        "  sha2 crate (runner's outputs)",
        mb(sha2_rate),
        anchor.sha256_16k_bytes_per_s.map(mb),
        "MB/s",
        ">= 0.9x openssl",
    );
    row(
        "sha256 of a subject file (256 MiB)",
        mb(file_rate),
        dgst_rate.map(mb),
        "MB/s",
        ">= 0.9x openssl dgst",
    );
    println!(
        "(openssl column: raw signs/verifies per second, sha256 at 16 KiB blocks, and `openssl dgst -sha256 FILE` for the file; ours: whole operations)"
    );
}
