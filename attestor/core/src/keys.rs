//! Keys: public keys as SPKI (PEM or DER) with their keyid, in-memory key
//! pairs loaded from PKCS#8 (plain or passphrase-encrypted) or cosign's
//! encrypted format, and the [`Signer`] trait through which everything else
//! signs. Signatures: ECDSA P-256 with SHA-256, ASN.1 DER encoded; Ed25519.
//! The keyid of a key is the lowercase hex SHA-256 of its SPKI DER.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::signature::{self as sig, KeyPair as _};
use pkcs8::der::Decode;
use pkcs8::der::pem::LineEnding;
use pkcs8::{EncryptedPrivateKeyInfo, PrivateKeyInfo};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::digest::Sha256Digest;

/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1,
/// BIT STRING of 66 bytes) before the 65-byte uncompressed point. DER is
/// canonical, so every P-256 SPKI is exactly this prefix plus the point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// DER prefix of an Ed25519 SubjectPublicKeyInfo before the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_ED25519: &str = "1.3.101.112";

/// Errors from loading, converting or generating keys.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("malformed pem: {0}")]
    Pem(String),
    #[error("unexpected pem label {found:?} (expected {expected})")]
    PemLabel {
        found: String,
        expected: &'static str,
    },
    #[error("malformed public key: {0}")]
    MalformedPublicKey(String),
    #[error("malformed private key: {0}")]
    MalformedPrivateKey(String),
    #[error("unsupported key algorithm {0} (supported: ecdsa-p256, ed25519)")]
    UnsupportedAlgorithm(String),
    #[error("the private key is encrypted: a passphrase is required")]
    PassphraseRequired,
    #[error("wrong passphrase or corrupted encrypted key")]
    Decrypt,
    #[error("cannot encrypt private key: {0}")]
    Encrypt(String),
    #[error("key generation failed")]
    Generate,
    #[error("cosign key: {0}")]
    Cosign(#[from] crate::cosign::CosignError),
}

/// Error returned by a [`Signer`].
#[derive(Debug, Error)]
pub enum SignError {
    #[error("signing failed: {0}")]
    Failed(String),
}

/// Signature algorithms Cloister signs and verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Algorithm {
    /// ECDSA over NIST P-256 with SHA-256, ASN.1 DER signatures.
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// Ed25519 (pure).
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl Algorithm {
    /// The name used on the command line and in the keyring (`ecdsa-p256`, `ed25519`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::EcdsaP256 => "ecdsa-p256",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "ecdsa-p256" => Ok(Algorithm::EcdsaP256),
            "ed25519" => Ok(Algorithm::Ed25519),
            other => Err(KeyError::UnsupportedAlgorithm(other.to_owned())),
        }
    }
}

/// A public key: algorithm, raw key bytes, SPKI DER and keyid, and the key
/// parsed once by aws-lc (point decoded and checked on the curve at load,
/// not again at every verification).
#[derive(Clone)]
pub struct PublicKey {
    alg: Algorithm,
    spki_der: Vec<u8>,
    keyid: String,
    parsed: sig::ParsedPublicKey,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        // The parsed key is a function of these two.
        self.alg == other.alg && self.spki_der == other.spki_der
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("alg", &self.alg)
            .field("keyid", &self.keyid)
            .finish()
    }
}

