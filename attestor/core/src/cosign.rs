//! cosign's encrypted private key format (`cosign.key`): a PEM block labelled
//! `ENCRYPTED SIGSTORE PRIVATE KEY` (older: `ENCRYPTED COSIGN PRIVATE KEY`)
//! whose body is JSON from go-securesystemslib's `encrypted` package:
//! `{"kdf":{"name":"scrypt","params":{"N","r","p"},"salt"},"cipher":{"name":
//! "nacl/secretbox","nonce"},"ciphertext"}` (byte fields standard base64).
//! The key is scrypt(passphrase, salt, N, r, p) → 32 bytes; the plaintext,
//! opened with XSalsa20-Poly1305 (NaCl secretbox), is a PKCS#8 DER key.
//! Written with the `scrypt` and `crypto_secretbox` crates rather than the
//! `sigstore` crate, whose dependency tree is far larger (see ARCHITECTURE.md).

use crypto_secretbox::XSalsa20Poly1305;
use crypto_secretbox::aead::{Aead, KeyInit};
use pkcs8::der::pem::LineEnding;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

/// PEM label cosign writes today.
pub const PEM_LABEL_SIGSTORE: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// PEM label older cosign releases wrote.
pub const PEM_LABEL_COSIGN: &str = "ENCRYPTED COSIGN PRIVATE KEY";

/// Largest scrypt cost we accept from a file (2^20, 1 GiB with r = 8), so a
/// hostile key file cannot make import allocate without bound.
const MAX_LOG_N: u8 = 20;

