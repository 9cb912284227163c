//! Benchmark: `billing close` for 1,000 tenants and 10 million usage events
//! on SQLite (the embedded backend, `synchronous=FULL`), beside the anchor,
//! a bare `SELECT tenant_id, count(*) FROM usage_events GROUP BY tenant_id`
//! over the same table in the same process.
//!
//! ```sh
//! cargo run --release -p cloister-attestor --example bench-billing-close -- \
//!     [--tenants 1000] [--events 10000000] [--rounds 3] [--dir DIR]
//! ```
//!
//! 1. A fresh database (the attestor's migrations), the tenants (plans
//!    mixed), the events of one month spread over the tenants and the
//!    month, loaded with set-based inserts (timed, not the benchmark).
//! 2. Rounds, alternating: the anchor, then rating alone (the plan
//!    histories in one query, then for every tenant the same aggregate
//!    statement `billing close` runs; read-only, so it can be repeated). Events rated per second and the ratio to the anchor
//!    per round; medians at the end.
//! 3. Once: the whole close (closes, rating, drafts, numbered and signed
//!    finalization, PDFs), its time and events per second, and its ratio to
//!    the anchor's median. Then the PDFs rendered again alone, for their
//!    share.
//!
//! The machine is shared: every line carries the load average. Not a test:
//! record the figures, do not assert them.

use anyhow::Context as _;
use cloister_attestor::billing::close::{CloseOptions, Closer, rate_close_with};
use cloister_attestor::billing::config::BillingConfig;
use cloister_attestor::billing::document::InvoiceDocument;
use cloister_attestor::billing::pdf;
use cloister_attestor::billing::period::Period;
use cloister_attestor::storage::billing::{CloseSpec, InvoiceFilter, plan_close};
use cloister_attestor::storage::{Plan, Tenant};
use cloister_attestor_core::keys::{Algorithm, KeyPair};
use std::time::Instant;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    tenants: usize,
    events: u64,
    rounds: usize,
    dir: Option<std::path::PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        tenants: 1000,
        events: 10_000_000,
        rounds: 3,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--tenants" => a.tenants = val()?.parse()?,
            "--events" => a.events = val()?.parse()?,
            "--rounds" => a.rounds = val()?.parse()?,
            "--dir" => a.dir = Some(val()?.into()),
            "--help" | "-h" => {
                println!("bench-billing-close [--tenants N] [--events N] [--rounds N] [--dir DIR]");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

const PERIOD: &str = "2026-11";

fn main() -> anyhow::Result<()> {
    let a = args()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(a))
}

