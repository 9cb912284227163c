//! A job on a builder image: an OCI layout made here from busybox-static,
//! imported with `cloister-runner image import` into the runner's store, and
//! named by manifest digest in the job. The build runs on the image's root
//! filesystem (no host /usr), and the verified provenance names the image.

use super::harness::{Stack, repo_with, shared_store};
use cloister_tests::oci::{build_layout, busybox};
use std::os::unix::fs::PermissionsExt;

const URI: &str = "git+https://github.com/cloister-dev/on-image";

#[test]
fn job_runs_on_the_builder_image_named_in_provenance() {
    let stack = Stack::start(1);
    let root = stack.dir.path().join("image-root");
    for d in ["bin", "etc", "tmp", "proc", "dev"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("bin/busybox"), busybox()).unwrap();
    std::fs::set_permissions(
        root.join("bin/busybox"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::fs::write(root.join("etc/builder"), "busybox builder image\n").unwrap();
    let layout = stack.dir.path().join("layout");
    let manifest = build_layout(
        &layout,
        &[(cloister_tests::gnu_tar(&root, 0), true)],
        &["v1"],
    );
    let import = std::process::Command::new(&stack.runner_bin)
        .args(["image", "import", "--json", "--store"])
        .arg(shared_store())
        .arg(format!("{}:v1", layout.display()))
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    let imported: serde_json::Value = serde_json::from_slice(&import.stdout).unwrap();
    assert_eq!(imported["manifestDigest"], manifest.as_str(), "{imported}");

    let repo = stack.dir.path().join("repo");
    repo_with(
        &repo,
        &[(
            "build.sh",
            "busybox cat /etc/builder > out.txt\n\
             if [ -e /usr/bin/cargo ] || [ -e /usr/bin/git ]; then echo host-usr >> out.txt; fi\n",
        )],
    );
    let out_dir = stack.dir.path().join("out");
    let (path, st) = stack.build_verified(
        &repo,
        URI,
        &[
            "--image",
            &manifest,
            "--output",
            "out.txt",
            "--out-dir",
            out_dir.to_str().unwrap(),
        ],
        &["sh", "build.sh"],
    );
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        "busybox builder image\n",
        "the build ran on the image's root, without the host's /usr"
    );
    let bd = &st["predicate"]["buildDefinition"];
    assert_eq!(bd["externalParameters"]["builderImage"], manifest.as_str());
    let deps = bd["resolvedDependencies"].as_array().unwrap();
    let image = deps
        .iter()
        .find(|d| d["name"] == "builder-image")
        .unwrap_or_else(|| panic!("no builder-image dependency: {st}"));
    assert_eq!(
        image["digest"]["sha256"],
        manifest.trim_start_matches("sha256:"),
        "the image's manifest digest is in the verified provenance"
    );
    assert_eq!(
        image["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
}
