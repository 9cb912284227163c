use super::*;
use std::collections::HashMap;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn no_file_no_env_gives_embedded_defaults() {
    let c = Config::load_with(&Overrides::default(), env_of(&[])).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(
        c.storage_url(),
        "sqlite:///var/lib/cloister/attestor/attestor.db"
    );
    assert_eq!(
        c.sign_socket_path(),
        PathBuf::from("/var/lib/cloister/attestor/sign.sock")
    );
}

#[test]
fn file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.toml");
    std::fs::write(
        &file,
        "state_dir = \"/from/file\"\nlisten = \"127.0.0.1:1\"\n[rate_limit]\nper_second = 5\nburst = 7\n[log]\nformat = \"json\"\n",
    )
    .unwrap();
    let flags = Overrides {
        config: Some(file.clone()),
        listen: Some("127.0.0.1:3".parse().unwrap()),
        ..Default::default()
    };
    let c = Config::load_with(
        &flags,
        env_of(&[
            ("CLOISTER_ATTESTOR_STATE_DIR", "/from/env"),
            ("CLOISTER_ATTESTOR_LISTEN", "127.0.0.1:2"),
            ("CLOISTER_ATTESTOR_RATE_LIMIT_BURST", "9"),
        ]),
    )
    .unwrap();
    assert_eq!(c.state_dir, PathBuf::from("/from/env"));
    assert_eq!(c.listen, "127.0.0.1:3".parse().unwrap());
    assert_eq!(c.rate_limit.per_second, 5);
    assert_eq!(c.rate_limit.burst, 9);
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn config_file_named_by_env() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.toml");
    std::fs::write(&file, "[limits]\nmax_body_bytes = 4096\n").unwrap();
    let c = Config::load_with(
        &Overrides::default(),
        env_of(&[(ENV_CONFIG, file.to_str().unwrap())]),
    )
    .unwrap();
    assert_eq!(c.limits.max_body_bytes, 4096);
}

/// `limits.max_body_bytes` takes the runner's size syntax in the file
/// and the environment; a bad size names the key or variable, and the
/// range check still applies to the bytes it means.
#[test]
fn body_limit_takes_the_one_size_syntax() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.toml");
    let load = |text: &str, env: &[(&str, &str)]| {
        std::fs::write(&file, text).unwrap();
        let flags = Overrides {
            config: Some(file.clone()),
            ..Default::default()
        };
        Config::load_with(&flags, env_of(env)).map(|c| c.limits.max_body_bytes)
    };
    assert_eq!(
        load("[limits]\nmax_body_bytes = 4096\n", &[]).unwrap(),
        4096
    );
    assert_eq!(
        load("[limits]\nmax_body_bytes = \"64K\"\n", &[]).unwrap(),
        64 << 10
    );
    assert_eq!(
        load("[limits]\nmax_body_bytes = \"2MiB\"\n", &[]).unwrap(),
        2 << 20
    );
    assert_eq!(
        load("", &[("CLOISTER_ATTESTOR_MAX_BODY_BYTES", "3M")]).unwrap(),
        3 << 20
    );
    assert_eq!(
        load("", &[("CLOISTER_ATTESTOR_MAX_BODY_BYTES", "512KiB")]).unwrap(),
        512 << 10
    );
    let err = load("[limits]\nmax_body_bytes = \"1 parsec\"\n", &[]).unwrap_err();
    assert!(
        err.to_string().contains("max_body_bytes") && err.to_string().contains("not a size"),
        "{err}"
    );
    let err = load("", &[("CLOISTER_ATTESTOR_MAX_BODY_BYTES", "lots")]).unwrap_err();
    assert!(
        err.to_string()
            .contains("CLOISTER_ATTESTOR_MAX_BODY_BYTES: \"lots\" is not a size"),
        "{err}"
    );
    // 1 GiB is a size, but over the limit's ceiling.
    let err = load("[limits]\nmax_body_bytes = \"1G\"\n", &[]).unwrap_err();
    assert!(err.to_string().contains("between 1 and"), "{err}");
}

#[test]
fn passphrase_sources_file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, "key_passphrase_file = \"/etc/cloister/pass\"\n").unwrap();
    let with_file = Overrides {
        config: Some(file.clone()),
        ..Default::default()
    };
    let c = Config::load_with(&with_file, env_of(&[])).unwrap();
    assert_eq!(
        c.key_passphrase_file,
        Some(PathBuf::from("/etc/cloister/pass"))
    );
    assert_eq!(c.key_passphrase_env, None);
    // The environment replaces the file's source, a flag replaces both.
    let c = Config::load_with(
        &with_file,
        env_of(&[("CLOISTER_ATTESTOR_KEY_PASSPHRASE_ENV", "ATTESTOR_PASS")]),
    )
    .unwrap();
    assert_eq!(c.key_passphrase_file, None);
    assert_eq!(c.key_passphrase_env.as_deref(), Some("ATTESTOR_PASS"));
    let flag = Overrides {
        key_passphrase_file: Some(PathBuf::from("/run/pass")),
        ..with_file
    };
    let c = Config::load_with(
        &flag,
        env_of(&[("CLOISTER_ATTESTOR_KEY_PASSPHRASE_ENV", "ATTESTOR_PASS")]),
    )
    .unwrap();
    assert_eq!(c.key_passphrase_file, Some(PathBuf::from("/run/pass")));
    assert_eq!(c.key_passphrase_env, None);
    // Both in one place is refused.
    std::fs::write(
        &file,
        "key_passphrase_file = \"/a\"\nkey_passphrase_env = \"B\"\n",
    )
    .unwrap();
    let err = Config::load_with(
        &Overrides {
            config: Some(file),
            ..Default::default()
        },
        env_of(&[]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not both"), "{err}");
    let err = Config::load_with(
        &Overrides::default(),
        env_of(&[
            ("CLOISTER_ATTESTOR_KEY_PASSPHRASE_ENV", "A"),
            ("CLOISTER_ATTESTOR_KEY_PASSPHRASE_FILE", "/b"),
        ]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not both"), "{err}");
}

#[test]
fn unknown_keys_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "listne = \"127.0.0.1:1\"\n").unwrap();
    let err = Config::from_file(&file).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn invalid_values_are_rejected_with_the_reason() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("CLOISTER_ATTESTOR_LISTEN", "nope")],
            "CLOISTER_ATTESTOR_LISTEN",
        ),
        (
            &[("CLOISTER_ATTESTOR_MAX_BODY_BYTES", "0")],
            "max_body_bytes",
        ),
        (
            &[("CLOISTER_ATTESTOR_RATE_LIMIT_PER_SECOND", "0")],
            "rate_limit",
        ),
        (
            &[("CLOISTER_ATTESTOR_DATABASE_URL", "mysql://x")],
            "database_url",
        ),
        (&[("CLOISTER_ATTESTOR_TLS_CERT", "/x")], "set together"),
        (
            &[
                ("CLOISTER_ATTESTOR_TLS_CERT", "/nonexistent/c.pem"),
                ("CLOISTER_ATTESTOR_TLS_KEY", "/nonexistent/k.pem"),
            ],
            "tls.cert",
        ),
        (&[("CLOISTER_ATTESTOR_LOG_FORMAT", "xml")], "text or json"),
        (&[("CLOISTER_ATTESTOR_LOG_LEVEL", "info,[[[")], "log.level"),
    ];
    for (env, needle) in cases {
        let err = Config::load_with(&Overrides::default(), env_of(env)).unwrap_err();
        assert!(err.to_string().contains(needle), "{env:?}: {err}");
    }
}
