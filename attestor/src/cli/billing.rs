//! `cloister-attestor billing close|invoices|show|void|verify|set-plan|price-card`:
//! the operator's month-end close and invoice commands (see
//! cookbook/runbook-billing-close.md). `close` exits 1 when any tenant's
//! invoice could not be issued (a rerun completes it); `verify` exits 0
//! (valid), 1 (invalid), 2 (usage).

use crate::billing::close::{CloseOptions, Closer, Outcome};
use crate::billing::document;
use crate::billing::money::format_usd;
use crate::billing::period::{Period, rfc3339};
use crate::billing::{Billing, InvoiceSummary};
use crate::clock::{Clock as _, SystemClock};
use crate::config::{Config, Overrides, StateArgs};
use crate::keyring::{self, Keyring};
use crate::storage::billing::{InvoiceFilter, InvoiceStatus};
use crate::storage::{self, Plan};
use anyhow::Context as _;
use cloister_attestor_core::keys::PublicKey;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Close a billing period: rate every tenant's usage, issue one invoice
    /// per tenant with usage or a minimum (numbered at finalization,
    /// gapless), sign it, queue its invoice.created webhooks. Closing a
    /// period again reports the invoices issued before.
    Close {
        /// Calendar month (UTC), YYYY-MM.
        #[arg(long, value_name = "YYYY-MM")]
        period: String,
        /// Only this tenant (id or name).
        #[arg(long)]
        tenant: Option<String>,
        /// Rate and show the invoices without closing or issuing anything.
        #[arg(long)]
        dry_run: bool,
        /// Close a period that has not ended: it ends now (a tenant
        /// leaving); later events of the month go on the next invoice.
        #[arg(long)]
        early: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Read the keyring's passphrase from this file.
        #[arg(long, value_name = "FILE", conflicts_with = "passphrase_env")]
        passphrase_file: Option<PathBuf>,
        /// Read the keyring's passphrase from this environment variable.
        #[arg(long, value_name = "VAR")]
        passphrase_env: Option<String>,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List invoices.
    Invoices {
        /// Only this tenant (id or name).
        #[arg(long)]
        tenant: Option<String>,
        /// Only this period, YYYY-MM.
        #[arg(long, value_name = "YYYY-MM")]
        period: Option<String>,
        /// Also list drafts (not issued yet).
        #[arg(long)]
        drafts: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Show an invoice; write its PDF, JSON or signature to files.
    Show {
        /// Invoice number (CLO-YYYY-NNNNNN).
        number: String,
        /// Write the PDF here (rendered and stored on first use).
        #[arg(long, value_name = "FILE")]
        pdf: Option<PathBuf>,
        /// Write the invoice JSON (the signed bytes) here.
        #[arg(long, value_name = "FILE")]
        json_out: Option<PathBuf>,
        /// Write the DSSE signature envelope here.
        #[arg(long, value_name = "FILE")]
        envelope: Option<PathBuf>,
        /// Print the invoice JSON (exactly the signed bytes) on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Void an issued invoice (it stays, marked void; issue a corrected one
    /// with `billing close` for its period and tenant).
    Void {
        /// Invoice number (or a draft's id, which is refused).
        number: String,
        /// Why (kept with the invoice).
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Check an invoice JSON against its DSSE signature and trusted keys.
    Verify(VerifyArgs),
    /// Change a tenant's plan, effective now (recorded for rating).
    SetPlan {
        /// Tenant id or name.
        tenant: String,
        #[arg(value_enum, ignore_case = true)]
        plan: Plan,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Print the price card in force (the shipped card with the config's
    /// overrides) as JSON.
    PriceCard {
        #[command(flatten)]
        state: StateArgs,
    },
}

/// `billing verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The invoice JSON (as served by GET /v1/invoices/NUMBER).
    pub invoice: PathBuf,
    /// The DSSE envelope; default: the invoice path with .dsse instead of .json.
    #[arg(long, value_name = "FILE")]
    pub envelope: Option<PathBuf>,
    /// A trusted public key (PEM); repeatable.
    #[arg(long = "public-key", value_name = "PEM", required = true)]
    pub public_keys: Vec<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// Most bytes read from an invoice or envelope file.
const MAX_FILE: u64 = 16 * 1024 * 1024;

fn read_limited(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_FILE + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("{}", path.display()))?;
    anyhow::ensure!(
        buf.len() as u64 <= MAX_FILE,
        "{} is larger than {MAX_FILE} bytes",
        path.display()
    );
    Ok(buf)
}

/// Runs a `billing` subcommand; its exit code.
pub(super) fn exec(cmd: Command) -> ExitCode {
    if let Command::Verify(args) = cmd {
        return ExitCode::from(verify(args));
    }
    match super::block_on(run(cmd)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!(
                "cloister-attestor billing: {}",
                cloister_report::Chain(e.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

/// `billing verify`: 0 valid, 1 invalid, 2 usage.
fn verify(args: VerifyArgs) -> u8 {
    let usage = |m: String| {
        eprintln!("cloister-attestor billing verify: {m}");
        2
    };
    let invoice = match read_limited(&args.invoice) {
        Ok(b) => b,
        Err(e) => return usage(format!("{e:#}")),
    };
    let env_path = args.envelope.clone().unwrap_or_else(|| {
        let s = args.invoice.to_string_lossy();
        PathBuf::from(match s.strip_suffix(".json") {
            Some(stem) => format!("{stem}.dsse"),
            None => format!("{s}.dsse"),
        })
    });
    let envelope = match read_limited(&env_path) {
        Ok(b) => b,
        Err(e) => return usage(format!("envelope: {e:#}")),
    };
    let mut keys = Vec::new();
    for p in &args.public_keys {
        match read_limited(p)
            .and_then(|b| String::from_utf8(b).context("not UTF-8"))
            .and_then(|pem| PublicKey::from_pem(&pem).map_err(anyhow::Error::from))
        {
            Ok(k) => keys.push(k),
            Err(e) => return usage(format!("public key {}: {e:#}", p.display())),
        }
    }
    match document::verify(&invoice, &envelope, &keys) {
        Ok(v) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"verified": true, "number": v.number, "sha256": v.sha256,
                        "keyid": v.keyid, "totalMicros": v.total_micros})
                );
            } else {
                println!(
                    "verified: invoice {} (sha256 {}), total {} USD, signed by {}",
                    v.number,
                    v.sha256,
                    format_usd(v.total_micros),
                    v.keyid
                );
            }
            0
        }
        Err(e) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"verified": false, "reason": e.to_string()})
                );
            } else {
                eprintln!("cloister-attestor billing verify: FAILED: {e}");
            }
            1
        }
    }
}

