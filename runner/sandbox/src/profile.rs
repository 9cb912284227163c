//! Sandbox profiles: OCI runtime-spec `config.json` documents (parsed with
//! `oci-spec`) that say which namespaces, mounts, rlimits, resource limits
//! and seccomp policy a sandbox gets. A profile is validated when loaded: one
//! that shares a host namespace, grants a capability, mounts a host path
//! outside [`HOST_PATH_ALLOW_LIST`] or leaves out a masked or read-only
//! `/proc` path is refused with the reason. Its identity is the sha256 of its
//! canonical JSON ([`Profile::digest`]), which goes into provenance.

use crate::derive::{self, SpecError};
use crate::limit::{LimitKind, MilliCpus};
use crate::lookup::{LookupError, find_named};
use crate::precomputed;
use crate::seccomp::{PolicyError, SeccompPolicy};
use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Spec};
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

// Where named profiles are looked for (`lookup`, shared with `seccomp`).
pub use crate::lookup::{PROFILE_DIR_ENV, SYSTEM_PROFILE_DIR};

/// Host paths a profile may bind into the sandbox (read-only, nosuid, nodev),
/// with everything below them. Anything else on the host stays invisible.
pub const HOST_PATH_ALLOW_LIST: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ssl/certs",
];

/// `/proc` paths every profile must mask (kernel memory, keys, timers).
pub const REQUIRED_MASKED_PATHS: &[&str] = &["/proc/kcore", "/proc/keys", "/proc/timer_list"];
/// `/proc` paths every profile must make read-only (kernel knobs).
pub const REQUIRED_READONLY_PATHS: &[&str] =
    &["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"];

/// The namespaces every profile must create fresh.
pub const REQUIRED_NAMESPACES: &[LinuxNamespaceType] = &[
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::User,
    LinuxNamespaceType::Uts,
];

/// Annotation naming the seccomp policy (`sandbox-profiles/seccomp/<name>.json`).
pub const ANNOTATION_SECCOMP: &str = "org.cloister.seccomp";
/// Annotation listing limits (`memory,pids,cpu`) the sandbox may run without
/// when it cannot apply them (no writable cgroup); all others are required.
pub const ANNOTATION_OPTIONAL_LIMITS: &str = "org.cloister.optional-limits";
/// Annotation naming a builder image to use as the root filesystem.
pub const ANNOTATION_IMAGE: &str = "org.cloister.image";
/// Annotation carrying the profile's name.
pub const ANNOTATION_NAME: &str = "org.cloister.profile";
/// Annotation bounding how much the writable binds (the build's workspace)
/// may grow during a run: a size (`16GiB`, see [`crate::parse_size`]).
pub const ANNOTATION_WORKSPACE_SIZE: &str = "org.cloister.workspace-size";

pub(crate) const EMBEDDED: &[(&str, &str)] = &[
    (
        "default",
        include_str!("../../../sandbox-profiles/default.json"),
    ),
    ("dev", include_str!("../../../sandbox-profiles/dev.json")),
];