async fn run(a: Args) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    let url = format!("sqlite://{}", dir.join("bench.db").display());
    let _ = std::fs::remove_file(dir.join("bench.db"));
    let store = cloister_attestor::storage::open(&url).await?;
    let period = Period::parse(PERIOD)?;
    let (start, end) = period.bounds();
    println!(
        "bench-billing-close: {} tenants, {} events in {PERIOD}, SQLite at {} (load {})",
        a.tenants,
        a.events,
        dir.display(),
        load()
    );

    // 1. Fixture.
    let t0 = Instant::now();
    let plans = [Plan::Starter, Plan::Pro, Plan::Enterprise];
    for i in 0..a.tenants {
        store
            .create_tenant(&Tenant {
                id: format!("tn_{i:06}"),
                name: format!("tenant-{i:06}"),
                plan: plans[i % 3],
                created_at_ms: start - 86_400_000,
            })
            .await?;
    }
    let pool = sqlx::SqlitePool::connect(&url).await?;
    let chunk = 500_000u64;
    let step = (end - start) / i64::try_from(a.events.max(1))?;
    let mut from = 0u64;
    while from < a.events {
        let to = (from + chunk).min(a.events) - 1;
        sqlx::query(
            "INSERT INTO usage_events (tenant_id, event, units, idempotency_key, occurred_at_ms) \
             WITH RECURSIVE c(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM c WHERE i < ?2) \
             SELECT printf('tn_%06d', (i * 7919) % ?3), \
                    CASE WHEN i % 10 = 0 THEN 'portal.download' ELSE 'attestation.verify' END, \
                    1, 'k' || i, ?4 + i * ?5 FROM c",
        )
        .bind(i64::try_from(from)?)
        .bind(i64::try_from(to)?)
        .bind(i64::try_from(a.tenants)?)
        .bind(start)
        .bind(step)
        .execute(&pool)
        .await?;
        from = to + 1;
        eprint!("\rloading {from}/{} events", a.events);
    }
    eprintln!();
    pool.close().await;
    println!(
        "fixture loaded in {:.1} s (not measured below; load {})",
        t0.elapsed().as_secs_f64(),
        load()
    );

    // 2. Anchor and rating, alternating.
    let card = BillingConfig::default()
        .validate()
        .map_err(|e| anyhow::anyhow!(e))?;
    let tenants = store.list_tenants().await?;
    let watermark = store.billing().usage_watermark().await?;
    let anchor_pool = sqlx::SqlitePool::connect(&url).await?;
    let mut anchor_s = Vec::new();
    let mut rate_s = Vec::new();
    let mut ratios = Vec::new();
    for round in 0..a.rounds {
        let t = Instant::now();
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT tenant_id, count(*) FROM usage_events GROUP BY tenant_id")
                .fetch_all(&anchor_pool)
                .await?;
        let anchor = t.elapsed().as_secs_f64();
        let counted: i64 = rows.iter().map(|r| r.1).sum();
        let t = Instant::now();
        let mut rated = 0i64;
        let histories = store.billing().plan_histories().await?;
        for tn in &tenants {
            let spec = CloseSpec {
                tenant_id: tn.id.clone(),
                period: PERIOD.to_owned(),
                month_start_ms: start,
                end_ms: end,
                early: false,
            };
            let close = plan_close(&spec, None, watermark, end).map_err(anyhow::Error::msg)?;
            let history = histories.get(&tn.id).map(Vec::as_slice).unwrap_or_default();
            let draft = rate_close_with(store.as_ref(), &card, &close, history).await?;
            rated += draft.lines.iter().map(|l| l.quantity).sum::<i64>();
        }
        let ours = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            rated == counted,
            "rating counted {rated} events, the anchor {counted}"
        );
        println!(
            "round {round}: anchor {anchor:.2} s ({:.2} M events/s) | rating {ours:.2} s ({:.2} M events/s) | ratio {:.2} | load {}",
            counted as f64 / anchor / 1e6,
            rated as f64 / ours / 1e6,
            ours / anchor,
            load()
        );
        anchor_s.push(anchor);
        rate_s.push(ours);
        ratios.push(ours / anchor);
    }
    anchor_pool.close().await;
    let anchor_med = median(&mut anchor_s);
    let rate_med = median(&mut rate_s);
    println!(
        "median: anchor {anchor_med:.2} s, rating {rate_med:.2} s ({:.2} M events/s), ratio {:.2}",
        a.events as f64 / rate_med / 1e6,
        median(&mut ratios)
    );

    // 3. The whole close, once.
    let key = KeyPair::generate(Algorithm::EcdsaP256)?;
    let config = BillingConfig::default();
    let closer = Closer {
        storage: store.as_ref(),
        card: &card,
        config: &config,
        signer: &key,
    };
    let t = Instant::now();
    let report = closer
        .run(
            &CloseOptions {
                period,
                tenant: None,
                dry_run: false,
                early: false,
            },
            end + 3_600_000,
            |_, _| {},
        )
        .await?;
    let close_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(!report.failed(), "a tenant failed: {report:?}");
    let invoices = store.billing().invoices(&InvoiceFilter::default()).await?;
    let total: i64 = invoices.iter().map(|i| i.total_micros).sum();
    println!(
        "billing close: {} invoices ({} USD) in {close_s:.2} s: {:.2} M events/s, ratio to the anchor {:.2} (load {})",
        invoices.len(),
        cloister_attestor::billing::money::format_usd(total),
        a.events as f64 / close_s / 1e6,
        close_s / anchor_med,
        load()
    );
    let t = Instant::now();
    for inv in &invoices {
        let json = inv.document.as_deref().context("document")?;
        let doc = InvoiceDocument::parse_canonical(json.as_bytes())?;
        pdf::render(&doc, json.as_bytes())?;
    }
    println!(
        "of which PDFs: {} rendered again in {:.2} s ({:.1} ms each)",
        invoices.len(),
        t.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64() * 1000.0 / invoices.len().max(1) as f64
    );
    store.close().await;
    Ok(())
}
