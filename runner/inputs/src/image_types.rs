//! The image types the store needs too: [`ImageError`] (a store error can
//! be one) and [`ImageMeta`] (an image entry's `meta.json`, which the store
//! reads when it lists entries). Below both `image` and `store`, so the
//! store does not import the importer.

use crate::Digest;
use crate::extract::ExtractError;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::PathBuf;

/// Errors of image import.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not an OCI image layout ({why})")]
    NotLayout { path: PathBuf, why: String },
    #[error("{what}: invalid JSON: {why}")]
    BadJson { what: String, why: String },
    #[error("blob {digest}: {why}")]
    BadBlob { digest: String, why: String },
    #[error("no manifest named {0:?} in index.json (available: {1})")]
    NoSuchRef(String, String),
    #[error("index.json lists {0} manifests; name one with LAYOUT:REF (available: {1})")]
    Ambiguous(usize, String),
    #[error("no manifest for linux/{0} in the image index")]
    NoPlatform(String),
    #[error("unsupported media type {0}")]
    UnsupportedMediaType(String),
    #[error(
        "layer {index} ({digest}): uncompressed content is {actual}, the config's diff_id is {expected}"
    )]
    DiffId {
        index: usize,
        digest: String,
        expected: String,
        actual: Digest,
    },
    #[error("config lists {diff_ids} diff_ids for {layers} layers")]
    LayerCount { diff_ids: usize, layers: usize },
    #[error("layer {index} ({digest}): {source}")]
    Layer {
        index: usize,
        digest: String,
        source: ExtractError,
    },
}

/// What an image entry's `meta.json` records.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageMeta {
    pub manifest_digest: Digest,
    pub config_digest: String,
    pub layers: Vec<String>,
    pub files: u64,
    pub bytes: u64,
    pub created: u64,
    pub strip_setid: bool,
}
