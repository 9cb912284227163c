//! `cloister-attestor verify`: offline verification of key-signed provenance
//! with slsa-verifier `verify-artifact` semantics. Exit codes: 0 passed,
//! 1 verification failed, 2 usage error (bad flags, unreadable files, no
//! trusted keys, malformed expected values).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cloister_attestor_core::digest::Sha256Hasher;
use cloister_attestor_core::json;
use cloister_attestor_core::keys::PublicKey;
use cloister_attestor_core::verify::{
    ReasonCode, Verdict, VerifyOptions, VerifyRequest, check_request, envelope_verdicts, verify_any,
};

use crate::keyring::{self, Keyring};
use crate::service::api::verify::VerifyResponse;

/// Verify provenance for an artifact.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("artifact_source").required(true).args(["artifact", "artifact_digest"])))]
pub struct Args {
    /// The provenance: PREFIX.intoto.jsonl, a DSSE envelope, or PREFIX.sigstore.json.
    #[arg(long, value_name = "FILE")]
    pub provenance: PathBuf,
    /// A trusted public key (PEM); repeatable. Without any, the keys the
    /// keyring in --state-dir trusts now are used.
    #[arg(long = "public-key", value_name = "PEM")]
    pub public_keys: Vec<PathBuf>,
    /// Attestor state directory whose keyring supplies trusted keys when no
    /// --public-key is given [env: CLOISTER_ATTESTOR_STATE_DIR].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The artifact file (hashed with sha256).
    #[arg(long, value_name = "FILE")]
    pub artifact: Option<PathBuf>,
    /// The artifact's digest, sha256:HEX.
    #[arg(long, value_name = "sha256:HEX")]
    pub artifact_digest: Option<String>,
    /// Expected source repository (github.com/o/r, https://… or git+https://…).
    #[arg(long, value_name = "URI")]
    pub source_uri: String,
    /// Expected source tag (exact).
    #[arg(long, value_name = "TAG", conflicts_with = "source_versioned_tag")]
    pub source_tag: Option<String>,
    /// Expected semver tag: v1 matches v1.x.y, v1.2 matches v1.2.y, v1.2.3 exactly.
    #[arg(long, value_name = "SEMVER")]
    pub source_versioned_tag: Option<String>,
    /// Expected source branch.
    #[arg(long, value_name = "BRANCH")]
    pub source_branch: Option<String>,
    /// Expected builder id: NAME (any version) or NAME@VERSION (exactly).
    #[arg(long, value_name = "ID")]
    pub builder_id: Option<String>,
    /// A signed policy manifest (`policy sign`): the provenance's sandbox
    /// profile and seccomp policy digests must be in it (reason
    /// policy_not_signed). Verified with the same trusted keys.
    #[arg(long, value_name = "FILE")]
    pub policy_manifest: Option<PathBuf>,
    /// Print the verified statement (exactly the signed bytes) on stdout.
    #[arg(long)]
    pub print_provenance: bool,
    /// Print the verdict as JSON: {verified, reasons:[{code, message}], builderId, slsaLevel, subject}.
    #[arg(long)]
    pub json: bool,
}

/// Read buffer for hashing artifacts (any size, streamed).
const HASH_BUF: usize = 1 << 20;

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("cloister-attestor verify: {msg}");
    ExitCode::from(2)
}

/// sha256 of a file, streamed.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256Hasher::new();
    let mut buf = vec![0u8; HASH_BUF];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish().to_string())
}

fn trusted_keys(args: &Args) -> Result<Vec<PublicKey>, String> {
    if !args.public_keys.is_empty() {
        return args
            .public_keys
            .iter()
            .map(|p| {
                let pem = fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                PublicKey::from_pem(&pem).map_err(|e| format!("{}: {e}", p.display()))
            })
            .collect();
    }
    let explicit = args.state_dir.is_some() || std::env::var_os(keyring::STATE_DIR_ENV).is_some();
    let dir = keyring::state_dir(args.state_dir.as_deref());
    if !explicit || !dir.join("keyring.json").exists() {
        return Err(
            "no trusted keys: pass --public-key PEM (or --state-dir DIR with a keyring)".into(),
        );
    }
    let ring = Keyring::open(&dir).map_err(|e| e.to_string())?;
    let keys = ring
        .trusted_keys(time::OffsetDateTime::now_utc())
        .map_err(|e| e.to_string())?;
    if keys.is_empty() {
        return Err(format!("the keyring in {} trusts no key", dir.display()));
    }
    Ok(keys)
}

