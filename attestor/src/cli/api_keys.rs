//! `cloister-attestor api-keys issue|revoke|list`. An issued key is printed
//! once, as the last line of stdout; only its SHA-256 is stored.

use crate::api_key::{generate_key, hash_key};
use crate::clock::{Clock as _, SystemClock};
use crate::config::{Config, StateArgs};
use crate::storage::{self, ApiKeyInfo};
use anyhow::Context as _;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Issue a key for a tenant; the key is the last line of stdout, shown once.
    Issue {
        /// Tenant id or name.
        tenant: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Revoke a key by its id (the `clst_<id>_…` part); effective at once in
    /// this host's new requests, within `auth.cache_ttl_ms` in running servers.
    Revoke {
        key_id: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List a tenant's keys (ids and dates, never the keys).
    List {
        /// Tenant id or name.
        tenant: String,
        /// Print JSON (one array).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
}

pub(super) async fn run(cmd: Command) -> anyhow::Result<()> {
    let state = match &cmd {
        Command::Issue { state, .. }
        | Command::Revoke { state, .. }
        | Command::List { state, .. } => state,
    };
    let config = Config::load(&state.overrides())?;
    let store = storage::open(&config.storage_url()).await?;
    let result = async {
        match &cmd {
            Command::Issue { tenant, .. } => {
                let t = store
                    .find_tenant(tenant)
                    .await?
                    .with_context(|| format!("no tenant {tenant:?}"))?;
                let key = generate_key()?;
                let info = ApiKeyInfo {
                    id: key.id.clone(),
                    tenant_id: t.id.clone(),
                    created_at_ms: SystemClock.now_ms(),
                    revoked_at_ms: None,
                };
                store.insert_api_key(&info, &hash_key(&key.secret)).await?;
                println!("issued key {} for tenant {} ({})", key.id, t.name, t.id);
                println!("store it now: it is not shown again");
                println!("{}", key.secret);
            }
            Command::Revoke { key_id, .. } => {
                store.revoke_api_key(key_id, SystemClock.now_ms()).await?;
                println!("revoked key {key_id}");
            }
            Command::List { tenant, json, .. } => {
                let t = store
                    .find_tenant(tenant)
                    .await?
                    .with_context(|| format!("no tenant {tenant:?}"))?;
                let keys = store.list_api_keys(&t.id).await?;
                if *json {
                    println!("{}", serde_json::to_string(&keys)?);
                } else {
                    for k in keys {
                        let state = if k.revoked_at_ms.is_some() {
                            "revoked"
                        } else {
                            "active"
                        };
                        println!("{}\t{}", k.id, state);
                    }
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    store.close().await;
    result
}
