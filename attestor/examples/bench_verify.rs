//! Benchmark: `POST /v1/verify` throughput and latency of the attestor
//! (SQLite backend, `synchronous=FULL`, every request metered with its own
//! Idempotency-Key and committed before its answer) against a trivial axum
//! handler on the same route, in the same process, same tokio runtime, same
//! run, driven by the same load generator on loopback with one thread.
//!
//! ```sh
//! cargo run --release -p cloister-attestor --example bench-verify -- \
//!     [--seconds 5] [--connections 64] [--rounds 5] [--workers 2] [--only off|miss|hit] \
//!     [--load-generator ours|wrk]
//! ```
//!
//! Load generators (both closed-loop, keep-alive, one thread, the same
//! requests: the same bodies in the same order, the same headers, a new
//! Idempotency-Key per request):
//! - `ours` (the default): this program re-run as a child process; each
//!   distinct body is laid out with its headers once, a request costs one
//!   copy, one write and its reads. It costs about half of wrk's CPU per
//!   request, and the generator shares the machine's two cores with the
//!   server, so what it saves goes to the server;
//! - `wrk` (Debian's package): a Lua script formats every request.
//!
//! Three scenarios, each a fresh server:
//! - `off`: verdict cache off, every request verified from scratch, and
//!   every request carries a different provenance (the headline figure);
//! - `miss`: verdict cache on, a different provenance per request (the
//!   requests cycle through more distinct envelopes than the cache holds,
//!   so every lookup misses: what the cache costs when it does not help);
//! - `hit`: verdict cache on, the same provenance in every request (many
//!   consumers checking one release; labelled as such, never the headline).
//!
//! The floors, each a bare axum handler on the same runtime, driven the
//! same way, with no API key, rate limit or verdict cache:
//! - `floor` (scenarios with a different provenance per request): parse the
//!   body and run the shared verification (`verify_with`, the same call the
//!   service makes), then answer. What any server that checks each
//!   request's signature costs here;
//! - `floor+m` (the same scenarios): `floor`, then the durable usage commit
//!   (the event, its idempotency record and the response to replay, through
//!   a service's group-committing meter on SQLite with `synchronous=FULL`),
//!   then answer. What verification plus exactly-once metering cost: the
//!   bound for the service, whose remaining cost is auth, the idempotency
//!   header, the verdict's JSON and the HTTP middleware;
//! - `meter` (the cache-hit scenario): the durable usage commit alone. A
//!   cache hit does no cryptography, so this bounds what the hit path can
//!   reach.
//!
//! Fairness: in each round ours and the anchor run back to back with the
//! same generator and requests, the order alternating from round to round;
//! the figures are medians over the rounds, the ratio the median of the
//! per-round ratios. Each line also shows the server's and the generator's
//! CPU time per request and the load average, because this machine is
//! shared and the figures move with it. First, the CPU cost of each stage
//! of a verify request, measured single-threaded in CPU time.
//!
//! Not a test: the numbers depend on the machine; record them, do not
//! assert them.

use anyhow::{Context as _, bail};
use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use cloister_attestor::clock::Clock as _;
use cloister_attestor::clock::SystemClock;
use cloister_attestor::config::Config;
use cloister_attestor::server::{self, Running};
use cloister_attestor::service::api::verify::VerifyBody;
use cloister_attestor::service::extract::parse_json;
use cloister_attestor::service::metered::request_hash;
use cloister_attestor::service::metering::Meter;
use cloister_attestor::storage::{
    ApiKeyInfo, EVENT_VERIFY, Plan, StoredResponse, Tenant, UsageKey, UsageOutcome, UsageWrite,
};
use cloister_attestor_core::record::{BuildRecord, to_statement};
use cloister_attestor_core::verify::{VerifyOptions, VerifyRequest, verify_with};
use cpu_time::ThreadTime;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The same allocator as `cloister-attestor` (the server runs in this process).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORD: &str = include_str!("../tests/golden/build-record.json");
const ARTIFACT: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const REPO: &str = "https://github.com/example/repo-a";
/// First argument that makes this program our load generator (internal).
const CHILD_FLAG: &str = "--load-generator-child";
/// Verdict cache entries in the cache-on scenarios.
const CACHE_ENTRIES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    errors: u64,
    /// Server process CPU per request, µs.
    server_us: f64,
    /// Requests sent (answered or in flight at the end).
    sent: u64,
    /// Load generator CPU per request, µs.
    gen_us: f64,
    load: f64,
}

