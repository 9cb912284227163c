//! The keyring in the attestor's state directory: one active signing key,
//! older keys kept as "rotated" and still trusted for verification until
//! their not-after time, all described by `keyring.json`.
//!
//! Layout (directory mode 0700, files 0600, written atomically by rename,
//! mutations serialized by an flock on `keyring.lock`):
//! ```text
//! <state-dir>/keyring.json              {"version":1,"keys":[{keyid, algorithm, status, createdAt, notAfter, encrypted}]}
//! <state-dir>/keys/<keyid>.key.pem      PKCS#8 private key (optionally passphrase-encrypted)
//! <state-dir>/keys/<keyid>.pub.pem      SPKI public key
//! ```
//! Private keys are never loaded from a file that group or others can read.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cloister_attestor_core::keys::{
    Algorithm, EncryptionParams, KeyError, KeyPair, PublicKey, Signer,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// Where the attestor keeps its state unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cloister/attestor";
/// Environment variable overriding [`DEFAULT_STATE_DIR`].
pub const STATE_DIR_ENV: &str = "CLOISTER_ATTESTOR_STATE_DIR";

const KEYRING_FILE: &str = "keyring.json";
const LOCK_FILE: &str = "keyring.lock";
const KEYS_DIR: &str = "keys";

/// Errors from the keyring.
#[derive(Debug, Error)]
pub enum KeyringError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: malformed keyring: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("no active signing key in {0} (run `cloister-attestor keygen`)")]
    NoActiveKey(PathBuf),
    #[error("{0} already has an active signing key (use `cloister-attestor keys rotate`)")]
    AlreadyActive(PathBuf),
    #[error("no key {0} in the keyring")]
    UnknownKey(String),
    #[error("key {0} is already in the keyring")]
    DuplicateKey(String),
    #[error("{path}: key file is readable by group or others (mode {mode:o}); refusing to use it")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("not-after {0} is not in the future")]
    NotAfterInPast(String),
    #[error("key {keyid}: {source}")]
    Key { keyid: String, source: KeyError },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyringError + '_ {
    move |source| KeyringError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The state directory: `--state-dir`, else `$CLOISTER_ATTESTOR_STATE_DIR`, else the default.
pub fn state_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_owned();
    }
    match std::env::var_os(STATE_DIR_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_STATE_DIR),
    }
}

/// Whether a key signs or is kept only for verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// The one key new attestations are signed with.
    Active,
    /// A former signing key, trusted for verification until `notAfter`.
    Rotated,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Rotated => "rotated",
        }
    }
}

/// One key in `keyring.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyEntry {
    pub keyid: String,
    pub algorithm: Algorithm,
    pub status: KeyStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// After this instant a rotated key is no longer trusted (unset on the active key).
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub not_after: Option<OffsetDateTime>,
    /// Whether the private key file is passphrase-encrypted.
    pub encrypted: bool,
}

