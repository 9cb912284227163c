//! The portal's error type, [`PortalError`]: every failure of a page
//! handler becomes an HTML page with the right status and one clear
//! sentence (never a stack trace or a cause: 5xx causes are logged, as the
//! API's `AppError` does). A missing or dead session is not an error page
//! but a redirect to sign-in.

use super::Chrome;
use crate::http::AppError;
use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

/// Everything a page handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// No live session: 303 to the sign-in page.
    #[error("sign in to continue")]
    SignInRequired,
    /// 403: a state-changing request without this session's CSRF token, or
    /// from another origin.
    #[error("this form expired or did not come from this portal; reload the page and try again")]
    Csrf,
    /// 403: a valid session that may not do this (a feature the plan does
    /// not include).
    #[error("{0}")]
    Forbidden(String),
    /// 404, also for another tenant's objects.
    #[error("there is nothing here")]
    NotFound,
    /// 409: the request conflicts with the object's state.
    #[error("{0}")]
    Conflict(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 400: a request the page cannot use (the message says why).
    #[error("{0}")]
    BadRequest(String),
    /// 413.
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// 429.
    #[error("too many attempts; try again in {retry_after_secs} seconds")]
    RateLimited { retry_after_secs: u64 },
    /// 429: the plan's monthly cap is reached (not a short wait).
    #[error("{message}")]
    CapReached {
        message: String,
        retry_after_secs: u64,
    },
    /// 503: the storage is unreachable; nothing was recorded.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// 500; the cause is only logged.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::storage::StorageError> for PortalError {
    fn from(e: crate::storage::StorageError) -> Self {
        PortalError::Unavailable(e.to_string())
    }
}

impl From<AppError> for PortalError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Unauthorized => PortalError::SignInRequired,
            AppError::RateLimited { retry_after_secs } => {
                PortalError::RateLimited { retry_after_secs }
            }
            AppError::PayloadTooLarge { limit } => PortalError::TooLarge {
                limit: limit as u64,
            },
            AppError::BadRequest { message, .. } | AppError::Unprocessable { message, .. } => {
                PortalError::BadRequest(message)
            }
            AppError::NotFound | AppError::Missing { .. } => PortalError::NotFound,
            // An expired or revoked key: the session's key no longer signs in.
            AppError::Unauthenticated { .. } => PortalError::SignInRequired,
            AppError::Forbidden { message, .. } => PortalError::Forbidden(message),
            AppError::Conflict { message, .. } => PortalError::Conflict(message),
            AppError::CapReached {
                message,
                retry_after_secs,
            } => PortalError::CapReached {
                message,
                retry_after_secs,
            },
            AppError::MethodNotAllowed => PortalError::MethodNotAllowed,
            AppError::Unavailable(m) => PortalError::Unavailable(m),
            AppError::Internal(m) => PortalError::Internal(m),
        }
    }
}

impl PortalError {
    pub fn status(&self) -> StatusCode {
        match self {
            PortalError::SignInRequired => StatusCode::SEE_OTHER,
            PortalError::Csrf => StatusCode::FORBIDDEN,
            PortalError::Forbidden(_) => StatusCode::FORBIDDEN,
            PortalError::NotFound => StatusCode::NOT_FOUND,
            PortalError::Conflict(_) => StatusCode::CONFLICT,
            PortalError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            PortalError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PortalError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            PortalError::RateLimited { .. } | PortalError::CapReached { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            PortalError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            PortalError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Template)]
#[template(path = "portal/error.html")]
struct ErrorPage {
    chrome: Chrome,
    heading: &'static str,
    message: String,
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        if let PortalError::SignInRequired = self {
            return Redirect::to("/portal/signin").into_response();
        }
        let status = self.status();
        let (heading, message) = match &self {
            PortalError::Unavailable(cause) => {
                tracing::error!(%cause, "portal: storage unavailable");
                (
                    "Service unavailable",
                    "The storage is unavailable; nothing was recorded. Try again in a moment."
                        .to_owned(),
                )
            }
            PortalError::Internal(cause) => {
                tracing::error!(%cause, "portal: internal error");
                (
                    "Something went wrong",
                    "An internal error occurred.".to_owned(),
                )
            }
            PortalError::NotFound => ("Not found", "There is nothing here.".to_owned()),
            PortalError::Csrf => ("Form refused", capitalized(&self)),
            PortalError::RateLimited { .. } => ("Too many attempts", capitalized(&self)),
            PortalError::CapReached { .. } => ("Usage cap reached", capitalized(&self)),
            _ => ("Request refused", capitalized(&self)),
        };
        let page = ErrorPage {
            chrome: Chrome::anonymous(heading),
            heading,
            message,
        };
        let body = page
            .render()
            .unwrap_or_else(|_| "<!doctype html><title>Error</title><p>Error</p>".to_owned());
        let mut resp = (status, axum::response::Html(body)).into_response();
        if let PortalError::RateLimited { retry_after_secs }
        | PortalError::CapReached {
            retry_after_secs, ..
        } = self
        {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        resp
    }
}

/// The error's sentence with a capital first letter and a full stop.
fn capitalized(e: &PortalError) -> String {
    let s = e.to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => format!("{}{}.", f.to_uppercase(), c.as_str()),
        None => s,
    }
}

/// The portal's fallback: an HTML 404.
pub async fn not_found() -> PortalError {
    PortalError::NotFound
}

/// The portal's 405.
pub async fn method_not_allowed() -> PortalError {
    PortalError::MethodNotAllowed
}