impl PublicKey {
    fn from_raw(alg: Algorithm, raw: &[u8]) -> Result<Self, KeyError> {
        let mut spki_der = Vec::new();
        match alg {
            Algorithm::EcdsaP256 => {
                if raw.len() != 65 || raw[0] != 0x04 {
                    return Err(KeyError::MalformedPublicKey(
                        "a p-256 key must be a 65-byte uncompressed point".into(),
                    ));
                }
                spki_der.extend_from_slice(&P256_SPKI_PREFIX);
            }
            Algorithm::Ed25519 => {
                if raw.len() != 32 {
                    return Err(KeyError::MalformedPublicKey(
                        "an ed25519 key is 32 bytes".into(),
                    ));
                }
                spki_der.extend_from_slice(&ED25519_SPKI_PREFIX);
            }
        }
        spki_der.extend_from_slice(raw);
        let verification: &'static dyn sig::VerificationAlgorithm = match alg {
            Algorithm::EcdsaP256 => &sig::ECDSA_P256_SHA256_ASN1,
            Algorithm::Ed25519 => &sig::ED25519,
        };
        let parsed = sig::ParsedPublicKey::new(verification, raw)
            .map_err(|e| KeyError::MalformedPublicKey(format!("{alg} key rejected: {e}")))?;
        let keyid = Sha256Digest::of(&spki_der).hex();
        Ok(Self {
            alg,
            spki_der,
            keyid,
            parsed,
        })
    }

    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        if der.len() == P256_SPKI_PREFIX.len() + 65 && der.starts_with(&P256_SPKI_PREFIX) {
            return Self::from_raw(Algorithm::EcdsaP256, &der[P256_SPKI_PREFIX.len()..]);
        }
        if der.len() == ED25519_SPKI_PREFIX.len() + 32 && der.starts_with(&ED25519_SPKI_PREFIX) {
            return Self::from_raw(Algorithm::Ed25519, &der[ED25519_SPKI_PREFIX.len()..]);
        }
        // Not one of ours: say what it is.
        let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| KeyError::MalformedPublicKey(e.to_string()))?;
        let oid = spki.algorithm.oid.to_string();
        let detail = match (oid.as_str(), spki.algorithm.parameters) {
            (OID_EC_PUBLIC_KEY, Some(p)) => match p.decode_as::<spki::ObjectIdentifier>() {
                Ok(curve) if curve.to_string() == OID_P256 => {
                    return Err(KeyError::MalformedPublicKey(
                        "p-256 key is not an uncompressed point".into(),
                    ));
                }
                Ok(curve) => format!("ecdsa on curve {curve}"),
                Err(_) => "ecdsa with unknown curve".into(),
            },
            (OID_ED25519, _) => {
                return Err(KeyError::MalformedPublicKey(
                    "malformed ed25519 spki".into(),
                ));
            }
            ("1.2.840.113549.1.1.1", _) => "rsa".into(),
            _ => oid,
        };
        Err(KeyError::UnsupportedAlgorithm(detail))
    }

    /// Parses a PEM `PUBLIC KEY` (SPKI) block.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = pkcs8::der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| KeyError::Pem(e.to_string()))?;
        if label != "PUBLIC KEY" {
            return Err(KeyError::PemLabel {
                found: label.to_owned(),
                expected: "PUBLIC KEY",
            });
        }
        Self::from_spki_der(&der)
    }

    /// PEM `PUBLIC KEY` encoding (LF line endings, trailing newline).
    pub fn to_pem(&self) -> String {
        pkcs8::der::pem::encode_string("PUBLIC KEY", LineEnding::LF, &self.spki_der)
            .expect("pem encoding of a short der never fails")
    }

    /// The SPKI DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Lowercase hex SHA-256 of the SPKI DER.
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The raw key: the uncompressed point for P-256, 32 bytes for Ed25519.
    pub fn raw(&self) -> &[u8] {
        match self.alg {
            Algorithm::EcdsaP256 => &self.spki_der[P256_SPKI_PREFIX.len()..],
            Algorithm::Ed25519 => &self.spki_der[ED25519_SPKI_PREFIX.len()..],
        }
    }

    /// Verifies `signature` over `msg` (ECDSA: ASN.1 DER over SHA-256 of `msg`).
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        self.parsed.verify_sig(msg, signature).is_ok()
    }
}

/// Signs messages with a key it holds. The only way attestor code reaches a
/// private key: the core never sees key material, and the service can put an
/// HSM or a remote signer behind this trait.
pub trait Signer: Send + Sync {
    /// The keyid of [`Signer::public_key`].
    fn keyid(&self) -> &str;
    fn public_key(&self) -> &PublicKey;
    /// Signs `msg` (ECDSA P-256: SHA-256 then an ASN.1 DER signature; Ed25519: pure).
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError>;
}