impl KeyEntry {
    /// Whether signatures by this key are accepted at `now`.
    pub fn trusted_at(&self, now: OffsetDateTime) -> bool {
        match self.status {
            KeyStatus::Active => true,
            KeyStatus::Rotated => self.not_after.is_some_and(|t| now < t),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    version: u32,
    keys: Vec<KeyEntry>,
}

/// The keyring of one state directory.
pub struct Keyring {
    dir: PathBuf,
    passphrase: Option<Zeroizing<Vec<u8>>>,
    cache: Mutex<Option<Arc<KeyPair>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Writes `bytes` to `path` atomically (temp file + fsync + rename) with `mode`.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyringError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    // An existing temp file keeps its old mode: set it explicitly.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(parent) = path.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io(parent))?;
    }
    Ok(())
}

/// Reads a private key file, refusing one readable by group or others (the
/// mode is checked on the open handle, so a swapped file cannot slip in).
pub fn read_private_file(path: &Path) -> Result<Zeroizing<String>, KeyringError> {
    let mut f = File::open(path).map_err(io(path))?;
    let meta = f.metadata().map_err(io(path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyringError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    if meta.len() > 64 * 1024 {
        return Err(KeyringError::Malformed {
            path: path.to_owned(),
            reason: "larger than 64 KiB".into(),
        });
    }
    // Sized up front so that no unzeroized copy is left behind by growth.
    let mut text = Zeroizing::new(String::with_capacity(meta.len() as usize + 1));
    std::io::Read::read_to_string(&mut f, &mut text).map_err(io(path))?;
    Ok(text)
}

/// Writes a private key PEM with mode 0600 (refusing to overwrite).
pub fn write_private_file(path: &Path, pem: &str) -> Result<(), KeyringError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(pem.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Errors reading a passphrase.
#[derive(Debug, Error)]
pub enum PassphraseError {
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    #[error("the passphrase is empty")]
    Empty,
}

/// Reads a passphrase from a file (one trailing newline dropped) or from an
/// environment variable; `None` when neither is given.
pub fn read_passphrase(
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Option<Zeroizing<Vec<u8>>>, PassphraseError> {
    let mut pass = match (file, env) {
        (Some(path), _) => {
            Zeroizing::new(fs::read(path).map_err(|source| PassphraseError::File {
                path: path.to_owned(),
                source,
            })?)
        }
        (None, Some(var)) => Zeroizing::new(
            std::env::var_os(var)
                .ok_or_else(|| PassphraseError::EnvMissing(var.to_owned()))?
                .into_encoded_bytes(),
        ),
        (None, None) => return Ok(None),
    };
    if pass.last() == Some(&b'\n') {
        pass.pop();
        if pass.last() == Some(&b'\r') {
            pass.pop();
        }
    }
    if pass.is_empty() {
        return Err(PassphraseError::Empty);
    }
    Ok(Some(pass))
}

impl Keyring {
    /// Opens (creating with mode 0700 when missing) the keyring in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, KeyringError> {
        let keys = state_dir.join(KEYS_DIR);
        for d in [state_dir, keys.as_path()] {
            if !d.exists() {
                fs::create_dir_all(d).map_err(io(d))?;
                fs::set_permissions(d, fs::Permissions::from_mode(0o700)).map_err(io(d))?;
            }
        }
        Ok(Self {
            dir: state_dir.to_owned(),
            passphrase: None,
            cache: Mutex::new(None),
        })
    }

    /// Sets the passphrase used to load (and to encrypt newly generated) keys.
    pub fn with_passphrase(mut self, passphrase: Option<Zeroizing<Vec<u8>>>) -> Self {
        self.passphrase = passphrase;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn private_path(&self, keyid: &str) -> PathBuf {
        self.dir.join(KEYS_DIR).join(format!("{keyid}.key.pem"))
    }

    fn public_path(&self, keyid: &str) -> PathBuf {
        self.dir.join(KEYS_DIR).join(format!("{keyid}.pub.pem"))
    }

    fn lock(&self) -> Result<File, KeyringError> {
        let path = self.dir.join(LOCK_FILE);
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            KeyringError::Io {
                path: path.clone(),
                source: e.into(),
            }
        })?;
        Ok(f)
    }

    fn load(&self) -> Result<KeyringFile, KeyringError> {
        let path = self.dir.join(KEYRING_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(KeyringFile {
                    version: 1,
                    keys: vec![],
                });
            }
            Err(e) => return Err(KeyringError::Io { path, source: e }),
        };
        let file: KeyringFile =
            serde_json::from_slice(&bytes).map_err(|e| KeyringError::Malformed {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if file.version != 1 {
            return Err(KeyringError::Malformed {
                path,
                reason: format!("unknown version {}", file.version),
            });
        }
        if file
            .keys
            .iter()
            .filter(|k| k.status == KeyStatus::Active)
            .count()
            > 1
        {
            return Err(KeyringError::Malformed {
                path,
                reason: "more than one active key".into(),
            });
        }
        Ok(file)
    }

    fn store(&self, file: &KeyringFile) -> Result<(), KeyringError> {
        let mut json = serde_json::to_vec_pretty(file).expect("keyring serializes");
        json.push(b'\n');
        write_atomic(&self.dir.join(KEYRING_FILE), &json, 0o600)
    }

    /// All keys, oldest first.
    pub fn entries(&self) -> Result<Vec<KeyEntry>, KeyringError> {
        Ok(self.load()?.keys)
    }

    /// The active key's entry, if any.
    pub fn active_entry(&self) -> Result<Option<KeyEntry>, KeyringError> {
        Ok(self
            .load()?
            .keys
            .into_iter()
            .find(|k| k.status == KeyStatus::Active))
    }

    fn load_keypair(&self, entry: &KeyEntry) -> Result<KeyPair, KeyringError> {
        let pem = read_private_file(&self.private_path(&entry.keyid))?;
        let kp = KeyPair::from_pem(&pem, self.passphrase.as_deref().map(|p| p.as_slice()))
            .map_err(|source| KeyringError::Key {
                keyid: entry.keyid.clone(),
                source,
            })?;
        if kp.keyid() != entry.keyid {
            return Err(KeyringError::Malformed {
                path: self.private_path(&entry.keyid),
                reason: format!("file holds key {}, not {}", kp.keyid(), entry.keyid),
            });
        }
        Ok(kp)
    }

    /// The active signing key.
    pub fn active_signer(&self) -> Result<Arc<dyn Signer>, KeyringError> {
        let entry = self
            .active_entry()?
            .ok_or_else(|| KeyringError::NoActiveKey(self.dir.clone()))?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(kp) = cache.as_ref()
            && kp.keyid() == entry.keyid
        {
            return Ok(kp.clone());
        }
        let kp = Arc::new(self.load_keypair(&entry)?);
        *cache = Some(kp.clone());
        Ok(kp)
    }

    /// The active signing key, generating and persisting an `alg` key first
    /// when the keyring has none ("signing key generated on first use").
    pub fn ensure_active(&self, alg: Algorithm) -> Result<Arc<dyn Signer>, KeyringError> {
        {
            let _lock = self.lock()?;
            if self.active_entry()?.is_none() {
                let kp = KeyPair::generate(alg).map_err(|source| KeyringError::Key {
                    keyid: String::new(),
                    source,
                })?;
                self.add_locked(&kp, OffsetDateTime::now_utc(), None)?;
            }
        }
        self.active_signer()
    }

    /// Writes a key's files and adds it as the active key; an existing
    /// active key becomes rotated with `old_not_after` (None: refuse).
    fn add_locked(
        &self,
        kp: &KeyPair,
        now: OffsetDateTime,
        old_not_after: Option<OffsetDateTime>,
    ) -> Result<KeyEntry, KeyringError> {
        let mut file = self.load()?;
        if file.keys.iter().any(|k| k.keyid == kp.keyid()) {
            return Err(KeyringError::DuplicateKey(kp.keyid().to_owned()));
        }
        if let Some(active) = file.keys.iter_mut().find(|k| k.status == KeyStatus::Active) {
            let Some(not_after) = old_not_after else {
                return Err(KeyringError::AlreadyActive(self.dir.clone()));
            };
            if not_after <= now {
                return Err(KeyringError::NotAfterInPast(not_after.to_string()));
            }
            active.status = KeyStatus::Rotated;
            active.not_after = Some(not_after);
        }
        let pass = self.passphrase.as_deref().map(|p| p.as_slice());
        let pem = kp
            .to_pkcs8_pem(pass, EncryptionParams::default())
            .map_err(|source| KeyringError::Key {
                keyid: kp.keyid().to_owned(),
                source,
            })?;
        let private = self.private_path(kp.keyid());
        // A leftover file from a crash between writing keys and the keyring is replaced.
        let _ = fs::remove_file(&private);
        write_private_file(&private, &pem)?;
        write_atomic(
            &self.public_path(kp.keyid()),
            kp.public_key().to_pem().as_bytes(),
            0o600,
        )?;
        let entry = KeyEntry {
            keyid: kp.keyid().to_owned(),
            algorithm: kp.algorithm(),
            status: KeyStatus::Active,
            created_at: now.replace_nanosecond(0).unwrap_or(now),
            not_after: None,
            encrypted: pass.is_some(),
        };
        file.version = 1;
        file.keys.push(entry.clone());
        self.store(&file)?;
        Ok(entry)
    }

    /// Adds `kp` as the active key; fails when one is already active.
    pub fn add_first(&self, kp: &KeyPair, now: OffsetDateTime) -> Result<KeyEntry, KeyringError> {
        let _lock = self.lock()?;
        self.add_locked(kp, now, None)
    }

    /// Makes `kp` the active key; the previous active key (if any) stays
    /// trusted for verification until `old_not_after`.
    pub fn rotate_to(
        &self,
        kp: &KeyPair,
        now: OffsetDateTime,
        old_not_after: OffsetDateTime,
    ) -> Result<KeyEntry, KeyringError> {
        let _lock = self.lock()?;
        self.add_locked(kp, now, Some(old_not_after))
    }

    /// Public keys trusted at `now`: the active key and rotated keys whose
    /// not-after lies in the future.
    pub fn trusted_keys(&self, now: OffsetDateTime) -> Result<Vec<PublicKey>, KeyringError> {
        self.load()?
            .keys
            .iter()
            .filter(|k| k.trusted_at(now))
            .map(|k| self.entry_public_key(k))
            .collect()
    }

    /// A key's public half, by keyid.
    pub fn public_key(&self, keyid: &str) -> Result<PublicKey, KeyringError> {
        let keys = self.load()?.keys;
        let entry = keys
            .iter()
            .find(|k| k.keyid == keyid)
            .ok_or_else(|| KeyringError::UnknownKey(keyid.to_owned()))?;
        self.entry_public_key(entry)
    }

    /// The public half of a key of an already loaded keyring (its public
    /// PEM, checked to be that key).
    pub fn entry_public_key(&self, entry: &KeyEntry) -> Result<PublicKey, KeyringError> {
        let keyid = entry.keyid.as_str();
        let path = self.public_path(keyid);
        let pem = fs::read_to_string(&path).map_err(io(&path))?;
        let pk = PublicKey::from_pem(&pem).map_err(|source| KeyringError::Key {
            keyid: keyid.to_owned(),
            source,
        })?;
        if pk.keyid() != keyid {
            return Err(KeyringError::Malformed {
                path,
                reason: format!("file holds key {}", pk.keyid()),
            });
        }
        Ok(pk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn ensure_active_generates_once_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let ring = Keyring::open(&state).unwrap();
        assert!(matches!(
            ring.active_signer(),
            Err(KeyringError::NoActiveKey(_))
        ));
        let a = ring.ensure_active(Algorithm::EcdsaP256).unwrap();
        let b = ring.ensure_active(Algorithm::Ed25519).unwrap();
        assert_eq!(a.keyid(), b.keyid());
        assert_eq!(a.public_key().algorithm(), Algorithm::EcdsaP256);
        // A fresh handle sees the same key on disk.
        let again = Keyring::open(&state).unwrap().active_signer().unwrap();
        assert_eq!(again.keyid(), a.keyid());
        let sig = again.sign(b"x").unwrap();
        assert!(a.public_key().verify(b"x", &sig));
        // Modes: directory 0700, key files 0600.
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("keys")), 0o700);
        assert_eq!(mode(&state.join("keyring.json")), 0o600);
        assert_eq!(
            mode(&state.join(format!("keys/{}.key.pem", a.keyid()))),
            0o600
        );
    }

    #[test]
    fn rotation_keeps_old_keys_trusted_until_not_after() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::open(dir.path()).unwrap();
        let first = KeyPair::generate(Algorithm::EcdsaP256).unwrap();
        ring.add_first(&first, now()).unwrap();
        let second = KeyPair::generate(Algorithm::Ed25519).unwrap();
        assert!(matches!(
            ring.add_first(&second, now()),
            Err(KeyringError::AlreadyActive(_))
        ));
        assert!(matches!(
            ring.rotate_to(&second, now(), now() - Duration::days(1)),
            Err(KeyringError::NotAfterInPast(_))
        ));
        ring.rotate_to(&second, now(), now() + Duration::days(30))
            .unwrap();

        assert_eq!(ring.active_signer().unwrap().keyid(), second.keyid());
        let ids = |t| {
            ring.trusted_keys(t)
                .unwrap()
                .iter()
                .map(|k| k.keyid().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(now() + Duration::days(29)),
            [first.keyid(), second.keyid()]
        );
        assert_eq!(ids(now() + Duration::days(31)), [second.keyid()]);
        let entries = ring.entries().unwrap();
        assert_eq!(entries[0].status, KeyStatus::Rotated);
        assert_eq!(entries[0].not_after, Some(now() + Duration::days(30)));
        assert_eq!(entries[1].status, KeyStatus::Active);
        assert!(matches!(
            ring.rotate_to(&second, now(), now() + Duration::days(1)),
            Err(KeyringError::DuplicateKey(_))
        ));
    }

    #[test]
    fn encrypted_keyring_keys_need_the_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let pass = || Some(Zeroizing::new(b"s3cret".to_vec()));
        let ring = Keyring::open(dir.path()).unwrap().with_passphrase(pass());
        let kp = KeyPair::generate(Algorithm::Ed25519).unwrap();
        let entry = ring.add_first(&kp, now()).unwrap();
        assert!(entry.encrypted);
        let pem =
            fs::read_to_string(dir.path().join(format!("keys/{}.key.pem", kp.keyid()))).unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        assert!(matches!(
            Keyring::open(dir.path()).unwrap().active_signer(),
            Err(KeyringError::Key {
                source: KeyError::PassphraseRequired,
                ..
            })
        ));
        let ok = Keyring::open(dir.path())
            .unwrap()
            .with_passphrase(pass())
            .active_signer()
            .unwrap();
        assert_eq!(ok.keyid(), kp.keyid());
    }

    #[test]
    fn refuses_group_readable_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::open(dir.path()).unwrap();
        let signer = ring.ensure_active(Algorithm::EcdsaP256).unwrap();
        let path = dir.path().join(format!("keys/{}.key.pem", signer.keyid()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = Keyring::open(dir.path())
            .unwrap()
            .active_signer()
            .err()
            .unwrap();
        assert!(
            matches!(err, KeyringError::Permissions { mode: 0o640, .. }),
            "{err}"
        );
    }

    #[test]
    fn malformed_keyring_is_an_error_not_an_empty_ring() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("keyring.json"), "{not json").unwrap();
        let ring = Keyring::open(dir.path()).unwrap();
        assert!(matches!(
            ring.entries(),
            Err(KeyringError::Malformed { .. })
        ));
        assert!(matches!(
            ring.ensure_active(Algorithm::Ed25519),
            Err(KeyringError::Malformed { .. })
        ));
    }

    #[test]
    fn state_dir_resolution_prefers_the_flag() {
        assert_eq!(state_dir(Some(Path::new("/x"))), PathBuf::from("/x"));
    }
}
