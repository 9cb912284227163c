//! `cloister-attestor keys`: list, rotate, import and export the keys of the
//! keyring in the state directory.

use std::path::PathBuf;

use anyhow::{Context, bail};
use cloister_attestor_core::keys::KeyPair;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::keygen::{Alg, PassphraseArgs};
use crate::keyring::{self, Keyring};

/// Options every `keys` subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Attestor state directory holding the keyring [env: CLOISTER_ATTESTOR_STATE_DIR]
    /// [default: /var/lib/cloister/attestor].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// How long the previous active key stays trusted after a rotation.
#[derive(Debug, Clone, clap::Args)]
pub struct Grace {
    /// The previous key is trusted for verification until this RFC 3339 time.
    #[arg(long, value_name = "TIME", conflicts_with = "grace_days")]
    pub not_after: Option<String>,
    /// The previous key is trusted for verification for this many days.
    #[arg(long, value_name = "DAYS", default_value_t = 90)]
    pub grace_days: u32,
}

impl Grace {
    fn not_after(&self, now: OffsetDateTime) -> anyhow::Result<OffsetDateTime> {
        match &self.not_after {
            Some(t) => OffsetDateTime::parse(t, &Rfc3339)
                .with_context(|| format!("--not-after {t:?} is not RFC 3339")),
            None => {
                let t = now + time::Duration::days(i64::from(self.grace_days));
                Ok(t.replace_nanosecond(0).unwrap_or(t))
            }
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List keys: keyid, algorithm, status, not-after.
    List {
        #[command(flatten)]
        common: Common,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generate a new active key; the old one stays trusted until its not-after.
    Rotate {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value = "ecdsa-p256")]
        alg: Alg,
        #[command(flatten)]
        grace: Grace,
        /// Passphrase for the new key's file (and for reading keys of the ring).
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Import a private key (PKCS#8 PEM, encrypted PKCS#8, or cosign's
    /// encrypted cosign.key) as the active key.
    Import {
        #[command(flatten)]
        common: Common,
        /// The private key file.
        file: PathBuf,
        #[command(flatten)]
        grace: Grace,
        /// Passphrase of the file (the keyring copy is encrypted with it too).
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Print a key's public PEM (the active key by default).
    Export {
        #[command(flatten)]
        common: Common,
        /// The key to export.
        keyid: Option<String>,
    },
}

fn open(common: &Common) -> anyhow::Result<Keyring> {
    let dir = keyring::state_dir(common.state_dir.as_deref());
    Ok(Keyring::open(&dir)?)
}

fn fmt_time(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}

pub(super) fn run(cmd: Command) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    match cmd {
        Command::List { common, json } => {
            let dir = keyring::state_dir(common.state_dir.as_deref());
            if !dir.exists() {
                bail!("state directory {} does not exist", dir.display());
            }
            let entries = open(&common)?.entries()?;
            if json {
                let rows: Vec<_> = entries
                    .iter()
                    .map(|e| {
                        let mut v = serde_json::to_value(e).expect("entry serializes");
                        v["trusted"] = e.trusted_at(now).into();
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<64}  {:<10}  {:<7}  {:<7}  NOT-AFTER",
                    "KEYID", "ALGORITHM", "STATUS", "TRUSTED"
                );
                for e in &entries {
                    println!(
                        "{:<64}  {:<10}  {:<7}  {:<7}  {}",
                        e.keyid,
                        e.algorithm.as_str(),
                        e.status.as_str(),
                        if e.trusted_at(now) { "yes" } else { "no" },
                        fmt_time(e.not_after)
                    );
                }
            }
        }
        Command::Rotate {
            common,
            alg,
            grace,
            passphrase,
        } => {
            let ring = open(&common)?.with_passphrase(passphrase.read()?);
            let old = ring.active_entry()?;
            let kp = KeyPair::generate(alg.into())?;
            let not_after = grace.not_after(now)?;
            let entry = match old {
                Some(_) => ring.rotate_to(&kp, now, not_after)?,
                None => ring.add_first(&kp, now)?,
            };
            println!("active key {} ({})", entry.keyid, entry.algorithm);
            if let Some(old) = ring
                .entries()?
                .iter()
                .find(|e| e.not_after == Some(not_after) && e.keyid != entry.keyid)
            {
                println!(
                    "rotated key {} trusted until {}",
                    old.keyid,
                    fmt_time(old.not_after)
                );
            }
        }
        Command::Import {
            common,
            file,
            grace,
            passphrase,
        } => {
            let pass = passphrase.read()?;
            let pem = keyring::read_private_file(&file)?;
            let kp = KeyPair::from_pem(&pem, pass.as_deref().map(|p| p.as_slice()))
                .with_context(|| format!("load {}", file.display()))?;
            let ring = open(&common)?.with_passphrase(pass);
            let entry = match ring.active_entry()? {
                Some(_) => ring.rotate_to(&kp, now, grace.not_after(now)?)?,
                None => ring.add_first(&kp, now)?,
            };
            println!(
                "imported {} key {} as the active key",
                entry.algorithm, entry.keyid
            );
        }
        Command::Export { common, keyid } => {
            let ring = open(&common)?;
            let keyid = match keyid {
                Some(k) => k,
                None => ring
                    .active_entry()?
                    .map(|e| e.keyid)
                    .context("no active key")?,
            };
            print!("{}", ring.public_key(&keyid)?.to_pem());
        }
    }
    Ok(())
}