/// Why a profile was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "no profile named {0:?} (searched ${PROFILE_DIR_ENV}, {SYSTEM_PROFILE_DIR} and the built-in profiles)"
    )]
    NotFound(String),
    #[error("cannot read profile {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("profile is not valid OCI runtime-spec JSON: {0}")]
    Parse(String),
    #[error("profile has a field the sandbox does not understand: {0}")]
    UnknownField(String),
    #[error("profile shares the host {0} namespace (every namespace must be new)")]
    SharedNamespace(String),
    #[error("profile joins an existing {0} namespace by path, which shares it with the host")]
    NamespacePath(String),
    #[error("profile grants capability {cap} in the {set} set (every set must be empty)")]
    Capability { set: &'static str, cap: String },
    #[error("profile mounts host path {0} which is outside the allow-list ({list})", list = HOST_PATH_ALLOW_LIST.join(", "))]
    HostPathNotAllowed(String),
    #[error("profile mounts host path {0} writable (host binds in a profile are read-only)")]
    WritableHostBind(String),
    #[error("profile mounts {destination} with type {kind:?}, which the sandbox does not allow")]
    MountType { kind: String, destination: String },
    #[error("profile mount {0:?}: {1}")]
    BadMount(String, &'static str),
    #[error("profile sets noNewPrivileges to false")]
    NoNewPrivs,
    #[error("profile does not mask {0}")]
    MissingMasked(&'static str),
    #[error("profile does not make {0} read-only")]
    MissingReadonly(&'static str),
    #[error(
        "profile has an OCI seccomp section; name a cloister seccomp policy with the {ANNOTATION_SECCOMP} annotation instead"
    )]
    OciSeccomp,
    #[error("profile has no {ANNOTATION_SECCOMP} annotation naming its seccomp policy")]
    NoSeccomp,
    #[error("profile uses {0}, which runs or exposes host resources")]
    Forbidden(&'static str),
    #[error("profile {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("profile's seccomp policy: {0}")]
    Policy(#[from] PolicyError),
}

/// One mount the sandbox makes, as interpreted from the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountEntry {
    /// A read-only, nosuid, nodev bind of an allow-listed host path.
    HostBind {
        source: PathBuf,
        destination: PathBuf,
        /// Skipped when the source does not exist on this host.
        optional: bool,
        /// Also noexec (the `noexec` option).
        noexec: bool,
    },
    /// A fresh tmpfs, with its size cap in bytes (`size=`; required unless
    /// it is read-only).
    Tmpfs {
        destination: PathBuf,
        flags: MountFlags,
        data: String,
        size: Option<u64>,
    },
    /// A fresh proc for the sandbox's pid namespace.
    Proc { destination: PathBuf },
    /// A new devpts instance.
    Devpts { destination: PathBuf, data: String },
}

/// Flags for a tmpfs or devpts mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountFlags {
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
    pub readonly: bool,
}

/// One resource limit (`setrlimit`) applied before exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: i32,
    pub soft: u64,
    pub hard: u64,
}

/// A validated sandbox profile.
#[derive(Debug, Clone)]
pub struct Profile {
    name: String,
    digest: String,
    seccomp: SeccompPolicy,
    mounts: Vec<MountEntry>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    hostname: String,
    rlimits: Vec<Rlimit>,
    memory: Option<u64>,
    pids: Option<u64>,
    cpus: Option<MilliCpus>,
    workspace: Option<u64>,
    optional_limits: BTreeSet<LimitKind>,
    masked_paths: Vec<PathBuf>,
    readonly_paths: Vec<PathBuf>,
    image: Option<String>,
    namespaces: Vec<String>,
}

impl Profile {
    /// Loads a profile by name (searching `$CLOISTER_PROFILE_DIR`,
    /// [`SYSTEM_PROFILE_DIR`], then the built-in copies) or by path (anything
    /// containing `/` or ending in `.json`), and validates it.
    pub fn load(name_or_path: &str) -> Result<Profile, ProfileError> {
        let found = find_named(name_or_path, None, EMBEDDED).map_err(|e| match e {
            LookupError::NotFound => ProfileError::NotFound(name_or_path.to_string()),
            LookupError::Read { path, source } => ProfileError::Read { path, source },
        })?;
        Self::parse_with(&found.name, &found.text, found.dir.as_deref())
    }

    /// Parses and validates profile JSON; the seccomp policy it names is
    /// looked up like a profile name (under `seccomp/`).
    pub fn parse(name: &str, json: &str) -> Result<Profile, ProfileError> {
        Self::parse_with(name, json, None)
    }

