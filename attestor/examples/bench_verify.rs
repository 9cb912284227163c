//! Benchmark: `POST /v1/verify` throughput and p99 latency of the attestor
//! (SQLite backend, `synchronous=FULL`, every request metered with its own
//! Idempotency-Key, the provenance verified inline) against a trivial axum
//! handler on the same route, measured in the same run with the same load
//! generator (wrk, from Debian's `wrk` package) on loopback.
//!
//! ```sh
//! cargo run --release -p cloister-attestor --example bench-verify -- [--seconds 10] [--connections 32]
//! ```
//!
//! Prints both figures and the ratio (ours / anchor). Not a test: the
//! numbers depend on the machine; record them, do not assert them.

use anyhow::{Context as _, bail};
use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use cloister_attestor::config::Config;
use cloister_attestor::service::clock::SystemClock;
use cloister_attestor::service::server;
use cloister_attestor::storage::{ApiKeyInfo, Plan, Tenant};
use http_body_util::{BodyExt as _, Full};
use std::process::Command;
use std::sync::Arc;

const RECORD: &str = include_str!("../tests/golden/build-record.json");
const ARTIFACT: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn main() -> anyhow::Result<()> {
    let mut seconds = 10u32;
    let mut connections = 32u32;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().context("--seconds N")?.parse()?,
            "--connections" => connections = args.next().context("--connections N")?.parse()?,
            "-h" | "--help" => {
                println!("bench-verify [--seconds N] [--connections N]");
                return Ok(());
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("wrk is not installed (apt-get install wrk)");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(seconds, connections))
}

async fn run(seconds: u32, connections: u32) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = Config {
        state_dir: dir.path().join("state"),
        listen: "127.0.0.1:0".parse()?,
        rate_limit: cloister_attestor::config::RateLimit {
            per_second: 10_000_000,
            burst: 10_000_000,
        },
        ..Config::default()
    };
    let running = server::start(config, Arc::new(SystemClock)).await?;
    let storage = running.app.storage.clone();

    // A tenant with a key, and provenance signed through the signing socket.
    let tenant = Tenant {
        id: "tn_bench".into(),
        name: "bench".into(),
        plan: Plan::Enterprise,
        created_at_ms: 0,
    };
    storage.create_tenant(&tenant).await?;
    let key = cloister_attestor::service::auth::generate_key()?;
    storage
        .insert_api_key(
            &ApiKeyInfo {
                id: key.id.clone(),
                tenant_id: tenant.id.clone(),
                created_at_ms: 0,
                revoked_at_ms: None,
            },
            &cloister_attestor::service::auth::hash_key(&key.secret),
        )
        .await?;
    let signed = sign(&running.sign_socket, RECORD).await?;
    let body = serde_json::json!({
        "artifactDigest": ARTIFACT,
        "sourceUri": "https://github.com/example/repo-a",
        "sourceTag": "v1.2.3",
        "provenance": signed["envelope"],
    })
    .to_string();

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
    let anchor_addr = anchor_listener.local_addr()?;
    tokio::spawn(async move { axum::serve(anchor_listener, anchor).await });

    let script = dir.path().join("verify.lua");
    std::fs::write(&script, lua_script(&body, &key.secret))?;
    let ours_url = format!("http://{}/v1/verify", running.addr);
    let anchor_url = format!("http://{anchor_addr}/v1/verify");

    // Warm up both, then measure each (anchor first, then ours).
    let _ = wrk(&anchor_url, &script, 2, connections).await?;
    let _ = wrk(&ours_url, &script, 2, connections).await?;
    let before = usage(&storage, &tenant.id).await?;
    let anchor_fig = wrk(&anchor_url, &script, seconds, connections).await?;
    let ours_fig = wrk(&ours_url, &script, seconds, connections).await?;
    let after = usage(&storage, &tenant.id).await?;

    // Every answered request of the measured run is a committed usage event.
    let committed = after - before;
    let batches = running.app.metrics.encode();
    let batch_line = batches
        .lines()
        .filter(|l| {
            l.starts_with("cloister_attestor_storage_commit_batch_size_sum")
                || l.starts_with("cloister_attestor_storage_commit_batch_size_count")
        })
        .collect::<Vec<_>>()
        .join("; ");

    println!(
        "bench-verify: {seconds}s per target, {connections} connections, wrk 1 thread, loopback, 2 cores shared by load generator and server"
    );
    println!(
        "anchor (trivial axum handler): {:>10.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   errors {}",
        anchor_fig.rps, anchor_fig.p50_ms, anchor_fig.p99_ms, anchor_fig.errors
    );
    println!(
        "ours   (verify, SQLite FULL):  {:>10.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   errors {}",
        ours_fig.rps, ours_fig.p50_ms, ours_fig.p99_ms, ours_fig.errors
    );
    println!("ratio ours/anchor: {:.2}", ours_fig.rps / anchor_fig.rps);
    println!("usage events committed during the measured run: {committed} ({batch_line})");
    running.shutdown();
    running.wait().await?;
    Ok(())
}

async fn usage(
    storage: &Arc<dyn cloister_attestor::storage::Storage>,
    tenant: &str,
) -> anyhow::Result<i64> {
    Ok(storage
        .usage_counts(tenant, 0, i64::MAX)
        .await?
        .get(cloister_attestor::storage::EVENT_VERIFY)
        .copied()
        .unwrap_or(0))
}

fn lua_script(body: &str, key: &str) -> String {
    let body = body.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        r#"
local counter = 0
local prefix = tostring(math.random(1, 1000000000)) .. "-" .. tostring(os.time())
wrk.method = "POST"
wrk.body = "{body}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
request = function()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = "bench-" .. prefix .. "-" .. counter
  return wrk.format()
end
"#
    )
}

async fn wrk(
    url: &str,
    script: &std::path::Path,
    seconds: u32,
    connections: u32,
) -> anyhow::Result<Figures> {
    let out = tokio::process::Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .await?;
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
    Ok(Figures {
        rps,
        p50_ms: ms(field("50%").context("no p50")?),
        p99_ms: ms(field("99%").context("no p99")?),
        errors: non2xx + socket_errors,
    })
}

async fn sign(socket: &std::path::Path, record: &str) -> anyhow::Result<serde_json::Value> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/v1/sign")
        .header("host", "localhost")
        .body(Full::new(Bytes::from(record.to_owned())))?;
    let resp = send.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("sign failed: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok(serde_json::from_slice(&body)?)
}