/// A subcommand; `Ok(false)`: done, but with failures (exit 1).
async fn run(cmd: Command) -> anyhow::Result<bool> {
    match cmd {
        Command::Verify(args) => Ok(verify(args) == 0),
        Command::Close {
            period,
            tenant,
            dry_run,
            early,
            json,
            passphrase_file,
            passphrase_env,
            state,
        } => {
            let opts = CloseOptions {
                period: Period::parse(&period)?,
                tenant,
                dry_run,
                early,
            };
            let overrides = Overrides {
                key_passphrase_file: passphrase_file,
                key_passphrase_env: passphrase_env,
                ..state.overrides()
            };
            close(&opts, &overrides, json).await
        }
        Command::Invoices {
            tenant,
            period,
            drafts,
            json,
            state,
        } => invoices(tenant, period, drafts, json, state).await,
        Command::Show {
            number,
            pdf,
            json_out,
            envelope,
            json,
            state,
        } => show(number, pdf, json_out, envelope, json, state).await,
        Command::Void {
            number,
            reason,
            json,
            state,
        } => void(number, reason, json, state).await,
        Command::SetPlan {
            tenant,
            plan,
            state,
        } => set_plan(tenant, plan, state).await,
        Command::PriceCard { state } => {
            let config = Config::load(&state.overrides())?;
            let card = config.billing.validate().map_err(|e| anyhow::anyhow!(e))?;
            println!("{}", serde_json::to_string_pretty(&card)?);
            Ok(true)
        }
    }
}

