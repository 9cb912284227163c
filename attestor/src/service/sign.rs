//! The signing endpoint on the Unix socket, for the runner daemon only
//! (filesystem permissions are its access control: mode 0660, the runner's
//! group). `POST /v1/sign` takes a `BuildRecord` (the facts the runner
//! observed), builds the SLSA v1 statement with `record::to_statement`,
//! signs it with the keyring's active key, stores envelope and bundle with
//! their subjects, and returns them.
//!
//! Idempotent per job: a record is identified by its builder id and
//! invocation id (the runner's job id). A repeated request with the same
//! record (the runner retrying after a lost reply, or `cloister-runner
//! attest` after an outage) gets the stored envelope and bundle back,
//! signed once; a different record under an invocation already signed is
//! refused (409 `invocation_conflict`). The request row and the attestation
//! are stored in one transaction, so concurrent duplicates also sign once.
//!
//! Invariant: this router is never served on the TCP listener, and nothing
//! here accepts a statement or a subject list other than through the record.

use super::AppState;
use super::extract::{LimitedBody, parse_json};
use crate::http::AppError;
use crate::storage::{AttestationRow, SignRequest, StorageError, SubjectRow};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use cloister_attestor_core::attest::sign_statement;
use cloister_attestor_core::record::{BuildRecord, to_statement};
use cloister_attestor_core::verify::normalize_source_uri;
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

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
    // The record's identity: its canonical re-serialization (field order
    // and spacing of what the runner sent do not matter).
    let canonical =
        serde_json::to_vec(&record).map_err(|e| AppError::Internal(format!("record: {e}")))?;
    let request = SignRequest {
        builder_id: record.builder_id.clone(),
        invocation_id: record.invocation_id.clone(),
        record_sha256: hex::encode(Sha256::digest(&canonical)),
    };
    if let Some(done) = already_signed(&state, &request).await? {
        return Ok(done);
    }
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
    match state.storage.insert_signed(&row, &request).await {
        Ok(()) => {}
        // A concurrent request for the same invocation stored first: its
        // attestation is the answer (this signature is dropped unstored).
        Err(StorageError::Conflict(_)) => {
            return match already_signed(&state, &request).await? {
                Some(done) => Ok(done),
                None => Err(AppError::Internal(
                    "a conflicting signing request vanished".into(),
                )),
            };
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(
        attestation = %row.id,
        keyid = %row.keyid,
        invocation = %record.invocation_id,
        subjects = row.subjects.len(),
        "signed and stored provenance"
    );
    response(row)
}

fn response(row: AttestationRow) -> Result<Json<SignResponse>, AppError> {
    let raw = |s: String| RawValue::from_string(s).map_err(|e| AppError::Internal(e.to_string()));
    Ok(Json(SignResponse {
        envelope: raw(row.envelope)?,
        bundle: raw(row.bundle)?,
        keyid: row.keyid,
        attestation_id: row.id,
    }))
}

/// The stored answer to a request already signed: the same attestation for
/// the same record, a refusal for another record under that invocation.
async fn already_signed(
    state: &AppState,
    request: &SignRequest,
) -> Result<Option<Json<SignResponse>>, AppError> {
    let Some((hash, row)) = state
        .storage
        .find_signed(&request.builder_id, &request.invocation_id)
        .await?
    else {
        return Ok(None);
    };
    if hash != request.record_sha256 {
        return Err(AppError::Conflict {
            code: "invocation_conflict",
            message: format!(
                "invocation {} of builder {} was signed for another build record",
                request.invocation_id, request.builder_id
            ),
        });
    }
    tracing::info!(
        attestation = %row.id,
        invocation = %request.invocation_id,
        "signing request repeated; answered with the stored attestation"
    );
    response(row).map(Some)
}
