//! Benchmark: each trust-portal page, rendered by the server with 10,000
//! attestations in the store (and a month of usage events), against the
//! JSON API call that returns the same data, in the same process and run.
//!
//! ```sh
//! cargo run --release -p cloister-attestor --example bench-portal -- \
//!     [--attestations 10000] [--repos 50] [--requests 300] [--rounds 3]
//! ```
//!
//! Setup: an in-process attestor on SQLite (`synchronous=FULL`); the
//! attestations are signed with its own key (repositories × releases, one
//! subject each) and loaded in one transaction; a tenant signs in through
//! the portal's form. Then, per page, `--rounds` rounds of `--requests`
//! sequential requests over one keep-alive connection, ours and the
//! anchor alternating within each round; the figures are end-to-end
//! latencies on loopback (p50, p99 over all requests of a side) and the
//! ratios ours / anchor of the p50s and of the p99s. The pages and their
//! anchors:
//!
//! | page | anchor (JSON API) |
//! |---|---|
//! | repositories (home) | `GET /v1/attestations?builder=…&limit=50` (as many rows; no API call lists repositories) |
//! | a repository's releases (20) | `GET /v1/attestations?repo=…&limit=20` |
//! | a release | `GET /v1/attestations?subject=…&limit=1` |
//! | usage & billing (a month, price card, projection, invoices) | `GET /v1/usage` (the page also rates the open period and lists the invoices, which no single API call does) |
//! | invoice JSON download | `GET /v1/invoices/NUMBER.json` |
//! | audit tracker (the tenant's engagements) | `GET /v1/engagements` (the auditor's key) |
//! | an engagement (notes, log, 100 frozen rows) | `GET /v1/engagements/{id}` (the auditor's key) |
//! | verify (digest + source) | `POST /v1/verify` with the same fields |
//!
//! Billing and audit setup: last month's usage (30 events a day) closed
//! into an invoice with the billing code (`billing close`), and an audit
//! engagement opened for the tenant on tag `v1.0.0` (one release per
//! repository) with one auditor note.
//!
//! The API's `/v1/attestations` and both verifies are metered (a durable
//! usage commit per request); the portal's pages are not, except verify.
//! The first (cold) render of the home page, which verifies the newest
//! envelope of every repository, is printed apart: later renders reuse the
//! verdict cache, as the API does.
//!
//! Not a test: the numbers depend on the machine (shared, 2 cores);
//! record them with the load average, do not assert them.

use anyhow::Context as _;
use bytes::Bytes;
use cloister_attestor::clock::{Clock as _, SystemClock};
use cloister_attestor::config::Config;
use cloister_attestor::server;
use cloister_attestor::storage::{ApiKeyInfo, Plan, StoredResponse, Tenant, UsageKey, UsageWrite};
use cloister_attestor_core::attest::sign_statement;
use cloister_attestor_core::record::{BuildRecord, to_statement};
use http_body_util::{BodyExt as _, Full};
use sqlx::Connection as _;
use std::sync::Arc;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORD: &str = include_str!("../tests/golden/build-record.json");
const BUILDER: &str = "https://cloister.example.com/builders/isolated@v1";

