//! OCI builder images: tiny image layouts built in the test from
//! busybox-static (no registry), imported through the CLI.

use crate::util::*;
use serde_json::json;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use cloister_tests::oci::{build_layout, busybox, put_blob};

/// Base layer: busybox with /bin/sh, /etc files, /opt with content a later
/// opaque marker hides, empty mount points.
pub fn base_layer() -> Vec<u8> {
    let mut t = RawTar::default();
    t.dir("bin/")
        .entry(b"bin/busybox", b'0', 0o755, &busybox(), b"")
        .symlink("bin/sh", "busybox")
        .dir("etc/")
        .file("etc/motd", b"hello\n")
        .file("etc/gone", b"to be whited out\n")
        .dir("opt/")
        .file("opt/old1", b"old\n")
        .dir("opt/sub/")
        .file("opt/sub/old2", b"old\n")
        .dir("tmp/")
        .dir("proc/")
        .dir("dev/")
        .symlink("lib64", "/lib");
    t.finish()
}

/// Upper layer: a whiteout, an opaque directory, a replaced file, a hard link.
pub fn upper_layer() -> Vec<u8> {
    let mut t = RawTar::default();
    t.file("etc/.wh.gone", b"")
        .file("etc/motd", b"hi again\n")
        .dir("opt/")
        .file("opt/new", b"new\n")
        .file("opt/.wh..wh..opq", b"")
        .entry(b"bin/busybox-again", b'1', 0o755, b"", b"bin/busybox");
    t.finish()
}

fn image_env() -> (Env, PathBuf, String) {
    let env = Env::new();
    let layout = env.path("layout");
    let md = build_layout(
        &layout,
        &[(base_layer(), false), (upper_layer(), true)],
        &["v1"],
    );
    (env, layout, md)
}

