//! What every HTTP handler shares, below the service, billing, evidence
//! and the portal: the one error type ([`AppError`], `error`) and the
//! per-key rate limit (`ratelimit`: the `[rate_limit]` settings and the
//! limiter).

pub mod error;
pub mod ratelimit;

pub use error::AppError;
