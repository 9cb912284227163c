//! OCI builder images: importing an image layout from disk (no registry) into
//! a cached rootfs keyed by manifest digest.
//!
//! Every blob read (index, manifest, config, layers) is checked against its
//! descriptor's size and SHA-256 before it is interpreted; each layer's
//! uncompressed stream is also checked against the config's `diff_ids`. Layers
//! are unpacked in order by the safe extractor in layer mode (whiteouts and
//! opaque directories honoured) into a staging directory that only becomes the
//! cached rootfs once complete.

use crate::Digest;
use crate::extract::{ExtractMode, ExtractOptions, Unpacker};
pub use crate::image_types::ImageError;
use crate::image_types::ImageMeta;
use crate::progress::Progress;
use crate::snapshot::now_secs;
use crate::store::{EntryKind, Store, StoreError, read_json};
use oci_spec::image::{
    Descriptor, DigestAlgorithm, ImageConfiguration, ImageIndex, ImageManifest, MediaType,
    OciLayout,
};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The annotation naming a manifest in `index.json`.
pub const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// Largest JSON blob (index, manifest, config) read into memory.
const MAX_JSON_BLOB: u64 = 4 << 20;

/// An imported image.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub manifest_digest: Digest,
    pub rootfs: PathBuf,
    /// False when the rootfs was already cached.
    pub unpacked: bool,
    pub layers: usize,
    pub bytes: u64,
    pub refs: Vec<String>,
}

/// One cached image as `image list` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    pub manifest_digest: Digest,
    pub refs: Vec<String>,
    pub layers: usize,
    pub bytes: u64,
    pub created: u64,
    pub rootfs: PathBuf,
}

/// Options of an import.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Clear setuid/setgid bits instead of refusing the image.
    pub strip_setid: bool,
}

/// Splits `LAYOUT_DIR[:REF]`: an existing directory wins over a `:` split.
pub fn parse_layout_arg(arg: &str) -> (PathBuf, Option<String>) {
    if Path::new(arg).is_dir() {
        return (PathBuf::from(arg), None);
    }
    match arg.rsplit_once(':') {
        Some((dir, r)) if !r.is_empty() && !r.contains('/') => {
            (PathBuf::from(dir), Some(r.to_owned()))
        }
        _ => (PathBuf::from(arg), None),
    }
}

