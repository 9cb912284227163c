//! The procurement pack (format 1.1): what a prospective customer's
//! security review asks for, in one deterministic, signed archive: CAIQ-lite
//! answers (CSV and JSON) whose evidence references are checked against the
//! pack, the signed policy manifest with its verification and the policies,
//! the public keys, the newest provenance of each repository (verified at
//! pack time), SLO objectives with measured figures, a partner README and an
//! `appendix/` the partner may edit.

use super::caiq::{Answers, Slo};
use super::manifest::{MANIFEST, MANIFEST_DSSE};
use super::pack::{self, Built, PackError, VerifyResult};
use super::policies::Coverage;
use super::{Context, index};
use crate::storage::{AttestationFilter, Page};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// The pack format's version.
pub const VERSION: &str = "1.1";

/// What `pack procurement` asks for.
#[derive(Debug, Clone)]
pub struct ProcurementRequest {
    /// The prospective customer (recorded in the pack), if named.
    pub recipient: Option<String>,
    /// The CAIQ-lite answers' TOML text.
    pub answers: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProvenanceEntry<'a> {
    source_uri: &'a str,
    attestation_id: &'a str,
    envelope: String,
    bundle: String,
    verified: bool,
    result: &'a VerifyResult,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SloDoc<'a> {
    objectives: &'a [Slo],
    measured: Measured<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Measured<'a> {
    policy_signature_coverage: &'a Coverage,
    provenance_included: usize,
    provenance_verified: usize,
}

/// A file-name-safe form of a repository URI.
fn slug(uri: &str) -> String {
    let s = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Validates a recipient name: 1–128 printable characters.
pub fn check_recipient(name: &str) -> Result<(), PackError> {
    if name.trim().is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(PackError::Invalid(
            "--for must be 1 to 128 printable characters".into(),
        ));
    }
    Ok(())
}

/// Builds the pack. Refuses (with the question ID) when an answer points
/// at evidence the pack does not hold, e.g. a policy answer without a
/// configured, signed policy manifest.
pub async fn build(ctx: &Context, req: &ProcurementRequest) -> Result<Built, PackError> {
    let started = Instant::now();
    if let Some(r) = &req.recipient {
        check_recipient(r)?;
    }
    let answers = Answers::parse(&req.answers).map_err(|e| PackError::Invalid(e.to_string()))?;
    if let Some(Err(e)) = &ctx.policy.verified {
        return Err(PackError::Invalid(format!(
            "the configured policy manifest does not verify: {e}"
        )));
    }
    let storage = ctx.storage.as_ref();
    index::catch_up(storage).await?;
    let coverage = super::engagement::coverage(ctx).await?;
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();

    // The newest provenance of each repository, verified now.
    let manifest = ctx.policy.manifest();
    let mut results = Vec::new();
    let mut entries = Vec::new();
    for ix in storage.latest_per_repo().await? {
        let rows = storage
            .find_attestations(
                &AttestationFilter::Repo(ix.source_uri.clone()),
                &Page {
                    limit: 1,
                    before: None,
                },
            )
            .await?;
        let Some(row) = rows.into_iter().next() else {
            continue;
        };
        let r = pack::verify_row(
            &row,
            &ctx.trusted,
            manifest,
            ctx.policy.verified.is_some(),
            None,
        );
        let dir = format!("provenance/{}", slug(&row.source_uri));
        let envelope = format!("{dir}/{}.intoto.jsonl", row.id);
        let bundle = format!("{dir}/{}.sigstore.json", row.id);
        files.insert(envelope.clone(), format!("{}\n", row.envelope).into_bytes());
        files.insert(bundle.clone(), row.bundle.clone().into_bytes());
        entries.push((row.source_uri.clone(), row.id.clone(), envelope, bundle));
        results.push(r);
    }
    let index_doc: Vec<ProvenanceEntry<'_>> = entries
        .iter()
        .zip(&results)
        .map(|((uri, id, envelope, bundle), r)| ProvenanceEntry {
            source_uri: uri,
            attestation_id: id,
            envelope: envelope.clone(),
            bundle: bundle.clone(),
            verified: r.verified,
            result: r,
        })
        .collect();
    files.insert("provenance/index.json".into(), pack::json_file(&index_doc));
    pack::add_keys(&mut files, &ctx.keys);
    pack::add_policies(&mut files, &ctx.policy, &coverage);
    files.insert(
        "slo/slo.json".into(),
        pack::json_file(&SloDoc {
            objectives: &answers.slos,
            measured: Measured {
                policy_signature_coverage: &coverage,
                provenance_included: results.len(),
                provenance_verified: results.iter().filter(|r| r.verified).count(),
            },
        }),
    );
    files.insert(
        "tools/verify_pack.py".into(),
        include_bytes!("verify_pack.py").to_vec(),
    );
    files.insert(
        "appendix/README.md".into(),
        APPENDIX_README.as_bytes().to_vec(),
    );
    files.insert(
        "appendix/customer-notes.md".into(),
        format!(
            "# Notes for {}\n\n(Write here; this file may be edited and re-shared.)\n",
            req.recipient.as_deref().unwrap_or("the recipient")
        )
        .into_bytes(),
    );
    let readme = readme(ctx, req, &answers, &coverage, results.len());
    files.insert("README.md".into(), readme.into_bytes());
    files.insert(
        "caiq/answers.json".into(),
        pack::json_file(&answers.answers),
    );
    files.insert("caiq/answers.csv".into(), answers.to_csv().into_bytes());
    // Evidence references: every file of the final pack (pack.json and the
    // manifest's two files are added by `finish`).
    let mut names: BTreeSet<String> = files.keys().cloned().collect();
    for extra in ["pack.json", MANIFEST, MANIFEST_DSSE] {
        names.insert(extra.to_owned());
    }
    answers
        .check_evidence(&names)
        .map_err(|e| PackError::Invalid(format!("CAIQ answers: {e}")))?;
    let subject = req.recipient.as_deref().unwrap_or("unnamed recipient");
    pack::finish(ctx, files, "procurement", VERSION, subject, started)
}

const APPENDIX_README: &str = "# Appendix (editable)\n\
\n\
Files under `appendix/` are yours to edit, add or remove: the manifest marks\n\
them editable, and `cloister-attestor pack verify` reports each change and\n\
still passes. Any change outside `appendix/` fails verification.\n";

fn readme(
    ctx: &Context,
    req: &ProcurementRequest,
    answers: &Answers,
    coverage: &Coverage,
    repos: usize,
) -> String {
    let keyid = ctx.signer.keyid();
    let mut summary = String::new();
    for (domain, (n, yes)) in answers.counts() {
        summary.push_str(&format!("| {domain} | {n} | {yes} |\n"));
    }
    format!(
        "# Cloister procurement pack {VERSION}{for_line}\n\
\n\
This archive answers a security review of Cloister, a hermetic build runner\n\
and attestation service, with evidence you can check yourself, offline. It is\n\
signed by the attestor key `{keyid}`: verify it with that public key as you\n\
received it from us (`attestor.pub.pem` below); `keys/` holds copies for\n\
reference, compare their keyids.\n\
\n\
## What each file proves\n\
\n\
| file | what it proves |\n\
|---|---|\n\
| `MANIFEST.json`, `MANIFEST.dsse.json` | every file's sha256; the signature over exactly `MANIFEST.json` |\n\
| `caiq/answers.csv`, `caiq/answers.json` | CAIQ-lite answers keyed by CSA CAIQ v4 question IDs (look the questions up in CSA's questionnaire), each with the files backing it |\n\
| `policies/manifest.dsse.json` | the signed list of sandbox profiles and seccomp policies builds may run under |\n\
| `policies/verification.json` | that signature checked at pack time, which policy files it covers, policy signature coverage ({signed} of {in_use} policies in use are signed) |\n\
| `policies/*.json`, `policies/seccomp/*.json` | the policies themselves, one reason per rule |\n\
| `keys/keys.json`, `keys/*.pub.pem` | the public keys, keyids and validity windows |\n\
| `provenance/` | the newest signed SLSA v1 provenance of each of {repos} repositories, with its verification at pack time (`provenance/index.json`) |\n\
| `slo/slo.json` | service-level objectives and figures measured at pack time |\n\
| `pack.json` | pack version, recipient, generation time, time to pack |\n\
| `tools/verify_pack.py` | an independent check with securesystemslib |\n\
| `appendix/` | yours to edit; changes are reported, never fatal |\n\
\n\
Answers per domain:\n\
\n\
| domain | answers | Yes |\n\
|---|---|---|\n\
{summary}\
\n\
## Check it\n\
\n\
```sh\n\
cloister-attestor pack verify PACK.tar.gz --public-key attestor.pub.pem\n\
# or, without Cloister's code:\n\
mkdir pack && tar -xzf PACK.tar.gz -C pack\n\
python3 -m pip install securesystemslib cryptography\n\
python3 pack/tools/verify_pack.py pack attestor.pub.pem\n\
```\n\
\n\
The sha256 of the whole archive is recorded by the issuer; ask them to\n\
confirm it to be sure you hold the pack that was issued.\n\
\n\
## Shared responsibility\n\
\n\
Cloister isolates each build (no network, no capabilities, seccomp, a fresh\n\
root) and signs what its control plane observed. The operator runs and\n\
patches the hosts, keeps the signing keys, reviews and signs the sandbox\n\
policies, and backs up the attestor's state.\n",
        for_line = req
            .recipient
            .as_deref()
            .map(|r| format!(" for {r}"))
            .unwrap_or_default(),
        signed = coverage.signed,
        in_use = coverage.in_use,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("https://github.com/o/r"), "github.com_o_r");
        assert_eq!(slug("x/../y"), "x_.._y");
        assert!(check_recipient("Acme Corp").is_ok());
        assert!(check_recipient("").is_err());
        assert!(check_recipient("a\nb").is_err());
    }
}
