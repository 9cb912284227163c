//! A pack's `MANIFEST.json` (every other file with its sha256 and size,
//! appendix files marked editable) and `MANIFEST.dsse.json`, a DSSE
//! envelope whose payload is exactly the bytes of `MANIFEST.json`, signed
//! by the attestor key. A pack therefore verifies from itself and one
//! public key.

use cloister_attestor_core::digest::Sha256Digest;
use cloister_attestor_core::dsse::Envelope;
use cloister_attestor_core::json;
use cloister_attestor_core::keys::Signer;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The manifest's file name.
pub const MANIFEST: &str = "MANIFEST.json";
/// The signature's file name.
pub const MANIFEST_DSSE: &str = "MANIFEST.dsse.json";
/// `_type` of the manifest.
pub const MANIFEST_TYPE: &str = "https://cloister.dev/evidence/manifest/v1";
/// DSSE payload type of `MANIFEST.dsse.json`.
pub const PAYLOAD_TYPE: &str = "application/vnd.cloister.evidence-manifest+json";
/// Files under this directory may be edited by the recipient.
pub const APPENDIX: &str = "appendix/";

/// One file of a pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    /// 64 hex digits.
    pub sha256: String,
    pub size: u64,
    /// An appendix file: the recipient may change it; `pack verify`
    /// reports a change and accepts it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub editable: bool,
}

/// `MANIFEST.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "_type")]
    pub type_: String,
    /// `signoff` or `procurement`.
    pub kind: String,
    /// The pack format's version (`1.1` for procurement packs).
    pub version: String,
    /// What the pack is about: the engagement id, or the recipient.
    pub subject: String,
    /// RFC 3339.
    pub generated_at: String,
    /// Every file but `MANIFEST.json` and `MANIFEST.dsse.json`, by path.
    pub files: Vec<FileEntry>,
}

/// Errors building a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("signing the manifest: {0}")]
    Sign(#[from] cloister_attestor_core::dsse::DsseError),
    #[error("the pack already has a file named {0}")]
    Reserved(&'static str),
}

/// Whether `path` is an editable appendix file.
pub fn is_appendix(path: &str) -> bool {
    path.starts_with(APPENDIX)
}

impl Manifest {
    /// The manifest of `files` (which must not hold the manifest's own names).
    pub fn of(
        kind: &str,
        version: &str,
        subject: &str,
        generated_at: &str,
        files: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, ManifestError> {
        for reserved in [MANIFEST, MANIFEST_DSSE] {
            if files.contains_key(reserved) {
                return Err(ManifestError::Reserved(reserved));
            }
        }
        Ok(Self {
            type_: MANIFEST_TYPE.to_owned(),
            kind: kind.to_owned(),
            version: version.to_owned(),
            subject: subject.to_owned(),
            generated_at: generated_at.to_owned(),
            files: files
                .iter()
                .map(|(path, data)| FileEntry {
                    path: path.clone(),
                    sha256: Sha256Digest::of(data).hex(),
                    size: data.len() as u64,
                    editable: is_appendix(path),
                })
                .collect(),
        })
    }

    /// The file's bytes: pretty JSON and a newline (people read it).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("manifest serializes");
        out.push(b'\n');
        out
    }

    /// Parses (verified) manifest bytes strictly.
    pub fn parse(bytes: &[u8]) -> Result<Self, json::JsonError> {
        json::parse_typed(bytes, json::MAX_DOCUMENT_BYTES)
    }
}

/// Adds `MANIFEST.json` and `MANIFEST.dsse.json` for `manifest` to `files`.
pub fn seal(
    files: &mut BTreeMap<String, Vec<u8>>,
    manifest: &Manifest,
    signer: &dyn Signer,
) -> Result<(), ManifestError> {
    let bytes = manifest.to_bytes();
    let envelope = Envelope::sign(PAYLOAD_TYPE, bytes.clone(), signer)?;
    let mut env = serde_json::to_vec_pretty(&envelope).expect("envelope serializes");
    env.push(b'\n');
    files.insert(MANIFEST.to_owned(), bytes);
    files.insert(MANIFEST_DSSE.to_owned(), env);
    Ok(())
}