fn print_verdict(args: &Args, v: &Verdict) {
    if args.json {
        // The HTTP verdict body; printed through a `Value`, whose keys are
        // sorted, as this output always was.
        let body = VerifyResponse {
            statement: if args.print_provenance {
                v.statement.as_ref()
            } else {
                None
            },
            ..VerifyResponse::of(v)
        };
        let out = serde_json::to_value(&body).expect("verdict serializes");
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
        return;
    }
    if v.verified {
        if args.print_provenance
            && let Some(p) = &v.payload
        {
            println!("{}", String::from_utf8_lossy(p));
        }
        let msg = format!(
            "PASSED: SLSA verification passed (builder {}, SLSA Build L{}, key {})",
            v.builder_id.as_deref().unwrap_or("?"),
            v.slsa_level.unwrap_or(0),
            v.keyid.as_deref().unwrap_or("?"),
        );
        if args.print_provenance {
            eprintln!("{msg}")
        } else {
            println!("{msg}")
        }
    } else {
        for r in &v.reasons {
            let msg = format!("FAILED: {} ({})", r.message, r.code);
            if args.print_provenance {
                eprintln!("{msg}")
            } else {
                println!("{msg}")
            }
        }
    }
}

pub fn exec(args: Args) -> ExitCode {
    let artifact_digest = match (&args.artifact, &args.artifact_digest) {
        (Some(path), _) => match hash_file(path) {
            Ok(d) => d,
            Err(e) => return usage(format!("{}: {e}", path.display())),
        },
        (None, Some(d)) => d.clone(),
        (None, None) => return usage("give --artifact FILE or --artifact-digest sha256:HEX"),
    };
    let req = VerifyRequest {
        artifact_digest,
        source_uri: args.source_uri.clone(),
        source_tag: args.source_tag.clone(),
        source_versioned_tag: args.source_versioned_tag.clone(),
        source_branch: args.source_branch.clone(),
        builder_id: args.builder_id.clone(),
    };
    if let Err(r) = check_request(&req) {
        return usage(r.message);
    }
    let trusted = match trusted_keys(&args) {
        Ok(k) => k,
        Err(e) => return usage(e),
    };
    // Read one byte past the limit so that oversize input is a verification
    // failure (input_too_large), not a huge allocation.
    let provenance = match fs::File::open(&args.provenance) {
        Ok(f) => {
            let mut buf = Vec::new();
            if let Err(e) = f
                .take(json::MAX_DOCUMENT_BYTES as u64 + 1)
                .read_to_end(&mut buf)
            {
                return usage(format!("{}: {e}", args.provenance.display()));
            }
            buf
        }
        Err(e) => return usage(format!("{}: {e}", args.provenance.display())),
    };
    let manifest = match &args.policy_manifest {
        Some(path) => match crate::evidence::policies::load_manifest(path, &trusted) {
            Ok(m) => Some(m),
            Err(e) => return usage(e),
        },
        None => None,
    };
    // Each envelope is held to the policy manifest before the first that
    // verifies is picked (as the service does).
    let opts = VerifyOptions::default();
    let verdicts = envelope_verdicts(&provenance, &trusted, &req, &opts).map(|mut v| {
        if let Some(m) = &manifest {
            cloister_attestor_core::policy::apply(&mut v, &m.manifest);
        }
        v
    });
    let verdict = verify_any(verdicts).expect("envelope_verdicts yields at least one verdict");
    print_verdict(&args, &verdict);
    match verdict.verified {
        true => ExitCode::SUCCESS,
        false if verdict.code() == Some(ReasonCode::InvalidRequest) => ExitCode::from(2),
        false => ExitCode::from(1),
    }
}
