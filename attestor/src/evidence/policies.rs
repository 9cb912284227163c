//! Sandbox policies on the attestor's side: reading a profile directory
//! (`sandbox-profiles/`: profiles `*.json`, seccomp policies
//! `seccomp/*.json`) with the digests `cloister-policy` computes (the ones
//! runs record), the manifest of such a directory, loading a signed
//! manifest, and policy signature coverage.
//!
//! Coverage = the share of the policies in use on the host (the distinct
//! profile and seccomp-policy digests in provenance signed within the
//! configured window) that a valid signed manifest lists. With no manifest
//! configured it is 0 (nothing is signed), with no policy in use it is 1.

use crate::storage::evidence::PolicyUse;
use cloister_attestor_core::keys::PublicKey;
use cloister_attestor_core::policy::{
    self, PolicyEntry, PolicyError, PolicyKind, PolicyManifest, VerifiedManifest,
};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Largest policy file read.
const MAX_POLICY_BYTES: u64 = 1024 * 1024;

/// Errors reading policies or a manifest file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyDirError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Digest {
        path: PathBuf,
        source: cloister_policy::DigestError,
    },
    #[error("{path}: larger than {MAX_POLICY_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: no profile (*.json) or seccomp policy (seccomp/*.json) found")]
    Empty { path: PathBuf },
    #[error("{path}: {source}")]
    Manifest { path: PathBuf, source: PolicyError },
}

/// One policy file with its canonical digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    pub name: String,
    pub kind: PolicyKind,
    /// Relative to the directory: `default.json`, `seccomp/default.json`.
    pub rel_path: String,
    pub text: Vec<u8>,
    /// `sha256:<hex>`.
    pub digest: String,
}

