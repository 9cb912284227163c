//! `cloister-attestor sign`: validate an in-toto statement against the
//! models and write `PREFIX.intoto.jsonl` and `PREFIX.sigstore.json`.
//! For operators and tests; builds reach the attestor only through the
//! signing socket.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use cloister_attestor_core::keys::{KeyPair, Signer};
use cloister_attestor_core::statement::Statement;
use cloister_attestor_core::{json, sign_statement};

use super::keygen::PassphraseArgs;
use crate::keyring::{self, Keyring};

/// Sign a statement into PREFIX.intoto.jsonl and PREFIX.sigstore.json.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Private key PEM (PKCS#8, encrypted PKCS#8 or cosign.key); without it
    /// the keyring's active key in the state directory signs.
    #[arg(long, value_name = "PRIVATE.pem")]
    pub key: Option<PathBuf>,
    /// Attestor state directory holding the keyring [env: CLOISTER_ATTESTOR_STATE_DIR]
    /// [default: /var/lib/cloister/attestor].
    #[arg(long, value_name = "DIR", conflicts_with = "key")]
    pub state_dir: Option<PathBuf>,
    /// The in-toto Statement v1 (SLSA provenance v1 predicate) to sign.
    #[arg(long, value_name = "STATEMENT.json")]
    pub statement: PathBuf,
    /// Output prefix: writes PREFIX.intoto.jsonl and PREFIX.sigstore.json.
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Reads at most `limit` bytes of `path`, failing when the file is larger.
pub fn read_limited(path: &Path, limit: usize) -> anyhow::Result<Vec<u8>> {
    let f = fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut buf = Vec::new();
    f.take(limit as u64 + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("read {}", path.display()))?;
    if buf.len() > limit {
        anyhow::bail!("{} is larger than {limit} bytes", path.display());
    }
    Ok(buf)
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn write_output(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = with_suffix(path, ".tmp");
    fs::write(&tmp, contents).with_context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))
}

pub(super) fn run(args: Args) -> anyhow::Result<()> {
    let pass = args.passphrase.read()?;
    let signer: Arc<dyn Signer> = match &args.key {
        Some(path) => {
            let pem = keyring::read_private_file(path)?;
            Arc::new(
                KeyPair::from_pem(&pem, pass.as_deref().map(|p| p.as_slice()))
                    .with_context(|| format!("load {}", path.display()))?,
            )
        }
        None => {
            let dir = keyring::state_dir(args.state_dir.as_deref());
            Keyring::open(&dir)?.with_passphrase(pass).active_signer()?
        }
    };
    let bytes = read_limited(&args.statement, json::MAX_DOCUMENT_BYTES)?;
    let statement = Statement::parse(&bytes)
        .with_context(|| format!("{} is not a valid statement", args.statement.display()))?;
    let signed = sign_statement(&statement, signer.as_ref())?;
    let jsonl = with_suffix(&args.out, ".intoto.jsonl");
    let bundle = with_suffix(&args.out, ".sigstore.json");
    write_output(&jsonl, &signed.intoto_jsonl())?;
    write_output(&bundle, &signed.sigstore_json())?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"keyid": signed.keyid, "intotoJsonl": jsonl, "sigstoreBundle": bundle,
                "subjects": statement.subject.len()})
        );
    } else {
        println!(
            "signed {} subject(s) with key {}: {}, {}",
            statement.subject.len(),
            signed.keyid,
            jsonl.display(),
            bundle.display()
        );
    }
    Ok(())
}
