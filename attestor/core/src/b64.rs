//! Base64 as DSSE and Sigstore bundles use it: we always write standard
//! base64 with padding; we read standard or URL-safe, padded or not (the DSSE
//! spec and proto3 JSON allow both), and reject anything else.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(false);
const STANDARD_READ: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const URL_SAFE_READ: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

/// Encodes as standard base64 with padding.
pub fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard or URL-safe base64, padding optional.
pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    match STANDARD_READ.decode(text) {
        Ok(bytes) => Ok(bytes),
        Err(first) => URL_SAFE_READ.decode(text).map_err(|_| first),
    }
}

/// Serde adapter for `Vec<u8>` fields carried as base64 strings.
pub mod serde_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        super::decode(&text)
            .map_err(|e| serde::de::Error::custom(format!("{}{e}", super::INVALID_BASE64_PREFIX)))
    }
}

/// Prefix of the serde error message produced for invalid base64, so that
/// callers can tell it apart from other schema errors.
pub(crate) const INVALID_BASE64_PREFIX: &str = "invalid base64: ";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_standard_padded() {
        assert_eq!(encode(b"hello world"), "aGVsbG8gd29ybGQ=");
        assert_eq!(encode(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn reads_standard_and_url_safe_padded_or_not() {
        assert_eq!(decode("aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
        assert_eq!(decode("aGVsbG8gd29ybGQ").unwrap(), b"hello world");
        assert_eq!(decode("+/8=").unwrap(), [0xfb, 0xff]);
        assert_eq!(decode("-_8").unwrap(), [0xfb, 0xff]);
    }

    #[test]
    fn rejects_non_base64() {
        assert!(decode("not base64!").is_err());
        assert!(decode("aGVsbG8=x").is_err());
        // non-canonical trailing bits
        assert!(decode("+/9=").is_err());
    }
}
