//! The in-toto Statement v1 with the SLSA provenance v1 predicate, as typed
//! serde models. Every struct whose keys the specs fix denies unknown fields,
//! so what we sign is exactly what strict schema checkers accept; custom data
//! goes only into `externalParameters`, `internalParameters` (free-form JSON
//! objects defined by the buildType) or `annotations`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::digest::Sha256Digest;
use crate::json::{self, JsonError};

/// in-toto Statement v1 `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA provenance v1 `predicateType`.
pub const PROVENANCE_PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// Cloister's buildType (documented field by field in `cookbook/buildtype.md`).
pub const BUILD_TYPE: &str = "https://cloister.dev/buildtypes/hermetic/v1";

/// Most subjects one statement may carry.
pub const MAX_SUBJECTS: usize = 10_000;

/// Errors from validating a statement.
#[derive(Debug, Error)]
pub enum StatementError {
    #[error(transparent)]
    Json(#[from] JsonError),
    #[error("statement _type is {0:?}, expected {STATEMENT_TYPE}")]
    Type(String),
    #[error("predicateType is {0:?}, expected {PROVENANCE_PREDICATE_TYPE}")]
    PredicateType(String),
    #[error("invalid statement: {0}")]
    Invalid(String),
}

/// An in-toto ResourceDescriptor (also the shape of a subject).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Algorithm → lowercase hex (e.g. `sha256`, `gitCommit`).
    #[serde(
        default,
        deserialize_with = "json::strict_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub digest: BTreeMap<String, String>,
    /// Base64 content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(
        default,
        deserialize_with = "json::strict_value_map_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub annotations: Option<BTreeMap<String, serde_json::Value>>,
}

/// A statement subject: a ResourceDescriptor with a name and a sha256 digest.
pub type Subject = ResourceDescriptor;

impl ResourceDescriptor {
    /// A subject `{name, digest: {sha256}}`.
    pub fn subject(name: impl Into<String>, digest: Sha256Digest) -> Self {
        Self {
            name: Some(name.into()),
            digest: BTreeMap::from([("sha256".to_owned(), digest.hex())]),
            ..Self::default()
        }
    }

    /// The `sha256` digest, if present and well-formed.
    pub fn sha256(&self) -> Option<Sha256Digest> {
        self.digest
            .get("sha256")
            .and_then(|h| Sha256Digest::from_hex(h).ok())
    }
}

/// in-toto Statement v1 carrying SLSA provenance v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    pub predicate_type: String,
    pub predicate: Provenance,
}

/// The SLSA provenance v1 predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

/// `buildDefinition`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildDefinition {
    pub build_type: String,
    /// Everything the tenant chose (a JSON object; schema set by buildType).
    #[serde(deserialize_with = "json::strict_value")]
    pub external_parameters: serde_json::Value,
    /// What the platform chose or observed (a JSON object; schema set by buildType).
    #[serde(
        default,
        deserialize_with = "json::strict_value_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub internal_parameters: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// `runDetails`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunDetails {
    pub builder: Builder,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BuildMetadata>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub byproducts: Vec<ResourceDescriptor>,
}

/// `runDetails.builder`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Builder {
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub builder_dependencies: Vec<ResourceDescriptor>,
    #[serde(
        default,
        deserialize_with = "json::strict_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub version: BTreeMap<String, String>,
}

/// `runDetails.metadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// RFC 3339 timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_on: Option<String>,
    /// RFC 3339 timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_on: Option<String>,
}

/// The two type fields, read before the full model so that a wrong type
/// gets its own error instead of a schema error.
#[derive(Deserialize)]
struct Header {
    #[serde(rename = "_type")]
    statement_type: Option<String>,
    #[serde(rename = "predicateType")]
    predicate_type: Option<String>,
}

/// Checks that `s` is an RFC 3339 timestamp.
pub(crate) fn check_rfc3339(field: &str, s: &str) -> Result<(), StatementError> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|_| ())
        .map_err(|_| StatementError::Invalid(format!("{field} {s:?} is not an rfc 3339 timestamp")))
}

fn check_descriptor(what: &str, rd: &ResourceDescriptor) -> Result<(), StatementError> {
    if rd.uri.is_none() && rd.digest.is_empty() && rd.content.is_none() {
        return Err(StatementError::Invalid(format!(
            "{what} needs a uri, digest or content"
        )));
    }
    for (alg, value) in &rd.digest {
        if value.is_empty()
            || !value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(StatementError::Invalid(format!(
                "{what} digest {alg} is not lowercase hex"
            )));
        }
    }
    if let Some(sha) = rd.digest.get("sha256") {
        Sha256Digest::from_hex(sha).map_err(|_| {
            StatementError::Invalid(format!("{what} sha256 digest is not 64 hex digits"))
        })?;
    }
    Ok(())
}

impl Statement {
    /// Strictly parses and [`validate`](Statement::validate)s statement bytes.
    /// A wrong `_type` or `predicateType` is reported as such even when the
    /// rest of the document follows another schema.
    pub fn parse(bytes: &[u8]) -> Result<Self, StatementError> {
        // One pass: the model is strict by construction (see json::parse_typed).
        match json::parse_typed::<Statement>(bytes, json::MAX_DOCUMENT_BYTES) {
            Ok(st) => {
                st.validate()?;
                Ok(st)
            }
            Err(JsonError::Schema(msg)) => {
                let header: Header = serde_json::from_slice(bytes)
                    .map_err(|e| StatementError::Json(JsonError::Schema(e.to_string())))?;
                let t = header.statement_type.unwrap_or_default();
                if t != STATEMENT_TYPE {
                    return Err(StatementError::Type(t));
                }
                let p = header.predicate_type.unwrap_or_default();
                if p != PROVENANCE_PREDICATE_TYPE {
                    return Err(StatementError::PredicateType(p));
                }
                Err(StatementError::Json(JsonError::Schema(msg)))
            }
            Err(e) => Err(StatementError::Json(e)),
        }
    }

