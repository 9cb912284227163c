//! Tiny OCI image layouts built in tests from busybox-static (no registry):
//! used by the inputs suite (`tests/tests/inputs/image.rs`) and the
//! end-to-end builder-image job.

use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::fs;
use std::path::Path;

/// busybox-static's binary (CI installs the `busybox-static` package;
/// `CLOISTER_TEST_BUSYBOX` overrides the path).
pub fn busybox() -> Vec<u8> {
    let path = std::env::var("CLOISTER_TEST_BUSYBOX").unwrap_or_else(|_| "/bin/busybox".into());
    let data = fs::read(&path).unwrap_or_else(|e| {
        panic!("{path}: {e}: install busybox-static (.ci/setup.d/20-inputs.sh)")
    });
    assert!(data.starts_with(b"\x7fELF"), "{path} is not an ELF binary");
    data
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Writes a blob into the layout; returns its digest and size.
pub fn put_blob(layout: &Path, data: &[u8]) -> (String, u64) {
    let d = sha256(data);
    let dir = layout.join("blobs/sha256");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(&d[7..]), data).unwrap();
    (d, data.len() as u64)
}

/// Writes an image layout with the given layers (uncompressed tar, gzip?)
/// under `refs`; returns the manifest digest.
pub fn build_layout(layout: &Path, layers: &[(Vec<u8>, bool)], refs: &[&str]) -> String {
    fs::create_dir_all(layout).unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (tar, gz) in layers {
        diff_ids.push(sha256(tar));
        let (blob, media) = if *gz {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            (
                e.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        } else {
            (tar.clone(), "application/vnd.oci.image.layer.v1.tar")
        };
        let (d, n) = put_blob(layout, &blob);
        layer_descs.push(json!({"mediaType": media, "digest": d, "size": n}));
    }
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (cd, cn) = put_blob(layout, &serde_json::to_vec(&config).unwrap());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
        "layers": layer_descs,
    });
    let mbytes = serde_json::to_vec(&manifest).unwrap();
    let (md, mn) = put_blob(layout, &mbytes);
    let manifests: Vec<_> = refs
        .iter()
        .map(|r| json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
                         "annotations": {"org.opencontainers.image.ref.name": r}}))
        .collect();
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap(),
    )
    .unwrap();
    md
}
