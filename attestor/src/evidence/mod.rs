//! Evidence: what auditors and procurement reviewers get, built from the
//! attestation store, the keyring and the signed sandbox policies.
//!
//! - `policies`: profile directories, their digests (`cloister-policy`, the
//!   values runs record), signed policy manifests, policy signature coverage;
//! - `index`: the evidence index (tag, policies, builder, runner per attestation);
//! - `engagement`: audit engagements (frozen tag, auditor tenant and key,
//!   notes, decisions log, sign-off) as typed functions the CLI, the HTTP
//!   service and the portal call;
//! - `pack`, `signoff`, `procurement`, `caiq`: the two pack kinds;
//! - `archive`, `manifest`: their deterministic `.tar.gz` and signed manifest;
//! - `check`: `pack verify`, offline, with a reason per mismatch;
//! - `import`: provenance signed elsewhere, verified, all or nothing.
//!
//! Invariants: a pack is a function of its inputs (the evidence, the
//! generation time, the measured time-to-pack): same inputs, same bytes,
//! except an ECDSA signature, which is randomized (Ed25519 keys give
//! byte-identical packs). Everything a pack says about provenance was
//! re-verified when it was built. Nothing here writes to the attestation
//! store except `import`, and only after every envelope verified.

use crate::keyring::{KeyStatus, Keyring, KeyringError};
use crate::storage::Storage;
use cloister_attestor_core::keys::{PublicKey, Signer};
use cloister_attestor_core::policy::VerifiedManifest;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

pub mod archive;
pub mod caiq;
pub mod check;
pub mod engagement;
pub mod import;
pub mod index;
pub mod manifest;
pub mod pack;
pub mod policies;
pub mod procurement;
pub mod signoff;

/// A trusted key as packs describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub keyid: String,
    /// `ecdsa-p256` or `ed25519`.
    pub algorithm: String,
    /// `active` or `rotated`.
    pub status: String,
    /// RFC 3339: the start of the validity window.
    pub valid_from: String,
    /// RFC 3339: its end (a rotated key's not-after), none for the active key.
    pub valid_until: Option<String>,
    /// SubjectPublicKeyInfo PEM.
    pub public_key: String,
}

/// The signed policies packs include.
#[derive(Debug, Clone, Default)]
pub struct PolicyEvidence {
    /// The configured manifest file's bytes.
    pub envelope: Option<Vec<u8>>,
    /// Its verification against the trusted keys.
    pub verified: Option<Result<VerifiedManifest, String>>,
    /// The configured profile directory's policies.
    pub files: Vec<policies::PolicyFile>,
    /// Why the profile directory could not be read, if it could not.
    pub files_error: Option<String>,
}

impl PolicyEvidence {
    /// The manifest, when one is configured and verified.
    pub fn manifest(&self) -> Option<&VerifiedManifest> {
        self.verified.as_ref().and_then(|v| v.as_ref().ok())
    }
}

/// Errors assembling a [`Context`].
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("keyring: {0}")]
    Keyring(#[from] KeyringError),
    #[error("the keyring trusts no key")]
    NoKeys,
    #[error("policy manifest: {0}")]
    Policy(#[from] policies::PolicyDirError),
}

/// What building a pack needs: storage, the signing key and trusted keys,
/// the signed policies, and the clock.
pub struct Context {
    pub storage: Arc<dyn Storage>,
    pub signer: Arc<dyn Signer>,
    pub trusted: Vec<PublicKey>,
    pub keys: Vec<KeyInfo>,
    pub policy: PolicyEvidence,
    pub policy_window_days: u32,
    /// Now, in Unix milliseconds.
    pub now_ms: i64,
    /// `SOURCE_DATE_EPOCH` (seconds): packs are then dated at it and record
    /// no time-to-pack (a measurement would differ between two runs), so
    /// the same evidence gives the same archive.
    pub source_date_epoch: Option<i64>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("now_ms", &self.now_ms)
            .finish_non_exhaustive()
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The keys the keyring trusts at `now`, described for packs.
pub fn key_infos(
    keyring: &Keyring,
    now: time::OffsetDateTime,
) -> Result<(Vec<KeyInfo>, Vec<PublicKey>), KeyringError> {
    let mut infos = Vec::new();
    let mut keys = Vec::new();
    for e in keyring.entries()?.iter().filter(|e| e.trusted_at(now)) {
        let pk = keyring.entry_public_key(e)?;
        infos.push(KeyInfo {
            keyid: e.keyid.clone(),
            algorithm: e.algorithm.as_str().to_owned(),
            status: match e.status {
                KeyStatus::Active => "active",
                KeyStatus::Rotated => "rotated",
            }
            .to_owned(),
            valid_from: rfc3339(e.created_at),
            valid_until: e.not_after.map(rfc3339),
            public_key: pk.to_pem(),
        });
        keys.push(pk);
    }
    Ok((infos, keys))
}

impl Context {
    /// Opens what packs need from the configuration: the keyring's active
    /// signer and trusted keys, the configured policy manifest (verified;
    /// a manifest that does not verify is recorded as such in packs, never
    /// silently left out) and profile directory.
    pub fn load(
        config: &crate::config::Config,
        storage: Arc<dyn Storage>,
        keyring: &Keyring,
        now_ms: i64,
        source_date_epoch: Option<i64>,
    ) -> Result<Self, ContextError> {
        let now = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let signer = keyring.active_signer()?;
        let (keys, trusted) = key_infos(keyring, now)?;
        if trusted.is_empty() {
            return Err(ContextError::NoKeys);
        }
        let policy = load_policy_evidence(
            config.policy.manifest.as_ref(),
            config.policy.profiles_dir.as_ref(),
            &trusted,
        );
        Ok(Self {
            storage,
            signer,
            trusted,
            keys,
            policy,
            policy_window_days: config.policy.coverage_window_days,
            now_ms,
            source_date_epoch,
        })
    }

    /// The time packs are dated at (ms).
    pub fn generated_at_ms(&self) -> i64 {
        match self.source_date_epoch {
            Some(s) => s.saturating_mul(1000),
            None => self.now_ms,
        }
    }
}

/// Reads the configured manifest and profile directory for packs.
pub fn load_policy_evidence(
    manifest: Option<&PathBuf>,
    profiles_dir: Option<&PathBuf>,
    trusted: &[PublicKey],
) -> PolicyEvidence {
    let mut out = PolicyEvidence::default();
    if let Some(path) = manifest {
        match std::fs::read(path) {
            Ok(bytes) => {
                out.verified = Some(
                    cloister_attestor_core::policy::verify(&bytes, trusted)
                        .map_err(|e| e.to_string()),
                );
                out.envelope = Some(bytes);
            }
            Err(e) => out.verified = Some(Err(format!("{}: {e}", path.display()))),
        }
    }
    if let Some(dir) = profiles_dir {
        match policies::scan_dir(dir) {
            Ok(files) => out.files = files,
            Err(e) => out.files_error = Some(e.to_string()),
        }
    }
    out
}

/// `f` over `items` on every core (scoped threads, contiguous slices),
/// results in input order. Used for the CPU-bound parts of packs
/// (re-verifying provenance, gzip members).
pub fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len().max(1));
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|chunk| scope.spawn(move || chunk.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a pack worker panicked"))
            .collect()
    })
}

/// `SOURCE_DATE_EPOCH` from the environment (reproducible-builds.org), if
/// set to a number.
pub fn source_date_epoch() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
}
