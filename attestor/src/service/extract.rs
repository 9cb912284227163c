//! The request extractors and body parsing every JSON route shares:
//! [`IdempotencyKey`] (the `Idempotency-Key` header), [`LimitedBody`] (the
//! raw body under `limits.max_body_bytes`), [`parse_json`] (400 for bad JSON,
//! 422 for a bad shape) and [`query_error`].

use super::AppState;
use crate::http::AppError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use serde::Deserialize;

/// The header naming a retry-safe request.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The request's `Idempotency-Key`, if any: 1–255 visible ASCII characters.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let Some(value) = parts.headers.get(IDEMPOTENCY_KEY) else {
            return Ok(Self(None));
        };
        let bad = || {
            AppError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        };
        let s = value.to_str().map_err(|_| bad())?;
        if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(bad());
        }
        Ok(Self(Some(s.to_owned())))
    }
}

/// The raw request body, refused with 413 beyond `limits.max_body_bytes`.
#[derive(Debug)]
pub struct LimitedBody(pub Bytes);

impl FromRequest<AppState> for LimitedBody {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, AppError> {
        let limit = state.config.limits.max_body_bytes;
        let too_large = AppError::PayloadTooLarge { limit };
        if let Some(len) = req.headers().get(axum::http::header::CONTENT_LENGTH)
            && len
                .to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|n| n > limit as u64)
        {
            return Err(too_large);
        }
        let limited = http_body_util::Limited::new(req.into_body(), limit);
        match limited.collect().await {
            Ok(collected) => Ok(Self(collected.to_bytes())),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large),
            Err(e) => Err(AppError::bad_request(
                "invalid_body",
                format!("cannot read the request body: {e}"),
            )),
        }
    }
}

/// Parses a JSON body into `T`: 400 `invalid_json` when it is not JSON at
/// all, 422 `invalid_request` when fields are missing, unknown or mistyped.
pub fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    match T::deserialize(&mut de).and_then(|v| de.end().map(|()| v)) {
        Ok(v) => Ok(v),
        Err(e) if e.is_syntax() || e.is_eof() || e.is_io() => Err(AppError::bad_request(
            "invalid_json",
            format!("request body is not valid JSON: {e}"),
        )),
        Err(e) => Err(AppError::unprocessable(
            "invalid_request",
            format!("invalid request: {e}"),
        )),
    }
}

/// A query string that does not parse: 400 `invalid_query`.
pub fn query_error(e: QueryRejection) -> AppError {
    AppError::bad_request("invalid_query", e.body_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_are_400_and_shape_errors_422() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct T {
            #[allow(dead_code)]
            a: u32,
        }
        let code = |b: &[u8]| match parse_json::<T>(b) {
            Err(e) => (e.status().as_u16(), e.code()),
            Ok(_) => (200, "ok"),
        };
        assert_eq!(code(b"{\"a\": 1}"), (200, "ok"));
        assert_eq!(code(b"{\"a\": 1"), (400, "invalid_json"));
        assert_eq!(code(b"not json"), (400, "invalid_json"));
        assert_eq!(code(b"{\"a\": 1} trailing"), (400, "invalid_json"));
        assert_eq!(code(b"{\"a\": \"x\"}"), (422, "invalid_request"));
        assert_eq!(code(b"{\"b\": 1}"), (422, "invalid_request"));
        assert_eq!(code(b"{}"), (422, "invalid_request"));
    }
}
