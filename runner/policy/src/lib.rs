//! The canonical identity of a sandbox policy: the `sha256:<hex>` digest of
//! a profile (an OCI runtime-spec document) or of a seccomp policy
//! (seccompiler's JSON format), computed from its text.
//!
//! One implementation for both sides of the trust boundary: the sandbox
//! (`cloister-sandbox`, which records the digests in every run's isolation
//! facts, hence in provenance) and the attestor (`cloister-attestor policy
//! sign`, which signs a manifest of them). The attestor never links the
//! sandbox crate (no namespaces, no `unsafe`), and the two cannot disagree
//! on a digest because there is only this code.
//!
//! Digests:
//! - profile: sha256 of the canonical JSON of the document *as parsed* into
//!   `oci_spec::runtime::Spec` and serialized back (so formatting, key order
//!   and fields the spec omits when empty do not change it); a field the
//!   spec does not have is refused ([`unknown_field`]), never dropped;
//! - seccomp policy: sha256 of the canonical JSON of the document.
//!
//! Canonical JSON: object keys sorted bytewise, no insignificant whitespace.
#![forbid(unsafe_code)]

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Why a policy's text has no digest.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("not an OCI runtime spec: {0}")]
    Spec(String),
    #[error("unknown field {0} (not in the OCI runtime spec)")]
    UnknownField(String),
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Canonical JSON: object keys sorted bytewise, no insignificant whitespace.
/// (Sorting is done here rather than relying on serde_json's map order, which
/// a feature elsewhere in the build could change.)
pub fn canonical_json(v: &Value) -> String {
    let mut out = Vec::with_capacity(4096);
    write_canonical(v, &mut out);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("writing to a Vec cannot fail");
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => serde_json::to_writer(&mut *out, other).expect("writing to a Vec cannot fail"),
    }
}

/// The first key present in `raw` but dropped by parsing (a typo or a field
/// this version of the runtime spec does not have), as a dotted path.
pub fn unknown_field(raw: &Value, parsed: &Value, path: &str) -> Option<String> {
    match (raw, parsed) {
        (Value::Object(r), Value::Object(p)) => {
            let mut keys: Vec<&String> = r.keys().collect();
            keys.sort();
            for k in keys {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match p.get(k) {
                    None if r[k].is_null() => {}
                    None => return Some(sub),
                    Some(pv) => {
                        if let Some(f) = unknown_field(&r[k], pv, &sub) {
                            return Some(f);
                        }
                    }
                }
            }
            None
        }
        (Value::Array(r), Value::Array(p)) => r
            .iter()
            .zip(p)
            .enumerate()
            .find_map(|(i, (rv, pv))| unknown_field(rv, pv, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// Parses a profile's text as an OCI runtime spec, refusing fields the spec
/// does not have, and returns it with its digest: the sha256 of the
/// canonical JSON of the spec as parsed.
pub fn parse_profile(json: &str) -> Result<(oci_spec::runtime::Spec, String), DigestError> {
    let raw: Value = serde_json::from_str(json).map_err(|e| DigestError::Json(e.to_string()))?;
    let spec: oci_spec::runtime::Spec =
        serde_json::from_value(raw.clone()).map_err(|e| DigestError::Spec(e.to_string()))?;
    let reserialized = serde_json::to_value(&spec).map_err(|e| DigestError::Spec(e.to_string()))?;
    if let Some(field) = unknown_field(&raw, &reserialized, "") {
        return Err(DigestError::UnknownField(field));
    }
    let digest = sha256_digest(canonical_json(&reserialized).as_bytes());
    Ok((spec, digest))
}

/// A profile's digest ([`parse_profile`] without the spec).
pub fn profile_digest(json: &str) -> Result<String, DigestError> {
    parse_profile(json).map(|(_, d)| d)
}

/// A seccomp policy's digest: the sha256 of its canonical JSON.
pub fn seccomp_policy_digest(json: &str) -> Result<String, DigestError> {
    let value: Value = serde_json::from_str(json).map_err(|e| DigestError::Json(e.to_string()))?;
    Ok(sha256_digest(canonical_json(&value).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let v: Value = serde_json::from_str(r#"{ "b": [1, {"d": 2, "c": 3}], "a": "x" }"#).unwrap();
        assert_eq!(canonical_json(&v), r#"{"a":"x","b":[1,{"c":3,"d":2}]}"#);
    }

    #[test]
    fn digests_ignore_formatting_and_refuse_unknown_fields() {
        let a = seccomp_policy_digest(r#"{"x": {"b": 1, "a": 2}}"#).unwrap();
        let b = seccomp_policy_digest("{\"x\":{\"a\":2,\"b\":1}}\n").unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with("sha256:") && a.len() == 71);
        let spec = r#"{"ociVersion": "1.0.2", "root": {"path": "rootfs"}}"#;
        let respaced = "{\n  \"root\": {\"path\": \"rootfs\"},\n  \"ociVersion\": \"1.0.2\"\n}";
        assert_eq!(
            profile_digest(spec).unwrap(),
            profile_digest(respaced).unwrap()
        );
        let typo = r#"{"ociVersion": "1.0.2", "rooot": {"path": "rootfs"}}"#;
        assert!(matches!(profile_digest(typo), Err(DigestError::UnknownField(f)) if f == "rooot"));
        assert!(matches!(profile_digest("nope"), Err(DigestError::Json(_))));
    }
}
