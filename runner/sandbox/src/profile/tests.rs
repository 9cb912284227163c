//! Profile validation: every refusal has a test, and the digest is a
//! function of the content alone.

use super::*;
use crate::derive::canonical_json;
use serde_json::Value;
use serde_json::json;

fn default_json() -> Value {
    serde_json::from_str(EMBEDDED[0].1).unwrap()
}

fn parse(v: &Value) -> Result<Profile, ProfileError> {
    Profile::parse("test", &v.to_string())
}

fn without_namespace(ns: &str) -> Value {
    let mut v = default_json();
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != ns);
    v
}

#[test]
fn shipped_profiles_are_valid() {
    let p = Profile::load("default").unwrap();
    assert_eq!(p.name(), "default");
    assert_eq!(
        p.namespaces(),
        ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"]
    );
    assert_eq!(p.pids_limit(), Some(4096));
    assert!(p.optional_limits().is_empty());
    let dev = Profile::load("dev").unwrap();
    assert_eq!(dev.optional_limits().len(), 3);
    assert_ne!(p.digest(), dev.digest());
}

#[test]
fn sharing_a_host_namespace_is_refused() {
    for (ns, shown) in [
        ("network", "net"),
        ("user", "user"),
        ("pid", "pid"),
        ("mount", "mnt"),
        ("ipc", "ipc"),
        ("uts", "uts"),
        ("cgroup", "cgroup"),
    ] {
        let err = parse(&without_namespace(ns)).unwrap_err();
        assert!(
            matches!(&err, ProfileError::SharedNamespace(n) if n == shown),
            "{ns}: {err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("shares the host {shown} namespace"))
        );
    }
}

#[test]
fn joining_a_namespace_by_path_is_refused() {
    let mut v = default_json();
    v["linux"]["namespaces"][3] = json!({"type": "network", "path": "/proc/1/ns/net"});
    let err = parse(&v).unwrap_err();
    assert!(
        matches!(err, ProfileError::NamespacePath(ref n) if n == "net"),
        "{err}"
    );
}

#[test]
fn any_capability_is_refused() {
    for set in [
        "bounding",
        "effective",
        "inheritable",
        "permitted",
        "ambient",
    ] {
        let mut v = default_json();
        v["process"]["capabilities"][set] = json!(["CAP_NET_RAW"]);
        let err = parse(&v).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("grants capability CAP_NET_RAW in the {set} set")),
            "{set}: {err}"
        );
    }
}

#[test]
fn host_paths_outside_the_allow_list_are_refused() {
    for src in [
        "/home",
        "/etc",
        "/",
        "/var/run/docker.sock",
        "/usr/../etc",
        "/root",
    ] {
        let mut v = default_json();
        v["mounts"].as_array_mut().unwrap().push(json!(
            {"destination": "/x", "type": "bind", "source": src, "options": ["rbind", "ro"]}
        ));
        let err = parse(&v).unwrap_err();
        assert!(
            matches!(&err, ProfileError::HostPathNotAllowed(p) if p == src),
            "{src}: {err}"
        );
    }
    // bind expressed only through options is still a bind
    let mut v = default_json();
    v["mounts"].as_array_mut().unwrap().push(json!(
        {"destination": "/x", "type": "none", "source": "/home", "options": ["bind", "ro"]}
    ));
    assert!(matches!(
        parse(&v),
        Err(ProfileError::HostPathNotAllowed(_))
    ));
}

#[test]
fn writable_host_binds_are_refused() {
    let mut v = default_json();
    v["mounts"][0]["options"] = json!(["rbind", "rw"]);
    let err = parse(&v).unwrap_err();
    assert!(
        matches!(err, ProfileError::WritableHostBind(ref p) if p == "/usr"),
        "{err}"
    );
}

#[test]
fn unsupported_mount_types_are_refused() {
    for kind in ["sysfs", "cgroup", "cgroup2", "overlay", "devtmpfs"] {
        let mut v = default_json();
        v["mounts"].as_array_mut().unwrap().push(json!(
            {"destination": "/sys", "type": kind, "source": kind}
        ));
        let err = parse(&v).unwrap_err();
        assert!(
            matches!(err, ProfileError::MountType { .. }),
            "{kind}: {err}"
        );
    }
}