struct Args {
    attestations: usize,
    repos: usize,
    requests: usize,
    rounds: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        attestations: 10_000,
        repos: 50,
        requests: 300,
        rounds: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || -> anyhow::Result<usize> {
            it.next()
                .with_context(|| format!("{flag} needs a value"))?
                .parse()
                .with_context(|| format!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--attestations" => a.attestations = value()?,
            "--repos" => a.repos = value()?,
            "--requests" => a.requests = value()?,
            "--rounds" => a.rounds = value()?,
            "-h" | "--help" => {
                println!("bench-portal [--attestations N] [--repos N] [--requests N] [--rounds N]");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    anyhow::ensure!(
        a.repos >= 1 && a.attestations >= a.repos,
        "need attestations >= repos >= 1"
    );
    Ok(a)
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

struct Resp {
    status: u16,
    headers: hyper::HeaderMap,
    body: Bytes,
}

async fn send(
    client: &Client,
    method: hyper::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> anyhow::Result<Resp> {
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client.request(req.body(Full::new(body))?).await?;
    let (parts, body) = resp.into_parts();
    Ok(Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await?.to_bytes(),
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One request as the bench sends it.
#[derive(Clone)]
struct Req {
    method: hyper::Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Req {
    fn get(path: String, headers: Vec<(String, String)>) -> Self {
        Self {
            method: hyper::Method::GET,
            path,
            headers,
            body: Bytes::new(),
        }
    }
}

async fn time_one(client: &Client, base: &str, r: &Req) -> anyhow::Result<f64> {
    let h: Vec<(&str, &str)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let started = Instant::now();
    let resp = send(
        client,
        r.method.clone(),
        &format!("{base}{}", r.path),
        &h,
        r.body.clone(),
    )
    .await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(
        resp.status == 200,
        "{} {} answered {}: {}",
        r.method,
        r.path,
        resp.status,
        String::from_utf8_lossy(&resp.body)
    );
    Ok(ms)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let dir = tempfile::tempdir()?;
    let config = Config {
        state_dir: dir.path().join("state"),
        listen: "127.0.0.1:0".parse()?,
        rate_limit: cloister_attestor::config::RateLimit {
            per_second: 1_000_000,
            burst: 1_000_000,
        },
        ..Config::default()
    };
    let db_path = config.state_dir.join("attestor.db");
    let running = server::start(config, Arc::new(SystemClock)).await?;
    let app = running.app.clone();
    let base = format!("http://{}", running.addr);
    println!(
        "bench-portal: {} attestations over {} repositories, {} requests x {} rounds per side, load average {}",
        a.attestations,
        a.repos,
        a.requests,
        a.rounds,
        loadavg()
    );

    // Attestations, signed by the attestor's key, loaded in one transaction.
    let started = Instant::now();
    let signer = app.keyring.active_signer()?;
    let template: serde_json::Value = serde_json::from_str(RECORD)?;
    let mut conn =
        sqlx::sqlite::SqliteConnection::connect(&format!("sqlite://{}", db_path.display())).await?;
    let mut tx = conn.begin().await?;
    let mut first_subject = String::new();
    let mut first_repo = String::new();
    let mut first_id = String::new();
    for i in 0..a.attestations {
        let repo = format!("https://github.com/example/repo-{:03}", i % a.repos);
        let release = i / a.repos;
        let digest = format!("sha256:{:064x}", i + 1);
        let mut rec = template.clone();
        rec["source"]["uri"] = repo.clone().into();
        rec["source"]["ref"] = format!("refs/tags/v1.{release}.0").into();
        rec["subjects"] = serde_json::json!([{ "name": format!("app-{i}"), "digest": digest }]);
        let record: BuildRecord = serde_json::from_value(rec)?;
        let signed = sign_statement(&to_statement(&record)?, signer.as_ref())?;
        let id = uuid::Uuid::now_v7().to_string();
        sqlx::query(
            "INSERT INTO attestations (id, created_at_ms, keyid, builder_id, source_uri, envelope, bundle) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(SystemClock.now_ms())
        .bind(&signed.keyid)
        .bind(BUILDER)
        .bind(&repo)
        .bind(signed.envelope.to_json())
        .bind(serde_json::to_string(&signed.bundle)?)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO attestation_subjects (attestation_id, name, digest) VALUES (?, ?, ?)",
        )
        .bind(&id)
        .bind(format!("app-{i}"))
        .bind(&digest)
        .execute(&mut *tx)
        .await?;
        if i == 0 {
            first_subject = digest;
            first_repo = repo;
            first_id = id;
        }
    }
    tx.commit().await?;
    conn.close().await?;
    println!(
        "seeded {} attestations in {:.1} s",
        a.attestations,
        started.elapsed().as_secs_f64()
    );

    // A tenant with a key and a month of usage (30 events a day so far).
    let tenant = Tenant {
        id: "tn_bench".into(),
        name: "bench".into(),
        plan: Plan::Pro,
        created_at_ms: 1,
    };
    app.storage.create_tenant(&tenant).await?;
    let key = cloister_attestor::api_key::generate_key()?;
    app.storage
        .insert_api_key(
            &ApiKeyInfo {
                id: key.id.clone(),
                tenant_id: tenant.id.clone(),
                created_at_ms: 1,
                revoked_at_ms: None,
            },
            &cloister_attestor::api_key::hash_key(&key.secret),
        )
        .await?;
    let now = SystemClock.now_ms();
    let (month_start, _) =
        cloister_attestor::clock::dates::month_bounds(now, None).context("month bounds")?;
    let writes: Vec<UsageWrite> = (0..((now - month_start) / 86_400_000 + 1) * 30)
        .map(|n| UsageWrite {
            tenant_id: tenant.id.clone(),
            event: if n % 3 == 0 {
                "portal.download"
            } else {
                "attestation.verify"
            },
            units: 1,
            key: UsageKey::Generated(format!("seed-{n}")),
            request_hash: "seed".into(),
            at_ms: (month_start + n * 2_880_000).min(now),
            response: StoredResponse {
                status: 200,
                body: Bytes::new(),
            },
        })
        .collect();
    for chunk in writes.chunks(1000) {
        app.storage.commit_usage(chunk, 0).await?;
    }
    // Last month's usage, closed into an invoice as `billing close` does.
    let last_month = cloister_attestor::billing::period::Period::of_ms(month_start - 1)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (last_start, last_end) = last_month.bounds();
    let last: Vec<UsageWrite> = (0..(last_end - last_start) / 2_880_000)
        .map(|n| UsageWrite {
            tenant_id: tenant.id.clone(),
            event: "attestation.verify",
            units: 1,
            key: UsageKey::Generated(format!("last-{n}")),
            request_hash: "seed".into(),
            at_ms: last_start + n * 2_880_000,
            response: StoredResponse {
                status: 200,
                body: Bytes::new(),
            },
        })
        .collect();
    for chunk in last.chunks(1000) {
        app.storage.commit_usage(chunk, 0).await?;
    }
    let signer = app.keyring.active_signer()?;
    let report = cloister_attestor::billing::close::Closer {
        storage: app.storage.as_ref(),
        card: app.billing.api.card(),
        config: app.billing.api.config(),
        signer: signer.as_ref(),
    }
    .run(
        &cloister_attestor::billing::close::CloseOptions {
            period: last_month,
            tenant: Some(tenant.id.clone()),
            dry_run: false,
            early: false,
        },
        now,
        |_, _| {},
    )
    .await?;
    let invoice = match &report.tenants.first().context("a closed tenant")?.outcome {
        cloister_attestor::billing::close::Outcome::Issued { number, .. } => number.clone(),
        other => anyhow::bail!("last month was not invoiced: {other:?}"),
    };

    // An audit engagement for the tenant: tag v1.0.0, one release per repo.
    let started = Instant::now();
    let ctx = cloister_attestor::evidence::Context::load(
        &app.config,
        app.storage.clone(),
        &app.keyring,
        now,
        None,
    )?;
    let opened = cloister_attestor::evidence::engagement::open(
        &ctx,
        &cloister_attestor::evidence::engagement::OpenRequest {
            tag: "v1.0.0".into(),
            repo: None,
            auditor: "Bench Auditor".into(),
            valid_for_ms: 7 * 86_400_000,
            actor: "operator:bench".into(),
            client_tenant: Some(tenant.id.clone()),
        },
    )
    .await?;
    cloister_attestor::evidence::engagement::add_note(
        app.storage.as_ref(),
        &opened.engagement.id,
        "Bench Auditor",
        "Re-verified every envelope offline.",
        now,
        "auditor:Bench Auditor",
    )
    .await?;
    let engagement_id = opened.engagement.id.clone();
    println!(
        "invoice {invoice} issued; engagement {engagement_id} opened ({} attestations frozen) in {:.1} s",
        opened.engagement.attestations,
        started.elapsed().as_secs_f64()
    );

    // Sign in through the form.
    let client: Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let form = send(
        &client,
        hyper::Method::GET,
        &format!("{base}/portal/signin"),
        &[],
        Bytes::new(),
    )
    .await?;
    let pre = form
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("cloister_portal_signin="))
        .context("sign-in cookie")?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let csrf_of = |body: &[u8]| -> anyhow::Result<String> {
        let s = std::str::from_utf8(body)?;
        let at = s.find("name=\"csrf\" value=\"").context("csrf field")? + 19;
        Ok(s[at..at + s[at..].find('"').context("csrf end")?].to_owned())
    };
    let signin_csrf = csrf_of(&form.body)?;
    let resp = send(
        &client,
        hyper::Method::POST,
        &format!("{base}/portal/signin"),
        &[
            ("cookie", &pre),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Bytes::from(format!(
            "csrf={signin_csrf}&api_key={}",
            cloister_attestor::portal::urlencode(&key.secret)
        )),
    )
    .await?;
    anyhow::ensure!(resp.status == 303, "sign-in answered {}", resp.status);
    let cookie = resp
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("cloister_portal="))
        .context("session cookie")?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let verify_page = send(
        &client,
        hyper::Method::GET,
        &format!("{base}/portal/verify"),
        &[("cookie", &cookie)],
        Bytes::new(),
    )
    .await?;
    let csrf = csrf_of(&verify_page.body)?;

    let session = vec![("cookie".to_owned(), cookie.clone())];
    let bearer = vec![("authorization".to_owned(), format!("Bearer {}", key.secret))];
    let auditor = vec![("authorization".to_owned(), format!("Bearer {}", opened.key))];
    let encoded_repo = cloister_attestor::portal::urlencode(&first_repo);
    let boundary = "----bench";
    let multipart = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
         --{boundary}\r\ncontent-disposition: form-data; name=\"artifact_digest\"\r\n\r\n{first_subject}\r\n\
         --{boundary}\r\ncontent-disposition: form-data; name=\"source_uri\"\r\n\r\n{first_repo}\r\n\
         --{boundary}--\r\n"
    );
    let mut portal_verify_headers = session.clone();
    portal_verify_headers.push((
        "content-type".into(),
        format!("multipart/form-data; boundary={boundary}"),
    ));
    let mut api_verify_headers = bearer.clone();
    api_verify_headers.push(("content-type".into(), "application/json".into()));
    let pages: Vec<(&str, Req, Req)> = vec![
        (
            "repositories (home)",
            Req::get("/portal/".into(), session.clone()),
            Req::get(
                format!(
                    "/v1/attestations?builder={}&limit=50",
                    cloister_attestor::portal::urlencode(BUILDER)
                ),
                bearer.clone(),
            ),
        ),
        (
            "repository (20 releases)",
            Req::get(format!("/portal/repo?uri={encoded_repo}"), session.clone()),
            Req::get(
                format!("/v1/attestations?repo={encoded_repo}&limit=20"),
                bearer.clone(),
            ),
        ),
        (
            "release",
            Req::get(format!("/portal/releases/{first_id}"), session.clone()),
            Req::get(
                format!("/v1/attestations?subject={first_subject}&limit=1"),
                bearer.clone(),
            ),
        ),
        (
            "usage & billing",
            Req::get("/portal/usage".into(), session.clone()),
            Req::get("/v1/usage".into(), bearer.clone()),
        ),
        (
            "invoice JSON",
            Req::get(format!("/portal/invoices/{invoice}.json"), session.clone()),
            Req::get(format!("/v1/invoices/{invoice}.json"), bearer.clone()),
        ),
        (
            "audit tracker",
            Req::get("/portal/audit".into(), session.clone()),
            Req::get("/v1/engagements".into(), auditor.clone()),
        ),
        (
            "engagement",
            Req::get(format!("/portal/audit/{engagement_id}"), session.clone()),
            Req::get(format!("/v1/engagements/{engagement_id}"), auditor.clone()),
        ),
        (
            "verify",
            Req {
                method: hyper::Method::POST,
                path: "/portal/verify".into(),
                headers: portal_verify_headers,
                body: Bytes::from(multipart),
            },
            Req {
                method: hyper::Method::POST,
                path: "/v1/verify".into(),
                headers: api_verify_headers,
                body: Bytes::from(serde_json::to_vec(&serde_json::json!({
                    "artifactDigest": first_subject,
                    "sourceUri": first_repo,
                }))?),
            },
        ),
    ];

    // The home page's first render verifies every repository's newest envelope.
    let cold = time_one(&client, &base, &pages[0].1).await?;
    println!(
        "home page, first render (verifies {} envelopes): {cold:.2} ms",
        a.repos
    );

    // The storage queries behind the home and usage pages, alone.
    for (name, which) in [("latest per repository", 0), ("usage by day", 1)] {
        let mut t = Vec::new();
        for _ in 0..a.requests {
            let started = Instant::now();
            if which == 0 {
                app.storage.latest_per_repository().await?;
            } else {
                app.storage
                    .usage_by_day(&tenant.id, month_start, now + 1)
                    .await?;
            }
            t.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        t.sort_by(f64::total_cmp);
        println!(
            "query {name}: p50 {:.3} ms, p99 {:.3} ms",
            percentile(&t, 0.5),
            percentile(&t, 0.99)
        );
    }

    println!(
        "{:<26} {:>9} {:>9}   {:>9} {:>9}   {:>9} {:>9}",
        "page", "p50 ms", "p99 ms", "API p50", "API p99", "p50 ratio", "p99 ratio"
    );
    for (name, ours, anchor) in &pages {
        for _ in 0..20 {
            time_one(&client, &base, ours).await?;
            time_one(&client, &base, anchor).await?;
        }
        let mut mine = Vec::new();
        let mut theirs = Vec::new();
        for round in 0..a.rounds {
            let order: [(&Req, &mut Vec<f64>); 2] = if round % 2 == 0 {
                [(ours, &mut mine), (anchor, &mut theirs)]
            } else {
                [(anchor, &mut theirs), (ours, &mut mine)]
            };
            for (req, out) in order {
                for _ in 0..a.requests {
                    out.push(time_one(&client, &base, req).await?);
                }
            }
        }
        mine.sort_by(f64::total_cmp);
        theirs.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(&mine, 0.5), percentile(&mine, 0.99));
        let (a50, a99) = (percentile(&theirs, 0.5), percentile(&theirs, 0.99));
        println!(
            "{name:<26} {p50:>9.3} {p99:>9.3}   {a50:>9.3} {a99:>9.3}   {:>9.2} {:>9.2}",
            p50 / a50,
            p99 / a99
        );
    }
    println!("load average after: {}", loadavg());
    // The metering task ends when the last handle on the app is gone.
    drop((app, client));
    running.shutdown();
    running.wait().await?;
    Ok(())
}
