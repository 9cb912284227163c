//! The signing endpoint on the Unix socket, for the runner daemon only
//! (filesystem permissions are its access control: mode 0660, the runner's
//! group). `POST /v1/sign` takes a `BuildRecord` (the facts the runner
//! observed), builds the SLSA v1 statement with `record::to_statement`,
//! signs it with the keyring's active key, stores envelope and bundle with
//! their subjects, and returns them.
//!
//! Invariant: this router is never served on the TCP listener, and nothing
//! here accepts a statement or a subject list other than through the record.

use super::extract::{LimitedBody, parse_json};
use super::{AppError, AppState};
use crate::storage::{AttestationRow, SubjectRow};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use cloister_attestor_core::attest::sign_statement;
use cloister_attestor_core::record::{BuildRecord, to_statement};
use cloister_attestor_core::verify::normalize_source_uri;
use serde::Serialize;
use serde_json::value::RawValue;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/sign", post(sign))
}

/// The signed provenance, as stored.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignResponse {
    /// The DSSE envelope (the `.intoto.jsonl` line).
    pub envelope: Box<RawValue>,
    /// The Sigstore bundle v0.3 (the `.sigstore.json` file).
    pub bundle: Box<RawValue>,
    pub keyid: String,
    pub attestation_id: String,
}

async fn sign(
    State(state): State<AppState>,
    LimitedBody(raw): LimitedBody,
) -> Result<Json<SignResponse>, AppError> {
    let record: BuildRecord = parse_json(&raw)?;
    let statement = to_statement(&record)
        .map_err(|e| AppError::unprocessable("invalid_record", e.to_string()))?;
    let signer = state
        .keyring
        .active_signer()
        .map_err(|e| AppError::Internal(format!("keyring: {e}")))?;
    let signed = sign_statement(&statement, signer.as_ref())
        .map_err(|e| AppError::Internal(format!("signing: {e}")))?;
    let envelope = signed.envelope.to_json();
    let bundle = serde_json::to_string(&signed.bundle)
        .map_err(|e| AppError::Internal(format!("bundle: {e}")))?;
    let row = AttestationRow {
        id: uuid::Uuid::now_v7().to_string(),
        created_at_ms: state.clock.now_ms(),
        keyid: signed.keyid.clone(),
        builder_id: record.builder_id.clone(),
        source_uri: normalize_source_uri(&record.source.uri),
        subjects: record
            .subjects
            .iter()
            .map(|s| SubjectRow {
                name: s.name.clone(),
                digest: s.digest.to_string(),
            })
            .collect(),
        envelope,
        bundle,
    };
    state.storage.insert_attestation(&row).await?;
    tracing::info!(
        attestation = %row.id,
        keyid = %row.keyid,
        invocation = %record.invocation_id,
        subjects = row.subjects.len(),
        "signed and stored provenance"
    );
    let raw = |s: String| RawValue::from_string(s).map_err(|e| AppError::Internal(e.to_string()));
    Ok(Json(SignResponse {
        envelope: raw(row.envelope)?,
        bundle: raw(row.bundle)?,
        keyid: row.keyid,
        attestation_id: row.id,
    }))
}
