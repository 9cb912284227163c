//! API keys and the authentication extractor.
//!
//! A key looks like `clst_<16 hex key id>_<43 chars base64url secret>`: 256
//! random bits, shown once at issue. Only its SHA-256 is stored. A fast hash
//! is right here (a slow password hash is for low-entropy secrets): nobody
//! can brute-force 256 random bits, and a per-request Argon2 would cap the
//! whole service at a few hundred requests per second.
//!
//! [`Authed`] checks `Authorization: Bearer KEY`, then the key's rate limit.
//! Checked keys are remembered for `auth.cache_ttl_ms` so the hot path does
//! not touch the database; the key itself is never logged or kept, only its
//! hash.

use super::{AppError, AppState};
use crate::storage::{KeyOwner, Storage, StorageError};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Prefix of every API key.
pub const KEY_PREFIX: &str = "clst_";

/// A freshly generated key: its public id and the secret string (shown once).
#[derive(Debug)]
pub struct NewKey {
    pub id: String,
    pub secret: String,
}

/// Errors generating a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyGenError {
    #[error("no randomness from the operating system: {0}")]
    Random(#[from] getrandom::Error),
}

/// Generates a new API key from the OS's randomness.
pub fn generate_key() -> Result<NewKey, KeyGenError> {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id)?;
    getrandom::fill(&mut secret)?;
    let id = hex::encode(id);
    let secret = format!(
        "{KEY_PREFIX}{id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    Ok(NewKey { id, secret })
}

/// The stored form of a key: hex SHA-256 of the whole key string.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

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
        // take `service::audit::AuditorAuthed` or `Principal` instead.
        if super::audit::is_auditor_key(parts) {
            return Err(super::audit::auditor_not_allowed());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_prefixed_and_hash_stably() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(&format!("{KEY_PREFIX}{}_", a.id)));
        assert_eq!(a.secret.len(), KEY_PREFIX.len() + 16 + 1 + 43);
        assert_eq!(hash_key(&a.secret), hash_key(&a.secret));
        assert_ne!(hash_key(&a.secret), hash_key(&b.secret));
        assert!(!hash_key(&a.secret).contains(&a.secret));
    }

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