/// `billing close`: rates and issues the period's invoices; `Ok(false)` when
/// a tenant's invoice could not be issued.
async fn close(opts: &CloseOptions, overrides: &Overrides, json: bool) -> anyhow::Result<bool> {
    let config = Config::load(overrides)?;
    let card = config.billing.validate().map_err(|e| anyhow::anyhow!(e))?;
    let passphrase = keyring::read_passphrase(
        config.key_passphrase_file.as_deref(),
        config.key_passphrase_env.as_deref(),
    )?;
    crate::storage::files::secure_state_dir(&config.state_dir)?;
    let ring = Keyring::open(&config.state_dir)?.with_passphrase(passphrase);
    let signer = ring.ensure_active(config.key_algorithm)?;
    let store = storage::open(&config.storage_url()).await?;
    let closer = Closer {
        storage: store.as_ref(),
        card: &card,
        config: &config.billing,
        signer: signer.as_ref(),
    };
    let tty = std::io::stderr().is_terminal();
    let mut last = Instant::now();
    let report = closer
        .run(opts, SystemClock.now_ms(), |done, total| {
            if done == total || last.elapsed() >= Duration::from_secs(2) {
                last = Instant::now();
                if tty || done == total || done % 100 == 0 {
                    eprintln!("closing {}: {done}/{total} tenants", opts.period);
                }
            }
        })
        .await;
    store.close().await;
    let report = report?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(!report.failed())
}

/// `billing invoices`.
async fn invoices(
    tenant: Option<String>,
    period: Option<String>,
    drafts: bool,
    json: bool,
    state: StateArgs,
) -> anyhow::Result<bool> {
    if let Some(p) = &period {
        Period::parse(p)?;
    }
    let config = Config::load(&state.overrides())?;
    let store = storage::open(&config.storage_url()).await?;
    let result = async {
        let tenant_id = match &tenant {
            Some(t) => Some(
                store
                    .find_tenant(t)
                    .await?
                    .with_context(|| format!("no tenant {t:?}"))?
                    .id,
            ),
            None => None,
        };
        Ok::<_, anyhow::Error>(
            store
                .billing()
                .invoices(&InvoiceFilter {
                    tenant_id: tenant_id.as_deref(),
                    period: period.as_deref(),
                    include_drafts: drafts,
                })
                .await?,
        )
    }
    .await;
    store.close().await;
    let rows = result?;
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| match InvoiceSummary::of(r) {
                Some(s) => {
                    let mut v = serde_json::to_value(s).unwrap_or_default();
                    v["tenantId"] = r.tenant_id.clone().into();
                    v
                }
                None => serde_json::json!({"id": r.id, "tenantId": r.tenant_id,
                    "period": r.period, "status": "draft", "totalMicros": r.total_micros}),
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        for r in &rows {
            println!(
                "{}\t{}\t{}\t{}\t{} USD",
                r.number.as_deref().unwrap_or(&r.id),
                r.tenant_id,
                r.period,
                r.status.as_str(),
                format_usd(r.total_micros)
            );
        }
    }
    Ok(true)
}

/// `billing show`.
async fn show(
    number: String,
    pdf: Option<PathBuf>,
    json_out: Option<PathBuf>,
    envelope: Option<PathBuf>,
    json: bool,
    state: StateArgs,
) -> anyhow::Result<bool> {
    let config = Config::load(&state.overrides())?;
    let card = config.billing.validate().map_err(|e| anyhow::anyhow!(e))?;
    let store = storage::open(&config.storage_url()).await?;
    let api = Billing::new(store.clone(), card, config.billing.clone());
    let result = async {
        let inv = store
            .billing()
            .invoice_by_number(&number)
            .await?
            .with_context(|| format!("no invoice {number}"))?;
        let doc = inv
            .document
            .clone()
            .context("the invoice has no document")?;
        if let Some(path) = &pdf {
            write_file(path, &api.pdf(&inv).await?)?;
        }
        if let Some(path) = &json_out {
            write_file(path, doc.as_bytes())?;
        }
        if let Some(path) = &envelope {
            write_file(path, inv.envelope.as_deref().unwrap_or_default().as_bytes())?;
        }
        anyhow::Ok((inv, doc))
    }
    .await;
    store.close().await;
    let (inv, doc) = result?;
    if json {
        let mut out = std::io::stdout().lock();
        out.write_all(doc.as_bytes())?;
        out.write_all(b"\n")?;
    } else {
        let d = document::InvoiceDocument::parse_canonical(doc.as_bytes())?;
        println!(
            "invoice {} ({}) for {} ({}), period {} [{} to {}]",
            d.number,
            inv.status.as_str(),
            d.customer.name,
            d.customer.tenant_id,
            d.period.label,
            d.period.start,
            d.period.end
        );
        for l in &d.lines {
            println!(
                "  {:<60} {:>10} x {:>10} = {:>12}",
                l.description,
                l.billable_quantity,
                format_usd(l.unit_price_micros),
                format_usd(l.amount_micros)
            );
        }
        println!(
            "  total {} USD, issued {}",
            format_usd(d.total_micros),
            d.issued_at
        );
        if inv.status == InvoiceStatus::Void {
            println!(
                "  VOID since {}: {}",
                inv.voided_at_ms.map(rfc3339).unwrap_or_default(),
                inv.void_reason.unwrap_or_default()
            );
        }
    }
    Ok(true)
}