enum Inner {
    Ecdsa(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
}

/// An in-memory private key with its public key; implements [`Signer`].
pub struct KeyPair {
    inner: Inner,
    public: PublicKey,
    /// PKCS#8 v1 DER of the private key, kept for export.
    pkcs8: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// How an encrypted PKCS#8 key is protected (PBES2 with scrypt and AES-256-CBC).
#[derive(Debug, Clone, Copy)]
pub struct EncryptionParams {
    /// log2 of scrypt's N.
    pub scrypt_log_n: u8,
}

impl Default for EncryptionParams {
    /// scrypt N = 2^14, r = 8, p = 1: `openssl pkcs8 -scrypt`'s default
    /// and within OpenSSL's 32 MiB scrypt memory limit, so `openssl pkey`
    /// reads our encrypted keys.
    fn default() -> Self {
        Self { scrypt_log_n: 14 }
    }
}

impl KeyPair {
    /// Generates a fresh key.
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = match alg {
            Algorithm::EcdsaP256 => {
                sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            }
            Algorithm::Ed25519 => sig::Ed25519KeyPair::generate_pkcs8(&rng),
        }
        .map_err(|_| KeyError::Generate)?;
        Self::from_pkcs8_der(doc.as_ref())
    }

    /// Loads an unencrypted PKCS#8 DER private key (v1 or v2).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let info = PrivateKeyInfo::from_der(der)
            .map_err(|e| KeyError::MalformedPrivateKey(e.to_string()))?;
        let oid = info.algorithm.oid.to_string();
        match oid.as_str() {
            OID_EC_PUBLIC_KEY => {
                let curve = info.algorithm.parameters_oid().map_err(|_| {
                    KeyError::MalformedPrivateKey("ec key without a named curve".into())
                })?;
                if curve.to_string() != OID_P256 {
                    return Err(KeyError::UnsupportedAlgorithm(format!(
                        "ecdsa on curve {curve}"
                    )));
                }
                let kp = sig::EcdsaKeyPair::from_private_key_der(
                    &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
                    der,
                )
                .map_err(|e| KeyError::MalformedPrivateKey(e.to_string()))?;
                let public = PublicKey::from_raw(Algorithm::EcdsaP256, kp.public_key().as_ref())?;
                let pkcs8 = kp
                    .to_pkcs8v1()
                    .map_err(|_| KeyError::MalformedPrivateKey("cannot re-encode".into()))?;
                Ok(Self {
                    inner: Inner::Ecdsa(kp),
                    public,
                    pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()),
                })
            }
            OID_ED25519 => {
                let kp = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|e| KeyError::MalformedPrivateKey(e.to_string()))?;
                let public = PublicKey::from_raw(Algorithm::Ed25519, kp.public_key().as_ref())?;
                let pkcs8 = kp
                    .to_pkcs8v1()
                    .map_err(|_| KeyError::MalformedPrivateKey("cannot re-encode".into()))?;
                Ok(Self {
                    inner: Inner::Ed25519(kp),
                    public,
                    pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()),
                })
            }
            "1.2.840.113549.1.1.1" => Err(KeyError::UnsupportedAlgorithm("rsa".into())),
            other => Err(KeyError::UnsupportedAlgorithm(other.to_owned())),
        }
    }

    /// Loads a PEM private key: `PRIVATE KEY` (PKCS#8), `ENCRYPTED PRIVATE
    /// KEY` (PKCS#8 PBES2, needs `passphrase`), `EC PRIVATE KEY` (SEC1), or
    /// cosign's `ENCRYPTED SIGSTORE PRIVATE KEY` / `ENCRYPTED COSIGN PRIVATE KEY`.
    pub fn from_pem(pem: &str, passphrase: Option<&[u8]>) -> Result<Self, KeyError> {
        let (label, der) = pkcs8::der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| KeyError::Pem(e.to_string()))?;
        let der = Zeroizing::new(der);
        match label {
            "PRIVATE KEY" => Self::from_pkcs8_der(&der),
            "EC PRIVATE KEY" => {
                let kp = sig::EcdsaKeyPair::from_private_key_der(
                    &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
                    &der,
                )
                .map_err(|e| KeyError::MalformedPrivateKey(format!("not a p-256 sec1 key: {e}")))?;
                let pkcs8 = kp
                    .to_pkcs8v1()
                    .map_err(|_| KeyError::MalformedPrivateKey("cannot re-encode".into()))?;
                Self::from_pkcs8_der(pkcs8.as_ref())
            }
            "ENCRYPTED PRIVATE KEY" => {
                let pass = passphrase.ok_or(KeyError::PassphraseRequired)?;
                let enc = EncryptedPrivateKeyInfo::from_der(&der)
                    .map_err(|e| KeyError::MalformedPrivateKey(e.to_string()))?;
                let plain = enc.decrypt(pass).map_err(|_| KeyError::Decrypt)?;
                Self::from_pkcs8_der(plain.as_bytes())
            }
            crate::cosign::PEM_LABEL_SIGSTORE | crate::cosign::PEM_LABEL_COSIGN => {
                let pass = passphrase.ok_or(KeyError::PassphraseRequired)?;
                let plain = crate::cosign::decrypt(&der, pass)?;
                Self::from_pkcs8_der(&plain)
            }
            other => Err(KeyError::PemLabel {
                found: other.to_owned(),
                expected: "PRIVATE KEY or ENCRYPTED PRIVATE KEY",
            }),
        }
    }

    /// PKCS#8 PEM; with a passphrase, `ENCRYPTED PRIVATE KEY` (PBES2,
    /// scrypt + AES-256-CBC, readable by `openssl pkey`).
    pub fn to_pkcs8_pem(
        &self,
        passphrase: Option<&[u8]>,
        params: EncryptionParams,
    ) -> Result<Zeroizing<String>, KeyError> {
        match passphrase {
            None => pkcs8::der::pem::encode_string("PRIVATE KEY", LineEnding::LF, &self.pkcs8)
                .map(Zeroizing::new)
                .map_err(|e| KeyError::Encrypt(e.to_string())),
            Some(pass) => {
                let mut salt = [0u8; 16];
                let mut iv = [0u8; 16];
                aws_lc_rs::rand::fill(&mut salt).map_err(|_| KeyError::Generate)?;
                aws_lc_rs::rand::fill(&mut iv).map_err(|_| KeyError::Generate)?;
                let scrypt = pkcs8::pkcs5::scrypt::Params::new(params.scrypt_log_n, 8, 1, 32)
                    .map_err(|e| KeyError::Encrypt(e.to_string()))?;
                let pbes2 = pkcs8::pkcs5::pbes2::Parameters::scrypt_aes256cbc(scrypt, &salt, &iv)
                    .map_err(|e| KeyError::Encrypt(e.to_string()))?;
                let info = PrivateKeyInfo::from_der(&self.pkcs8)
                    .map_err(|e| KeyError::MalformedPrivateKey(e.to_string()))?;
                let doc = info
                    .encrypt_with_params(pbes2, pass)
                    .map_err(|e| KeyError::Encrypt(e.to_string()))?;
                let der = Zeroizing::new(doc.as_bytes().to_vec());
                pkcs8::der::pem::encode_string("ENCRYPTED PRIVATE KEY", LineEnding::LF, &der)
                    .map(Zeroizing::new)
                    .map_err(|e| KeyError::Encrypt(e.to_string()))
            }
        }
    }

    /// Unencrypted PKCS#8 v1 DER.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn algorithm(&self) -> Algorithm {
        self.public.alg
    }

    /// The public half (same as [`Signer::public_key`], without the trait in scope).
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The keyid (same as [`Signer::keyid`]).
    pub fn keyid(&self) -> &str {
        self.public.keyid()
    }
}

