//! Strict JSON for untrusted input. `serde_json` silently keeps the last of
//! two equal keys in an object, which lets two parsers of one document see
//! different values; every document we verify is first walked by
//! [`check`], which rejects duplicate keys anywhere (after unescaping, so
//! `"a"` and `"\u0061"` collide), enforces a size limit and serde_json's
//! nesting limit, and only then deserialized into typed models.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use thiserror::Error;

/// Largest JSON document (envelope, bundle, `.intoto.jsonl` file or statement) we parse.
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;

/// Errors from strict JSON parsing.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum JsonError {
    #[error("input is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("duplicate json object key {0:?}")]
    DuplicateKey(String),
    #[error("malformed json: {0}")]
    Malformed(String),
    #[error("invalid base64 in json: {0}")]
    InvalidBase64(String),
    #[error("json does not match the expected schema: {0}")]
    Schema(String),
}

/// Checks that `bytes` is one well-formed JSON value within `limit` bytes
/// with no duplicate object keys.
pub fn check(bytes: &[u8], limit: usize) -> Result<(), JsonError> {
    if bytes.len() > limit {
        return Err(JsonError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    let dup = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let res = NoDup { dup: &dup }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    if let Some(key) = dup.into_inner() {
        return Err(JsonError::DuplicateKey(key));
    }
    res.map_err(|e| JsonError::Malformed(e.to_string()))
}

/// [`check`]s `bytes`, then deserializes them into `T`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, JsonError> {
    check(bytes, limit)?;
    serde_json::from_slice(bytes).map_err(classify)
}

/// A seed that walks any JSON value and records the first duplicate key.
#[derive(Clone, Copy)]
struct NoDup<'a> {
    dup: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for NoDup<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDup<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any json value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Small objects (nearly all of them) are checked by a linear scan over
        // borrowed keys; large ones switch to a hash set.
        let mut small: Vec<Cow<'de, str>> = Vec::new();
        let mut large: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let dup = match &mut large {
                Some(set) => !set.insert(key.clone()),
                None if small.contains(&key) => true,
                None => {
                    small.push(key.clone());
                    if small.len() > 32 {
                        large = Some(small.drain(..).collect());
                    }
                    false
                }
            };
            if dup {
                *self.dup.borrow_mut() = Some(key.clone().into_owned());
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// Reads an object key, borrowing it from the input when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(KeySeed)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// Prefix of the error our strict deserializers raise on a repeated key.
const DUPLICATE_PREFIX: &str = "duplicate json object key ";

fn classify(e: serde_json::Error) -> JsonError {
    let msg = e.to_string();
    match e.classify() {
        serde_json::error::Category::Data => {
            if let Some(i) = msg.find(DUPLICATE_PREFIX) {
                let rest = &msg[i + DUPLICATE_PREFIX.len()..];
                let key = rest
                    .split(" at line")
                    .next()
                    .unwrap_or(rest)
                    .trim_matches('"');
                JsonError::DuplicateKey(key.to_owned())
            } else if let Some(i) = msg.find("duplicate field `") {
                let rest = &msg[i + "duplicate field `".len()..];
                JsonError::DuplicateKey(rest.split('`').next().unwrap_or(rest).to_owned())
            } else if msg.contains(crate::b64::INVALID_BASE64_PREFIX) {
                JsonError::InvalidBase64(msg)
            } else {
                JsonError::Schema(msg)
            }
        }
        _ => JsonError::Malformed(msg),
    }
}

/// Deserializes `T` in one pass, for types that are strict by construction:
/// serde-derived structs reject repeated fields, and every map or free-form
/// value inside them uses [`strict_value`] / [`strict_map`]. Enforces the
/// size limit and serde_json's nesting limit like [`parse`].
pub fn parse_typed<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, JsonError> {
    if bytes.len() > limit {
        return Err(JsonError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    serde_json::from_slice(bytes).map_err(classify)
}

/// A `serde_json::Value` that rejects repeated object keys at any depth.
#[derive(Debug, Clone, PartialEq)]
pub struct StrictValue(pub serde_json::Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictValueVisitor).map(StrictValue)
    }
}

struct StrictValueVisitor;

impl<'de> Visitor<'de> for StrictValueVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any json value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v)
            .map_or(serde_json::Value::Null, serde_json::Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(serde_json::Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("{DUPLICATE_PREFIX}{key:?}")));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(serde_json::Value::Object(out))
    }
}

