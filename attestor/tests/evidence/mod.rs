//! Evidence: audit engagements and auditor keys over real HTTP (both
//! backends), the policy gate and coverage, the packs (determinism across
//! processes, GNU tar, every tampering case, securesystemslib), import.

use crate::support::{TestServer, build_record};
use cloister_attestor::evidence::Context;
use cloister_attestor::evidence::engagement::{self, OpenRequest, Opened};
use std::path::Path;

mod audit;
mod gauges;
mod packs;
mod policy;

/// The shipped default profile's and seccomp policy's digests, as the
/// runner reports them (its golden file).
pub fn default_digests() -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(include_str!(
        "../../../runner/src/cli/testdata/profile-check-default.json"
    ))
    .unwrap();
    (
        v["digest"].as_str().unwrap().to_owned(),
        v["seccompPolicy"]["digest"].as_str().unwrap().to_owned(),
    )
}

/// The shipped sandbox-profiles directory.
pub fn profiles_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sandbox-profiles")
}

/// `sha256:` + 64 times `c`.
pub fn digest_of(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// The fixture build record for `repo` at `tag`, with the given policy
/// digests and artifact.
pub fn record(
    repo: &str,
    tag: &str,
    profile: &str,
    seccomp: &str,
    artifact: &str,
) -> serde_json::Value {
    let mut r = build_record();
    r["source"]["uri"] = repo.into();
    r["source"]["ref"] = format!("refs/tags/{tag}").into();
    r["isolation"]["profile"] = profile.into();
    r["isolation"]["seccompPolicy"] = seccomp.into();
    r["subjects"][0]["digest"] = artifact.into();
    r["invocationId"] = format!("job-{}", uuid::Uuid::now_v7()).into();
    r
}

/// A record built under the signed default policies.
pub fn signed_record(repo: &str, tag: &str, artifact: &str) -> serde_json::Value {
    let (p, s) = default_digests();
    record(repo, tag, &p, &s, artifact)
}

/// The pack-building context of an in-process server, at `now_ms`.
pub fn context(s: &TestServer, now_ms: i64, source_date_epoch: Option<i64>) -> Context {
    let app = &s.running.as_ref().unwrap().app;
    Context::load(
        &app.config,
        app.storage.clone(),
        &app.keyring,
        now_ms,
        source_date_epoch,
    )
    .unwrap()
}

/// Opens an engagement for `tag` with a 7-day key.
pub async fn open(ctx: &Context, tag: &str, auditor: &str) -> Opened {
    engagement::open(
        ctx,
        &OpenRequest {
            tag: tag.into(),
            repo: None,
            auditor: auditor.into(),
            valid_for_ms: 7 * 86_400_000,
            actor: "operator:test".into(),
            client_tenant: None,
        },
    )
    .await
    .unwrap()
}

/// Writes a policy manifest of the shipped profiles signed by the
/// keyring's active key in `state_dir` (created with `alg` when empty);
/// returns its path.
pub fn sign_shipped_policies(
    state_dir: &Path,
    alg: cloister_attestor_core::keys::Algorithm,
) -> std::path::PathBuf {
    std::fs::create_dir_all(state_dir).unwrap();
    let ring = cloister_attestor::keyring::Keyring::open(state_dir).unwrap();
    let signer = ring.ensure_active(alg).unwrap();
    let files = cloister_attestor::evidence::policies::scan_dir(&profiles_dir()).unwrap();
    let m = cloister_attestor::evidence::policies::manifest_of(&files).unwrap();
    let env = cloister_attestor_core::policy::sign(&m, signer.as_ref()).unwrap();
    let path = state_dir.join("policy-manifest.dsse.json");
    std::fs::write(&path, env.to_jsonl_line()).unwrap();
    assert_eq!(signer.keyid().len(), 64);
    path
}
