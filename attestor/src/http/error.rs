//! The one HTTP error type, [`AppError`]. Every 4xx carries a JSON body
//! `{"code": "...", "message": "..."}` whose `code` is stable (documented in
//! `cookbook/api.md`); 5xx bodies say only "internal error" or "storage
//! unavailable" and the cause is logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `unauthorized`, `invalid_json`.
    pub code: &'static str,
    /// One human sentence.
    pub message: String,
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("rate limit exceeded")]
    RateLimited { retry_after_secs: u64 },
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 400: the request cannot be parsed at all.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 422: well-formed but with missing, unknown or invalid fields.
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// 401 with its own reason (an expired or revoked auditor key).
    #[error("{message}")]
    Unauthenticated { code: &'static str, message: String },
    /// 403: a valid key that may not do this (an auditor key outside its
    /// engagement's endpoints, a feature the caller's plan does not include).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// 404 of a named thing that does not exist for this caller (an
    /// engagement, its pack, another tenant's invoice).
    #[error("{message}")]
    Missing { code: &'static str, message: String },
    /// 409: the request conflicts with the resource's state (a third note).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("no route for this path")]
    NotFound,
    /// 429 `usage_cap_reached`: the plan's monthly hard cap; not metered.
    #[error("{message}")]
    CapReached {
        message: String,
        retry_after_secs: u64,
    },
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 503: the storage is unreachable; nothing was recorded, retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure; the cause is only logged.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            AppError::Forbidden { .. } => StatusCode::FORBIDDEN,
            AppError::Missing { .. } => StatusCode::NOT_FOUND,
            AppError::Conflict { .. } => StatusCode::CONFLICT,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::CapReached { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthorized => "unauthorized",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::PayloadTooLarge { .. } => "payload_too_large",
            AppError::BadRequest { code, .. }
            | AppError::Unprocessable { code, .. }
            | AppError::Unauthenticated { code, .. }
            | AppError::Forbidden { code, .. }
            | AppError::Missing { code, .. }
            | AppError::Conflict { code, .. } => code,
            AppError::CapReached { .. } => "usage_cap_reached",
            AppError::NotFound => "not_found",
            AppError::MethodNotAllowed => "method_not_allowed",
            AppError::Unavailable(_) => "unavailable",
            AppError::Internal(_) => "internal",
        }
    }
}

impl From<crate::storage::StorageError> for AppError {
    fn from(e: crate::storage::StorageError) -> Self {
        AppError::Unavailable(e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            AppError::Unavailable(cause) => {
                tracing::error!(%cause, "storage unavailable");
                "storage unavailable; nothing was recorded, retry later".to_owned()
            }
            AppError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            code: self.code(),
            message,
        };
        let mut resp = (status, axum::Json(body)).into_response();
        match self {
            AppError::Unauthorized | AppError::Unauthenticated { .. } => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AppError::RateLimited { retry_after_secs }
            | AppError::CapReached {
                retry_after_secs, ..
            } => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            AppError::Unavailable(_) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}