impl Signer for KeyPair {
    fn keyid(&self) -> &str {
        self.public.keyid()
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.inner {
            Inner::Ecdsa(kp) => {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                kp.sign(&rng, msg)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| SignError::Failed("ecdsa signing failed".into()))
            }
            Inner::Ed25519(kp) => Ok(kp.sign(msg).as_ref().to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pkcs8::der::Encode;

    #[test]
    fn generated_keys_sign_and_verify_both_algorithms() {
        for alg in [Algorithm::EcdsaP256, Algorithm::Ed25519] {
            let kp = KeyPair::generate(alg).unwrap();
            let sig = kp.sign(b"message").unwrap();
            assert!(kp.public_key().verify(b"message", &sig));
            assert!(!kp.public_key().verify(b"messagf", &sig));
            assert_eq!(kp.keyid().len(), 64);
            assert_eq!(
                kp.keyid(),
                Sha256Digest::of(kp.public_key().spki_der()).hex()
            );
            if alg == Algorithm::EcdsaP256 {
                assert_eq!(sig[0], 0x30, "ecdsa signature is an asn.1 der sequence");
            } else {
                assert_eq!(sig.len(), 64);
            }
        }
    }

    #[test]
    fn public_pem_round_trip_and_spki_matches_spki_crate() {
        for alg in [Algorithm::EcdsaP256, Algorithm::Ed25519] {
            let kp = KeyPair::generate(alg).unwrap();
            let pem = kp.public_key().to_pem();
            assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
            let back = PublicKey::from_pem(&pem).unwrap();
            assert_eq!(&back, kp.public_key());
            // Our fixed DER prefixes agree with a generic DER decoder.
            let parsed = spki::SubjectPublicKeyInfoRef::from_der(back.spki_der()).unwrap();
            assert_eq!(parsed.subject_public_key.raw_bytes(), back.raw());
            assert_eq!(parsed.to_der().unwrap(), back.spki_der());
        }
    }

    #[test]
    fn a_p256_point_off_the_curve_is_refused_at_load() {
        // 0x04 || x || y with y one off from the real key's: right shape, not
        // on the curve. Refused when the key is read, not at every
        // verification.
        let kp = KeyPair::generate(Algorithm::EcdsaP256).unwrap();
        let mut raw = kp.public_key().raw().to_vec();
        raw[64] ^= 1;
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&raw);
        let err = PublicKey::from_spki_der(&der).unwrap_err();
        assert!(
            matches!(&err, KeyError::MalformedPublicKey(m) if m.contains("ecdsa-p256 key rejected")),
            "{err}"
        );
        // The unchanged key loads and verifies.
        let good = PublicKey::from_spki_der(kp.public_key().spki_der()).unwrap();
        assert!(good.verify(b"m", &kp.sign(b"m").unwrap()));
    }

    #[test]
    fn keyid_of_a_known_key() {
        // Ed25519 RFC 8032 test 1 public key.
        let raw = hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
            .unwrap();
        let pk = PublicKey::from_raw(Algorithm::Ed25519, &raw).unwrap();
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&raw);
        assert_eq!(pk.keyid(), Sha256Digest::of(&der).hex());
        assert_eq!(
            pk.to_pem(),
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n"
        );
    }