#[test]
fn import_unpacks_layers_in_order_with_whiteouts_and_opaque_dirs() {
    let (env, layout, md) = image_env();
    let j = env.json(&["image", "import", &format!("{}:v1", s(&layout))]);
    assert_eq!(j["manifestDigest"].as_str().unwrap(), md);
    assert_eq!(j["unpacked"], true);
    assert_eq!(j["layers"], 2);
    let rootfs = PathBuf::from(j["rootfs"].as_str().unwrap());
    assert_eq!(
        rootfs,
        env.store().join("images").join(&md[7..]).join("rootfs")
    );
    assert_eq!(fs::read(rootfs.join("bin/busybox")).unwrap(), busybox());
    assert_eq!(
        fs::symlink_metadata(rootfs.join("bin/busybox"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o755
    );
    assert_eq!(
        fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::read_link(rootfs.join("lib64")).unwrap(),
        Path::new("/lib")
    );
    assert_eq!(fs::read(rootfs.join("etc/motd")).unwrap(), b"hi again\n");
    assert!(
        !rootfs.join("etc/gone").exists(),
        "whiteout removes the lower file"
    );
    assert!(
        !rootfs.join("etc/.wh.gone").exists(),
        "whiteout markers are not extracted"
    );
    assert!(
        !rootfs.join("opt/old1").exists() && !rootfs.join("opt/sub").exists(),
        "opaque dir hides lower content"
    );
    assert_eq!(
        fs::read(rootfs.join("opt/new")).unwrap(),
        b"new\n",
        "the layer's own entries survive its opaque marker"
    );
    assert!(!rootfs.join("opt/.wh..wh..opq").exists());
    assert_eq!(
        fs::metadata(rootfs.join("bin/busybox-again"))
            .unwrap()
            .ino(),
        fs::metadata(rootfs.join("bin/busybox")).unwrap().ino()
    );
    for d in ["tmp", "proc", "dev"] {
        assert!(rootfs.join(d).is_dir());
    }
    // the unpacked busybox runs
    let out = std::process::Command::new(rootfs.join("bin/busybox"))
        .args(["echo", "from the image"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"from the image\n");
    assert!(env.store_entries("tmp").is_empty());
}

#[test]
fn cache_is_keyed_by_manifest_digest_and_listed() {
    let (env, layout, md) = image_env();
    assert_eq!(
        env.ok(&["image", "import", &format!("{}:v1", s(&layout))])
            .trim(),
        md
    );
    // the only manifest can be imported without a ref; it is the cached one
    let again = env.json(&["image", "import", s(&layout)]);
    assert_eq!(again["unpacked"], false);
    assert_eq!(again["manifestDigest"].as_str().unwrap(), md);
    // a second layout with the same manifest under another name shares the entry
    let other = env.path("other");
    assert_eq!(
        build_layout(
            &other,
            &[(base_layer(), false), (upper_layer(), true)],
            &["stable"]
        ),
        md
    );
    assert_eq!(
        env.json(&["image", "import", &format!("{}:stable", s(&other))])["unpacked"],
        false
    );
    let list = env.json(&["image", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["manifestDigest"].as_str().unwrap(), md);
    assert_eq!(list[0]["refs"], json!(["stable", "v1"]));
    assert_eq!(list[0]["layers"], 2);
    assert!(env.ok(&["image", "list"]).contains(&md));
    // images take part in gc
    let gc = env.json(&["store", "gc", "--max-bytes", "0"]);
    assert_eq!(gc["removed"][0]["kind"], "image");
    assert_eq!(env.json(&["image", "list"]), json!([]));
}

fn assert_nothing_stored(env: &Env) {
    assert!(
        env.store_entries("images").is_empty(),
        "nothing cached: {:?}",
        env.store_entries("images")
    );
    assert!(
        env.store_entries("tmp").is_empty(),
        "no staging left: {:?}",
        env.store_entries("tmp")
    );
}

#[test]
fn corrupted_blobs_are_refused_before_unpacking() {
    let (env, layout, _) = image_env();
    // flip one byte of the (uncompressed) base layer blob
    let base = sha256(&base_layer());
    let p = layout.join("blobs/sha256").join(&base[7..]);
    let mut data = fs::read(&p).unwrap();
    data[600] ^= 1;
    fs::write(&p, &data).unwrap();
    let err = env.fails(&["image", "import", s(&layout)]);
    assert!(
        err.contains(&format!("blob {base}")) && err.contains("content hashes to"),
        "{err}"
    );
    assert_nothing_stored(&env);
    // truncate it instead: size mismatch
    fs::write(&p, &data[..1000]).unwrap();
    let err = env.fails(&["image", "import", s(&layout)]);
    assert!(err.contains("size differs"), "{err}");
    assert_nothing_stored(&env);
}

#[test]
fn tampered_manifest_and_wrong_diff_ids_are_refused() {
    let (env, layout, md) = image_env();
    let mp = layout.join("blobs/sha256").join(&md[7..]);
    let orig = fs::read(&mp).unwrap();
    let mut tampered = orig.clone();
    let pos = tampered.windows(6).position(|w| w == b"layers").unwrap();
    tampered[pos] = b'L';
    fs::write(&mp, &tampered).unwrap();
    let err = env.fails(&["image", "import", s(&layout)]);
    assert!(err.contains(&format!("blob {md}")), "{err}");
    assert_nothing_stored(&env);

    // a layout whose config claims other diff_ids (blobs themselves consistent)
    let env = Env::new();
    let layout = env.path("l2");
    build_layout(&layout, &[(base_layer(), true)], &["x"]);
    let cfg_path = fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| fs::read(p).unwrap().starts_with(b"{\"architecture\""))
        .unwrap();
    let mut cfg: serde_json::Value = serde_json::from_slice(&fs::read(&cfg_path).unwrap()).unwrap();
    cfg["rootfs"]["diff_ids"] = json!([format!("sha256:{}", "a".repeat(64))]);
    build_layout_with_config(&layout, &cfg);
    let err = env.fails(&["image", "import", &format!("{}:x", s(&layout))]);
    assert!(err.contains("layer 0") && err.contains("diff_id"), "{err}");
    assert_nothing_stored(&env);
}

/// Rewrites config, manifest and index of a one-layer layout around `cfg`.
fn build_layout_with_config(layout: &Path, cfg: &serde_json::Value) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let old_md = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(&old_md[7..])).unwrap())
            .unwrap();
    let (cd, cn) = put_blob(layout, &serde_json::to_vec(cfg).unwrap());
    manifest["config"]["digest"] = json!(cd);
    manifest["config"]["size"] = json!(cn);
    let (md, mn) = put_blob(layout, &serde_json::to_vec(&manifest).unwrap());
    let mut index = index;
    index["manifests"][0]["digest"] = json!(md);
    index["manifests"][0]["size"] = json!(mn);
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    md
}

