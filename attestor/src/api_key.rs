//! The tenant API key's format and stored form: `clst_<16 hex key
//! id>_<43 chars base64url secret>` (256 random bits, shown once at issue),
//! stored as its SHA-256 only. A fast hash is right here (a slow password
//! hash is for low-entropy secrets): nobody can brute-force 256 random bits,
//! and a per-request Argon2 would cap the whole service at a few hundred
//! requests per second. Used by the service's authentication
//! (`service::auth`), the portal's sign-in, `api-keys create` and the
//! auditor keys of `evidence::engagement` (hashed the same way).

use base64::Engine as _;
use sha2::{Digest, Sha256};

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
}
