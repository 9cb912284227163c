//! `[policy] require_signed`: the daemon refuses a job whose sandbox
//! profile is not in the signed policy manifest before anything of it runs,
//! lets a signed one through, and refuses to start with a manifest that
//! does not verify.

use crate::harness::{Daemon, RUNNER, job_log, repo_with, run_job, spec};
use cloister_attestor_core::keys::{Algorithm, KeyPair};
use cloister_attestor_core::policy::{self, PolicyEntry, PolicyKind, PolicyManifest};
use std::path::Path;
use std::process::Command;

/// A manifest signing only the default profile and its seccomp policy,
/// and the signer's public key, written into `dir`.
fn default_only(dir: &Path) -> (String, String) {
    let p = cloister_sandbox::Profile::load("default").unwrap();
    let entry = |name: &str, kind, digest: &str| PolicyEntry {
        name: name.into(),
        kind,
        sha256: digest.trim_start_matches("sha256:").into(),
    };
    let m = PolicyManifest::new(vec![
        entry("default", PolicyKind::Profile, p.digest()),
        entry("default", PolicyKind::Seccomp, p.seccomp().digest()),
    ])
    .unwrap();
    let key = KeyPair::generate(Algorithm::EcdsaP256).unwrap();
    let manifest = dir.join("policy-manifest.dsse.json");
    let public = dir.join("attestor.pub.pem");
    std::fs::write(&manifest, policy::sign(&m, &key).unwrap().to_json()).unwrap();
    std::fs::write(&public, key.public_key().to_pem()).unwrap();
    (manifest.display().to_string(), public.display().to_string())
}

#[tokio::test]
async fn jobs_under_unsigned_policies_are_refused() {
    let keys = tempfile::tempdir().unwrap();
    let (manifest, public) = default_only(keys.path());
    let d = Daemon::start(
        &format!(
            "policy = {{ require_signed = true, manifest = {manifest:?}, public_keys = [{public:?}] }}\n"
        ),
        "",
    );
    let repo = d.dir.path().join("repo");
    let commit = repo_with(&repo, &[("build.sh", "echo hi > out\n")]);
    // The `dev` profile is not signed: refused before the checkout.
    let mut dev = spec(&repo, &commit, &["sh", "build.sh"], &["out"]);
    dev["profile"] = "dev".into();
    let job = run_job(&d.endpoint(), &dev).await;
    assert_eq!(job["state"], "failed", "{job}");
    let reason = job["reason"].as_str().unwrap();
    assert!(
        reason.contains("sandbox profile \"dev\"")
            && reason.contains("is not in the signed policy manifest"),
        "{reason}"
    );
    let log = job_log(&d.endpoint(), job["id"].as_str().unwrap()).await;
    assert!(!log.contains("checked out"), "nothing ran: {log}");
    // The default profile is: the job goes on (and fails later only because
    // no attestor listens in this harness).
    let job = run_job(
        &d.endpoint(),
        &spec(&repo, &commit, &["sh", "build.sh"], &["out"]),
    )
    .await;
    let log = job_log(&d.endpoint(), job["id"].as_str().unwrap()).await;
    assert!(log.contains("policies signed: profile sha256:"), "{log}");
    assert!(log.contains("checked out"), "{log}");
    assert!(
        !job["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("policy manifest"),
        "{job}"
    );
}

#[test]
fn a_policy_manifest_that_does_not_verify_stops_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = default_only(dir.path());
    let stranger = KeyPair::generate(Algorithm::Ed25519).unwrap();
    let other = dir.path().join("other.pem");
    std::fs::write(&other, stranger.public_key().to_pem()).unwrap();
    let serve = |toml: String| {
        let path = dir.path().join("runner.toml");
        std::fs::write(&path, toml).unwrap();
        let out = Command::new(RUNNER)
            .args(["serve", "--config"])
            .arg(&path)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = serve(format!(
        "[policy]\nrequire_signed = true\nmanifest = {manifest:?}\npublic_keys = [{:?}]\n",
        other.display().to_string()
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("does not verify") && err.contains("untrusted_key"),
        "{err}"
    );
    let (code, err) = serve("[policy]\nrequire_signed = true\n".into());
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("needs policy.manifest and policy.public_keys"),
        "{err}"
    );
    let (code, err) = serve(format!("[policy]\nmanifest = {manifest:?}\n"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("only with policy.require_signed = true"),
        "{err}"
    );
}
