//! The authentication extractors (the key format and its stored hash are
//! `crate::api_key`'s).
//!
//! [`Authed`] checks `Authorization: Bearer KEY`, then the key's rate limit.
//! An auditor key (`clsa_…`, see `audit`) is refused there and accepted by
//! [`AuditorAuthed`] and [`Principal`] only.
//! Checked keys are remembered for `auth.cache_ttl_ms` so the hot path does
//! not touch the database; the key itself is never logged or kept, only its
//! hash.

use super::AppState;
use crate::api_key::{KEY_PREFIX, hash_key};
use crate::evidence::engagement::AUDITOR_KEY_PREFIX;
use crate::http::AppError;
use crate::storage::{KeyOwner, Storage, StorageError};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Remembers recently checked keys (by hash) for a short time.
#[derive(Debug)]
pub struct AuthCache {
    ttl: Duration,
    map: RwLock<HashMap<String, (KeyOwner, Instant)>>,
}

const AUTH_CACHE_MAX: usize = 100_000;

impl AuthCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: RwLock::new(HashMap::new()),
        }
    }

    /// The owner of `key`, from the cache or the storage. `None`: unknown or revoked.
    pub async fn lookup(
        &self,
        storage: &dyn Storage,
        key: &str,
    ) -> Result<Option<KeyOwner>, StorageError> {
        let hash = hash_key(key);
        if !self.ttl.is_zero() {
            let map = self.map.read().expect("auth cache lock");
            if let Some((owner, at)) = map.get(&hash)
                && at.elapsed() < self.ttl
            {
                return Ok(Some(owner.clone()));
            }
        }
        let owner = storage.authenticate(&hash).await?;
        if !self.ttl.is_zero()
            && let Some(owner) = &owner
        {
            let mut map = self.map.write().expect("auth cache lock");
            if map.len() >= AUTH_CACHE_MAX {
                let ttl = self.ttl;
                map.retain(|_, (_, at)| at.elapsed() < ttl);
                if map.len() >= AUTH_CACHE_MAX {
                    map.clear();
                }
            }
            map.insert(hash, (owner.clone(), Instant::now()));
        }
        Ok(owner)
    }
}

/// An authenticated, rate-limited caller.
#[derive(Debug, Clone)]
pub struct Authed {
    pub tenant_id: String,
    pub key_id: String,
}

pub(super) fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| t.len() <= 128)
}

fn bearer(parts: &Parts) -> Option<&str> {
    bearer_token(parts).filter(|t| t.starts_with(KEY_PREFIX))
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        // Deny by default: an auditor key is refused here, so every endpoint
        // that takes `Authed` refuses auditors; the few an auditor may call
        // take `AuditorAuthed` or `Principal` instead.
        if is_auditor_key(parts) {
            return Err(auditor_not_allowed());
        }
        let key = bearer(parts).ok_or(AppError::Unauthorized)?;
        let owner = state
            .auth_cache
            .lookup(state.storage.as_ref(), key)
            .await?
            .ok_or(AppError::Unauthorized)?;
        // The key's plan sets its rate limit (billing entitlements).
        state
            .billing
            .entitlements
            .check_rate(&owner.tenant_id, &owner.key_id, &state.limiter)
            .await?;
        Ok(Authed {
            tenant_id: owner.tenant_id,
            key_id: owner.key_id,
        })
    }
}

/// Whether the request presents an auditor key.
pub fn is_auditor_key(parts: &Parts) -> bool {
    bearer_token(parts).is_some_and(|t| t.starts_with(AUDITOR_KEY_PREFIX))
}

/// The refusal of an auditor key where only tenant keys are accepted.
pub fn auditor_not_allowed() -> AppError {
    AppError::Forbidden {
        code: "auditor_key_not_allowed",
        message: "auditor keys may only call their engagement's endpoints and POST /v1/verify"
            .into(),
    }
}

/// An auditor with a valid (known, unrevoked, unexpired) key.
#[derive(Debug, Clone)]
pub struct AuditorAuthed {
    pub key_id: String,
    pub tenant_id: String,
    pub engagement_id: String,
}

impl AuditorAuthed {
    /// Refuses a path naming another engagement.
    pub fn check_scope(&self, id: &str) -> Result<(), AppError> {
        if id == self.engagement_id {
            Ok(())
        } else {
            Err(AppError::Forbidden {
                code: "engagement_out_of_scope",
                message: format!(
                    "this auditor key is scoped to engagement {}",
                    self.engagement_id
                ),
            })
        }
    }
}

impl FromRequestParts<AppState> for AuditorAuthed {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer_token(parts)
            .filter(|t| t.starts_with(AUDITOR_KEY_PREFIX))
            .ok_or_else(|| {
                if bearer_token(parts).is_some() {
                    AppError::Forbidden {
                        code: "auditor_key_required",
                        message: "this endpoint is for an engagement's auditor key (clsa_…)".into(),
                    }
                } else {
                    AppError::Unauthorized
                }
            })?;
        let key = state
            .storage
            .auditor_key(&hash_key(token))
            .await?
            .ok_or(AppError::Unauthorized)?;
        if let Some(at) = key.revoked_at_ms {
            return Err(AppError::Unauthenticated {
                code: "auditor_key_revoked",
                message: format!(
                    "this auditor key was revoked at {}",
                    crate::clock::dates::rfc3339(at)
                ),
            });
        }
        if state.clock.now_ms() >= key.expires_at_ms {
            return Err(AppError::Unauthenticated {
                code: "auditor_key_expired",
                message: format!(
                    "this auditor key expired at {}; ask the operator for a new one",
                    crate::clock::dates::rfc3339(key.expires_at_ms)
                ),
            });
        }
        state.limiter.check(&key.id)?;
        Ok(AuditorAuthed {
            key_id: key.id,
            tenant_id: key.tenant_id,
            engagement_id: key.engagement_id,
        })
    }
}

/// Who may call `POST /v1/verify`: a tenant (metered) or an auditor (not
/// metered; store lookups limited to the engagement's frozen set).
#[derive(Debug, Clone)]
pub enum Principal {
    Tenant(Authed),
    Auditor(AuditorAuthed),
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if is_auditor_key(parts) {
            AuditorAuthed::from_request_parts(parts, state)
                .await
                .map(Principal::Auditor)
        } else {
            Authed::from_request_parts(parts, state)
                .await
                .map(Principal::Tenant)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing_rejects_other_schemes_and_garbage() {
        let parts = |v: &str| {
            let (p, _) = axum::http::Request::builder()
                .header(AUTHORIZATION, v)
                .body(())
                .unwrap()
                .into_parts();
            p
        };
        assert_eq!(bearer(&parts("Bearer clst_abc")), Some("clst_abc"));
        assert_eq!(bearer(&parts("bearer clst_abc")), Some("clst_abc"));
        assert_eq!(bearer(&parts("Basic clst_abc")), None);
        assert_eq!(bearer(&parts("Bearer other")), None);
        assert_eq!(bearer(&parts("clst_abc")), None);
    }
}