/// `billing void`.
async fn void(
    number: String,
    reason: String,
    json: bool,
    state: StateArgs,
) -> anyhow::Result<bool> {
    anyhow::ensure!(!reason.trim().is_empty(), "--reason must not be empty");
    let config = Config::load(&state.overrides())?;
    let store = storage::open(&config.storage_url()).await?;
    let result = store
        .billing()
        .void_invoice(&number, &reason, SystemClock.now_ms())
        .await;
    store.close().await;
    let inv = result?;
    if json {
        println!("{}", serde_json::to_string(&InvoiceSummary::of(&inv))?);
    } else {
        println!(
            "voided invoice {} ({} USD): {reason}",
            inv.number.as_deref().unwrap_or(&inv.id),
            format_usd(inv.total_micros)
        );
    }
    Ok(true)
}

/// `billing set-plan`.
async fn set_plan(tenant: String, plan: Plan, state: StateArgs) -> anyhow::Result<bool> {
    let config = Config::load(&state.overrides())?;
    let store = storage::open(&config.storage_url()).await?;
    let result = async {
        let t = store
            .find_tenant(&tenant)
            .await?
            .with_context(|| format!("no tenant {tenant:?}"))?;
        store
            .billing()
            .change_plan(&t.id, plan.as_str(), SystemClock.now_ms())
            .await?;
        anyhow::Ok(t)
    }
    .await;
    store.close().await;
    let t = result?;
    println!(
        "tenant {} ({}): plan {} -> {}",
        t.name,
        t.id,
        t.plan.as_str(),
        plan.as_str()
    );
    Ok(true)
}

fn write_file(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn print_report(r: &crate::billing::close::CloseReport) {
    println!(
        "period {} [{} to {}]{}{}",
        r.period,
        r.start,
        r.end,
        if r.early { " (early)" } else { "" },
        if r.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    );
    for t in &r.tenants {
        let what = match &t.outcome {
            Outcome::Issued {
                number,
                total_micros,
                deliveries,
            } => format!(
                "issued {number}: {} USD ({deliveries} webhook deliveries queued)",
                format_usd(*total_micros)
            ),
            Outcome::Existing {
                number,
                total_micros,
                status,
            } => format!(
                "already issued {number}: {} USD ({})",
                format_usd(*total_micros),
                status.as_str()
            ),
            Outcome::NoInvoice => "no invoice (no usage and no minimum)".to_owned(),
            Outcome::WouldIssue { draft } => {
                let mut s = format!("would issue {} USD", format_usd(draft.total_micros));
                for l in &draft.lines {
                    s.push_str(&format!(
                        "\n    {:<60} {:>10} x {:>10} = {:>12}",
                        l.description,
                        l.billable_quantity,
                        format_usd(l.unit_price_micros),
                        format_usd(l.amount_micros)
                    ));
                }
                s
            }
            Outcome::AlreadyClosed => "already closed, no invoice".to_owned(),
            Outcome::Refused { reason } => format!("not closed: {reason}"),
            Outcome::Failed { error } => format!("FAILED (a rerun retries): {error}"),
        };
        println!("{}\t{}", t.tenant, what);
    }
}
