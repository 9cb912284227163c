//! `cloister-attestor policy sign|verify|coverage`: the signed policy
//! manifest of a sandbox-profile directory, its check, and policy signature
//! coverage (see `evidence::policies`).

use super::audit::{Opened, write_atomic};
use crate::config::StateArgs;
use crate::evidence::{engagement, policies};
use crate::keyring::{self, Keyring};
use anyhow::Context as _;
use cloister_attestor_core::keys::PublicKey;
use cloister_attestor_core::policy;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Sign the profiles (*.json) and seccomp policies (seccomp/*.json) of a
    /// directory into a policy manifest (DSSE), with the digests provenance records.
    Sign {
        /// The profile directory (e.g. sandbox-profiles/).
        dir: PathBuf,
        /// Where to write the signed manifest.
        #[arg(long, value_name = "FILE", default_value = "policy-manifest.dsse.json")]
        out: PathBuf,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Verify a signed policy manifest and list what it signs.
    Verify {
        file: PathBuf,
        /// A trusted public key (PEM); repeatable. Without any, the keyring's
        /// trusted keys (--state-dir).
        #[arg(long = "public-key", value_name = "PEM")]
        public_keys: Vec<PathBuf>,
        /// Attestor state directory whose keyring supplies trusted keys.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Policy signature coverage: the policies in recent provenance and
    /// whether the configured manifest (policy.manifest) signs each.
    Coverage {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
}

/// Trusted keys: the given PEM files, else the keyring's trusted keys.
pub(super) fn trusted_keys(
    public_keys: &[PathBuf],
    state_dir: Option<&Path>,
) -> anyhow::Result<Vec<PublicKey>> {
    if !public_keys.is_empty() {
        return public_keys
            .iter()
            .map(|p| {
                let pem =
                    std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
                PublicKey::from_pem(&pem).with_context(|| format!("{}", p.display()))
            })
            .collect();
    }
    let dir = keyring::state_dir(state_dir);
    anyhow::ensure!(
        dir.join("keyring.json").exists(),
        "no trusted keys: pass --public-key PEM (or --state-dir DIR with a keyring)"
    );
    let keys = Keyring::open(&dir)?.trusted_keys(time::OffsetDateTime::now_utc())?;
    anyhow::ensure!(
        !keys.is_empty(),
        "the keyring in {} trusts no key",
        dir.display()
    );
    Ok(keys)
}

pub(super) async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Sign {
            dir,
            out,
            json,
            state,
        } => {
            let files = policies::scan_dir(&dir)?;
            let manifest = policies::manifest_of(&files)?;
            let config = crate::config::Config::load(&state.overrides())?;
            let pass = keyring::read_passphrase(
                config.key_passphrase_file.as_deref(),
                config.key_passphrase_env.as_deref(),
            )?;
            let signer = Keyring::open(&config.state_dir)?
                .with_passphrase(pass)
                .active_signer()?;
            let envelope = policy::sign(&manifest, signer.as_ref())?;
            write_atomic(&out, envelope.to_jsonl_line().as_bytes())?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"manifest": out, "keyid": signer.keyid(),
                        "policies": manifest.entries()})
                );
            } else {
                for f in &files {
                    println!("{}\t{}\t{}", f.kind.as_str(), f.name, f.digest);
                }
                println!(
                    "signed {} policies with key {}: {}",
                    manifest.entries().len(),
                    signer.keyid(),
                    out.display()
                );
            }
        }
        Command::Verify {
            file,
            public_keys,
            state_dir,
            json,
        } => {
            let trusted = trusted_keys(&public_keys, state_dir.as_deref())?;
            let v = policies::load_manifest(&file, &trusted)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"verified": true, "keyid": v.keyid,
                        "policies": v.manifest.entries()})
                );
            } else {
                for e in v.manifest.entries() {
                    println!("{}\t{}\tsha256:{}", e.kind.as_str(), e.name, e.sha256);
                }
                println!(
                    "verified: {} policies signed by key {}",
                    v.manifest.entries().len(),
                    v.keyid
                );
            }
        }
        Command::Coverage { json, state } => {
            let opened = Opened::open(&state).await?;
            let result = async {
                let ctx = opened.context()?;
                if let Some(Err(e)) = &ctx.policy.verified {
                    anyhow::bail!("the configured policy manifest does not verify: {e}");
                }
                Ok(engagement::coverage(&ctx).await?)
            }
            .await;
            opened.storage.close().await;
            let c = result?;
            if json {
                println!("{}", serde_json::to_string(&c)?);
            } else {
                for p in &c.policies {
                    println!(
                        "{}\t{}\t{}\t{} attestation(s)\t{}",
                        p.kind,
                        p.digest,
                        p.name,
                        p.attestations,
                        if p.signed { "signed" } else { "NOT SIGNED" }
                    );
                }
                println!(
                    "policy signature coverage: {} of {} policies in use over {} days ({:.1}%)",
                    c.signed,
                    c.in_use,
                    c.window_days,
                    c.ratio() * 100.0
                );
            }
        }
    }
    Ok(())
}