    /// Checks what the models cannot express: the types, at least one
    /// subject each with a name and a sha256 digest, a builder id, a
    /// buildType, object-valued parameters, digests in hex, timestamps in
    /// RFC 3339.
    pub fn validate(&self) -> Result<(), StatementError> {
        if self.statement_type != STATEMENT_TYPE {
            return Err(StatementError::Type(self.statement_type.clone()));
        }
        if self.predicate_type != PROVENANCE_PREDICATE_TYPE {
            return Err(StatementError::PredicateType(self.predicate_type.clone()));
        }
        if self.subject.is_empty() {
            return Err(StatementError::Invalid("statement has no subject".into()));
        }
        if self.subject.len() > MAX_SUBJECTS {
            return Err(StatementError::Invalid(format!(
                "more than {MAX_SUBJECTS} subjects"
            )));
        }
        for (i, s) in self.subject.iter().enumerate() {
            if s.name.as_deref().unwrap_or("").is_empty() {
                return Err(StatementError::Invalid(format!("subject {i} has no name")));
            }
            check_descriptor(&format!("subject {i}"), s)?;
            if s.sha256().is_none() {
                return Err(StatementError::Invalid(format!(
                    "subject {i} has no sha256 digest"
                )));
            }
        }
        let bd = &self.predicate.build_definition;
        if bd.build_type.is_empty() {
            return Err(StatementError::Invalid("buildType is empty".into()));
        }
        if !bd.external_parameters.is_object() {
            return Err(StatementError::Invalid(
                "externalParameters is not a json object".into(),
            ));
        }
        if bd
            .internal_parameters
            .as_ref()
            .is_some_and(|v| !v.is_object())
        {
            return Err(StatementError::Invalid(
                "internalParameters is not a json object".into(),
            ));
        }
        for (i, d) in bd.resolved_dependencies.iter().enumerate() {
            check_descriptor(&format!("resolvedDependencies[{i}]"), d)?;
        }
        let rd = &self.predicate.run_details;
        if rd.builder.id.is_empty() {
            return Err(StatementError::Invalid(
                "runDetails.builder.id is empty".into(),
            ));
        }
        for (i, d) in rd.builder.builder_dependencies.iter().enumerate() {
            check_descriptor(&format!("builderDependencies[{i}]"), d)?;
        }
        for (i, d) in rd.byproducts.iter().enumerate() {
            check_descriptor(&format!("byproducts[{i}]"), d)?;
        }
        if let Some(m) = &rd.metadata {
            if let Some(t) = &m.started_on {
                check_rfc3339("startedOn", t)?;
            }
            if let Some(t) = &m.finished_on {
                check_rfc3339("finishedOn", t)?;
            }
        }
        Ok(())
    }

    /// Compact JSON bytes: the DSSE payload we sign.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a statement always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "_type": STATEMENT_TYPE,
            "subject": [{"name": "a.tar", "digest": {"sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}}],
            "predicateType": PROVENANCE_PREDICATE_TYPE,
            "predicate": {
                "buildDefinition": {"buildType": BUILD_TYPE, "externalParameters": {}},
                "runDetails": {"builder": {"id": "https://b.example/x"}}
            }
        })
    }

    fn parse(v: &serde_json::Value) -> Result<Statement, StatementError> {
        Statement::parse(serde_json::to_vec(v).unwrap().as_slice())
    }

    #[test]
    fn minimal_statement_round_trips() {
        let st = parse(&minimal()).unwrap();
        assert_eq!(serde_json::to_value(&st).unwrap(), minimal());
    }

    #[test]
    fn validation_failures() {
        type Case = (&'static str, fn(&mut serde_json::Value));
        let cases: Vec<Case> = vec![
            ("type", |v| {
                v["_type"] = "https://in-toto.io/Statement/v0.1".into()
            }),
            ("predicate type", |v| {
                v["predicateType"] = "https://slsa.dev/provenance/v0.2".into()
            }),
            ("no subject", |v| v["subject"] = serde_json::json!([])),
            ("subject without name", |v| {
                v["subject"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("name")
                    .map(drop)
                    .unwrap()
            }),
            ("subject without sha256", |v| {
                v["subject"][0]["digest"] = serde_json::json!({"sha512": "ab"})
            }),
            ("short sha256", |v| {
                v["subject"][0]["digest"]["sha256"] = "abcd".into()
            }),
            ("no builder id", |v| {
                v["predicate"]["runDetails"]["builder"]["id"] = "".into()
            }),
            ("unknown key", |v| {
                v["predicate"]["buildDefinition"]["extra"] = 1.into()
            }),
            ("params not object", |v| {
                v["predicate"]["buildDefinition"]["externalParameters"] = 1.into()
            }),
            ("bad time", |v| {
                v["predicate"]["runDetails"]["metadata"] =
                    serde_json::json!({"startedOn": "yesterday"})
            }),
        ];
        for (name, mutate) in cases {
            let mut v = minimal();
            mutate(&mut v);
            assert!(parse(&v).is_err(), "{name} accepted");
        }
        assert!(matches!(
            parse(&serde_json::json!({"_type": "x"})),
            Err(StatementError::Type(t)) if t == "x"
        ));
    }
}
