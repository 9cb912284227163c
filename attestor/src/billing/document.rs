//! The invoice document: canonical JSON (RFC 8785 style for our values:
//! object keys sorted, no whitespace, integers only, strings escaped as
//! serde_json does) built from a finalized draft, the seller, a copy of the
//! customer taken at finalization and the number. The bytes are what is
//! hashed, signed and served; the PDF is rendered from them.
//!
//! The signature: DSSE with payload type [`DIGEST_PAYLOAD_TYPE`], whose
//! payload is the canonical JSON `{"number", "sha256", "type"}` naming the
//! invoice and the sha256 of its document, signed by the attestor's key.
//! [`verify`] checks an envelope against a document and trusted keys.

use super::config::Seller;
use super::period::rfc3339;
use super::rating::{Draft, LineKind};
use crate::storage::Tenant;
use cloister_attestor_core::dsse::Envelope;
use cloister_attestor_core::keys::{PublicKey, Signer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The document's `type`.
pub const DOCUMENT_TYPE: &str = "https://cloister.dev/invoice/v1";
/// DSSE payload type of an invoice signature.
pub const DIGEST_PAYLOAD_TYPE: &str = "application/vnd.cloister.invoice-digest.v1+json";
/// The signed payload's `type`.
pub const DIGEST_TYPE: &str = "https://cloister.dev/invoice-digest/v1";

/// Errors building or checking documents.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("invalid invoice document: {0}")]
    Invalid(String),
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("signature does not verify: {0}")]
    Verify(String),
}

/// The invoice document (camelCase JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvoiceDocument {
    #[serde(rename = "type")]
    pub kind: String,
    pub number: String,
    pub issued_at: String,
    pub currency: String,
    pub period: DocPeriod,
    pub seller: DocSeller,
    pub customer: DocCustomer,
    pub lines: Vec<DocLine>,
    pub total_micros: i64,
    /// The rounding rule, stated.
    pub rounding: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DocPeriod {
    /// `YYYY-MM`.
    pub label: String,
    pub start: String,
    pub end: String,
    /// Closed before the month ended.
    pub early: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DocSeller {
    pub name: String,
    pub address: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tax_id: Option<String>,
}

/// The customer, copied at finalization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DocCustomer {
    pub tenant_id: String,
    pub name: String,
    pub plan: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DocLine {
    pub kind: LineKind,
    pub description: String,
    pub plan: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    pub start: String,
    pub end: String,
    pub quantity: i64,
    pub included_units: i64,
    pub billable_quantity: i64,
    pub unit_price_micros: i64,
    pub amount_micros: i64,
}

/// The rounding rule as stated on every invoice.
pub const ROUNDING_RULE: &str =
    "each line is rounded once, to whole cents, half away from zero; the total is the sum of lines";

impl InvoiceDocument {
    /// The document for a finalized draft.
    pub fn build(
        draft: &Draft,
        number: &str,
        issued_at_ms: i64,
        seller: &Seller,
        customer: &Tenant,
    ) -> Self {
        Self {
            kind: DOCUMENT_TYPE.to_owned(),
            number: number.to_owned(),
            issued_at: rfc3339(issued_at_ms),
            currency: "USD".to_owned(),
            period: DocPeriod {
                label: draft.period.clone(),
                start: rfc3339(draft.start_ms),
                end: rfc3339(draft.end_ms),
                early: draft.early,
            },
            seller: DocSeller {
                name: seller.name.clone(),
                address: seller.address.clone(),
                email: seller.email.clone(),
                tax_id: seller.tax_id.clone(),
            },
            customer: DocCustomer {
                tenant_id: customer.id.clone(),
                name: customer.name.clone(),
                plan: customer.plan.as_str().to_owned(),
            },
            lines: draft
                .lines
                .iter()
                .map(|l| DocLine {
                    kind: l.kind,
                    description: l.description.clone(),
                    plan: l.plan.clone(),
                    event: l.event.clone(),
                    start: rfc3339(l.from_ms),
                    end: rfc3339(l.to_ms),
                    quantity: l.quantity,
                    included_units: l.included_units,
                    billable_quantity: l.billable_quantity,
                    unit_price_micros: l.unit_price_micros,
                    amount_micros: l.amount_micros,
                })
                .collect(),
            total_micros: draft.total_micros,
            rounding: ROUNDING_RULE.to_owned(),
        }
    }

    /// The canonical bytes.
    pub fn canonical(&self) -> Result<String, DocumentError> {
        let v = serde_json::to_value(self).map_err(|e| DocumentError::Invalid(e.to_string()))?;
        Ok(canonical_json(&v))
    }

    /// Parses a document and checks that `bytes` are its canonical form
    /// (a document reformatted or with keys reordered is refused: the
    /// signed digest is over the canonical bytes).
    pub fn parse_canonical(bytes: &[u8]) -> Result<Self, DocumentError> {
        cloister_attestor_core::json::check(bytes, 16 * 1024 * 1024)
            .map_err(|e| DocumentError::Invalid(e.to_string()))?;
        let doc: Self =
            serde_json::from_slice(bytes).map_err(|e| DocumentError::Invalid(e.to_string()))?;
        if doc.canonical()?.as_bytes() != bytes {
            return Err(DocumentError::Invalid(
                "not in canonical form (keys sorted, no whitespace)".into(),
            ));
        }
        if doc.kind != DOCUMENT_TYPE {
            return Err(DocumentError::Invalid(format!("type {:?}", doc.kind)));
        }
        Ok(doc)
    }
}

/// Canonical JSON of `v`: keys sorted (by UTF-16 code units, as RFC 8785;
/// for our ASCII keys the same as bytes), no whitespace.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&map[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The signed payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestPayload {
    pub number: String,
    pub sha256: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// Signs the digest of `document` (canonical bytes of invoice `number`).
pub fn sign(number: &str, document: &[u8], signer: &dyn Signer) -> Result<Envelope, DocumentError> {
    let payload = DigestPayload {
        number: number.to_owned(),
        sha256: sha256_hex(document),
        kind: DIGEST_TYPE.to_owned(),
    };
    let v = serde_json::to_value(&payload).map_err(|e| DocumentError::Sign(e.to_string()))?;
    Envelope::sign(DIGEST_PAYLOAD_TYPE, canonical_json(&v).into_bytes(), signer)
        .map_err(|e| DocumentError::Sign(e.to_string()))
}

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    pub number: String,
    pub sha256: String,
    pub keyid: String,
    pub total_micros: i64,
}

