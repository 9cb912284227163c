//! DSSE (Dead Simple Signing Envelope) v1: the pre-authentication encoding,
//! the envelope JSON, signing through a [`Signer`], and the strict parser
//! used on untrusted envelopes. Signatures are over
//! `PAE(payloadType, payload)` of the *decoded* payload bytes; we write
//! standard base64 with padding and always set `keyid`.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::json::{self, JsonError};
use crate::keys::{SignError, Signer};

/// The in-toto payload type.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Most signatures we look at on one envelope.
pub const MAX_SIGNATURES: usize = 16;

/// Errors from building or parsing envelopes.
#[derive(Debug, Error)]
pub enum DsseError {
    #[error(transparent)]
    Json(#[from] JsonError),
    #[error("envelope has {0} signatures (at most {MAX_SIGNATURES} are accepted)")]
    TooManySignatures(usize),
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// One DSSE signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// Hex SHA-256 of the signer's SPKI DER (DSSE allows it empty; we always set it).
    #[serde(default)]
    pub keyid: String,
    /// The raw signature bytes (base64 on the wire).
    #[serde(with = "crate::b64::serde_bytes")]
    pub sig: Vec<u8>,
}

/// A DSSE envelope. Field order on the wire: payloadType, payload, signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The decoded payload bytes (base64 on the wire).
    #[serde(with = "crate::b64::serde_bytes")]
    pub payload: Vec<u8>,
    pub signatures: Vec<Signature>,
}

/// DSSE v1 pre-authentication encoding:
/// `"DSSEv1" SP len(type) SP type SP len(body) SP body`, lengths in ASCII decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// Signs `payload` as `payload_type` with one signature by `signer`.
    pub fn sign(
        payload_type: &str,
        payload: Vec<u8>,
        signer: &dyn Signer,
    ) -> Result<Self, DsseError> {
        let sig = signer.sign(&pae(payload_type, &payload))?;
        Ok(Self {
            payload_type: payload_type.to_owned(),
            payload,
            signatures: vec![Signature {
                keyid: signer.keyid().to_owned(),
                sig,
            }],
        })
    }

    /// The PAE bytes the signatures cover.
    pub fn pae(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }

    /// Compact JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an envelope always serializes")
    }

    /// One `.intoto.jsonl` line: compact JSON and a trailing newline.
    pub fn to_jsonl_line(&self) -> String {
        let mut s = self.to_json();
        s.push('\n');
        s
    }

    /// Strictly parses one envelope (size limit, no duplicate keys, no
    /// unknown fields, valid base64, at most [`MAX_SIGNATURES`] signatures).
    pub fn parse(bytes: &[u8]) -> Result<Self, DsseError> {
        // One pass: only structs, which reject repeated fields (json::parse_typed).
        let env: Envelope = json::parse_typed(bytes, json::MAX_DOCUMENT_BYTES)?;
        env.check_signature_count()?;
        Ok(env)
    }

    pub(crate) fn check_signature_count(&self) -> Result<(), DsseError> {
        if self.signatures.len() > MAX_SIGNATURES {
            return Err(DsseError::TooManySignatures(self.signatures.len()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Algorithm, KeyPair};

    #[test]
    fn pae_matches_the_spec_vector() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn sign_serialize_parse_round_trip() {
        let kp = KeyPair::generate(Algorithm::EcdsaP256).unwrap();
        let env = Envelope::sign(PAYLOAD_TYPE, b"{\"a\":1}".to_vec(), &kp).unwrap();
        let line = env.to_jsonl_line();
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        assert!(line.starts_with(r#"{"payloadType":"application/vnd.in-toto+json","payload":"eyJhIjoxfQ==","signatures":[{"keyid":""#));
        let back = Envelope::parse(line.trim_end().as_bytes()).unwrap();
        assert_eq!(back, env);
        assert!(kp.public_key().verify(&back.pae(), &back.signatures[0].sig));
    }

    #[test]
    fn parse_rejects_bad_envelopes() {
        let bad_b64 = br#"{"payloadType":"x","payload":"***","signatures":[]}"#;
        assert!(matches!(
            Envelope::parse(bad_b64),
            Err(DsseError::Json(JsonError::InvalidBase64(_)))
        ));
        let dup = br#"{"payloadType":"x","payload":"","payload":"","signatures":[]}"#;
        assert!(matches!(
            Envelope::parse(dup),
            Err(DsseError::Json(JsonError::DuplicateKey(_)))
        ));
        let unknown = br#"{"payloadType":"x","payload":"","signatures":[],"extra":1}"#;
        assert!(matches!(
            Envelope::parse(unknown),
            Err(DsseError::Json(JsonError::Schema(_)))
        ));
        let many = format!(
            r#"{{"payloadType":"x","payload":"","signatures":[{}]}}"#,
            vec![r#"{"keyid":"k","sig":"AA=="}"#; 17].join(",")
        );
        assert!(matches!(
            Envelope::parse(many.as_bytes()),
            Err(DsseError::TooManySignatures(17))
        ));
    }
}
