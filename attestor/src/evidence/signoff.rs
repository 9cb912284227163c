//! The sign-off pack of an audit engagement: the frozen attestations
//! (envelopes and bundles), their verification re-run at pack time (with
//! reason codes), the signed policy manifest and the policies, coverage,
//! the trusted keys with their validity windows, runner versions and
//! builder ids, the engagement with its notes and decisions log, and a
//! README for re-verifying all of it offline.

use super::Context;
use super::pack::{self, Built, PackError, VerifyResult};
use super::policies::Coverage;
use crate::storage::AttestationRow;
use crate::storage::evidence::{Engagement, IndexRow, LogEntry, Note};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// The pack format's version.
pub const VERSION: &str = "1";

/// What a sign-off pack is built from.
#[derive(Debug, Clone)]
pub struct SignoffData {
    pub engagement: Engagement,
    /// The frozen set, with subjects, by id.
    pub rows: Vec<AttestationRow>,
    /// Their index rows (runner versions).
    pub index: Vec<IndexRow>,
    pub notes: Vec<Note>,
    pub log: Vec<LogEntry>,
    pub coverage: Coverage,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EngagementDoc<'a> {
    id: &'a str,
    tag: &'a str,
    repo: Option<&'a str>,
    auditor: &'a str,
    status: &'a str,
    opened_at: String,
    key_expires_at: String,
    closed_at: Option<String>,
    /// The frozen set: attestation id and envelope sha256, as recorded
    /// when the engagement opened.
    attestations: Vec<FrozenDoc<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FrozenDoc<'a> {
    attestation_id: &'a str,
    envelope_sha256: &'a str,
    envelope: String,
    bundle: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Results<'a> {
    tag: &'a str,
    trusted_keyids: Vec<&'a str>,
    policy_manifest_keyid: Option<&'a str>,
    verified: usize,
    failed: usize,
    results: &'a [VerifyResult],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Builder<'a> {
    builder_id: &'a str,
    runner_versions: BTreeSet<&'a str>,
    attestations: usize,
}

/// Builds the pack.
pub fn build(ctx: &Context, data: &SignoffData, started: Instant) -> Result<Built, PackError> {
    let e = &data.engagement;
    let tag = e.tag.as_str();
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let manifest = ctx.policy.manifest();
    let mut frozen = Vec::with_capacity(data.rows.len());
    let results = super::parallel_map(&data.rows, |row| {
        pack::verify_row(
            row,
            &ctx.trusted,
            manifest,
            ctx.policy.verified.is_some(),
            Some(tag),
        )
    });
    for row in &data.rows {
        let envelope = format!("attestations/{}.intoto.jsonl", row.id);
        let bundle = format!("attestations/{}.sigstore.json", row.id);
        files.insert(envelope.clone(), format!("{}\n", row.envelope).into_bytes());
        files.insert(bundle.clone(), row.bundle.clone().into_bytes());
        frozen.push((row.id.as_str(), envelope, bundle));
    }
    let verified = results.iter().filter(|r| r.verified).count();
    files.insert(
        "verification/results.json".into(),
        pack::json_file(&Results {
            tag,
            trusted_keyids: ctx.trusted.iter().map(|k| k.keyid()).collect(),
            policy_manifest_keyid: manifest.map(|m| m.keyid.as_str()),
            verified,
            failed: results.len() - verified,
            results: &results,
        }),
    );
    let sha_of: BTreeMap<&str, &str> = results
        .iter()
        .map(|r| (r.attestation_id.as_str(), r.envelope_sha256.as_str()))
        .collect();
    files.insert(
        "engagement.json".into(),
        pack::json_file(&EngagementDoc {
            id: &e.id,
            tag,
            repo: e.repo.as_deref(),
            auditor: &e.auditor,
            status: e.status.as_str(),
            opened_at: pack::rfc3339(e.opened_at_ms),
            key_expires_at: pack::rfc3339(e.expires_at_ms),
            closed_at: e.closed_at_ms.map(pack::rfc3339),
            attestations: frozen
                .iter()
                .map(|(id, envelope, bundle)| FrozenDoc {
                    attestation_id: id,
                    envelope_sha256: sha_of.get(id).copied().unwrap_or_default(),
                    envelope: envelope.clone(),
                    bundle: bundle.clone(),
                })
                .collect(),
        }),
    );
    let mut builders: BTreeMap<&str, Builder<'_>> = BTreeMap::new();
    for ix in &data.index {
        let b = builders.entry(&ix.builder_id).or_insert_with(|| Builder {
            builder_id: &ix.builder_id,
            runner_versions: BTreeSet::new(),
            attestations: 0,
        });
        b.attestations += 1;
        if !ix.runner_version.is_empty() {
            b.runner_versions.insert(&ix.runner_version);
        }
    }
    files.insert(
        "builders.json".into(),
        pack::json_file(&builders.values().collect::<Vec<_>>()),
    );
    files.insert("notes.json".into(), pack::json_file(&data.notes));
    files.insert("decisions-log.json".into(), pack::json_file(&data.log));
    pack::add_keys(&mut files, &ctx.keys);
    pack::add_policies(&mut files, &ctx.policy, &data.coverage);
    files.insert(
        "tools/verify_pack.py".into(),
        include_bytes!("verify_pack.py").to_vec(),
    );
    files.insert(
        "README.md".into(),
        readme(ctx, e, results.len(), verified, results.first()).into_bytes(),
    );
    pack::finish(ctx, files, "signoff", VERSION, &e.id, started)
}

fn readme(
    ctx: &Context,
    e: &Engagement,
    total: usize,
    verified: usize,
    example: Option<&VerifyResult>,
) -> String {
    let keyid = ctx.signer.keyid();
    let repo = e.repo.as_deref().unwrap_or("<repository>");
    let (example_file, example_digest, example_repo) = match example {
        Some(r) => (
            format!("attestations/{}.intoto.jsonl", r.attestation_id),
            r.subjects
                .first()
                .map(|s| s.digest.clone())
                .unwrap_or_default(),
            r.source_uri.clone(),
        ),
        None => (
            "attestations/<id>.intoto.jsonl".into(),
            "sha256:<artifact digest>".into(),
            repo.to_owned(),
        ),
    };
    let policy_flag = if ctx.policy.envelope.is_some() {
        " \\\n    --policy-manifest policies/manifest.dsse.json"
    } else {
        ""
    };
    format!(
        "# Sign-off pack: engagement {id}\n\
\n\
Tag `{tag}`{repo_line}, auditor {auditor}. The engagement froze {total} attestation(s)\n\
when it opened; {verified} verified when this pack was built (see\n\
`verification/results.json` for each one's reasons).\n\
\n\
Everything here is signed by the attestor key `{keyid}`. Check with the\n\
attestor's public key as you received it from the operator (`attestor.pub.pem`\n\
below), not with a copy from this pack: `keys/` holds copies for reference,\n\
compare their keyids. Nothing needs a network or the attestor.\n\
\n\
## What each file is\n\
\n\
| file | what it proves |\n\
|---|---|\n\
| `MANIFEST.json` | every other file with its sha256 and size |\n\
| `MANIFEST.dsse.json` | DSSE signature over exactly `MANIFEST.json` (payload type `application/vnd.cloister.evidence-manifest+json`) |\n\
| `engagement.json` | the engagement and its frozen set: each attestation id with its envelope's sha256 |\n\
| `attestations/*.intoto.jsonl`, `*.sigstore.json` | the signed SLSA v1 provenance (DSSE envelope and Sigstore bundle v0.3) |\n\
| `verification/results.json` | each attestation verified at pack time (trusted keys, the tag, the policy manifest): verdict and reason codes |\n\
| `policies/manifest.dsse.json` | the signed list of sandbox profiles and seccomp policies builds may run under |\n\
| `policies/verification.json` | that manifest's verification, which policy files it signs, policy signature coverage |\n\
| `policies/*.json`, `policies/seccomp/*.json` | the policies themselves |\n\
| `keys/keys.json`, `keys/*.pub.pem` | the trusted public keys, keyids (hex sha256 of the SPKI DER) and validity windows |\n\
| `builders.json` | builder ids and runner versions of the frozen builds |\n\
| `notes.json`, `decisions-log.json` | the auditor's notes and the engagement's decisions log (who, when, hash) |\n\
| `pack.json` | pack kind, generation time, time to pack |\n\
| `tools/verify_pack.py` | an independent check with securesystemslib |\n\
\n\
## Re-verify offline\n\
\n\
With Cloister (the whole pack: signature, every file, every provenance, the\n\
policy manifest):\n\
\n\
```sh\n\
cloister-attestor pack verify PACK.tar.gz --public-key attestor.pub.pem\n\
```\n\
\n\
One attestation, as a consumer would (slsa-verifier semantics; exit 0 = passed):\n\
\n\
```sh\n\
cloister-attestor verify --provenance {example_file} \\\n\
    --public-key attestor.pub.pem --artifact-digest {example_digest} \\\n\
    --source-uri {example_repo} --source-tag {tag}{policy_flag}\n\
```\n\
\n\
With securesystemslib (not Cloister's code):\n\
\n\
```sh\n\
mkdir pack && tar -xzf PACK.tar.gz -C pack\n\
python3 -m pip install securesystemslib cryptography\n\
python3 pack/tools/verify_pack.py pack attestor.pub.pem\n\
```\n\
\n\
Reason codes: `cookbook/verification-reasons.md` in the Cloister repository.\n",
        id = e.id,
        tag = e.tag,
        repo_line = e
            .repo
            .as_deref()
            .map(|r| format!(" of `{r}`"))
            .unwrap_or_default(),
        auditor = e.auditor,
    )
}