    fn parse_with(
        fallback_name: &str,
        json: &str,
        dir: Option<&Path>,
    ) -> Result<Profile, ProfileError> {
        // A built-in profile's text (the same bytes) has its digest, and its
        // unknown-field check, from the build (`precomputed`); the checks
        // below run either way.
        let (spec, digest): (Spec, String) = match precomputed::profile(json) {
            Some(p) => (
                serde_json::from_str(json).map_err(|e| ProfileError::Parse(e.to_string()))?,
                p.digest.to_string(),
            ),
            None => derive::parse_spec(json).map_err(|e| match e {
                SpecError::Parse(m) => ProfileError::Parse(m),
                SpecError::UnknownField(f) => ProfileError::UnknownField(f),
            })?,
        };
        let annotations = spec.annotations().clone().unwrap_or_default();
        let name = annotations
            .get(ANNOTATION_NAME)
            .cloned()
            .unwrap_or_else(|| fallback_name.to_string());
        let seccomp_name = annotations
            .get(ANNOTATION_SECCOMP)
            .ok_or(ProfileError::NoSeccomp)?;
        // A policy next to a profile file wins over the search path, so a
        // profile directory is self-contained.
        let local = dir.map(|d| d.join("seccomp").join(format!("{seccomp_name}.json")));
        let seccomp = match local {
            Some(p) if p.is_file() => SeccompPolicy::load(&p.to_string_lossy())?,
            _ => SeccompPolicy::load(seccomp_name)?,
        };
        let mut profile = validate(&spec, name, digest, seccomp)?;
        profile.image = annotations.get(ANNOTATION_IMAGE).cloned();
        if let Some(list) = annotations.get(ANNOTATION_OPTIONAL_LIMITS) {
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let kind = match item {
                    "memory" => LimitKind::Memory,
                    "pids" => LimitKind::Pids,
                    "cpu" => LimitKind::Cpu,
                    "disk" => LimitKind::Disk,
                    other => {
                        return Err(ProfileError::Invalid {
                            field: "annotation org.cloister.optional-limits",
                            reason: format!("unknown limit {other:?} (memory, pids, cpu, disk)"),
                        });
                    }
                };
                profile.optional_limits.insert(kind);
            }
        }
        if let Some(size) = annotations.get(ANNOTATION_WORKSPACE_SIZE) {
            let bytes = crate::parse_size(size)
                .ok()
                .filter(|b| *b > 0)
                .ok_or_else(|| ProfileError::Invalid {
                    field: "annotation org.cloister.workspace-size",
                    reason: format!("{size:?} is not a positive size (e.g. 16GiB)"),
                })?;
            profile.workspace = Some(bytes);
        }
        Ok(profile)
    }

    /// The profile's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// `sha256:<hex>` of the canonical JSON (sorted keys, no whitespace) of
    /// the profile as parsed.
    pub fn digest(&self) -> &str {
        &self.digest
    }
    /// The seccomp policy the profile names.
    pub fn seccomp(&self) -> &SeccompPolicy {
        &self.seccomp
    }
    /// The mounts, in order.
    pub fn mounts(&self) -> &[MountEntry] {
        &self.mounts
    }
    /// The base environment (`process.env`).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }
    /// The default working directory inside the sandbox.
    pub fn cwd(&self) -> &Path {
        &self.cwd
    }
    /// The sandbox hostname.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }
    /// rlimits applied before exec.
    pub fn rlimits(&self) -> &[Rlimit] {
        &self.rlimits
    }
    /// Default memory limit in bytes (`linux.resources.memory.limit`).
    pub fn memory_limit(&self) -> Option<u64> {
        self.memory
    }
    /// Default pid limit (`linux.resources.pids.limit`).
    pub fn pids_limit(&self) -> Option<u64> {
        self.pids
    }
    /// Default cpu limit (`linux.resources.cpu.quota / period`).
    pub fn cpu_limit(&self) -> Option<MilliCpus> {
        self.cpus
    }
    /// Size of the `/tmp` tmpfs in bytes (its `size=` option), if the
    /// profile mounts one.
    pub fn tmp_size(&self) -> Option<u64> {
        self.mounts.iter().find_map(|m| match m {
            MountEntry::Tmpfs {
                destination, size, ..
            } if destination == Path::new("/tmp") => *size,
            _ => None,
        })
    }
    /// How much the writable binds may grow during a run
    /// (`org.cloister.workspace-size`).
    pub fn workspace_limit(&self) -> Option<u64> {
        self.workspace
    }
    /// Limits the sandbox may run without when it cannot apply them (no
    /// cgroup for memory, pids, cpu; no way to watch the workspace for disk).
    pub fn optional_limits(&self) -> &BTreeSet<LimitKind> {
        &self.optional_limits
    }
    /// `/proc` paths hidden from the build.
    pub fn masked_paths(&self) -> &[PathBuf] {
        &self.masked_paths
    }
    /// `/proc` paths mounted read-only.
    pub fn readonly_paths(&self) -> &[PathBuf] {
        &self.readonly_paths
    }
    /// A builder image reference (annotation `org.cloister.image`), if any.
    pub fn image(&self) -> Option<&str> {
        self.image.as_deref()
    }
    /// The namespaces, as short names (`cgroup`, `ipc`, `mnt`, `net`, `pid`,
    /// `user`, `uts`), sorted.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }
}