    #[test]
    fn private_pem_round_trip_plain_and_encrypted() {
        for alg in [Algorithm::EcdsaP256, Algorithm::Ed25519] {
            let kp = KeyPair::generate(alg).unwrap();
            let plain = kp.to_pkcs8_pem(None, EncryptionParams::default()).unwrap();
            assert!(plain.starts_with("-----BEGIN PRIVATE KEY-----"));
            assert_eq!(KeyPair::from_pem(&plain, None).unwrap().keyid(), kp.keyid());

            let fast = EncryptionParams { scrypt_log_n: 10 };
            let enc = kp.to_pkcs8_pem(Some(b"correct horse"), fast).unwrap();
            assert!(enc.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
            assert!(matches!(
                KeyPair::from_pem(&enc, None),
                Err(KeyError::PassphraseRequired)
            ));
            assert!(matches!(
                KeyPair::from_pem(&enc, Some(b"wrong")),
                Err(KeyError::Decrypt)
            ));
            let back = KeyPair::from_pem(&enc, Some(b"correct horse")).unwrap();
            assert_eq!(back.keyid(), kp.keyid());
            let s = back.sign(b"m").unwrap();
            assert!(kp.public_key().verify(b"m", &s));
        }
    }

    #[test]
    fn rejects_wrong_labels_and_garbage() {
        let kp = KeyPair::generate(Algorithm::Ed25519).unwrap();
        let public = kp.public_key().to_pem();
        assert!(matches!(
            KeyPair::from_pem(&public, None),
            Err(KeyError::PemLabel { .. })
        ));
        let private = kp.to_pkcs8_pem(None, EncryptionParams::default()).unwrap();
        assert!(matches!(
            PublicKey::from_pem(&private),
            Err(KeyError::PemLabel { .. })
        ));
        assert!(matches!(
            PublicKey::from_pem("hello"),
            Err(KeyError::Pem(_))
        ));
        assert!(PublicKey::from_spki_der(&[0x30, 0x00]).is_err());
        // A P-384 SPKI (prefix only) is refused as unsupported.
        let p384 = hex::decode("3076301006072a8648ce3d020106052b81040022036200").unwrap();
        let mut der = p384;
        der.push(4);
        der.extend_from_slice(&[1u8; 96]);
        assert!(matches!(
            PublicKey::from_spki_der(&der),
            Err(KeyError::UnsupportedAlgorithm(_))
        ));
    }
}
