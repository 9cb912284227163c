//! `cloister-attestor portal revoke-sessions TENANT`: ends every trust-portal
//! session of a tenant at once (its people must sign in again). Revoking an
//! API key (`api-keys revoke`) already ends the sessions opened with it.

use crate::config::{Config, StateArgs};
use anyhow::Context as _;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// End every portal session of a tenant; prints how many ended.
    RevokeSessions {
        /// Tenant id or name.
        tenant: String,
        /// Print `{"tenant", "revoked"}` as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
}

pub(super) async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::RevokeSessions {
            tenant,
            json,
            state,
        } => {
            let config = Config::load(&state.overrides())?;
            let store = crate::storage::open(&config.storage_url()).await?;
            let result = async {
                let t = store
                    .find_tenant(&tenant)
                    .await?
                    .with_context(|| format!("no tenant {tenant:?}"))?;
                let n = store.delete_tenant_sessions(&t.id).await?;
                anyhow::Ok((t, n))
            }
            .await;
            store.close().await;
            let (t, n) = result?;
            if json {
                println!("{}", serde_json::json!({ "tenant": t.id, "revoked": n }));
            } else {
                println!("ended {n} portal session(s) of tenant {}", t.name);
            }
        }
    }
    Ok(())
}