/// `deserialize_with` for `serde_json::Value` fields.
pub fn strict_value<'de, D: de::Deserializer<'de>>(d: D) -> Result<serde_json::Value, D::Error> {
    StrictValue::deserialize(d).map(|v| v.0)
}

/// `deserialize_with` for `Option<serde_json::Value>` fields (with `default`).
pub fn strict_value_opt<'de, D: de::Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    Ok(Option::<StrictValue>::deserialize(d)?.map(|v| v.0))
}

/// `deserialize_with` for `Vec<serde_json::Value>` fields.
pub fn strict_values<'de, D: de::Deserializer<'de>>(
    d: D,
) -> Result<Vec<serde_json::Value>, D::Error> {
    Ok(Vec::<StrictValue>::deserialize(d)?
        .into_iter()
        .map(|v| v.0)
        .collect())
}

struct StrictMapVisitor<V>(std::marker::PhantomData<V>);

impl<'de, V: serde::Deserialize<'de>> Visitor<'de> for StrictMapVisitor<V> {
    type Value = BTreeMap<String, V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("{DUPLICATE_PREFIX}{key:?}")));
            }
            out.insert(key, map.next_value()?);
        }
        Ok(out)
    }
}

/// `deserialize_with` for `BTreeMap<String, V>` fields (V itself strict).
pub fn strict_map<'de, D: de::Deserializer<'de>, V: serde::Deserialize<'de>>(
    d: D,
) -> Result<BTreeMap<String, V>, D::Error> {
    d.deserialize_map(StrictMapVisitor(std::marker::PhantomData))
}

/// `deserialize_with` for `Option<BTreeMap<String, serde_json::Value>>` (annotations).
pub fn strict_value_map_opt<'de, D: de::Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, serde_json::Value>>, D::Error> {
    #[derive(serde::Deserialize)]
    struct W(#[serde(deserialize_with = "strict_map")] BTreeMap<String, StrictValue>);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0.into_iter().map(|(k, v)| (k, v.0)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_well_formed() {
        check(br#"{"a":[1,{"b":null,"c":"x"}],"d":{"a":1}}"#, 1000).unwrap();
    }

    #[test]
    fn rejects_duplicates_at_any_depth_and_after_unescaping() {
        assert_eq!(
            check(br#"{"a":1,"a":2}"#, 1000),
            Err(JsonError::DuplicateKey("a".into()))
        );
        assert_eq!(
            check(br#"{"x":[{"k":1,"k":1}]}"#, 1000),
            Err(JsonError::DuplicateKey("k".into()))
        );
        assert_eq!(
            check(br#"{"a":1,"\u0061":2}"#, 1000),
            Err(JsonError::DuplicateKey("a".into()))
        );
    }

    #[test]
    fn rejects_duplicates_in_large_objects() {
        let mut obj: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        check(format!("{{{}}}", obj.join(",")).as_bytes(), 100_000).unwrap();
        obj.push("\"k7\":0".into());
        assert_eq!(
            check(format!("{{{}}}", obj.join(",")).as_bytes(), 100_000),
            Err(JsonError::DuplicateKey("k7".into()))
        );
    }

    #[test]
    fn rejects_truncated_trailing_and_oversized() {
        assert!(matches!(
            check(br#"{"a":1"#, 1000),
            Err(JsonError::Malformed(_))
        ));
        assert!(matches!(
            check(br#"{"a":1} {}"#, 1000),
            Err(JsonError::Malformed(_))
        ));
        assert!(matches!(check(b"", 1000), Err(JsonError::Malformed(_))));
        assert_eq!(
            check(&[b' '; 11], 10),
            Err(JsonError::TooLarge {
                size: 11,
                limit: 10
            })
        );
    }

    #[test]
    fn rejects_deep_nesting_without_overflowing() {
        let deep = "[".repeat(100_000);
        assert!(matches!(
            check(deep.as_bytes(), usize::MAX),
            Err(JsonError::Malformed(_))
        ));
    }

    #[test]
    fn parse_classifies_schema_errors() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        assert!(matches!(
            parse::<T>(br#"{"a":"x"}"#, 100),
            Err(JsonError::Schema(_))
        ));
        assert_eq!(parse::<T>(br#"{"a":7}"#, 100).unwrap().a, 7);
    }
}
