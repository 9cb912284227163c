//! Sigstore bundle v0.3 for key-signed DSSE: `mediaType`
//! `application/vnd.dev.sigstore.bundle.v0.3+json`,
//! `verificationMaterial.publicKey.hint` = keyid, `tlogEntries: []`, and a
//! `dsseEnvelope` with exactly one signature. Field names follow the
//! protobuf-specs JSON mapping (camelCase). Certificates, transparency-log
//! entries and message signatures are not produced, and bundles carrying
//! them are refused by [`Bundle::parse`] (key-signed verification only).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::dsse::{DsseError, Envelope};
use crate::json::{self, JsonError};

/// The media type we write.
pub const MEDIA_TYPE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The alternative spelling of v0.3 the bundle spec also allows.
pub const MEDIA_TYPE_V03_ALT: &str = "application/vnd.dev.sigstore.bundle+json;version=0.3";

/// Errors from parsing a bundle.
#[derive(Debug, Error)]
pub enum BundleError {
    #[error(transparent)]
    Json(#[from] JsonError),
    #[error("unsupported bundle media type {0:?} (expected {MEDIA_TYPE_V03})")]
    MediaType(String),
    #[error("unsupported verification material: {0} (only publicKey hints are supported)")]
    Material(&'static str),
    #[error("bundle has no dsseEnvelope (message signatures are not supported)")]
    NoEnvelope,
    #[error("bundle dsseEnvelope has {0} signatures (exactly one is required)")]
    SignatureCount(usize),
    #[error("bundle has transparency log entries; key-signed verification does not check them")]
    TlogEntries,
    #[error(transparent)]
    Dsse(#[from] DsseError),
}

/// `verificationMaterial.publicKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyIdentifier {
    pub hint: String,
}

/// `verificationMaterial`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerificationMaterial {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKeyIdentifier>,
    #[serde(
        default,
        deserialize_with = "json::strict_value_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate: Option<serde_json::Value>,
    #[serde(
        default,
        deserialize_with = "json::strict_value_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub x509_certificate_chain: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "json::strict_values")]
    pub tlog_entries: Vec<serde_json::Value>,
    #[serde(
        default,
        deserialize_with = "json::strict_value_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp_verification_data: Option<serde_json::Value>,
}

/// A Sigstore bundle (the subset used for key-signed DSSE provenance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bundle {
    pub media_type: String,
    pub verification_material: VerificationMaterial,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsse_envelope: Option<Envelope>,
    #[serde(
        default,
        deserialize_with = "json::strict_value_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub message_signature: Option<serde_json::Value>,
}

impl Bundle {
    /// Wraps a single-signature envelope; the hint is its signature's keyid.
    pub fn from_envelope(envelope: Envelope) -> Result<Self, BundleError> {
        if envelope.signatures.len() != 1 {
            return Err(BundleError::SignatureCount(envelope.signatures.len()));
        }
        Ok(Self {
            media_type: MEDIA_TYPE_V03.to_owned(),
            verification_material: VerificationMaterial {
                public_key: Some(PublicKeyIdentifier {
                    hint: envelope.signatures[0].keyid.clone(),
                }),
                certificate: None,
                x509_certificate_chain: None,
                tlog_entries: Vec::new(),
                timestamp_verification_data: None,
            },
            dsse_envelope: Some(envelope),
            message_signature: None,
        })
    }

    /// The envelope (always present on a bundle returned by [`Bundle::parse`]
    /// or [`Bundle::from_envelope`]).
    pub fn envelope(&self) -> Option<&Envelope> {
        self.dsse_envelope.as_ref()
    }

    /// The public key hint (keyid).
    pub fn hint(&self) -> Option<&str> {
        self.verification_material
            .public_key
            .as_ref()
            .map(|p| p.hint.as_str())
    }

    /// Pretty JSON with a trailing newline (the `.sigstore.json` file).
    pub fn to_json_pretty(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a bundle always serializes");
        s.push('\n');
        s
    }

