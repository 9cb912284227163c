//! `cloister-attestor usage --tenant T [--period YYYY-MM] [--json]`: a
//! tenant's metered events in a calendar month (UTC; default: this month),
//! for operators. JSON: `{"tenant": T, "events": {"attestation.verify": N,
//! "portal.download": M}}`.

use crate::clock::dates::month_bounds;
use crate::clock::{Clock as _, SystemClock};
use crate::config::{Config, StateArgs};
use crate::service::api::usage::EVENTS;
use crate::storage;
use anyhow::Context as _;
use std::collections::BTreeMap;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Tenant id or name.
    #[arg(long)]
    pub tenant: String,
    /// Calendar month, YYYY-MM (UTC); default: the current month.
    #[arg(long, value_name = "YYYY-MM")]
    pub period: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

pub(super) async fn run(args: Args) -> anyhow::Result<()> {
    let (from, to) = month_bounds(SystemClock.now_ms(), args.period.as_deref())
        .context("--period must be YYYY-MM")?;
    let config = Config::load(&args.state.overrides())?;
    let store = storage::open(&config.storage_url()).await?;
    let result = async {
        let t = store
            .find_tenant(&args.tenant)
            .await?
            .with_context(|| format!("no tenant {:?}", args.tenant))?;
        let mut events: BTreeMap<String, i64> = EVENTS.iter().map(|e| (e.to_string(), 0)).collect();
        events.extend(store.usage_counts(&t.id, from, to).await?);
        anyhow::Ok(events)
    }
    .await;
    store.close().await;
    let events = result?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "tenant": args.tenant, "events": events })
        );
    } else {
        for (event, n) in &events {
            println!("{event}\t{n}");
        }
    }
    Ok(())
}
