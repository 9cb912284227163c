//! `cloister-attestor tenants create|list`: the operator's tenant registry.

use crate::clock::{Clock as _, SystemClock};
use crate::config::{Config, StateArgs};
use crate::storage::{self, Plan, Tenant};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a tenant; prints its id.
    Create {
        /// Unique tenant name.
        name: String,
        /// Price plan.
        #[arg(long, value_enum, ignore_case = true)]
        plan: Plan,
        /// Print the tenant as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List tenants.
    List {
        /// Print JSON (one array).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
}

/// Checks a tenant name: 1–64 characters of letters, digits, `.`, `_`, `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

pub(super) async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Create {
            name,
            plan,
            json,
            state,
        } => {
            anyhow::ensure!(
                valid_name(&name),
                "tenant name must be 1 to 64 letters, digits, '.', '_' or '-'"
            );
            let config = Config::load(&state.overrides())?;
            let store = storage::open(&config.storage_url()).await?;
            let tenant = Tenant {
                id: format!("tn_{}", uuid::Uuid::now_v7().simple()),
                name,
                plan,
                created_at_ms: SystemClock.now_ms(),
            };
            let result = store.create_tenant(&tenant).await;
            store.close().await;
            result?;
            if json {
                println!("{}", serde_json::to_string(&tenant)?);
            } else {
                println!(
                    "created tenant {} ({}, plan {})",
                    tenant.name,
                    tenant.id,
                    tenant.plan.as_str()
                );
            }
        }
        Command::List { json, state } => {
            let config = Config::load(&state.overrides())?;
            let store = storage::open(&config.storage_url()).await?;
            let tenants = store.list_tenants().await;
            store.close().await;
            let tenants = tenants?;
            if json {
                println!("{}", serde_json::to_string(&tenants)?);
            } else {
                for t in tenants {
                    println!("{}\t{}\t{}", t.id, t.name, t.plan.as_str());
                }
            }
        }
    }
    Ok(())
}
