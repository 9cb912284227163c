//! What one sandboxed run is: the command, the profile, extra bind mounts,
//! an optional image root filesystem, environment, limits and where the
//! command's standard streams go. Plain data, validated by `run`.

use crate::limit::MilliCpus;
use crate::profile::Profile;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A host path mounted at a path inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub destination: PathBuf,
}

/// Why a `SRC:DST` bind argument was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BindParseError {
    #[error("bind {0:?} is empty")]
    Empty(String),
    #[error("bind destination {0:?} must be an absolute path")]
    RelativeDestination(String),
}

impl FromStr for Bind {
    type Err = BindParseError;
    /// `SRC:DST`, or `SRC` alone for the same path inside.
    fn from_str(s: &str) -> Result<Bind, BindParseError> {
        let (src, dst) = match s.split_once(':') {
            Some((src, dst)) => (src, dst),
            None => (s, s),
        };
        if src.is_empty() || dst.is_empty() {
            return Err(BindParseError::Empty(s.to_string()));
        }
        if !dst.starts_with('/') {
            return Err(BindParseError::RelativeDestination(dst.to_string()));
        }
        Ok(Bind {
            source: PathBuf::from(src),
            destination: PathBuf::from(dst),
        })
    }
}

/// Limits for one run. `None` means the profile's default (and no limit when
/// the profile has none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time after which the whole process tree is killed.
    pub timeout: Option<Duration>,
    /// Memory limit in bytes (cgroup).
    pub memory: Option<u64>,
    /// Maximum number of processes and threads (cgroup).
    pub pids: Option<u64>,
    /// CPU bandwidth (cgroup quota).
    pub cpus: Option<MilliCpus>,
    /// Size of the sandbox's `/tmp` tmpfs in bytes (the kernel refuses
    /// writes beyond it; a full `/tmp` stops the run).
    pub tmp: Option<u64>,
    /// How many bytes the writable binds may grow by during the run
    /// (watched; the run is stopped when they pass it).
    pub workspace: Option<u64>,
}

/// Where a standard stream of the sandboxed command goes.
#[derive(Debug, Default)]
pub enum Stdio {
    /// The runner's own fd (0, 1 or 2).
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// This open file, pipe or socket.
    Fd(OwnedFd),
}

/// The network a run gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    /// A fresh network namespace with only its own loopback interface: every
    /// build, and the only value a profile or `cloister-runner run` can give.
    #[default]
    None,
    /// The host's network namespace, shared. Every other namespace is still
    /// fresh and every other confinement applies; connecting to an abstract
    /// unix socket outside the sandbox (which a fresh network namespace would
    /// have hidden) is refused by a Landlock scope, and a kernel without one
    /// (before Linux 6.12) fails the run. Set only by code that builds the
    /// spec itself for a reviewed case: the GitHub container hook, for a step
    /// of an operator allow-listed action (`cloister-runner hook`).
    Host,
}

impl Network {
    /// `"none"` or `"host"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::None => "none",
            Network::Host => "host",
        }
    }
}

/// One sandboxed run.
#[derive(Debug)]
pub struct SandboxSpec {
    /// The command and its arguments; a name without `/` is looked up in the
    /// sandbox's `PATH`.
    pub argv: Vec<String>,
    pub profile: Profile,
    /// Host paths mounted read-only, nosuid, nodev.
    pub ro_binds: Vec<Bind>,
    /// Host paths mounted writable (still nosuid, nodev).
    pub binds: Vec<Bind>,
    /// An unpacked image used as `/` instead of the profile's host binds.
    pub rootfs: Option<PathBuf>,
    /// Working directory inside the sandbox (default: the profile's `cwd`).
    pub workdir: Option<PathBuf>,
    /// Variables added to (or replacing) the profile's environment.
    pub env: Vec<(String, String)>,
    pub limits: Limits,
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
    /// The cgroup under which the run's cgroup is created, as a path inside
    /// the cgroup hierarchy (like `/proc/self/cgroup` shows). Default: the
    /// runner's own cgroup.
    pub cgroup_parent: Option<String>,
    /// The run's network (default [`Network::None`]).
    pub network: Network,
}

impl SandboxSpec {
    /// A spec running `argv` under `profile` with no extra mounts, the
    /// profile's limits and inherited standard streams.
    pub fn new(argv: Vec<String>, profile: Profile) -> SandboxSpec {
        SandboxSpec {
            argv,
            profile,
            ro_binds: Vec::new(),
            binds: Vec::new(),
            rootfs: None,
            workdir: None,
            env: Vec::new(),
            limits: Limits::default(),
            stdin: Stdio::Inherit,
            stdout: Stdio::Inherit,
            stderr: Stdio::Inherit,
            cgroup_parent: None,
            network: Network::None,
        }
    }

    /// The limits in force: the spec's, else the profile's.
    pub fn effective_limits(&self) -> Limits {
        Limits {
            timeout: self.limits.timeout,
            memory: self.limits.memory.or(self.profile.memory_limit()),
            pids: self.limits.pids.or(self.profile.pids_limit()),
            cpus: self.limits.cpus.or(self.profile.cpu_limit()),
            tmp: self.limits.tmp.or(self.profile.tmp_size()),
            workspace: self.limits.workspace.or(self.profile.workspace_limit()),
        }
    }

    /// The environment the command gets: the profile's, then the spec's
    /// additions (a later entry replaces an earlier one with the same name).
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = Vec::new();
        for (k, v) in self.profile.env().iter().chain(&self.env) {
            if let Some(slot) = env.iter_mut().find(|(name, _)| name == k) {
                slot.1 = v.clone();
            } else {
                env.push((k.clone(), v.clone()));
            }
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_parses_src_dst_and_src_alone() {
        let b: Bind = "/a:/b".parse().unwrap();
        assert_eq!((b.source, b.destination), ("/a".into(), "/b".into()));
        let b: Bind = "/a".parse().unwrap();
        assert_eq!(b.destination, PathBuf::from("/a"));
        assert_eq!(
            "/a:rel".parse::<Bind>(),
            Err(BindParseError::RelativeDestination("rel".into()))
        );
        assert!(matches!(
            ":/x".parse::<Bind>(),
            Err(BindParseError::Empty(_))
        ));
    }
}