fn read_limited(path: &Path) -> Result<Vec<u8>, PolicyDirError> {
    use std::io::Read as _;
    let io = |source| PolicyDirError::Io {
        path: path.to_owned(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut buf = Vec::new();
    f.take(MAX_POLICY_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > MAX_POLICY_BYTES {
        return Err(PolicyDirError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(buf)
}

fn json_files(dir: &Path) -> Result<Vec<PathBuf>, PolicyDirError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PolicyDirError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|source| PolicyDirError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") && p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Every profile and seccomp policy of `dir`, with their digests; a file
/// that is not a valid policy is an error (nothing is signed unread).
pub fn scan_dir(dir: &Path) -> Result<Vec<PolicyFile>, PolicyDirError> {
    let mut out = Vec::new();
    for (kind, sub) in [(PolicyKind::Profile, ""), (PolicyKind::Seccomp, "seccomp")] {
        let d = if sub.is_empty() {
            dir.to_owned()
        } else {
            dir.join(sub)
        };
        for path in json_files(&d)? {
            let text = read_limited(&path)?;
            let s = String::from_utf8_lossy(&text);
            let digest = match kind {
                PolicyKind::Profile => cloister_policy::profile_digest(&s),
                PolicyKind::Seccomp => cloister_policy::seccomp_policy_digest(&s),
            }
            .map_err(|source| PolicyDirError::Digest {
                path: path.clone(),
                source,
            })?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let file = path
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(PolicyFile {
                name,
                kind,
                rel_path: if sub.is_empty() {
                    file
                } else {
                    format!("{sub}/{file}")
                },
                text,
                digest,
            });
        }
    }
    if out.is_empty() {
        return Err(PolicyDirError::Empty {
            path: dir.to_owned(),
        });
    }
    Ok(out)
}

/// The manifest listing `files`.
pub fn manifest_of(files: &[PolicyFile]) -> Result<PolicyManifest, PolicyError> {
    PolicyManifest::new(
        files
            .iter()
            .map(|f| PolicyEntry {
                name: f.name.clone(),
                kind: f.kind,
                sha256: f.digest.trim_start_matches("sha256:").to_owned(),
            })
            .collect(),
    )
}

/// Reads and verifies a signed manifest file.
pub fn load_manifest(
    path: &Path,
    trusted: &[PublicKey],
) -> Result<VerifiedManifest, PolicyDirError> {
    let bytes = read_limited(path)?;
    policy::verify(&bytes, trusted).map_err(|source| PolicyDirError::Manifest {
        path: path.to_owned(),
        source,
    })
}

/// One policy in use and whether it is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    pub kind: String,
    pub digest: String,
    /// The name jobs gave it (profiles), else the names the manifest lists.
    pub name: String,
    pub attestations: i64,
    pub signed: bool,
}

/// Policy signature coverage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    pub in_use: usize,
    pub signed: usize,
    /// `signed / in_use` in parts per million (1.0 when nothing is in use).
    pub ratio_ppm: u32,
    /// The manifest's signing key, when one applies.
    pub manifest_keyid: Option<String>,
    pub window_days: u32,
    pub policies: Vec<PolicyStatus>,
}

impl Coverage {
    /// The ratio as a fraction (for the gauge and for people).
    pub fn ratio(&self) -> f64 {
        f64::from(self.ratio_ppm) / 1_000_000.0
    }
}

/// Coverage of `uses` by `manifest` (none: nothing is signed).
pub fn coverage(
    uses: &[PolicyUse],
    manifest: Option<&VerifiedManifest>,
    window_days: u32,
) -> Coverage {
    let policies: Vec<PolicyStatus> = uses
        .iter()
        .map(|u| {
            let kind = if u.kind == "seccomp" {
                PolicyKind::Seccomp
            } else {
                PolicyKind::Profile
            };
            let m = manifest.map(|m| &m.manifest);
            let listed = m.map(|m| m.names_of(kind, &u.digest)).unwrap_or_default();
            PolicyStatus {
                kind: u.kind.clone(),
                digest: u.digest.clone(),
                name: if u.name.is_empty() {
                    listed.join(",")
                } else {
                    u.name.clone()
                },
                attestations: u.attestations,
                signed: m.is_some_and(|m| m.signs(kind, &u.digest)),
            }
        })
        .collect();
    let in_use = policies.len();
    let signed = policies.iter().filter(|p| p.signed).count();
    let ratio_ppm = if in_use == 0 {
        1_000_000
    } else {
        (signed as u64 * 1_000_000 / in_use as u64) as u32
    };
    Coverage {
        in_use,
        signed,
        ratio_ppm,
        manifest_keyid: manifest.map(|m| m.keyid.clone()),
        window_days,
        policies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_profiles_scan_with_the_runners_digests() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sandbox-profiles");
        let files = scan_dir(&dir).unwrap();
        // The values `cloister-runner profile check default --json` prints
        // (runner/src/cli/testdata/profile-check-default.json, held by the
        // runner's golden test).
        let golden: serde_json::Value = serde_json::from_str(include_str!(
            "../../../runner/src/cli/testdata/profile-check-default.json"
        ))
        .unwrap();
        let find = |kind, name: &str| {
            files
                .iter()
                .find(|f| f.kind == kind && f.name == name)
                .unwrap()
                .digest
                .clone()
        };
        assert_eq!(find(PolicyKind::Profile, "default"), golden["digest"]);
        assert_eq!(
            find(PolicyKind::Seccomp, "default"),
            golden["seccompPolicy"]["digest"]
        );
        let m = manifest_of(&files).unwrap();
        assert!(m.entries().len() >= 3);
    }

    #[test]
    fn coverage_counts_distinct_policies() {
        let u = |kind: &str, c: char| PolicyUse {
            kind: kind.into(),
            digest: format!("sha256:{}", c.to_string().repeat(64)),
            name: String::new(),
            attestations: 1,
            last_seen_ms: 0,
        };
        let uses = [u("profile", 'a'), u("profile", 'b'), u("seccomp", 'c')];
        let c = coverage(&uses, None, 30);
        assert_eq!((c.in_use, c.signed, c.ratio_ppm), (3, 0, 0));
        assert_eq!(coverage(&[], None, 30).ratio_ppm, 1_000_000);
    }
}
