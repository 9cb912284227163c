//! `cloister-attestor webhooks add|list|enable|disable|failed|replay|log`:
//! tenants' `invoice.created` endpoints and their deliveries. `add` prints
//! the endpoint's signing secret once, as the last line of stdout; it is
//! never shown again (nor logged).

use crate::billing::card::Feature;
use crate::billing::period::{parse_time_ms, rfc3339};
use crate::billing::webhooks::{check_url, generate_secret};
use crate::clock::{Clock as _, SystemClock};
use crate::config::{Config, StateArgs};
use crate::storage::billing::{EndpointRow, OutboxFilter};
use crate::storage::{self, Storage};
use anyhow::Context as _;
use std::sync::Arc;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add an endpoint for a tenant; its secret (whsec_…) is the last line
    /// of stdout, shown once.
    Add {
        /// Tenant id or name.
        tenant: String,
        /// http:// or https:// URL that receives POSTs.
        url: String,
        /// Print {"id", "tenantId", "url", "secret"} as JSON instead.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List endpoints (never their secrets).
    List {
        /// Only this tenant (id or name).
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Enable an endpoint (e.g. after it answered 410 Gone).
    Enable {
        id: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Disable an endpoint; its pending deliveries are dead-lettered.
    Disable {
        id: String,
        #[arg(long, default_value = "disabled by the operator")]
        reason: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Dead-lettered deliveries (every attempt failed, or the endpoint was disabled).
    Failed {
        #[arg(long)]
        tenant: Option<String>,
        /// Messages created at or after this time (RFC 3339 or YYYY-MM-DD).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Re-send dead-lettered messages created since TIME (to enabled
    /// endpoints), attempts counted from zero; a running attestor's worker
    /// picks them up at its next poll.
    Replay {
        /// RFC 3339 or YYYY-MM-DD.
        #[arg(long, value_name = "TIME")]
        since: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// The delivery log: every attempt with its status code and timing.
    Log {
        #[arg(long)]
        tenant: Option<String>,
        /// Only this message (msg_…).
        #[arg(long)]
        message: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
}

fn state(cmd: &Command) -> &StateArgs {
    match cmd {
        Command::Add { state, .. }
        | Command::List { state, .. }
        | Command::Enable { state, .. }
        | Command::Disable { state, .. }
        | Command::Failed { state, .. }
        | Command::Replay { state, .. }
        | Command::Log { state, .. } => state,
    }
}

async fn tenant_id(store: &dyn Storage, t: &Option<String>) -> anyhow::Result<Option<String>> {
    Ok(match t {
        Some(t) => Some(
            store
                .find_tenant(t)
                .await?
                .with_context(|| format!("no tenant {t:?}"))?
                .id,
        ),
        None => None,
    })
}

fn time_arg(s: &str) -> anyhow::Result<i64> {
    parse_time_ms(s).with_context(|| format!("{s:?} is not RFC 3339 or YYYY-MM-DD"))
}

pub(super) async fn run(cmd: Command) -> anyhow::Result<()> {
    let config = Config::load(&state(&cmd).overrides())?;
    let card = config.billing.validate().map_err(|e| anyhow::anyhow!(e))?;
    // Validate time arguments before opening anything.
    match &cmd {
        Command::Failed { since: Some(s), .. } | Command::Replay { since: s, .. } => {
            time_arg(s)?;
        }
        Command::Add { url, .. } => check_url(url)?,
        _ => {}
    }
    let store: Arc<dyn Storage> = storage::open(&config.storage_url()).await?;
    let result = run_on(cmd, store.as_ref(), &card).await;
    store.close().await;
    result
}

async fn run_on(
    cmd: Command,
    store: &dyn Storage,
    card: &crate::billing::card::PriceCard,
) -> anyhow::Result<()> {
    let now = SystemClock.now_ms();
    match cmd {
        Command::Add {
            tenant, url, json, ..
        } => add(store, card, tenant, url, json, now).await?,
        Command::List { tenant, json, .. } => list(store, tenant, json).await?,
        Command::Enable { id, .. } => {
            let e = store
                .billing()
                .set_endpoint_enabled(&id, true, None, now)
                .await?;
            println!("enabled endpoint {} -> {}", e.id, e.url);
        }
        Command::Disable { id, reason, .. } => {
            let e = store
                .billing()
                .set_endpoint_enabled(&id, false, Some(&reason), now)
                .await?;
            println!("disabled endpoint {} -> {}: {reason}", e.id, e.url);
        }
        Command::Failed {
            tenant,
            since,
            json,
            ..
        } => failed(store, tenant, since, json).await?,
        Command::Replay {
            since,
            tenant,
            json,
            ..
        } => replay(store, since, tenant, json, now).await?,
        Command::Log {
            tenant,
            message,
            limit,
            json,
            ..
        } => log(store, tenant, message, limit, json).await?,
    }
    Ok(())
}

/// `webhooks add`: prints the signing secret once.
async fn add(
    store: &dyn Storage,
    card: &crate::billing::card::PriceCard,
    tenant: String,
    url: String,
    json: bool,
    now: i64,
) -> anyhow::Result<()> {
    let t = store
        .find_tenant(&tenant)
        .await?
        .with_context(|| format!("no tenant {tenant:?}"))?;
    anyhow::ensure!(
        card.plan(t.plan).has(Feature::Webhooks),
        "the {} plan of tenant {} does not include webhooks (feature_not_in_plan)",
        t.plan.as_str(),
        t.name
    );
    let secret = generate_secret()?;
    let e = EndpointRow {
        id: format!("ep_{}", uuid::Uuid::now_v7().simple()),
        tenant_id: t.id.clone(),
        url,
        secret,
        enabled: true,
        disabled_reason: None,
        created_at_ms: now,
        updated_at_ms: now,
    };
    store.billing().add_endpoint(&e).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"id": e.id, "tenantId": e.tenant_id, "url": e.url, "secret": e.secret})
        );
    } else {
        println!("added endpoint {} for {} -> {}", e.id, t.name, e.url);
        println!("signing secret (shown once; store it in the receiver):");
        println!("{}", e.secret);
    }
    Ok(())
}

/// `webhooks list`.
async fn list(store: &dyn Storage, tenant: Option<String>, json: bool) -> anyhow::Result<()> {
    let t = tenant_id(store, &tenant).await?;
    let rows = store.billing().endpoints(t.as_deref()).await?;
    if json {
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        for e in rows {
            println!(
                "{}\t{}\t{}\t{}",
                e.id,
                e.tenant_id,
                e.url,
                if e.enabled {
                    "enabled".to_owned()
                } else {
                    format!("disabled: {}", e.disabled_reason.unwrap_or_default())
                }
            );
        }
    }
    Ok(())
}

/// `webhooks failed`: dead-lettered deliveries.
async fn failed(
    store: &dyn Storage,
    tenant: Option<String>,
    since: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let t = tenant_id(store, &tenant).await?;
    let since = since.as_deref().map(time_arg).transpose()?;
    let rows = store
        .billing()
        .outbox(&OutboxFilter {
            tenant_id: t.as_deref(),
            state: Some("dead"),
            since_ms: since,
            limit: 10_000,
        })
        .await?;
    if json {
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        for r in rows {
            println!(
                "{}\t{}\t{}\t{} attempts\t{}\t{}",
                r.message_id,
                r.tenant_id,
                r.url,
                r.attempts,
                r.dead_at_ms.map(rfc3339).unwrap_or_default(),
                r.last_error.unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// `webhooks replay`: queues dead-lettered deliveries again.
async fn replay(
    store: &dyn Storage,
    since: String,
    tenant: Option<String>,
    json: bool,
    now: i64,
) -> anyhow::Result<()> {
    let t = tenant_id(store, &tenant).await?;
    let n = store
        .billing()
        .replay_dead(t.as_deref(), time_arg(&since)?, now)
        .await?;
    anyhow::ensure!(
        n > 0,
        "nothing to replay: no dead-lettered message created since {since} to an enabled endpoint"
    );
    if json {
        println!("{}", serde_json::json!({"replayed": n}));
    } else {
        println!("{n} deliveries queued again");
    }
    Ok(())
}

/// `webhooks log`: delivery attempts.
async fn log(
    store: &dyn Storage,
    tenant: Option<String>,
    message: Option<String>,
    limit: u32,
    json: bool,
) -> anyhow::Result<()> {
    let t = tenant_id(store, &tenant).await?;
    let rows = store
        .billing()
        .delivery_log(t.as_deref(), message.as_deref(), limit)
        .await?;
    if json {
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        for r in rows {
            println!(
                "{}\t{}\tattempt {}\t{}\t{} ms\t{}",
                rfc3339(r.attempted_at_ms),
                r.message_id,
                r.attempt,
                r.status_code
                    .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                r.duration_ms,
                r.error.unwrap_or_default()
            );
        }
    }
    Ok(())
}