/// Checks `envelope` (DSSE JSON) against `document` (the invoice bytes) and
/// `trusted` keys: payload type, a signature by a trusted key over the PAE,
/// the payload's digest equal to the document's and its number equal to the
/// document's.
pub fn verify(
    document: &[u8],
    envelope: &[u8],
    trusted: &[PublicKey],
) -> Result<Verified, DocumentError> {
    let env = Envelope::parse(envelope).map_err(|e| DocumentError::Verify(e.to_string()))?;
    if env.payload_type != DIGEST_PAYLOAD_TYPE {
        return Err(DocumentError::Verify(format!(
            "payload type {:?}, expected {DIGEST_PAYLOAD_TYPE}",
            env.payload_type
        )));
    }
    let pae = env.pae();
    let keyid = env
        .signatures
        .iter()
        .find_map(|s| {
            trusted
                .iter()
                .find(|k| k.keyid() == s.keyid && k.verify(&pae, &s.sig))
                .map(|k| k.keyid().to_owned())
        })
        .ok_or_else(|| DocumentError::Verify("no signature by a trusted key".into()))?;
    let payload: DigestPayload = serde_json::from_slice(&env.payload)
        .map_err(|e| DocumentError::Verify(format!("payload: {e}")))?;
    if payload.kind != DIGEST_TYPE {
        return Err(DocumentError::Verify(format!(
            "payload type field {:?}",
            payload.kind
        )));
    }
    let digest = sha256_hex(document);
    if payload.sha256 != digest {
        return Err(DocumentError::Verify(format!(
            "the document's sha256 is {digest}, the signature is for {}",
            payload.sha256
        )));
    }
    let doc = InvoiceDocument::parse_canonical(document)?;
    if doc.number != payload.number {
        return Err(DocumentError::Verify(format!(
            "the document is invoice {}, the signature is for {}",
            doc.number, payload.number
        )));
    }
    Ok(Verified {
        number: doc.number,
        sha256: digest,
        keyid,
        total_micros: doc.total_micros,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_and_has_no_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"d": [1, "x\n"], "c": null}}"#).unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":null,"d":[1,"x\n"]},"b":1}"#
        );
    }
}