/// Imports the image `reference` (or the only one) of the OCI layout at
/// `layout` into `store`, returning the cached rootfs.
pub fn import_layout(
    store: &Store,
    layout: &Path,
    reference: Option<&str>,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<Image, StoreError> {
    let l = Layout {
        dir: layout.to_path_buf(),
    };
    let (desc, manifest_bytes) = select_manifest(&l, reference)?;
    let manifest_digest = Digest::of(&manifest_bytes);
    let refs: Vec<String> = reference.map(|r| vec![r.to_owned()]).unwrap_or_default();
    let entry_dir = store.root().join("images").join(manifest_digest.hex());
    if let Some(image) = cached(store, &entry_dir, &manifest_digest, &refs)? {
        return Ok(image);
    }
    let checked = check_manifest(&l, &desc, &manifest_bytes)?;
    let mut staging = store.staging("image")?;
    let rootfs = staging.path.join("rootfs");
    fs::create_dir(&rootfs).map_err(|source| ImageError::Io {
        path: rootfs.clone(),
        source,
    })?;
    let (files, bytes) = unpack_layers(&l, &checked, &rootfs, opts, progress)?;
    let meta = ImageMeta {
        manifest_digest,
        config_digest: checked.manifest.config().digest().to_string(),
        layers: checked
            .manifest
            .layers()
            .iter()
            .map(|d| d.digest().to_string())
            .collect(),
        files,
        bytes,
        created: now_secs(),
        strip_setid: opts.strip_setid,
    };
    commit_entry(store, &mut staging, &entry_dir, &meta, &refs)?;
    Ok(Image {
        manifest_digest,
        rootfs: entry_dir.join("rootfs"),
        unpacked: true,
        layers: meta.layers.len(),
        bytes,
        refs: read_refs(&entry_dir),
    })
}

/// The layout's header, its `index.json`, the manifest `reference` names
/// (for this platform, through nested indexes), and that manifest's bytes
/// (size and digest verified).
fn select_manifest(
    l: &Layout,
    reference: Option<&str>,
) -> Result<(Descriptor, Vec<u8>), StoreError> {
    l.check_header()?;
    let index_path = l.dir.join("index.json");
    let index_bytes = read_limited(&index_path, MAX_JSON_BLOB)?;
    let index = ImageIndex::from_reader(&index_bytes[..]).map_err(|e| ImageError::BadJson {
        what: index_path.display().to_string(),
        why: e.to_string(),
    })?;
    let desc = select(&index, reference)?;
    let desc = l.resolve_platform(desc)?;
    let manifest_bytes = l.read_json_blob(&desc)?;
    Ok((desc, manifest_bytes))
}

/// The image already in the store under this manifest digest, if it is
/// (`reference` added to its names).
fn cached(
    store: &Store,
    entry_dir: &Path,
    manifest_digest: &Digest,
    refs: &[String],
) -> Result<Option<Image>, StoreError> {
    if !entry_dir.join("meta.json").is_file() {
        return Ok(None);
    }
    add_refs(entry_dir, refs)?;
    let meta: ImageMeta = read_json(&entry_dir.join("meta.json"))?;
    let rootfs = store.image_rootfs(manifest_digest)?;
    Ok(Some(Image {
        manifest_digest: *manifest_digest,
        rootfs,
        unpacked: false,
        layers: meta.layers.len(),
        bytes: meta.bytes,
        refs: read_refs(entry_dir),
    }))
}

/// A manifest with its config read and every layer blob verified.
struct CheckedManifest {
    manifest: ImageManifest,
    /// The config's uncompressed layer digests, one per layer.
    diff_ids: Vec<String>,
    /// The layers' blob sizes together (for progress).
    total_compressed: u64,
}

/// Parses the manifest, reads its config, checks there is one `diff_id`
/// per layer, and verifies every layer blob (size, digest, compression)
/// before any of them is interpreted.
fn check_manifest(
    l: &Layout,
    desc: &Descriptor,
    manifest_bytes: &[u8],
) -> Result<CheckedManifest, StoreError> {
    let manifest = ImageManifest::from_reader(manifest_bytes).map_err(|e| ImageError::BadJson {
        what: format!("manifest {}", desc.digest()),
        why: e.to_string(),
    })?;
    let config_bytes = l.read_json_blob(manifest.config())?;
    let config =
        ImageConfiguration::from_reader(&config_bytes[..]).map_err(|e| ImageError::BadJson {
            what: format!("config {}", manifest.config().digest()),
            why: e.to_string(),
        })?;
    let diff_ids = config.rootfs().diff_ids().clone();
    if diff_ids.len() != manifest.layers().len() {
        return Err(ImageError::LayerCount {
            diff_ids: diff_ids.len(),
            layers: manifest.layers().len(),
        }
        .into());
    }
    let mut total_compressed = 0u64;
    for d in manifest.layers() {
        layer_compression(d)?;
        l.verify_blob(d)?;
        total_compressed += d.size();
    }
    Ok(CheckedManifest {
        manifest,
        diff_ids,
        total_compressed,
    })
}

/// Unpacks the layers in order into `rootfs` (whiteouts applied), each
/// layer's uncompressed stream checked against its `diff_id`; returns the
/// files and bytes written.
fn unpack_layers(
    l: &Layout,
    checked: &CheckedManifest,
    rootfs: &Path,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<(u64, u64), StoreError> {
    let mut xopts = ExtractOptions::new(ExtractMode::Layer);
    xopts.strip_setid = opts.strip_setid;
    let mut unpacker = Unpacker::new(rootfs, xopts)?;
    progress.begin("unpack", 0, checked.total_compressed);
    let mut files = 0u64;
    let mut bytes = 0u64;
    for (i, d) in checked.manifest.layers().iter().enumerate() {
        let path = l.blob_path(d)?;
        let f = File::open(&path).map_err(|source| ImageError::Io {
            path: path.clone(),
            source,
        })?;
        let reader = io::BufReader::new(f);
        let layer_err = |source| ImageError::Layer {
            index: i,
            digest: d.digest().to_string(),
            source,
        };
        let got = if layer_compression(d)? {
            unpacker.unpack(flate2::read::MultiGzDecoder::new(reader), progress)
        } else {
            unpacker.unpack(reader, progress)
        };
        let got = match got {
            Ok(g) => g,
            Err(e) => {
                progress.finish();
                return Err(layer_err(e).into());
            }
        };
        if got.stream_digest.to_string() != checked.diff_ids[i] {
            progress.finish();
            return Err(ImageError::DiffId {
                index: i,
                digest: d.digest().to_string(),
                expected: checked.diff_ids[i].clone(),
                actual: got.stream_digest,
            }
            .into());
        }
        files += got.files;
        bytes += got.bytes;
    }
    progress.finish();
    unpacker.finish()?;
    Ok((files, bytes))
}

/// Writes the entry's `meta.json`, names and lock file into the staging
/// directory and renames it into the store at `entry_dir`.
fn commit_entry(
    store: &Store,
    staging: &mut crate::store::Staging,
    entry_dir: &Path,
    meta: &ImageMeta,
    refs: &[String],
) -> Result<(), StoreError> {
    let meta_path = staging.path.join("meta.json");
    fs::write(
        &meta_path,
        serde_json::to_vec_pretty(meta).expect("meta serializes"),
    )
    .map_err(|source| ImageError::Io {
        path: meta_path.clone(),
        source,
    })?;
    write_refs(&staging.path, refs)?;
    let lock = staging.path.join("lock");
    File::create(&lock).map_err(|source| ImageError::Io {
        path: lock.clone(),
        source,
    })?;
    store.commit(staging, entry_dir)?;
    add_refs(entry_dir, refs)?;
    Ok(())
}

/// Every cached image.
pub fn list(store: &Store) -> Result<Vec<ImageInfo>, StoreError> {
    let mut out = Vec::new();
    for e in store
        .list()?
        .into_iter()
        .filter(|e| e.kind == EntryKind::Image)
    {
        let meta: ImageMeta = read_json(&e.path.join("meta.json"))?;
        out.push(ImageInfo {
            manifest_digest: e.digest,
            refs: read_refs(&e.path),
            layers: meta.layers.len(),
            bytes: meta.bytes,
            created: meta.created,
            rootfs: e.path.join("rootfs"),
        });
    }
    out.sort_by_key(|a| a.manifest_digest);
    Ok(out)
}

struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn check_header(&self) -> Result<(), ImageError> {
        let p = self.dir.join("oci-layout");
        let bytes = read_limited(&p, 64 << 10).map_err(|_| ImageError::NotLayout {
            path: self.dir.clone(),
            why: "no readable oci-layout file".into(),
        })?;
        let layout = OciLayout::from_reader(&bytes[..]).map_err(|e| ImageError::NotLayout {
            path: self.dir.clone(),
            why: format!("oci-layout: {e}"),
        })?;
        if layout.image_layout_version() != "1.0.0" {
            return Err(ImageError::NotLayout {
                path: self.dir.clone(),
                why: format!(
                    "imageLayoutVersion {:?} is not 1.0.0",
                    layout.image_layout_version()
                ),
            });
        }
        Ok(())
    }

    fn blob_path(&self, d: &Descriptor) -> Result<PathBuf, ImageError> {
        let digest = d.digest();
        if *digest.algorithm() != DigestAlgorithm::Sha256 {
            return Err(ImageError::BadBlob {
                digest: digest.to_string(),
                why: "only sha256 digests are supported".into(),
            });
        }
        // oci-spec guarantees 64 lowercase hex digits for sha256
        Ok(self.dir.join("blobs").join("sha256").join(digest.digest()))
    }

    /// Reads a small blob, checking size and digest.
    fn read_json_blob(&self, d: &Descriptor) -> Result<Vec<u8>, ImageError> {
        let bad = |why: String| ImageError::BadBlob {
            digest: d.digest().to_string(),
            why,
        };
        if d.size() > MAX_JSON_BLOB {
            return Err(bad(format!(
                "size {} is over the {} byte limit for JSON blobs",
                d.size(),
                MAX_JSON_BLOB
            )));
        }
        let path = self.blob_path(d)?;
        let bytes = read_limited(&path, MAX_JSON_BLOB)?;
        if bytes.len() as u64 != d.size() {
            return Err(bad(format!(
                "size is {} bytes, the descriptor says {}",
                bytes.len(),
                d.size()
            )));
        }
        let actual = Digest::of(&bytes);
        if actual.hex() != d.digest().digest() {
            return Err(bad(format!("content hashes to {actual}")));
        }
        Ok(bytes)
    }

    /// Streams a blob through SHA-256, checking size and digest.
    fn verify_blob(&self, d: &Descriptor) -> Result<(), ImageError> {
        let path = self.blob_path(d)?;
        let mut f = File::open(&path).map_err(|source| ImageError::Io {
            path: path.clone(),
            source,
        })?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let k = f.read(&mut buf).map_err(|source| ImageError::Io {
                path: path.clone(),
                source,
            })?;
            if k == 0 {
                break;
            }
            n += k as u64;
            if n > d.size() {
                break;
            }
            h.update(&buf[..k]);
        }
        let bad = |why: String| ImageError::BadBlob {
            digest: d.digest().to_string(),
            why,
        };
        if n != d.size() {
            return Err(bad(format!(
                "size differs from the descriptor's {}",
                d.size()
            )));
        }
        let actual = Digest::from(h);
        if actual.hex() != d.digest().digest() {
            return Err(bad(format!("content hashes to {actual}")));
        }
        Ok(())
    }

    /// Follows a nested image index down to this platform's manifest.
    fn resolve_platform(&self, desc: Descriptor) -> Result<Descriptor, ImageError> {
        let mut desc = desc;
        for _ in 0..4 {
            match desc.media_type() {
                MediaType::ImageManifest => return Ok(desc),
                MediaType::Other(s)
                    if s == "application/vnd.docker.distribution.manifest.v2+json" =>
                {
                    return Ok(desc);
                }
                MediaType::ImageIndex => {
                    let bytes = self.read_json_blob(&desc)?;
                    let idx =
                        ImageIndex::from_reader(&bytes[..]).map_err(|e| ImageError::BadJson {
                            what: format!("index {}", desc.digest()),
                            why: e.to_string(),
                        })?;
                    let arch = oci_arch();
                    let found = idx.manifests().iter().find(|m| {
                        m.platform().as_ref().is_some_and(|p| {
                            p.os().to_string() == "linux" && p.architecture().to_string() == arch
                        })
                    });
                    desc = found
                        .cloned()
                        .ok_or_else(|| ImageError::NoPlatform(arch.to_owned()))?;
                }
                other => return Err(ImageError::UnsupportedMediaType(other.to_string())),
            }
        }
        Err(ImageError::UnsupportedMediaType(
            "image indexes nested too deeply".into(),
        ))
    }
}

