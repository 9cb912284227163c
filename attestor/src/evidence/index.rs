//! The evidence index: for every stored attestation, the facts packs and
//! engagements select and report by (the built ref, the policy digests,
//! builder, runner version, the envelope's sha256), parsed once from its
//! stored provenance. [`catch_up`] indexes every attestation that has no
//! row yet, whoever stored it (the signing socket, an import, another
//! attestor on the same PostgreSQL), so nothing on the signing path
//! changes. Attestations are the operator's own or imported after
//! verification; packs re-verify everything they include anyway.

use crate::storage::evidence::IndexRow;
use crate::storage::{AttestationRow, Storage, StorageError};
use cloister_attestor_core::digest::Sha256Digest;
use cloister_attestor_core::dsse::Envelope;
use serde_json::Value;

/// Attestations indexed per storage round trip.
const BATCH: u32 = 500;

/// The built ref of a provenance source URI (`git+https://h/o/r@refs/tags/v1`
/// → `refs/tags/v1`), empty when it names none.
pub fn source_ref(uri: &str) -> &str {
    match uri.rsplit_once('@') {
        Some((_, r)) if r.starts_with("refs/") => r,
        _ => "",
    }
}

/// The index row of a stored attestation. Fields the provenance lacks (or
/// an envelope that no longer parses) are left empty, so the row is still
/// written and the attestation is not looked at again.
pub fn index_row(a: &AttestationRow) -> IndexRow {
    let envelope_sha256 = Sha256Digest::of(a.envelope.as_bytes()).hex();
    let statement: Value = Envelope::parse(a.envelope.as_bytes())
        .ok()
        .and_then(|e| serde_json::from_slice(&e.payload).ok())
        .unwrap_or_default();
    let bd = statement.pointer("/predicate/buildDefinition");
    let text = |v: Option<&Value>, path: &str| {
        v.and_then(|v| v.pointer(path))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let source_uri = text(bd, "/resolvedDependencies/0/uri");
    IndexRow {
        attestation_id: a.id.clone(),
        envelope_sha256,
        source_uri: a.source_uri.clone(),
        source_ref: source_ref(&source_uri).to_owned(),
        builder_id: a.builder_id.clone(),
        runner_version: text(
            statement.pointer("/predicate/runDetails/builder/version"),
            "/cloister-runner",
        ),
        profile_name: text(bd, "/externalParameters/profile"),
        profile_digest: text(bd, "/internalParameters/isolation/profile"),
        seccomp_digest: text(bd, "/internalParameters/isolation/seccompPolicy"),
        created_at_ms: a.created_at_ms,
    }
}

/// Indexes every attestation without a row; returns how many it indexed.
pub async fn catch_up(storage: &dyn Storage) -> Result<u64, StorageError> {
    let mut total = 0;
    loop {
        let batch = storage.unindexed_attestations(BATCH).await?;
        if batch.is_empty() {
            return Ok(total);
        }
        let rows: Vec<IndexRow> = batch.iter().map(index_row).collect();
        storage.insert_index(&rows).await?;
        total += rows.len() as u64;
        if (batch.len() as u32) < BATCH {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_come_from_the_source_uri() {
        assert_eq!(
            source_ref("git+https://github.com/o/r@refs/tags/v1.4.0"),
            "refs/tags/v1.4.0"
        );
        assert_eq!(source_ref("git+https://github.com/o/r"), "");
        assert_eq!(source_ref("git+https://u@host/o/r"), "");
    }
}