/// Whether `path` is absolute and free of `.`/`..` components.
pub(crate) fn is_clean_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// Whether a host path is on the allow-list (equal to or below an entry).
pub fn host_path_allowed(path: &Path) -> bool {
    is_clean_absolute(path)
        && HOST_PATH_ALLOW_LIST
            .iter()
            .any(|allowed| path.starts_with(allowed))
}

/// Checks a parsed profile and builds the [`Profile`], section by section:
/// namespaces, what reaches the host (id maps, OCI seccomp, devices,
/// sysctls, hooks), the `/proc` masks, the process, the mounts, the
/// resources, the host name.
fn validate(
    spec: &Spec,
    name: String,
    digest: String,
    seccomp: SeccompPolicy,
) -> Result<Profile, ProfileError> {
    let linux = spec.linux().as_ref().ok_or(ProfileError::Invalid {
        field: "linux",
        reason: "missing (namespaces and masked paths live there)".into(),
    })?;
    let ns_names = validate_namespaces(linux)?;
    refuse_host_features(spec, linux)?;
    let (masked_paths, readonly_paths) = proc_paths(linux)?;
    let process = process_settings(spec)?;
    let mounts = validate_mounts(spec)?;
    let Resources { memory, pids, cpus } = resources(linux)?;
    let hostname = validate_hostname(spec)?;
    Ok(Profile {
        name,
        digest,
        seccomp,
        mounts,
        env: process.env,
        cwd: process.cwd,
        hostname,
        rlimits: process.rlimits,
        memory,
        pids,
        cpus,
        workspace: None,
        optional_limits: BTreeSet::new(),
        masked_paths,
        readonly_paths,
        image: None,
        namespaces: ns_names,
    })
}

/// Namespaces: all new, none joined by path; their short names, sorted.
fn validate_namespaces(linux: &oci_spec::runtime::Linux) -> Result<Vec<String>, ProfileError> {
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    for ns in &namespaces {
        if ns.path().is_some() {
            return Err(ProfileError::NamespacePath(ns.typ().to_string()));
        }
    }
    for required in REQUIRED_NAMESPACES {
        if !namespaces.iter().any(|ns| ns.typ() == *required) {
            return Err(ProfileError::SharedNamespace(required.to_string()));
        }
    }
    let mut ns_names: Vec<String> = namespaces
        .iter()
        .filter(|ns| REQUIRED_NAMESPACES.contains(&ns.typ()))
        .map(|ns| ns.typ().to_string())
        .collect();
    ns_names.sort();
    ns_names.dedup();
    if namespaces
        .iter()
        .any(|ns| !REQUIRED_NAMESPACES.contains(&ns.typ()))
    {
        return Err(ProfileError::Invalid {
            field: "linux.namespaces",
            reason: "only cgroup, ipc, mount, network, pid, user and uts are supported".into(),
        });
    }
    Ok(ns_names)
}

/// What would share or reach host resources: id maps (the sandbox maps the
/// caller's ids itself), an OCI seccomp section, devices, sysctls, hooks.
fn refuse_host_features(spec: &Spec, linux: &oci_spec::runtime::Linux) -> Result<(), ProfileError> {
    if linux.uid_mappings().is_some() || linux.gid_mappings().is_some() {
        return Err(ProfileError::Invalid {
            field: "linux.uidMappings/gidMappings",
            reason: "the sandbox maps the caller's ids itself".into(),
        });
    }
    if linux.seccomp().is_some() {
        return Err(ProfileError::OciSeccomp);
    }
    if linux.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(ProfileError::Forbidden("linux.devices"));
    }
    if linux.sysctl().as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ProfileError::Forbidden("linux.sysctl"));
    }
    if spec.hooks().is_some() {
        return Err(ProfileError::Forbidden("hooks"));
    }
    Ok(())
}