#[test]
fn weakening_proc_is_refused() {
    let mut v = default_json();
    v["linux"]["maskedPaths"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p != "/proc/keys");
    assert!(matches!(
        parse(&v),
        Err(ProfileError::MissingMasked("/proc/keys"))
    ));
    let mut v = default_json();
    v["linux"]["readonlyPaths"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p != "/proc/sys");
    assert!(matches!(
        parse(&v),
        Err(ProfileError::MissingReadonly("/proc/sys"))
    ));
    let mut v = default_json();
    v["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["type"] != "proc");
    assert!(matches!(
        parse(&v),
        Err(ProfileError::Invalid {
            field: "mounts",
            ..
        })
    ));
}

#[test]
fn no_new_privs_false_is_refused() {
    let mut v = default_json();
    v["process"]["noNewPrivileges"] = json!(false);
    assert!(matches!(parse(&v), Err(ProfileError::NoNewPrivs)));
}

#[test]
fn host_reaching_features_are_refused() {
    let mut v = default_json();
    v["hooks"] = json!({"prestart": [{"path": "/bin/true"}]});
    assert!(matches!(parse(&v), Err(ProfileError::Forbidden("hooks"))));
    let mut v = default_json();
    v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW"});
    assert!(matches!(parse(&v), Err(ProfileError::OciSeccomp)));
    let mut v = default_json();
    v["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    assert!(matches!(
        parse(&v),
        Err(ProfileError::Forbidden("linux.sysctl"))
    ));
    let mut v = default_json();
    v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}]);
    assert!(matches!(parse(&v), Err(ProfileError::Invalid { .. })));
}

#[test]
fn unknown_fields_and_bad_json_are_refused() {
    let mut v = default_json();
    v["linux"]["namespace"] = json!([]);
    let err = parse(&v).unwrap_err();
    assert!(
        matches!(err, ProfileError::UnknownField(ref f) if f == "linux.namespace"),
        "{err}"
    );
    assert!(matches!(
        Profile::parse("x", "{not json"),
        Err(ProfileError::Parse(_))
    ));
    let mut v = default_json();
    v["annotations"]
        .as_object_mut()
        .unwrap()
        .remove(ANNOTATION_SECCOMP);
    assert!(matches!(parse(&v), Err(ProfileError::NoSeccomp)));
    let mut v = default_json();
    v["annotations"][ANNOTATION_SECCOMP] = json!("no-such-policy");
    assert!(matches!(parse(&v), Err(ProfileError::Policy(_))));
    let mut v = default_json();
    v["annotations"][ANNOTATION_OPTIONAL_LIMITS] = json!("memory,network");
    assert!(matches!(parse(&v), Err(ProfileError::Invalid { .. })));
}

#[test]
fn names_are_not_paths() {
    assert!(matches!(
        Profile::load("../etc/passwd"),
        Err(ProfileError::Read { .. })
    ));
    assert!(matches!(
        Profile::load("no-such-profile"),
        Err(ProfileError::NotFound(_))
    ));
    assert!(matches!(
        Profile::load(".hidden"),
        Err(ProfileError::NotFound(_))
    ));
}

#[test]
fn digest_depends_on_content_not_formatting() {
    let a = Profile::load("default").unwrap();
    // re-serialized compactly, with keys in another order
    let v = default_json();
    let compact = v.to_string();
    let b = Profile::parse("default", &compact).unwrap();
    assert_eq!(a.digest(), b.digest());
    let mut changed = default_json();
    changed["hostname"] = json!("other");
    let c = parse(&changed).unwrap();
    assert_ne!(a.digest(), c.digest());
    assert!(a.digest().starts_with("sha256:") && a.digest().len() == 71);
}

