//! `GET /v1/keys`: the public keys this attestor's signatures verify with.

use crate::http::AppError;
use crate::service::AppState;
use crate::service::auth::Authed;
use axum::Json;
use axum::extract::State;
use serde::Serialize;

/// A trusted public key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyBody {
    /// Hex SHA-256 of the SPKI DER.
    pub keyid: String,
    /// `ecdsa-p256` or `ed25519`.
    pub algorithm: String,
    /// PEM (SubjectPublicKeyInfo).
    pub public_key: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeysResponse {
    pub keys: Vec<KeyBody>,
}

/// The public keys this attestor's signatures verify with (active and
/// rotated-but-unexpired), for offline verification.
#[utoipa::path(get, path = "/v1/keys", tag = "verification",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Trusted public keys", body = KeysResponse),
        (status = 401, description = "Missing or invalid API key", body = crate::http::error::ErrorBody),
        (status = 429, description = "Rate limited", body = crate::http::error::ErrorBody)))]
pub async fn keys(
    State(state): State<AppState>,
    _who: Authed,
) -> Result<Json<KeysResponse>, AppError> {
    let trusted = state
        .trusted
        .get()
        .map_err(|e| AppError::Internal(format!("keyring: {e}")))?;
    Ok(Json(KeysResponse {
        keys: trusted
            .keys
            .iter()
            .map(|k| KeyBody {
                keyid: k.keyid().to_owned(),
                algorithm: k.algorithm().as_str().to_owned(),
                public_key: k.to_pem(),
            })
            .collect(),
    }))
}