/// The masked and read-only `/proc` paths, the required ones included.
fn proc_paths(
    linux: &oci_spec::runtime::Linux,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>), ProfileError> {
    let masked_paths: Vec<PathBuf> = linux
        .masked_paths()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(PathBuf::from)
        .collect();
    let readonly_paths: Vec<PathBuf> = linux
        .readonly_paths()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(PathBuf::from)
        .collect();
    for p in masked_paths.iter().chain(&readonly_paths) {
        if !is_clean_absolute(p) || !p.starts_with("/proc") {
            return Err(ProfileError::Invalid {
                field: "linux.maskedPaths/readonlyPaths",
                reason: format!("{} is not a clean absolute path under /proc", p.display()),
            });
        }
    }
    for required in REQUIRED_MASKED_PATHS {
        if !masked_paths.iter().any(|p| p == Path::new(required)) {
            return Err(ProfileError::MissingMasked(required));
        }
    }
    for required in REQUIRED_READONLY_PATHS {
        if !readonly_paths.iter().any(|p| p == Path::new(required)) {
            return Err(ProfileError::MissingReadonly(required));
        }
    }

    Ok((masked_paths, readonly_paths))
}

/// The process settings a profile gives.
struct ProcessSettings {
    env: Vec<(String, String)>,
    cwd: PathBuf,
    rlimits: Vec<Rlimit>,
}

/// Process: no capabilities, no_new_privs, env, cwd, rlimits.
fn process_settings(spec: &Spec) -> Result<ProcessSettings, ProfileError> {
    let process = spec.process().as_ref().ok_or(ProfileError::Invalid {
        field: "process",
        reason: "missing".into(),
    })?;
    if let Some(caps) = process.capabilities() {
        let sets = [
            ("bounding", caps.bounding()),
            ("effective", caps.effective()),
            ("inheritable", caps.inheritable()),
            ("permitted", caps.permitted()),
            ("ambient", caps.ambient()),
        ];
        for (set, caps) in sets {
            if let Some(cap) = caps.as_ref().and_then(|c| {
                let mut names: Vec<String> = c
                    .iter()
                    .map(|c| {
                        let name = c.to_string();
                        if name.starts_with("CAP_") {
                            name
                        } else {
                            format!("CAP_{name}")
                        }
                    })
                    .collect();
                names.sort();
                names.into_iter().next()
            }) {
                return Err(ProfileError::Capability { set, cap });
            }
        }
    }
    if process.no_new_privileges() == Some(false) {
        return Err(ProfileError::NoNewPrivs);
    }
    let mut env = Vec::new();
    for entry in process.env().clone().unwrap_or_default() {
        let (k, v) = entry.split_once('=').ok_or_else(|| ProfileError::Invalid {
            field: "process.env",
            reason: format!("{entry:?} is not KEY=VALUE"),
        })?;
        env.push((k.to_string(), v.to_string()));
    }
    let cwd = process.cwd().clone();
    if !is_clean_absolute(&cwd) {
        return Err(ProfileError::Invalid {
            field: "process.cwd",
            reason: format!("{} is not a clean absolute path", cwd.display()),
        });
    }
    let mut rlimits = Vec::new();
    for rl in process.rlimits().clone().unwrap_or_default() {
        if rl.soft() > rl.hard() {
            return Err(ProfileError::Invalid {
                field: "process.rlimits",
                reason: format!("{:?} soft limit above hard limit", rl.typ()),
            });
        }
        rlimits.push(Rlimit {
            resource: rlimit_resource(rl.typ()) as i32,
            soft: rl.soft(),
            hard: rl.hard(),
        });
    }

    Ok(ProcessSettings { env, cwd, rlimits })
}

