//! Signed sandbox policies on the runner. With `[policy] require_signed =
//! true` the daemon refuses a job whose sandbox profile or seccomp policy is
//! not in the signed policy manifest (`cloister-attestor policy sign`):
//! before anything of the job runs, by the digests of the profile the job
//! names as this host resolves it; and again after the build, by the digests
//! the sandbox reported (what provenance will record), before attesting.
//!
//! The manifest is a DSSE envelope verified against the configured public
//! keys (the attestor's); it is read and verified at start (a bad one stops
//! the daemon) and again for every job, so a re-signed manifest is picked up
//! without a restart and a broken one fails jobs instead of lifting the gate.

use cloister_attestor_core::keys::PublicKey;
use cloister_attestor_core::policy::{self, PolicyKind, VerifiedManifest};
use std::path::PathBuf;

/// What `[policy]` requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRequirement {
    /// The signed policy manifest.
    pub manifest: PathBuf,
    /// PEM public keys the manifest must be signed by (one suffices).
    pub public_keys: Vec<PathBuf>,
}

/// Why a job (or the daemon's start) is refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyGateError {
    #[error("policy gate: cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("policy gate: public key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("policy gate: {path} does not verify: {source}")]
    Manifest {
        path: PathBuf,
        source: policy::PolicyError,
    },
    #[error("policy gate: profile {name:?}: {message}")]
    Profile { name: String, message: String },
    #[error(
        "{kind} {what} ({digest}) is not in the signed policy manifest {path}; refusing the job"
    )]
    NotSigned {
        kind: &'static str,
        what: String,
        digest: String,
        path: PathBuf,
    },
}

impl PolicyRequirement {
    /// Reads and verifies the manifest now.
    pub fn load(&self) -> Result<VerifiedManifest, PolicyGateError> {
        let mut keys = Vec::new();
        for path in &self.public_keys {
            let pem = std::fs::read_to_string(path).map_err(|source| PolicyGateError::Read {
                path: path.clone(),
                source,
            })?;
            keys.push(PublicKey::from_pem(&pem).map_err(|e| PolicyGateError::Key {
                path: path.clone(),
                message: e.to_string(),
            })?);
        }
        let bytes = std::fs::read(&self.manifest).map_err(|source| PolicyGateError::Read {
            path: self.manifest.clone(),
            source,
        })?;
        policy::verify(&bytes, &keys).map_err(|source| PolicyGateError::Manifest {
            path: self.manifest.clone(),
            source,
        })
    }

    fn require(
        &self,
        m: &VerifiedManifest,
        kind: PolicyKind,
        what: &str,
        digest: &str,
    ) -> Result<(), PolicyGateError> {
        if m.manifest.signs(kind, digest) {
            Ok(())
        } else {
            Err(PolicyGateError::NotSigned {
                kind: match kind {
                    PolicyKind::Profile => "sandbox profile",
                    PolicyKind::Seccomp => "seccomp policy",
                },
                what: what.to_owned(),
                digest: digest.to_owned(),
                path: self.manifest.clone(),
            })
        }
    }

    /// Before a job: the profile it names (as `cloister-runner run` will
    /// resolve it) and its seccomp policy must be signed. Returns their digests.
    pub fn check_profile(&self, profile: &str) -> Result<(String, String), PolicyGateError> {
        let m = self.load()?;
        let p = cloister_sandbox::Profile::load(profile).map_err(|e| PolicyGateError::Profile {
            name: profile.to_owned(),
            message: e.to_string(),
        })?;
        self.require(&m, PolicyKind::Profile, &format!("{profile:?}"), p.digest())?;
        let s = p.seccomp();
        self.require(
            &m,
            PolicyKind::Seccomp,
            &format!("{:?}", s.name()),
            s.digest(),
        )?;
        Ok((p.digest().to_owned(), s.digest().to_owned()))
    }

    /// After the build: the digests the sandbox reported (`isolation`).
    pub fn check_facts(
        &self,
        isolation: &cloister_sandbox::IsolationFacts,
    ) -> Result<(), PolicyGateError> {
        let m = self.load()?;
        self.require(&m, PolicyKind::Profile, "of this run", &isolation.profile)?;
        self.require(
            &m,
            PolicyKind::Seccomp,
            "of this run",
            &isolation.seccomp_policy,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_attestor_core::keys::{Algorithm, KeyPair};
    use cloister_attestor_core::policy::{PolicyEntry, PolicyManifest};

    fn setup(entries: Vec<PolicyEntry>) -> (tempfile::TempDir, PolicyRequirement) {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate(Algorithm::EcdsaP256).unwrap();
        let env = policy::sign(&PolicyManifest::new(entries).unwrap(), &key).unwrap();
        std::fs::write(dir.path().join("m.json"), env.to_json()).unwrap();
        std::fs::write(dir.path().join("k.pem"), key.public_key().to_pem()).unwrap();
        assert_eq!(key.keyid().len(), 64);
        let req = PolicyRequirement {
            manifest: dir.path().join("m.json"),
            public_keys: vec![dir.path().join("k.pem")],
        };
        (dir, req)
    }

    fn entry(name: &str, kind: PolicyKind, digest: &str) -> PolicyEntry {
        PolicyEntry {
            name: name.into(),
            kind,
            sha256: digest.trim_start_matches("sha256:").into(),
        }
    }

    #[test]
    fn only_signed_profiles_and_policies_pass() {
        let default = cloister_sandbox::Profile::load("default").unwrap();
        let (_d, req) = setup(vec![
            entry("default", PolicyKind::Profile, default.digest()),
            entry("default", PolicyKind::Seccomp, default.seccomp().digest()),
        ]);
        let (p, s) = req.check_profile("default").unwrap();
        assert_eq!(p, default.digest());
        let err = req.check_profile("dev").unwrap_err().to_string();
        assert!(
            err.contains("sandbox profile \"dev\"") && err.contains("refusing"),
            "{err}"
        );
        let facts = |profile: &str, seccomp_policy: &str| cloister_sandbox::IsolationFacts {
            network: "none".into(),
            namespaces: Vec::new(),
            no_new_privs: true,
            capabilities: Vec::new(),
            seccomp_policy: seccomp_policy.into(),
            profile: profile.into(),
            rootless: false,
        };
        req.check_facts(&facts(&p, &s)).unwrap();
        let err = req
            .check_facts(&facts(&p, &format!("sha256:{}", "0".repeat(64))))
            .unwrap_err();
        assert!(matches!(
            err,
            PolicyGateError::NotSigned {
                kind: "seccomp policy",
                ..
            }
        ));
    }

    #[test]
    fn a_manifest_by_another_key_refuses_every_job() {
        let default = cloister_sandbox::Profile::load("default").unwrap();
        let (d, mut req) = setup(vec![entry(
            "default",
            PolicyKind::Profile,
            default.digest(),
        )]);
        let other = KeyPair::generate(Algorithm::Ed25519).unwrap();
        std::fs::write(d.path().join("other.pem"), other.public_key().to_pem()).unwrap();
        req.public_keys = vec![d.path().join("other.pem")];
        let err = req.check_profile("default").unwrap_err().to_string();
        assert!(
            err.contains("does not verify") && err.contains("untrusted_key"),
            "{err}"
        );
    }
}