struct Opts {
    seconds: u32,
    connections: u32,
    rounds: usize,
    workers: usize,
    only: Option<String>,
    generator: Generator,
}

/// Which load generator drives both servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generator {
    /// Ours (this program re-run as a child, `--load-generator-child`):
    /// requests pre-formatted, one tokio task per connection on one thread.
    Ours,
    /// wrk with a Lua script that formats every request.
    Wrk,
}

fn main() -> anyhow::Result<()> {
    let mut o = Opts {
        seconds: 5,
        connections: 64,
        rounds: 5,
        workers: 2,
        only: None,
        generator: Generator::Ours,
    };
    if std::env::args().nth(1).as_deref() == Some(CHILD_FLAG) {
        return loadgen::child(std::env::args().skip(2).collect());
    }
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--seconds" => o.seconds = val("--seconds")?.parse()?,
            "--connections" => o.connections = val("--connections")?.parse()?,
            "--rounds" => o.rounds = val("--rounds")?.parse()?,
            "--workers" => o.workers = val("--workers")?.parse()?,
            "--only" => o.only = Some(val("--only")?),
            "--load-generator" => {
                o.generator = match val("--load-generator")?.as_str() {
                    "ours" => Generator::Ours,
                    "wrk" => Generator::Wrk,
                    other => bail!("--load-generator is ours or wrk, not {other:?}"),
                }
            }
            "-h" | "--help" => {
                println!(
                    "bench-verify [--seconds N] [--connections N] [--rounds N] [--workers N] \
                     [--only off|miss|hit] [--load-generator ours|wrk]"
                );
                return Ok(());
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if o.rounds == 0 || o.workers == 0 {
        bail!("--rounds and --workers must be at least 1");
    }
    if o.generator == Generator::Wrk
        && std::process::Command::new("wrk")
            .arg("--version")
            .output()
            .is_err()
    {
        bail!("wrk is not installed (apt-get install wrk)");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.workers)
        .enable_all()
        .build()?;
    rt.block_on(run(o))
}

async fn run(o: Opts) -> anyhow::Result<()> {
    println!(
        "bench-verify: {}s x {} rounds per target, {} connections, load generator {} on 1 thread, \
         loopback, {} tokio workers, {} CPUs shared by load generator and server; load average at start {}",
        o.seconds,
        o.rounds,
        o.connections,
        match o.generator {
            Generator::Ours => "ours (pre-formatted requests)",
            Generator::Wrk => "wrk (Lua script)",
        },
        o.workers,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg_line()
    );
    // Dirty pages of other files (a binary just linked: ~80 MB) would be
    // written back during the run and stall our fsyncs behind them (p99s of
    // 80-300 ms seen in the first run after a build); flush them first.
    let _ = std::process::Command::new("sync").status();
    stages()?;

    // The anchor: a trivial axum handler reading the same body.
    let anchor = Router::new().route(
        "/v1/verify",
        post(|_body: Bytes| async {
            (
                [("content-type", "application/json")],
                "{\"verified\":true,\"reasons\":[]}",
            )
        }),
    );
    let anchor_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let anchor_url = format!("http://{}/v1/verify", anchor_listener.local_addr()?);
    tokio::spawn(async move { axum::serve(anchor_listener, anchor).await });

    let scenarios: [(&str, usize, bool, &str); 3] = [
        (
            "off",
            0,
            true,
            "verdict cache off, a different provenance per request (headline)",
        ),
        (
            "miss",
            CACHE_ENTRIES,
            true,
            "verdict cache on, a different provenance per request (every lookup misses)",
        ),
        (
            "hit",
            CACHE_ENTRIES,
            false,
            "verdict cache on, the SAME provenance in every request (cache hits; not the headline)",
        ),
    ];
    let mut summary = Vec::new();
    for (name, cache, distinct, label) in scenarios {
        if o.only.as_deref().is_some_and(|x| x != name) {
            continue;
        }
        let lines = scenario(&o, &anchor_url, cache, distinct, label).await?;
        summary.push(lines);
    }
    println!("\nsummary (medians over {} rounds):", o.rounds);
    for s in summary {
        println!("{s}");
    }
    Ok(())
}

/// CPU cost of each stage of one verify request (single thread, CPU time).
fn stages() -> anyhow::Result<()> {
    let kp =
        cloister_attestor_core::KeyPair::generate(cloister_attestor_core::Algorithm::EcdsaP256)?;
    let record: BuildRecord = serde_json::from_str(RECORD)?;
    let signed = cloister_attestor_core::sign_statement(&to_statement(&record)?, &kp)?;
    let envelope = signed.envelope.to_json();
    let body = body_json(&envelope);
    let trusted = vec![kp.public_key().clone()];
    let req = VerifyRequest {
        artifact_digest: ARTIFACT.into(),
        source_uri: REPO.into(),
        source_tag: Some("v1.2.3".into()),
        ..Default::default()
    };
    let pae = signed.envelope.pae();
    let sig = signed.envelope.signatures[0].sig.clone();
    let no_statement = VerifyOptions {
        include_statement: false,
    };
    let verdict = verify_with(envelope.as_bytes(), &trusted, &req, &no_statement);
    anyhow::ensure!(verdict.verified, "stage setup: {:?}", verdict.reasons);

    println!(
        "\nCPU per call of the stages of one request ({} byte body, single thread):",
        body.len()
    );
    let line = |name: &str, f: &mut dyn FnMut()| {
        println!("  {:<58} {:>8.1} us", name, cpu_us(f));
    };
    line(
        "parse the request body (fields + raw provenance)",
        &mut || {
            let b: VerifyBody<'_> = parse_json(body.as_bytes()).expect("parses");
            std::hint::black_box(b);
        },
    );
    line(
        "verify_with, statement JSON off (what the service runs)",
        &mut || {
            std::hint::black_box(verify_with(
                envelope.as_bytes(),
                &trusted,
                &req,
                &no_statement,
            ));
        },
    );
    line(
        "verify_with, statement JSON on (includeProvenance)",
        &mut || {
            std::hint::black_box(verify_with(
                envelope.as_bytes(),
                &trusted,
                &req,
                &VerifyOptions::default(),
            ));
        },
    );
    line("  of which: the raw P-256 signature check", &mut || {
        assert!(kp.public_key().verify(&pae, &sig));
    });
    line(
        "  of which: envelope parse (strict, base64 payload)",
        &mut || {
            std::hint::black_box(
                cloister_attestor_core::dsse::Envelope::parse(envelope.as_bytes()).expect("parses"),
            );
        },
    );
    let payload = &signed.envelope.payload;
    line("  of which: statement parse and validation", &mut || {
        std::hint::black_box(
            cloister_attestor_core::statement::Statement::parse(payload).expect("parses"),
        );
    });
    line("  of which: PAE (the signed bytes)", &mut || {
        std::hint::black_box(signed.envelope.pae());
    });
    line("request hash (SHA-256 of the body, hex)", &mut || {
        std::hint::black_box(request_hash(&[b"POST /v1/verify", body.as_bytes()]));
    });
    Ok(())
}

/// Average CPU µs per call of `f` over about 0.5 s of this thread's CPU time.
fn cpu_us(f: &mut dyn FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let start = ThreadTime::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(500) {
        for _ in 0..20 {
            f();
        }
        n += 20;
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn body_json(envelope_json: &str) -> String {
    format!(
        "{{\"artifactDigest\":\"{ARTIFACT}\",\"sourceUri\":\"{REPO}\",\"sourceTag\":\"v1.2.3\",\"provenance\":{envelope_json}}}"
    )
}

async fn scenario(
    o: &Opts,
    anchor_url: &str,
    cache_entries: usize,
    distinct: bool,
    label: &str,
) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let config = Config {
        state_dir: dir.path().join("state"),
        listen: "127.0.0.1:0".parse()?,
        rate_limit: cloister_attestor::config::RateLimit {
            per_second: 10_000_000,
            burst: 10_000_000,
        },
        verify: cloister_attestor::config::Verify { cache_entries },
        ..Config::default()
    };
    let running = server::start(config, Arc::new(SystemClock)).await?;
    let key = tenant_key(&running).await?;

    // Request bodies: twice as many distinct envelopes as the cache holds
    // (signed in-process with the server's own key), or one.
    let n = if distinct { CACHE_ENTRIES * 2 } else { 1 };
    let signer = running.app.keyring.active_signer()?;
    let mut record: BuildRecord = serde_json::from_str(RECORD)?;
    let mut bodies = String::new();
    for i in 0..n {
        record.invocation_id = format!("bench-{i:08}");
        let signed = cloister_attestor_core::sign_statement(&to_statement(&record)?, &*signer)?;
        bodies.push_str(&body_json(&signed.envelope.to_json()));
        bodies.push('\n');
    }
    let bodies_path = dir.path().join("bodies.jsonl");
    std::fs::write(&bodies_path, bodies)?;
    let script = dir.path().join("verify.lua");
    std::fs::write(&script, lua_script(&bodies_path, &key))?;
    let load = Load {
        generator: o.generator,
        connections: o.connections,
        script,
        bodies: bodies_path,
        key,
    };
    let ours_url = format!("http://{}/v1/verify", running.addr);
    // The floors (see the module doc): with a different provenance per
    // request, verification alone and verification plus the durable usage
    // commit; with the same provenance (cache hits), the usage commit alone.
    // The commits go through a second service's meter (its own SQLite file,
    // the same configuration), so ours' usage count stays its own.
    let floor_dir = tempfile::tempdir()?;
    let floor_service = server::start(
        Config {
            state_dir: floor_dir.path().join("state"),
            listen: "127.0.0.1:0".parse()?,
            ..Config::default()
        },
        Arc::new(SystemClock),
    )
    .await?;
    let _ = tenant_key(&floor_service).await?;
    // A meter of its own on the service's storage, configured the same way
    // (the service's own meter would keep the service from shutting down
    // while the floor's router holds it).
    let fa = &floor_service.app;
    let (meter, _meter_task) = Meter::start(
        fa.storage.clone(),
        fa.metrics.clone(),
        fa.clock.clone(),
        fa.idempotency_window_ms(),
        fa.config.metering.max_batch,
    );
    let trusted = signer.public_key().clone();
    let floor_specs: Vec<(&str, FloorWork)> = if distinct {
        vec![
            (
                "floor",
                FloorWork {
                    verify: Some(trusted.clone()),
                    meter: None,
                },
            ),
            (
                "floor+m",
                FloorWork {
                    verify: Some(trusted),
                    meter: Some(meter),
                },
            ),
        ]
    } else {
        vec![(
            "meter",
            FloorWork {
                verify: None,
                meter: Some(meter),
            },
        )]
    };
    let mut floors: Vec<(&str, String, Vec<Run>, tokio::task::JoinHandle<()>)> = Vec::new();
    for (name, work) in floor_specs {
        let (url, server) = floor_server(work).await?;
        floors.push((name, url, Vec::new(), server));
    }

    // Warm up both; `sent` keeps the distinct bodies cycling in order
    // across runs, so the cache-on/distinct scenario never sees a repeat
    // within the cache's reach (wrk counts answered requests; the ones in
    // flight at its end were sent too, hence the extra `connections`).
    let mut sent = 0u64;
    let _ = load.run(anchor_url, 0, 2).await?;
    sent += load.run(&ours_url, sent, 2).await?.sent;
    let before = usage(&running).await?;
    let cache_before = running.app.verdicts.stats();
    for (_, url, _, _) in &floors {
        let _ = load.run(url, 0, 2).await?;
    }
    let mut ours = Vec::new();
    let mut anchor = Vec::new();
    for round in 0..o.rounds {
        if round % 2 == 0 {
            anchor.push(load.run(anchor_url, 0, o.seconds).await?);
            let r = load.run(&ours_url, sent, o.seconds).await?;
            sent += r.sent;
            ours.push(r);
        } else {
            let r = load.run(&ours_url, sent, o.seconds).await?;
            sent += r.sent;
            ours.push(r);
            anchor.push(load.run(anchor_url, 0, o.seconds).await?);
        }
        for (_, url, runs, _) in &mut floors {
            runs.push(load.run(url, 0, o.seconds).await?);
        }
    }
    anyhow::ensure!(
        floors
            .iter()
            .all(|(_, _, runs, _)| runs.iter().all(|r| r.errors == 0)),
        "a floor server failed some requests (a verification that did not verify, or a usage commit that failed)"
    );
    for (_, _, _, server) in &floors {
        server.abort();
    }
    floor_service.shutdown();
    floor_service.wait().await?;
    let committed = usage(&running).await? - before;
    let (hits0, misses0) = cache_before;
    let (hits1, misses1) = running.app.verdicts.stats();
    let metrics = running.app.metrics.encode();
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let batches = metric("cloister_attestor_storage_commit_batch_size_count");
    let events = metric("cloister_attestor_storage_commit_batch_size_sum");
    let commit_s = metric("cloister_attestor_storage_commit_duration_seconds_sum");
    // Where the commits' durations lie: the histogram's buckets (cumulative
    // counts), those where the count changes.
    let mut last = String::new();
    let commit_tail: Vec<String> = metrics
        .lines()
        .filter(|l| l.starts_with("cloister_attestor_storage_commit_duration_seconds_bucket"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let n = l.split_whitespace().last()?;
            (n != last && n != "0").then(|| {
                last = n.to_owned();
                format!("<={le}s:{n}")
            })
        })
        .collect();

    running.shutdown();
    running.wait().await?;

    println!("\n[{label}]");
    println!(
        "  {:<6} {:>5} {:>9} {:>8} {:>8} {:>7} {:>10} {:>8} {:>6}",
        "", "round", "req/s", "p50 ms", "p99 ms", "errors", "server us", "gen us", "load"
    );
    for (i, (a, b)) in anchor.iter().zip(&ours).enumerate() {
        for (who, r) in [("anchor", a), ("ours", b)].into_iter().chain(
            floors
                .iter()
                .filter_map(|(n, _, runs, _)| Some((*n, runs.get(i)?))),
        ) {
            println!(
                "  {:<6} {:>5} {:>9.0} {:>8.2} {:>8.2} {:>7} {:>10.1} {:>8.1} {:>6.2}",
                who,
                i + 1,
                r.rps,
                r.p50_ms,
                r.p99_ms,
                r.errors,
                r.server_us,
                r.gen_us,
                r.load
            );
        }
    }
    let ratios: Vec<f64> = anchor
        .iter()
        .zip(&ours)
        .map(|(a, b)| b.rps / a.rps)
        .collect();
    let m = |v: &[Run], f: fn(&Run) -> f64| median(v.iter().map(f).collect());
    let ours_answered: u64 = ours.iter().map(|r| r.requests).sum();
    println!(
        "  usage events committed while measuring: {committed} (requests answered by ours: {ours_answered}); \
         group commits over the server's life: {batches:.0} batches, mean {:.1} events, mean {:.2} ms; \
         verdict cache while measuring: {} hits, {} misses",
        events / batches,
        commit_s * 1000.0 / batches,
        hits1 - hits0,
        misses1 - misses0
    );
    println!(
        "  commit durations, cumulative counts: {}",
        commit_tail.join(" ")
    );
    let mut floor_lines = String::new();
    for (name, _, runs, _) in &floors {
        let floor_ratios: Vec<f64> = runs.iter().zip(&ours).map(|(f, b)| b.rps / f.rps).collect();
        let what = match *name {
            "floor" => "verification floor (verify_with only: no auth, metering or storage)",
            "floor+m" => {
                "verification + durable metering floor (verify_with, then the usage commit)"
            }
            _ => "durable metering floor (the usage commit only: no auth or verification)",
        };
        floor_lines.push_str(&format!(
            "\n    {what} {:>7.0} req/s (p99 {:.2} ms, server {:.0} us CPU/req); ours / {name} {:.2}",
            m(runs, |r| r.rps),
            m(runs, |r| r.p99_ms),
            m(runs, |r| r.server_us),
            median(floor_ratios),
        ));
    }
    Ok(format!(
        "  {label}\n    ours {:>7.0} req/s (p50 {:.2} ms, p99 {:.2} ms, server {:.0} us CPU/req)   \
         anchor {:>7.0} req/s (p99 {:.2} ms, server {:.0} us CPU/req)   ratio {:.2}   load {:.2}",
        m(&ours, |r| r.rps),
        m(&ours, |r| r.p50_ms),
        m(&ours, |r| r.p99_ms),
        m(&ours, |r| r.server_us),
        m(&anchor, |r| r.rps),
        m(&anchor, |r| r.p99_ms),
        m(&anchor, |r| r.server_us),
        median(ratios),
        m(&ours, |r| r.load),
    ) + &floor_lines)
}

/// What a floor server does with each request besides reading its body.
struct FloorWork {
    /// Parse the body and run the shared verification against this key.
    verify: Option<cloister_attestor_core::PublicKey>,
    /// Commit the request's usage event (with its idempotency record and
    /// the response to replay) durably before answering, through a
    /// service's meter: what exactly-once metering costs by itself.
    meter: Option<Meter>,
}

/// A floor (see the module doc): the work in `work` and nothing else: no
/// API key, rate limit or verdict cache. Returns its URL and its task.
async fn floor_server(work: FloorWork) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    const ANSWER: &str = "{\"verified\":true,\"reasons\":[]}";
    let work = Arc::new(work);
    let no_statement = VerifyOptions {
        include_statement: false,
    };
    let app = Router::new().route(
        "/v1/verify",
        post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let work = work.clone();
            async move {
                use axum::http::StatusCode;
                if let Some(trusted) = &work.verify {
                    let Ok(b) = parse_json::<VerifyBody<'_>>(&body) else {
                        return (StatusCode::BAD_REQUEST, "{}");
                    };
                    let (req, provenance, _) = b.split();
                    let provenance = provenance.map_or("", |p| p.get());
                    let v = verify_with(
                        provenance.as_bytes(),
                        std::slice::from_ref(trusted),
                        &req,
                        &no_statement,
                    );
                    // Every request carries valid provenance: a failure here
                    // would mean the floor measured a cheaper path, so it
                    // shows as an error in the table (and fails the run).
                    if !v.verified {
                        return (StatusCode::INTERNAL_SERVER_ERROR, "{}");
                    }
                }
                if let Some(meter) = &work.meter {
                    let key = match headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
                        Some(k) => UsageKey::Client(k.to_owned()),
                        None => UsageKey::Generated(uuid::Uuid::now_v7().to_string()),
                    };
                    let write = UsageWrite {
                        tenant_id: "tn_bench".into(),
                        event: EVENT_VERIFY,
                        units: 1,
                        key,
                        request_hash: request_hash(&[b"POST /v1/verify", &body]),
                        at_ms: SystemClock.now_ms(),
                        response: StoredResponse {
                            status: 200,
                            body: Bytes::from_static(ANSWER.as_bytes()),
                        },
                    };
                    if !matches!(meter.commit(write).await, Ok(UsageOutcome::Recorded)) {
                        return (StatusCode::INTERNAL_SERVER_ERROR, "{}");
                    }
                }
                (StatusCode::OK, ANSWER)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/verify", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, server))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

async fn tenant_key(running: &Running) -> anyhow::Result<String> {
    let storage = &running.app.storage;
    let tenant = Tenant {
        id: "tn_bench".into(),
        name: "bench".into(),
        plan: Plan::Enterprise,
        created_at_ms: 0,
    };
    storage.create_tenant(&tenant).await?;
    let key = cloister_attestor::api_key::generate_key()?;
    storage
        .insert_api_key(
            &ApiKeyInfo {
                id: key.id.clone(),
                tenant_id: tenant.id.clone(),
                created_at_ms: 0,
                revoked_at_ms: None,
            },
            &cloister_attestor::api_key::hash_key(&key.secret),
        )
        .await?;
    Ok(key.secret)
}

async fn usage(running: &Running) -> anyhow::Result<i64> {
    Ok(running
        .app
        .storage
        .usage_counts("tn_bench", 0, i64::MAX)
        .await?
        .get(cloister_attestor::storage::EVENT_VERIFY)
        .copied()
        .unwrap_or(0))
}

/// wrk script: bodies from a file (one per line), cycled in order from the
/// offset given as the script argument; a new Idempotency-Key per request.
fn lua_script(bodies: &Path, key: &str) -> String {
    format!(
        r#"
local bodies = {{}}
for line in io.lines("{path}") do bodies[#bodies + 1] = line end
local n = #bodies
local i = 0
local counter = 0
local prefix = tostring(math.random(1, 1000000000)) .. "-" .. tostring(os.time())
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
function init(args)
  i = tonumber(args[1] or "0") % n
end
request = function()
  counter = counter + 1
  i = i % n + 1
  wrk.headers["Idempotency-Key"] = "bench-" .. prefix .. "-" .. counter
  return wrk.format(nil, nil, nil, bodies[i])
end
"#,
        path = bodies.display()
    )
}

/// This process's CPU time and its waited-for children's, in seconds
/// (`/proc/self/stat` utime+stime, cutime+cstime).
fn cpu_times() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // rest[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17.
    let field = |n: usize| f.get(n - 3).copied().unwrap_or(0.0);
    let tick = 100.0; // USER_HZ on Linux
    (
        (field(14) + field(15)) / tick,
        (field(16) + field(17)) / tick,
    )
}

fn loadavg_line() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn load1() -> f64 {
    loadavg_line()
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// What drives a server: the generator and the request material.
struct Load {
    generator: Generator,
    connections: u32,
    script: PathBuf,
    bodies: PathBuf,
    key: String,
}

impl Load {
    /// One run of `seconds` against `url`, the bodies cycled from `offset`.
    async fn run(&self, url: &str, offset: u64, seconds: u32) -> anyhow::Result<Run> {
        match self.generator {
            Generator::Wrk => wrk(self, url, offset, seconds).await,
            Generator::Ours => ours(self, url, offset, seconds).await,
        }
    }
}

/// Runs our load generator as a child process (so its CPU is counted
/// apart from the server's, like wrk's) and reads its one JSON line.
async fn ours(load: &Load, url: &str, offset: u64, seconds: u32) -> anyhow::Result<Run> {
    let (self0, child0) = cpu_times();
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .arg(CHILD_FLAG)
        .arg(url)
        .arg(load.connections.to_string())
        .arg(seconds.to_string())
        .arg(&load.bodies)
        .arg(offset.to_string())
        .arg(&load.key)
        .output()
        .await?;
    let (self1, child1) = cpu_times();
    if !out.status.success() {
        bail!(
            "load generator failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let r: loadgen::Report = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "load generator printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    let per_req = |secs: f64| secs * 1e6 / r.answered.max(1) as f64;
    Ok(Run {
        rps: r.answered as f64 / r.seconds,
        p50_ms: r.p50_us as f64 / 1000.0,
        p99_ms: r.p99_us as f64 / 1000.0,
        requests: r.answered,
        errors: r.non_2xx + r.errors,
        sent: r.sent,
        server_us: per_req(self1 - self0),
        gen_us: per_req(child1 - child0),
        load: load1(),
    })
}

async fn wrk(load: &Load, url: &str, offset: u64, seconds: u32) -> anyhow::Result<Run> {
    let (self0, child0) = cpu_times();
    let script = &load.script;
    let out = tokio::process::Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{}", load.connections),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .arg("--")
        .arg(offset.to_string())
        .output()
        .await?;
    let (self1, child1) = cpu_times();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
    };
    let ms = |v: &str| -> f64 {
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
        let n: f64 = num.parse().unwrap_or(f64::NAN);
        match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            _ => f64::NAN,
        }
    };
    let rps: f64 = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .context("wrk printed no Requests/sec")?
        .parse()?;
    let requests: u64 = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("wrk printed no request count")?;
    let non2xx: u64 = text
        .lines()
        .find(|l| l.trim().starts_with("Non-2xx"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let socket_errors: u64 = text
        .lines()
        .find(|l| l.trim().starts_with("Socket errors"))
        .map(|l| {
            l.split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    let per_req = |secs: f64| secs * 1e6 / requests.max(1) as f64;
    Ok(Run {
        rps,
        p50_ms: ms(field("50%").context("no p50")?),
        p99_ms: ms(field("99%").context("no p99")?),
        requests,
        errors: non2xx + socket_errors,
        // wrk counts answered requests; the ones in flight at its end were
        // sent too (one per connection at most).
        sent: requests + u64::from(load.connections),
        server_us: per_req(self1 - self0),
        gen_us: per_req(child1 - child0),
        load: load1(),
    })
}

/// Our load generator: closed loop like wrk (each connection sends its next
/// request when the previous answer is complete), keep-alive HTTP/1.1, all
/// connections on one thread. Every request is the wrk script's request
/// byte for byte in meaning: the same bodies cycled in the same order, the
/// same headers, a new Idempotency-Key each; what it saves is formatting:
/// the body and its headers are laid out once per distinct body, and a
/// request costs one copy into the connection's buffer.
mod loadgen {
    use anyhow::{Context as _, bail};
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// What the child prints: one JSON line.
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Report {
        /// Requests answered within the run.
        pub answered: u64,
        /// Requests written (answered, or in flight at the end).
        pub sent: u64,
        pub non_2xx: u64,
        /// Connection errors and unparseable answers.
        pub errors: u64,
        pub p50_us: u64,
        pub p99_us: u64,
        pub seconds: f64,
    }

    /// `url connections seconds bodies-file offset api-key`.
    pub fn child(args: Vec<String>) -> anyhow::Result<()> {
        let [url, connections, seconds, bodies, offset, key] = <[String; 6]>::try_from(args)
            .map_err(|a| anyhow::anyhow!("load generator: 6 arguments expected, got {a:?}"))?;
        let addr = url
            .strip_prefix("http://")
            .and_then(|r| r.split_once('/'))
            .map(|(a, p)| (a.to_owned(), format!("/{p}")))
            .context("load generator: url must be http://HOST:PORT/PATH")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let report = rt.block_on(drive(
            addr,
            connections.parse()?,
            Duration::from_secs(seconds.parse()?),
            &std::fs::read_to_string(&bodies)?,
            offset.parse()?,
            &key,
        ))?;
        println!("{}", serde_json::to_string(&report)?);
        Ok(())
    }

    struct Shared {
        /// Per distinct body: `Content-Length: N\r\n\r\n` followed by the body.
        tails: Vec<Vec<u8>>,
        /// Request line and the fixed headers, up to the Idempotency-Key's value.
        head: Vec<u8>,
        prefix: String,
        /// Next request's number (cycles the bodies; names its key).
        next: Cell<u64>,
        offset: u64,
        latencies: RefCell<Vec<u32>>,
        non_2xx: Cell<u64>,
        errors: Cell<u64>,
        sent: Cell<u64>,
    }

    async fn drive(
        (authority, path): (String, String),
        connections: usize,
        run: Duration,
        bodies: &str,
        offset: u64,
        key: &str,
    ) -> anyhow::Result<Report> {
        let tails: Vec<Vec<u8>> = bodies
            .lines()
            .map(|b| format!("Content-Length: {}\r\n\r\n{b}", b.len()).into_bytes())
            .collect();
        if tails.is_empty() {
            bail!("load generator: no bodies");
        }
        // Keys unique across runs and servers: this process and the time.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let shared = Rc::new(Shared {
            tails,
            head: format!(
                "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
                 Authorization: Bearer {key}\r\nIdempotency-Key: "
            )
            .into_bytes(),
            prefix: format!("bench-{}-{seed}-", std::process::id()),
            next: Cell::new(0),
            offset,
            latencies: RefCell::new(Vec::with_capacity(1 << 20)),
            non_2xx: Cell::new(0),
            errors: Cell::new(0),
            sent: Cell::new(0),
        });
        let local = tokio::task::LocalSet::new();
        let start = Instant::now();
        let deadline = start + run;
        for _ in 0..connections {
            let shared = shared.clone();
            let authority = authority.clone();
            local.spawn_local(async move {
                // A connection that fails is reopened, like wrk does.
                while Instant::now() < deadline {
                    if connection(&shared, &authority, deadline).await.is_err() {
                        shared.errors.set(shared.errors.get() + 1);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            });
        }
        local.await;
        let seconds = start.elapsed().as_secs_f64();
        let mut lat = shared.latencies.take();
        lat.sort_unstable();
        let pct = |p: f64| -> u64 {
            if lat.is_empty() {
                0
            } else {
                u64::from(lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)])
            }
        };
        Ok(Report {
            answered: lat.len() as u64,
            sent: shared.sent.get(),
            non_2xx: shared.non_2xx.get(),
            errors: shared.errors.get(),
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            seconds,
        })
    }

    /// Requests on one keep-alive connection until the deadline.
    async fn connection(s: &Shared, authority: &str, deadline: Instant) -> anyhow::Result<()> {
        let mut stream = tokio::net::TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        let mut req = Vec::with_capacity(8192);
        let mut buf = vec![0u8; 16384];
        while Instant::now() < deadline {
            let n = s.next.get();
            s.next.set(n + 1);
            let tail = &s.tails[((s.offset + n) % s.tails.len() as u64) as usize];
            req.clear();
            req.extend_from_slice(&s.head);
            req.extend_from_slice(s.prefix.as_bytes());
            req.extend_from_slice(n.to_string().as_bytes());
            req.extend_from_slice(b"\r\n");
            req.extend_from_slice(tail);
            let t0 = Instant::now();
            s.sent.set(s.sent.get() + 1);
            stream.write_all(&req).await?;
            let status = read_response(&mut stream, &mut buf).await?;
            if Instant::now() > deadline {
                // Answered after the end: not counted, like wrk.
                break;
            }
            let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
            s.latencies.borrow_mut().push(us);
            if !(200..300).contains(&status) {
                s.non_2xx.set(s.non_2xx.get() + 1);
            }
        }
        Ok(())
    }

    /// Reads one whole response (headers, then a Content-Length body);
    /// returns its status.
    async fn read_response(
        stream: &mut tokio::net::TcpStream,
        buf: &mut Vec<u8>,
    ) -> anyhow::Result<u16> {
        let mut have = 0;
        let head_end = loop {
            if have == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            let n = stream.read(&mut buf[have..]).await?;
            if n == 0 {
                bail!("connection closed mid-response");
            }
            have += n;
            if let Some(i) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = std::str::from_utf8(&buf[..head_end]).context("response head not utf-8")?;
        let status: u16 = head
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .context("no status code")?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .context("response without Content-Length")?;
        let mut body_have = have - head_end;
        if body_have > length {
            bail!("more bytes than one response (pipelining is not used)");
        }
        while body_have < length {
            let want = (length - body_have).min(buf.len());
            let n = stream.read(&mut buf[..want]).await?;
            if n == 0 {
                bail!("connection closed mid-body");
            }
            body_have += n;
        }
        Ok(status)
    }
}