/// Mounts: host binds read-only and allow-listed, tmpfs (writable ones
/// size-capped), proc at /proc, devpts new; nothing else, and a proc mount
/// required.
fn validate_mounts(spec: &Spec) -> Result<Vec<MountEntry>, ProfileError> {
    let mut mounts = Vec::new();
    for m in spec.mounts().clone().unwrap_or_default() {
        let destination = m.destination().clone();
        let dest_str = destination.display().to_string();
        if !is_clean_absolute(&destination) || destination == Path::new("/") {
            return Err(ProfileError::BadMount(
                dest_str,
                "destination must be a clean absolute path other than /",
            ));
        }
        let options = m.options().clone().unwrap_or_default();
        let kind = m.typ().clone().unwrap_or_else(|| "bind".into());
        let is_bind = kind == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
        if is_bind {
            mounts.push(host_bind(&m, destination, dest_str, &options)?);
        } else {
            mounts.push(fs_mount(destination, dest_str, &kind, &options)?);
        }
    }
    if !mounts.iter().any(|m| matches!(m, MountEntry::Proc { .. })) {
        return Err(ProfileError::Invalid {
            field: "mounts",
            reason: "no proc mount at /proc (masked paths would have nothing to mask)".into(),
        });
    }
    Ok(mounts)
}

/// A host bind: an allow-listed source, read-only, known options only.
fn host_bind(
    m: &oci_spec::runtime::Mount,
    destination: PathBuf,
    dest_str: String,
    options: &[String],
) -> Result<MountEntry, ProfileError> {
    let source = m.source().clone().ok_or(ProfileError::BadMount(
        dest_str.clone(),
        "bind mount without a source",
    ))?;
    if !host_path_allowed(&source) {
        return Err(ProfileError::HostPathNotAllowed(
            source.display().to_string(),
        ));
    }
    if !options.iter().any(|o| o == "ro") || options.iter().any(|o| o == "rw") {
        return Err(ProfileError::WritableHostBind(source.display().to_string()));
    }
    for o in options {
        if !matches!(
            o.as_str(),
            "bind" | "rbind" | "ro" | "nosuid" | "nodev" | "noexec" | "optional"
        ) {
            return Err(ProfileError::BadMount(dest_str, "unsupported bind option"));
        }
    }
    Ok(MountEntry::HostBind {
        source,
        destination,
        optional: options.iter().any(|o| o == "optional"),
        noexec: options.iter().any(|o| o == "noexec"),
    })
}

/// A filesystem the sandbox makes itself: tmpfs (writable ones size-capped),
/// proc at /proc, a new devpts instance at /dev/pts.
fn fs_mount(
    destination: PathBuf,
    dest_str: String,
    kind: &str,
    options: &[String],
) -> Result<MountEntry, ProfileError> {
    let mut flags = MountFlags::default();
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "nosuid" => flags.nosuid = true,
            "nodev" => flags.nodev = true,
            "noexec" => flags.noexec = true,
            "ro" => flags.readonly = true,
            "rw" => flags.readonly = false,
            other if other.contains('=') || other == "newinstance" => data.push(other.to_string()),
            _ => return Err(ProfileError::BadMount(dest_str, "unsupported mount option")),
        }
    }
    match kind {
        "tmpfs" => {
            let mut size = None;
            for d in &data {
                let (key, value) = d.split_once('=').unwrap_or((d, ""));
                if !matches!(key, "mode" | "size" | "nr_inodes") {
                    return Err(ProfileError::BadMount(dest_str, "unsupported tmpfs option"));
                }
                if key == "size" {
                    // (a percentage of memory would differ by host)
                    size = Some(crate::parse_size(value).ok().filter(|b| *b > 0).ok_or(
                        ProfileError::BadMount(
                            dest_str.clone(),
                            "tmpfs size= must be a positive number of bytes, with k, m or g",
                        ),
                    )?);
                }
            }
            // Every writable tmpfs is bounded: it is the host's memory.
            if size.is_none() && !flags.readonly {
                return Err(ProfileError::BadMount(
                    dest_str,
                    "a writable tmpfs needs a size= cap",
                ));
            }
            flags.nosuid = true;
            flags.nodev = true;
            Ok(MountEntry::Tmpfs {
                destination,
                flags,
                data: data.join(","),
                size,
            })
        }
        "proc" => {
            if destination != Path::new("/proc") {
                return Err(ProfileError::BadMount(dest_str, "proc belongs at /proc"));
            }
            Ok(MountEntry::Proc { destination })
        }
        "devpts" => {
            if destination != Path::new("/dev/pts") {
                return Err(ProfileError::BadMount(
                    dest_str,
                    "devpts belongs at /dev/pts",
                ));
            }
            if !data.iter().any(|d| d == "newinstance") {
                return Err(ProfileError::BadMount(
                    dest_str,
                    "devpts must be a new instance (newinstance)",
                ));
            }
            Ok(MountEntry::Devpts {
                destination,
                data: data.join(","),
            })
        }
        other => Err(ProfileError::MountType {
            kind: other.to_string(),
            destination: dest_str,
        }),
    }
}