    /// Strictly parses a key-signed DSSE bundle v0.3.
    pub fn parse(bytes: &[u8]) -> Result<Self, BundleError> {
        // One pass: the model is strict by construction (see json::parse_typed).
        let b: Bundle = json::parse_typed(bytes, json::MAX_DOCUMENT_BYTES)?;
        if b.media_type != MEDIA_TYPE_V03 && b.media_type != MEDIA_TYPE_V03_ALT {
            return Err(BundleError::MediaType(b.media_type));
        }
        let vm = &b.verification_material;
        if vm.certificate.is_some() || vm.x509_certificate_chain.is_some() {
            return Err(BundleError::Material("certificate"));
        }
        if vm.public_key.is_none() {
            return Err(BundleError::Material("no publicKey"));
        }
        if !vm.tlog_entries.is_empty() {
            return Err(BundleError::TlogEntries);
        }
        if b.message_signature.is_some() {
            return Err(BundleError::NoEnvelope);
        }
        let env = b.dsse_envelope.as_ref().ok_or(BundleError::NoEnvelope)?;
        env.check_signature_count()?;
        if env.signatures.len() != 1 {
            return Err(BundleError::SignatureCount(env.signatures.len()));
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsse::{PAYLOAD_TYPE, Signature};

    fn env(n: usize) -> Envelope {
        Envelope {
            payload_type: PAYLOAD_TYPE.into(),
            payload: b"{}".to_vec(),
            signatures: (0..n)
                .map(|i| Signature {
                    keyid: format!("k{i}"),
                    sig: vec![1, 2, 3],
                })
                .collect(),
        }
    }

    #[test]
    fn shape_of_a_bundle() {
        let b = Bundle::from_envelope(env(1)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&b.to_json_pretty()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                "verificationMaterial": {"publicKey": {"hint": "k0"}, "tlogEntries": []},
                "dsseEnvelope": {"payloadType": PAYLOAD_TYPE, "payload": "e30=", "signatures": [{"keyid": "k0", "sig": "AQID"}]}
            })
        );
        assert_eq!(Bundle::parse(b.to_json_pretty().as_bytes()).unwrap(), b);
        assert!(matches!(
            Bundle::from_envelope(env(2)),
            Err(BundleError::SignatureCount(2))
        ));
    }

    #[test]
    fn parse_rejects_what_we_do_not_verify() {
        let mut b = Bundle::from_envelope(env(1)).unwrap();
        b.media_type = "application/vnd.dev.sigstore.bundle+json;version=0.1".into();
        assert!(matches!(
            Bundle::parse(b.to_json_pretty().as_bytes()),
            Err(BundleError::MediaType(_))
        ));

        let mut b = Bundle::from_envelope(env(1)).unwrap();
        b.dsse_envelope = Some(env(2));
        assert!(matches!(
            Bundle::parse(b.to_json_pretty().as_bytes()),
            Err(BundleError::SignatureCount(2))
        ));

        let mut b = Bundle::from_envelope(env(1)).unwrap();
        b.verification_material.certificate = Some(serde_json::json!({"rawBytes": "AA=="}));
        assert!(matches!(
            Bundle::parse(b.to_json_pretty().as_bytes()),
            Err(BundleError::Material(_))
        ));

        let mut b = Bundle::from_envelope(env(1)).unwrap();
        b.verification_material
            .tlog_entries
            .push(serde_json::json!({}));
        assert!(matches!(
            Bundle::parse(b.to_json_pretty().as_bytes()),
            Err(BundleError::TlogEntries)
        ));

        let mut b = Bundle::from_envelope(env(1)).unwrap();
        b.dsse_envelope = None;
        assert!(matches!(
            Bundle::parse(b.to_json_pretty().as_bytes()),
            Err(BundleError::NoEnvelope)
        ));
    }
}
