//! `cloister-attestor keygen`: generate a signing key, either as
//! `DIR/private.pem` + `DIR/public.pem` (`--out`) or into the keyring of
//! the state directory, where it becomes the active key.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{Context, bail};
use cloister_attestor_core::keys::{Algorithm, EncryptionParams, KeyPair};

use crate::keyring::{self, Keyring};

/// Key algorithm names on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Alg {
    /// ECDSA over P-256 with SHA-256 (ASN.1 DER signatures); the default.
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    /// Ed25519.
    #[value(name = "ed25519")]
    Ed25519,
}

impl From<Alg> for Algorithm {
    fn from(a: Alg) -> Self {
        match a {
            Alg::EcdsaP256 => Algorithm::EcdsaP256,
            Alg::Ed25519 => Algorithm::Ed25519,
        }
    }
}

/// Where a passphrase comes from (never from the command line itself).
#[derive(Debug, Clone, clap::Args)]
pub struct PassphraseArgs {
    /// Read the key passphrase from this file (one trailing newline is dropped).
    #[arg(long, value_name = "FILE", conflicts_with = "passphrase_env")]
    pub passphrase_file: Option<PathBuf>,
    /// Read the key passphrase from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,
}

impl PassphraseArgs {
    pub fn read(&self) -> anyhow::Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
        Ok(keyring::read_passphrase(
            self.passphrase_file.as_deref(),
            self.passphrase_env.as_deref(),
        )?)
    }
}

/// Generate a signing key.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Signature algorithm.
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    pub alg: Alg,
    /// Write DIR/private.pem (mode 0600) and DIR/public.pem instead of adding
    /// the key to the keyring.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Attestor state directory holding the keyring [env: CLOISTER_ATTESTOR_STATE_DIR]
    /// [default: /var/lib/cloister/attestor].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run(args: Args) -> anyhow::Result<()> {
    let pass = args.passphrase.read()?;
    let kp = KeyPair::generate(args.alg.into())?;
    let (location, status) = match &args.out {
        Some(dir) => {
            if !dir.exists() {
                fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            }
            let private = dir.join("private.pem");
            let public = dir.join("public.pem");
            for p in [&private, &public] {
                if p.exists() {
                    bail!(
                        "{} already exists; refusing to overwrite a key",
                        p.display()
                    );
                }
            }
            let pem = kp.to_pkcs8_pem(
                pass.as_deref().map(|p| p.as_slice()),
                EncryptionParams::default(),
            )?;
            keyring::write_private_file(&private, &pem)?;
            fs::write(&public, kp.public_key().to_pem())
                .with_context(|| format!("write {}", public.display()))?;
            (dir.clone(), "written")
        }
        None => {
            let dir = keyring::state_dir(args.state_dir.as_deref());
            let ring = Keyring::open(&dir)?.with_passphrase(pass.clone());
            ring.add_first(&kp, time::OffsetDateTime::now_utc())?;
            (dir, "active")
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "keyid": kp.keyid(),
                "algorithm": kp.algorithm(),
                "status": status,
                "encrypted": pass.is_some(),
                "location": location,
            })
        );
    } else {
        println!(
            "{} {} key {} ({})",
            kp.algorithm(),
            status,
            kp.keyid(),
            location.display()
        );
    }
    Ok(())
}