/// The default limits a profile's resources give.
struct Resources {
    memory: Option<u64>,
    pids: Option<u64>,
    cpus: Option<MilliCpus>,
}

/// Resources: the default memory, pid and cpu limits.
fn resources(linux: &oci_spec::runtime::Linux) -> Result<Resources, ProfileError> {
    let mut memory = None;
    let mut pids = None;
    let mut cpus = None;
    if let Some(res) = linux.resources() {
        if let Some(mem) = res.memory()
            && let Some(limit) = mem.limit()
        {
            memory = Some(u64::try_from(limit).map_err(|_| ProfileError::Invalid {
                field: "linux.resources.memory.limit",
                reason: "must be positive".into(),
            })?);
        }
        if let Some(p) = res.pids() {
            pids = Some(u64::try_from(p.limit()).map_err(|_| ProfileError::Invalid {
                field: "linux.resources.pids.limit",
                reason: "must be positive".into(),
            })?);
        }
        if let Some(cpu) = res.cpu()
            && let Some(quota) = cpu.quota()
        {
            let period = cpu.period().unwrap_or(100_000);
            let quota = u64::try_from(quota).map_err(|_| ProfileError::Invalid {
                field: "linux.resources.cpu.quota",
                reason: "must be positive".into(),
            })?;
            if period == 0 {
                return Err(ProfileError::Invalid {
                    field: "linux.resources.cpu.period",
                    reason: "must be positive".into(),
                });
            }
            cpus = Some(MilliCpus(((quota * 1000) / period).max(1) as u32));
        }
    }

    Ok(Resources { memory, pids, cpus })
}

/// The host name: letters, digits, `-` and `.`, at most 64 characters.
fn validate_hostname(spec: &Spec) -> Result<String, ProfileError> {
    let hostname = spec.hostname().clone().unwrap_or_else(|| "cloister".into());
    if hostname.is_empty()
        || hostname.len() > 64
        || !hostname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(ProfileError::Invalid {
            field: "hostname",
            reason: format!("{hostname:?} is not a valid host name"),
        });
    }
    Ok(hostname)
}

#[allow(clippy::unnecessary_cast)] // the constants' type differs between libcs
fn rlimit_resource(t: PosixRlimitType) -> u32 {
    use PosixRlimitType as R;
    (match t {
        R::RlimitCpu => libc::RLIMIT_CPU,
        R::RlimitFsize => libc::RLIMIT_FSIZE,
        R::RlimitData => libc::RLIMIT_DATA,
        R::RlimitStack => libc::RLIMIT_STACK,
        R::RlimitCore => libc::RLIMIT_CORE,
        R::RlimitRss => libc::RLIMIT_RSS,
        R::RlimitNproc => libc::RLIMIT_NPROC,
        R::RlimitNofile => libc::RLIMIT_NOFILE,
        R::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        R::RlimitAs => libc::RLIMIT_AS,
        R::RlimitLocks => libc::RLIMIT_LOCKS,
        R::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        R::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        R::RlimitNice => libc::RLIMIT_NICE,
        R::RlimitRtprio => libc::RLIMIT_RTPRIO,
        R::RlimitRttime => libc::RLIMIT_RTTIME,
    }) as u32
}

#[cfg(test)]
mod tests;
