//! `cloister-attestor attestations import FILE.intoto.jsonl`: adds
//! provenance signed elsewhere after every envelope verified against the
//! trusted keys; one that does not refuses the whole file (see
//! `evidence::import`).

use super::policy::trusted_keys;
use crate::clock::{Clock as _, SystemClock};
use crate::config::{Config, StateArgs};
use crate::evidence::import;
use crate::storage;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Verify and store every envelope of a .intoto.jsonl file (all or nothing).
    Import {
        file: PathBuf,
        /// A trusted public key (PEM); repeatable. Without any, the keys the
        /// keyring in the state directory trusts now.
        #[arg(long = "public-key", value_name = "PEM")]
        public_keys: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
}

/// Largest file read (the envelopes of a migrated store).
const MAX_FILE: usize = 1 << 30;

pub(super) async fn run(cmd: Command) -> anyhow::Result<()> {
    let Command::Import {
        file,
        public_keys,
        json,
        state,
    } = cmd;
    let config = Config::load(&state.overrides())?;
    let state_dir = config.state_dir.clone();
    let trusted = trusted_keys(&public_keys, Some(&state_dir))?;
    let bytes = super::sign::read_limited(&file, MAX_FILE)?;
    let store = storage::open(&config.storage_url()).await?;
    let result = import::import(store.as_ref(), &bytes, &trusted, SystemClock.now_ms()).await;
    store.close().await;
    let out = result?;
    if json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!(
            "imported {} attestation(s) from {} ({} already present)",
            out.added.len(),
            file.display(),
            out.already_present.len()
        );
        for id in &out.added {
            println!("{id}");
        }
    }
    Ok(())
}