/// Errors from cosign key decryption.
#[derive(Debug, Error)]
pub enum CosignError {
    #[error("malformed key json: {0}")]
    Json(String),
    #[error("unsupported kdf {0:?} (expected scrypt)")]
    Kdf(String),
    #[error("unsupported cipher {0:?} (expected nacl/secretbox)")]
    Cipher(String),
    #[error(
        "scrypt parameters out of range (N must be a power of two up to 2^{MAX_LOG_N}, r 1..=32, p 1..=16)"
    )]
    Params,
    #[error("salt must be non-empty and nonce 24 bytes")]
    Sizes,
    #[error("wrong passphrase or corrupted key")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "crate::b64::serde_bytes")]
    ciphertext: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kdf {
    name: String,
    params: ScryptParams,
    #[serde(with = "crate::b64::serde_bytes")]
    salt: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cipher {
    name: String,
    #[serde(with = "crate::b64::serde_bytes")]
    nonce: Vec<u8>,
}

fn derive(pass: &[u8], salt: &[u8], p: &ScryptParams) -> Result<Zeroizing<[u8; 32]>, CosignError> {
    if !p.n.is_power_of_two() || p.n < 2 || !(1..=32).contains(&p.r) || !(1..=16).contains(&p.p) {
        return Err(CosignError::Params);
    }
    let log_n = p.n.trailing_zeros() as u8;
    if log_n > MAX_LOG_N {
        return Err(CosignError::Params);
    }
    let params = scrypt::Params::new(log_n, p.r, p.p, 32).map_err(|_| CosignError::Params)?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(pass, salt, &params, key.as_mut()).map_err(|_| CosignError::Params)?;
    Ok(key)
}

/// Decrypts the body (PEM-decoded bytes) of a cosign key into PKCS#8 DER.
pub fn decrypt(body: &[u8], passphrase: &[u8]) -> Result<Zeroizing<Vec<u8>>, CosignError> {
    let sealed: Sealed =
        crate::json::parse(body, 64 * 1024).map_err(|e| CosignError::Json(e.to_string()))?;
    if sealed.kdf.name != "scrypt" {
        return Err(CosignError::Kdf(sealed.kdf.name));
    }
    if sealed.cipher.name != "nacl/secretbox" {
        return Err(CosignError::Cipher(sealed.cipher.name));
    }
    if sealed.kdf.salt.is_empty() || sealed.cipher.nonce.len() != 24 {
        return Err(CosignError::Sizes);
    }
    let key = derive(passphrase, &sealed.kdf.salt, &sealed.kdf.params)?;
    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
    let nonce = crypto_secretbox::Nonce::from_slice(&sealed.cipher.nonce);
    cipher
        .decrypt(nonce, sealed.ciphertext.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| CosignError::Decrypt)
}

/// Encrypts PKCS#8 DER into a cosign key PEM (`ENCRYPTED SIGSTORE PRIVATE
/// KEY`) with scrypt N = 2^`log_n`, r = 8, p = 1 (cosign uses N = 2^15).
pub fn encrypt(
    pkcs8_der: &[u8],
    passphrase: &[u8],
    log_n: u8,
) -> Result<Zeroizing<String>, CosignError> {
    let mut salt = vec![0u8; 32];
    let mut nonce = [0u8; 24];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| CosignError::Encrypt)?;
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| CosignError::Encrypt)?;
    let params = ScryptParams {
        n: 1u64 << log_n,
        r: 8,
        p: 1,
    };
    let key = derive(passphrase, &salt, &params)?;
    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
    let ciphertext = cipher
        .encrypt(crypto_secretbox::Nonce::from_slice(&nonce), pkcs8_der)
        .map_err(|_| CosignError::Encrypt)?;
    let sealed = Sealed {
        kdf: Kdf {
            name: "scrypt".into(),
            params,
            salt,
        },
        cipher: Cipher {
            name: "nacl/secretbox".into(),
            nonce: nonce.to_vec(),
        },
        ciphertext,
    };
    let json = serde_json::to_vec(&sealed).map_err(|_| CosignError::Encrypt)?;
    pkcs8::der::pem::encode_string(PEM_LABEL_SIGSTORE, LineEnding::LF, &json)
        .map(Zeroizing::new)
        .map_err(|_| CosignError::Encrypt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Algorithm, KeyError, KeyPair};

    #[test]
    fn cosign_key_round_trip_through_keypair_from_pem() {
        let kp = KeyPair::generate(Algorithm::EcdsaP256).unwrap();
        let pem = encrypt(kp.pkcs8_der(), b"cosign-pass", 10).unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
        let loaded = KeyPair::from_pem(&pem, Some(b"cosign-pass")).unwrap();
        assert_eq!(loaded.keyid(), kp.keyid());
        assert!(matches!(
            KeyPair::from_pem(&pem, Some(b"nope")),
            Err(KeyError::Cosign(CosignError::Decrypt))
        ));
        assert!(matches!(
            KeyPair::from_pem(&pem, None),
            Err(KeyError::PassphraseRequired)
        ));
    }

    #[test]
    fn the_json_body_has_cosigns_shape() {
        let pem = encrypt(b"not really a key", b"p", 10).unwrap();
        let (label, body) = pkcs8::der::pem::decode_vec(pem.as_bytes()).unwrap();
        assert_eq!(label, PEM_LABEL_SIGSTORE);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["kdf"]["name"], "scrypt");
        assert_eq!(v["kdf"]["params"]["N"], 1024);
        assert_eq!(v["kdf"]["params"]["r"], 8);
        assert_eq!(v["kdf"]["params"]["p"], 1);
        assert_eq!(v["cipher"]["name"], "nacl/secretbox");
        // secretbox output = 16-byte tag + plaintext
        let ct = crate::b64::decode(v["ciphertext"].as_str().unwrap()).unwrap();
        assert_eq!(ct.len(), 16 + b"not really a key".len());
        assert_eq!(&*decrypt(&body, b"p").unwrap(), b"not really a key");
    }

    #[test]
    fn rejects_hostile_parameters() {
        let body = br#"{"kdf":{"name":"scrypt","params":{"N":1073741824,"r":8,"p":1},"salt":"AAAA"},"cipher":{"name":"nacl/secretbox","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},"ciphertext":"AAAA"}"#;
        assert!(matches!(decrypt(body, b"x"), Err(CosignError::Params)));
        let body = br#"{"kdf":{"name":"pbkdf2","params":{"N":1024,"r":8,"p":1},"salt":"AAAA"},"cipher":{"name":"nacl/secretbox","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},"ciphertext":"AAAA"}"#;
        assert!(matches!(decrypt(body, b"x"), Err(CosignError::Kdf(_))));
        assert!(matches!(decrypt(b"{", b"x"), Err(CosignError::Json(_))));
    }
}
