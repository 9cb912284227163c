//! `attestations import FILE.intoto.jsonl`: provenance signed elsewhere
//! (another attestor, an offline `sign`, a store being migrated) enters the
//! store only after every envelope in the file verified against the trusted
//! keys, as a consumer would verify it (signature, statement, build type,
//! isolation claims, each against the statement's own subject and source);
//! one failure refuses the whole file and nothing is added. An envelope
//! already in the store (same bytes) is skipped, so an import can be re-run.

use super::index;
use crate::storage::evidence::IndexRow;
use crate::storage::{AttestationRow, Storage, StorageError, SubjectRow};
use cloister_attestor_core::bundle::Bundle;
use cloister_attestor_core::digest::Sha256Digest;
use cloister_attestor_core::dsse::Envelope;
use cloister_attestor_core::keys::PublicKey;
use cloister_attestor_core::statement::Statement;
use cloister_attestor_core::verify::{
    Reason, VerifyOptions, VerifyRequest, normalize_source_uri, verify_with,
};
use serde::Serialize;

/// Most envelopes one import takes.
pub const MAX_LINES: usize = 100_000;

/// Why an import was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("line {line}: {reason}")]
    Refused { line: usize, reason: Reason },
    #[error("line {line}: {message}")]
    Malformed { line: usize, message: String },
    #[error("more than {MAX_LINES} envelopes in one file")]
    TooMany,
    #[error("no envelope in the file")]
    Empty,
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Imported {
    /// Ids of the attestations added.
    pub added: Vec<String>,
    /// Envelopes already stored (hex sha256 of their JSON), skipped.
    pub already_present: Vec<String>,
}

/// Verifies every line, then stores them all in one transaction.
pub async fn import(
    storage: &dyn Storage,
    file: &[u8],
    trusted: &[PublicKey],
    now_ms: i64,
) -> Result<Imported, ImportError> {
    let lines: Vec<(usize, &[u8])> = file
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(i, l)| (i + 1, l))
        .collect();
    if lines.is_empty() {
        return Err(ImportError::Empty);
    }
    if lines.len() > MAX_LINES {
        return Err(ImportError::TooMany);
    }
    let mut rows = Vec::with_capacity(lines.len());
    for (line, bytes) in lines {
        let malformed = |message: String| ImportError::Malformed { line, message };
        // The claims to check against come from the statement itself (the
        // file names no artifact); a parse here is only to learn them, the
        // verification below parses the verified bytes again.
        let envelope = Envelope::parse(bytes).map_err(|e| malformed(e.to_string()))?;
        let statement = Statement::parse(&envelope.payload).ok();
        let first = statement.as_ref().and_then(|s| s.subject.first());
        let source = statement.as_ref().and_then(|s| {
            s.predicate
                .build_definition
                .resolved_dependencies
                .first()
                .and_then(|d| d.uri.clone())
        });
        let req = VerifyRequest {
            artifact_digest: first
                .and_then(|s| s.sha256())
                .map(|d| d.to_string())
                .unwrap_or_else(|| format!("sha256:{}", "0".repeat(64))),
            source_uri: source
                .as_deref()
                .map(|u| u.split_once("@refs/").map_or(u, |(r, _)| r))
                .map(normalize_source_uri)
                .unwrap_or_else(|| "https://unknown.invalid/none".into()),
            ..VerifyRequest::default()
        };
        let verdict = verify_with(
            bytes,
            trusted,
            &req,
            &VerifyOptions {
                include_statement: false,
            },
        );
        if !verdict.verified {
            let reason = verdict.reasons.into_iter().next().unwrap_or_else(|| {
                Reason::new(
                    cloister_attestor_core::verify::ReasonCode::InvalidStatement,
                    "did not verify",
                )
            });
            return Err(ImportError::Refused { line, reason });
        }
        // Verified: the statement parsed above is that of these bytes.
        let statement = statement.ok_or_else(|| malformed("no statement".into()))?;
        let keyid = verdict.keyid.unwrap_or_default();
        let envelope_json = envelope.to_json();
        let bundle =
            Bundle::from_envelope(envelope.clone()).map_err(|e| malformed(e.to_string()))?;
        let row = AttestationRow {
            id: uuid::Uuid::now_v7().to_string(),
            created_at_ms: now_ms,
            keyid,
            builder_id: statement.predicate.run_details.builder.id.clone(),
            source_uri: req.source_uri.clone(),
            subjects: statement
                .subject
                .iter()
                .filter_map(|s| {
                    s.sha256().map(|d| SubjectRow {
                        name: s.name.clone().unwrap_or_default(),
                        digest: d.to_string(),
                    })
                })
                .collect(),
            envelope: envelope_json,
            bundle: serde_json::to_string(&bundle).map_err(|e| malformed(e.to_string()))?,
        };
        rows.push(row);
    }
    index::catch_up(storage).await?;
    let mut out = Imported {
        added: Vec::new(),
        already_present: Vec::new(),
    };
    let mut to_store: Vec<(AttestationRow, IndexRow)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for row in rows {
        let sha = Sha256Digest::of(row.envelope.as_bytes()).hex();
        if !seen.insert(sha.clone()) || !storage.indexed_by_envelope(&sha).await?.is_empty() {
            out.already_present.push(sha);
            continue;
        }
        let ix = index::index_row(&row);
        out.added.push(row.id.clone());
        to_store.push((row, ix));
    }
    storage.import_attestations(&to_store).await?;
    Ok(out)
}