#[test]
fn loads_from_a_path_with_its_own_seccomp_policy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("seccomp")).unwrap();
    std::fs::write(
        dir.path().join("seccomp/custom.json"),
        crate::seccomp::tests_support::DEFAULT_POLICY,
    )
    .unwrap();
    let mut v = default_json();
    v["annotations"][ANNOTATION_SECCOMP] = json!("custom");
    v["annotations"][ANNOTATION_NAME] = json!("mine");
    let path = dir.path().join("mine.json");
    std::fs::write(&path, v.to_string()).unwrap();
    let p = Profile::load(path.to_str().unwrap()).unwrap();
    assert_eq!(p.name(), "mine");
    assert_eq!(p.seccomp().name(), "custom");
}

#[test]
fn resources_become_default_limits() {
    let mut v = default_json();
    v["linux"]["resources"] = json!({
        "memory": {"limit": 1073741824},
        "pids": {"limit": 100},
        "cpu": {"quota": 150000, "period": 100000}
    });
    let p = parse(&v).unwrap();
    assert_eq!(p.memory_limit(), Some(1 << 30));
    assert_eq!(p.pids_limit(), Some(100));
    assert_eq!(p.cpu_limit(), Some(MilliCpus(1500)));
}

#[test]
fn canonical_json_sorts_keys_at_every_level() {
    let v: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"x"}}"#).unwrap();
    assert_eq!(
        canonical_json(&v),
        r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#
    );
}

/// Every writable tmpfs is bounded (it is the host's memory), in bytes a
/// host does not change; the shipped profiles' /tmp and workspace limits.
#[test]
fn writable_tmpfs_mounts_need_a_size_cap() {
    let p = Profile::load("default").unwrap();
    assert_eq!(p.tmp_size(), Some(1 << 30));
    assert_eq!(p.workspace_limit(), Some(16 << 30));
    assert_eq!(Profile::load("dev").unwrap().tmp_size(), Some(1 << 30));
    let tmp = |options: Value| {
        let mut v = default_json();
        for m in v["mounts"].as_array_mut().unwrap() {
            if m["destination"] == "/tmp" {
                m["options"] = options.clone();
            }
        }
        parse(&v)
    };
    for (options, why) in [
        (json!(["nosuid", "mode=1777"]), "needs a size= cap"),
        (json!(["size=50%"]), "positive number of bytes"),
        (json!(["size=0"]), "positive number of bytes"),
        (json!(["size=lots"]), "positive number of bytes"),
    ] {
        let err = tmp(options.clone()).unwrap_err();
        assert!(
            matches!(&err, ProfileError::BadMount(d, w) if d == "/tmp" && w.contains(why)),
            "{options}: {err}"
        );
    }
    assert_eq!(tmp(json!(["size=64m"])).unwrap().tmp_size(), Some(64 << 20));
    // a read-only tmpfs needs no cap (nothing can be written to it)
    assert_eq!(tmp(json!(["ro", "mode=0755"])).unwrap().tmp_size(), None);
}

#[test]
fn the_workspace_size_annotation_is_a_positive_size() {
    let with = |value: &str| {
        let mut v = default_json();
        v["annotations"]["org.cloister.workspace-size"] = json!(value);
        parse(&v)
    };
    assert_eq!(with("2GiB").unwrap().workspace_limit(), Some(2 << 30));
    assert_eq!(with("512M").unwrap().workspace_limit(), Some(512 << 20));
    for bad in ["0", "lots", "-1", ""] {
        let err = with(bad).unwrap_err();
        assert!(
            matches!(
                err,
                ProfileError::Invalid {
                    field: "annotation org.cloister.workspace-size",
                    ..
                }
            ),
            "{bad}: {err}"
        );
    }
    let mut v = default_json();
    v["annotations"]["org.cloister.optional-limits"] = json!("disk, memory");
    let p = parse(&v).unwrap();
    assert!(p.optional_limits().contains(&LimitKind::Disk));
    v["annotations"]["org.cloister.optional-limits"] = json!("diskspace");
    assert!(
        parse(&v)
            .unwrap_err()
            .to_string()
            .contains("memory, pids, cpu, disk")
    );
}