#[test]
fn refs_select_manifests_and_bad_layouts_are_named() {
    let env = Env::new();
    let layout = env.path("l");
    build_layout(&layout, &[(base_layer(), false)], &["a", "b"]);
    let err = env.fails(&["image", "import", s(&layout)]);
    assert!(
        err.contains("lists 2 manifests") && err.contains("a, b"),
        "{err}"
    );
    let err = env.fails(&["image", "import", &format!("{}:nope", s(&layout))]);
    assert!(err.contains("no manifest named \"nope\""), "{err}");
    env.ok(&["image", "import", &format!("{}:b", s(&layout))]);

    let not = env.path("not-a-layout");
    fs::create_dir(&not).unwrap();
    let err = env.fails(&["image", "import", s(&not)]);
    assert!(err.contains("not an OCI image layout"), "{err}");
    fs::write(not.join("oci-layout"), br#"{"imageLayoutVersion":"2.0.0"}"#).unwrap();
    assert!(
        env.fails(&["image", "import", s(&not)])
            .contains("is not 1.0.0")
    );
}

#[test]
fn hostile_layers_are_rejected_naming_layer_and_entry() {
    let env = Env::new();
    let layout = env.path("l");
    let mut evil = RawTar::default();
    evil.file("ok", b"fine")
        .entry(b"dev/kmem", b'3', 0o600, b"", b"");
    build_layout(
        &layout,
        &[(base_layer(), false), (evil.finish(), true)],
        &["x"],
    );
    let err = env.fails(&["image", "import", s(&layout)]);
    assert!(
        err.contains("layer 1")
            && err.contains("entry \"dev/kmem\"")
            && err.contains("device nodes"),
        "{err}"
    );
    assert_nothing_stored(&env);

    let env = Env::new();
    let layout = env.path("l");
    let mut t = RawTar::default();
    t.file("../../../../escape", b"x");
    build_layout(&layout, &[(t.finish(), false)], &["x"]);
    let err = env.fails(&["image", "import", s(&layout)]);
    assert!(err.contains("'..'"), "{err}");
    assert_nothing_stored(&env);
}

#[test]
fn setuid_in_layers_is_refused_unless_explicitly_stripped() {
    let env = Env::new();
    let layout = env.path("l");
    let mut t = RawTar::default();
    t.dir("bin/")
        .entry(b"bin/su", b'0', 0o4755, b"#!/bin/sh\n", b"");
    build_layout(&layout, &[(t.finish(), true)], &["x"]);
    let err = env.fails(&["image", "import", s(&layout)]);
    assert!(
        err.contains("entry \"bin/su\"") && err.contains("setuid"),
        "{err}"
    );
    assert_nothing_stored(&env);
    let j = env.json(&["image", "import", "--strip-setid", s(&layout)]);
    let su = PathBuf::from(j["rootfs"].as_str().unwrap()).join("bin/su");
    assert_eq!(
        fs::metadata(su).unwrap().permissions().mode() & 0o7777,
        0o755
    );
}