/// Picks the manifest named `reference`, or the only one.
fn select(index: &ImageIndex, reference: Option<&str>) -> Result<Descriptor, ImageError> {
    let name_of = |d: &Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(REF_ANNOTATION))
            .cloned()
    };
    let names = || {
        let v: Vec<String> = index.manifests().iter().filter_map(name_of).collect();
        if v.is_empty() {
            "none named".to_owned()
        } else {
            v.join(", ")
        }
    };
    match reference {
        Some(r) => index
            .manifests()
            .iter()
            .find(|d| name_of(d).as_deref() == Some(r))
            .cloned()
            .ok_or_else(|| ImageError::NoSuchRef(r.to_owned(), names())),
        None => match index.manifests().as_slice() {
            [one] => Ok(one.clone()),
            many => Err(ImageError::Ambiguous(many.len(), names())),
        },
    }
}

/// Whether a layer is gzip-compressed (error for unsupported types).
fn layer_compression(d: &Descriptor) -> Result<bool, ImageError> {
    match d.media_type() {
        MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Ok(false),
        MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => Ok(true),
        MediaType::Other(s) if s == "application/vnd.docker.image.rootfs.diff.tar.gzip" => Ok(true),
        MediaType::Other(s) if s == "application/vnd.docker.image.rootfs.diff.tar" => Ok(false),
        other => Err(ImageError::UnsupportedMediaType(other.to_string())),
    }
}

fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, ImageError> {
    let f = File::open(path).map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut v = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut v)
        .map_err(|source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if v.len() as u64 > max {
        return Err(ImageError::Io {
            path: path.to_path_buf(),
            source: io::Error::other(format!("larger than {max} bytes")),
        });
    }
    Ok(v)
}

fn read_refs(entry: &Path) -> Vec<String> {
    fs::read(entry.join("refs.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_refs(entry: &Path, refs: &[String]) -> Result<(), ImageError> {
    let tmp = entry.join(format!("refs.json.tmp-{}", std::process::id()));
    let dst = entry.join("refs.json");
    fs::write(&tmp, serde_json::to_vec(refs).expect("refs serialize"))
        .and_then(|()| fs::rename(&tmp, &dst))
        .map_err(|source| ImageError::Io { path: dst, source })
}

fn add_refs(entry: &Path, new: &[String]) -> Result<(), ImageError> {
    let mut refs = read_refs(entry);
    let before = refs.len();
    for r in new {
        if !refs.contains(r) {
            refs.push(r.clone());
        }
    }
    if refs.len() != before {
        refs.sort();
        write_refs(entry, &refs)?;
    }
    Ok(())
}
