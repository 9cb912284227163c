//! Seccomp policies as reviewed data: `sandbox-profiles/seccomp/<name>.json`
//! in seccompiler's JSON format, a `comment` beside each rule saying why it
//! exists. A policy is compiled with seccompiler for the running
//! architecture, then checked by evaluating the compiled BPF here (see
//! [`evaluate`]) against every call the sandbox promises to deny: a policy
//! that lets one of them through is refused, never installed.
//!
//! Besides the file's filters the sandbox always adds one more
//! (`derive::x32_guard`), because seccompiler's rules match on syscall
//! numbers only: on x86_64 it denies every x32-ABI call (numbers with bit 30
//! set), which would otherwise reach the same kernel entry points under
//! different numbers. The whole stack is then merged into one program that
//! searches the syscall number instead of walking a chain (`bpf::merge`); it
//! is that program that is checked and installed.

use crate::bpf::{self, RET_ACTION_FULL, RET_ALLOW, RET_DATA, RET_ERRNO};
use crate::derive::{self, PolicyTextError};
use crate::precomputed;
use crate::profile::{LookupError, find_named};
use seccompiler::{BpfProgram, TargetArch};
use std::path::PathBuf;

pub use crate::bpf::Call;

pub(crate) const EMBEDDED: &[(&str, &str)] = &[(
    "default",
    include_str!("../../../sandbox-profiles/seccomp/default.json"),
)];

/// Why a seccomp policy was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("no seccomp policy named {0:?}")]
    NotFound(String),
    #[error("cannot read seccomp policy {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("seccomp policy is not valid JSON: {0}")]
    Json(String),
    #[error("seccomp policy does not compile: {0}")]
    Compile(String),
    #[error("seccomp is not supported on architecture {0}")]
    Arch(&'static str),
    #[error("seccomp policy lets {0} through (the sandbox promises to deny it)")]
    Allows(String),
    #[error("seccomp policy denies {0}, which every build needs")]
    Denies(String),
    #[error(
        "seccomp policy filter {filter:?} has both an unconditional rule and argument rules for {syscall} (seccompiler would drop the unconditional one)"
    )]
    MixedRules { filter: String, syscall: String },
}

/// What a filter decides for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Errno(u32),
    Kill,
    Other(u32),
}

/// A compiled, checked seccomp policy.
#[derive(Debug, Clone)]
pub struct SeccompPolicy {
    name: String,
    digest: String,
    programs: Vec<BpfProgram>,
}

impl SeccompPolicy {
    /// Loads a policy by name (`seccomp/<name>.json` under the profile search
    /// directories, then the built-in copy) or by path.
    pub fn load(name_or_path: &str) -> Result<SeccompPolicy, PolicyError> {
        let found = find_named(name_or_path, Some("seccomp"), EMBEDDED).map_err(|e| match e {
            LookupError::NotFound => PolicyError::NotFound(name_or_path.to_string()),
            LookupError::Read { path, source } => PolicyError::Read { path, source },
        })?;
        Self::parse(&found.name, &found.text)
    }

    /// Parses, compiles (the x32 guard added, the stack merged) and checks a
    /// policy. A built-in policy's text (the same bytes) takes the digest and
    /// programs the build derived from it (`precomputed`); the programs are
    /// evaluated against every promised denial either way.
    pub fn parse(name: &str, json: &str) -> Result<SeccompPolicy, PolicyError> {
        let (digest, programs) = match precomputed::policy(json) {
            Some(p) => (
                p.digest.to_string(),
                p.programs.iter().map(|prog| prog.to_vec()).collect(),
            ),
            None => derive::compile_policy(json, target_arch()?).map_err(PolicyError::from)?,
        };
        Self::checked(name, digest, programs)
    }

    /// The policy with these programs, if they deny every promised call and
    /// allow what every build needs (both paths of [`SeccompPolicy::parse`]
    /// end here).
    fn checked(
        name: &str,
        digest: String,
        programs: Vec<BpfProgram>,
    ) -> Result<SeccompPolicy, PolicyError> {
        let policy = SeccompPolicy {
            name: name.to_string(),
            digest,
            programs,
        };
        policy.check()?;
        Ok(policy)
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `sha256:<hex>` of the canonical JSON of the policy file.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The BPF programs to install, in order.
    pub fn programs(&self) -> &[BpfProgram] {
        &self.programs
    }

    /// What the whole filter stack decides for `call`, as the kernel would:
    /// every program runs and the most restrictive verdict wins (kill, then
    /// errno, then allow); among equal ones the last installed wins.
    pub fn evaluate(&self, call: &Call) -> Verdict {
        verdict(bpf::evaluate_stack(&self.programs, call, audit_arch()))
    }

    fn check(&self) -> Result<(), PolicyError> {
        for (what, call, expected) in promised_denials() {
            if self.evaluate(&call) != expected {
                return Err(PolicyError::Allows(what));
            }
        }
        for (what, call) in required_allows() {
            if self.evaluate(&call) != Verdict::Allow {
                return Err(PolicyError::Denies(what));
            }
        }
        Ok(())
    }
}

impl From<PolicyTextError> for PolicyError {
    fn from(e: PolicyTextError) -> PolicyError {
        match e {
            PolicyTextError::Json(m) => PolicyError::Json(m),
            PolicyTextError::MixedRules { filter, syscall } => {
                PolicyError::MixedRules { filter, syscall }
            }
            PolicyTextError::Compile(m) => PolicyError::Compile(m),
        }
    }
}

const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn verdict(ret: u32) -> Verdict {
    match ret & RET_ACTION_FULL {
        RET_ALLOW => Verdict::Allow,
        RET_ERRNO => Verdict::Errno(ret & RET_DATA),
        bpf::RET_KILL_PROCESS | bpf::RET_KILL_THREAD => Verdict::Kill,
        other => Verdict::Other(other),
    }
}

fn target_arch() -> Result<TargetArch, PolicyError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| PolicyError::Arch(std::env::consts::ARCH))
}

/// The running architecture's AUDIT_ARCH value.
fn audit_arch() -> u32 {
    target_arch().map(derive::audit_arch).unwrap_or(0)
}

/// Flags `clone` must not get (x86_64 passes them in the first argument on
/// every architecture we support).
pub const CLONE_NAMESPACE_FLAGS: &[(&str, u64)] = &[
    ("CLONE_NEWNS", libc::CLONE_NEWNS as u64),
    ("CLONE_NEWCGROUP", libc::CLONE_NEWCGROUP as u64),
    ("CLONE_NEWUTS", libc::CLONE_NEWUTS as u64),
    ("CLONE_NEWIPC", libc::CLONE_NEWIPC as u64),
    ("CLONE_NEWUSER", libc::CLONE_NEWUSER as u64),
    ("CLONE_NEWPID", libc::CLONE_NEWPID as u64),
    ("CLONE_NEWNET", libc::CLONE_NEWNET as u64),
];

/// Names of the system calls every policy must deny outright (EPERM).
pub const DENIED_SYSCALLS: &[&str] = &[
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "syslog",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
];

/// The number of a system call on this architecture, for the names the
/// sandbox promises to deny.
pub fn syscall_number(name: &str) -> Option<i64> {
    Some(match name {
        "ptrace" => libc::SYS_ptrace,
        "process_vm_readv" => libc::SYS_process_vm_readv,
        "process_vm_writev" => libc::SYS_process_vm_writev,
        "mount" => libc::SYS_mount,
        "umount2" => libc::SYS_umount2,
        "pivot_root" => libc::SYS_pivot_root,
        "chroot" => libc::SYS_chroot,
        "fsopen" => libc::SYS_fsopen,
        "fsconfig" => libc::SYS_fsconfig,
        "fsmount" => libc::SYS_fsmount,
        "fspick" => libc::SYS_fspick,
        "move_mount" => libc::SYS_move_mount,
        "open_tree" => libc::SYS_open_tree,
        "mount_setattr" => libc::SYS_mount_setattr,
        "unshare" => libc::SYS_unshare,
        "setns" => libc::SYS_setns,
        "clone" => libc::SYS_clone,
        "clone3" => libc::SYS_clone3,
        "keyctl" => libc::SYS_keyctl,
        "add_key" => libc::SYS_add_key,
        "request_key" => libc::SYS_request_key,
        "bpf" => libc::SYS_bpf,
        "perf_event_open" => libc::SYS_perf_event_open,
        "userfaultfd" => libc::SYS_userfaultfd,
        "io_uring_setup" => libc::SYS_io_uring_setup,
        "io_uring_enter" => libc::SYS_io_uring_enter,
        "io_uring_register" => libc::SYS_io_uring_register,
        "kexec_load" => libc::SYS_kexec_load,
        "kexec_file_load" => libc::SYS_kexec_file_load,
        "init_module" => libc::SYS_init_module,
        "finit_module" => libc::SYS_finit_module,
        "delete_module" => libc::SYS_delete_module,
        "syslog" => libc::SYS_syslog,
        "acct" => libc::SYS_acct,
        "swapon" => libc::SYS_swapon,
        "swapoff" => libc::SYS_swapoff,
        "reboot" => libc::SYS_reboot,
        "ioctl" => libc::SYS_ioctl,
        #[cfg(target_arch = "x86_64")]
        "chmod" => libc::SYS_chmod,
        "fchmod" => libc::SYS_fchmod,
        "fchmodat" => libc::SYS_fchmodat,
        "fchmodat2" => 452,
        _ => return None,
    })
}

/// The chmod family and the index of the mode argument.
pub fn chmod_calls() -> Vec<(&'static str, usize)> {
    let mut calls = vec![("fchmod", 1), ("fchmodat", 2), ("fchmodat2", 2)];
    if cfg!(target_arch = "x86_64") {
        calls.insert(0, ("chmod", 1));
    }
    calls
}

const TIOCSTI: u64 = 0x5412;
const TIOCLINUX: u64 = 0x541c;

/// Every call the sandbox promises to deny, with the verdict it must get.
fn promised_denials() -> Vec<(String, Call, Verdict)> {
    let eperm = Verdict::Errno(libc::EPERM as u32);
    let mut out = Vec::new();
    for name in DENIED_SYSCALLS {
        let nr = syscall_number(name).expect("known syscall");
        out.push((name.to_string(), Call::new(nr, &[]), eperm));
    }
    for (flag, bit) in CLONE_NAMESPACE_FLAGS {
        out.push((
            format!("clone with {flag}"),
            Call::new(libc::SYS_clone, &[bit | libc::SIGCHLD as u64]),
            eperm,
        ));
    }
    out.push((
        "clone3".into(),
        Call::new(libc::SYS_clone3, &[]),
        Verdict::Errno(libc::ENOSYS as u32),
    ));
    for (name, cmd) in [("TIOCSTI", TIOCSTI), ("TIOCLINUX", TIOCLINUX)] {
        out.push((
            format!("ioctl {name}"),
            Call::new(libc::SYS_ioctl, &[0, cmd]),
            eperm,
        ));
        out.push((
            format!("ioctl {name} with high bits set"),
            Call::new(libc::SYS_ioctl, &[0, cmd | 0xffff_ffff_0000_0000]),
            eperm,
        ));
    }
    for (name, idx) in chmod_calls() {
        let nr = syscall_number(name).expect("known syscall");
        for (bit, what) in [(0o4000u64, "setuid"), (0o2000, "setgid")] {
            let mut args = [0u64; 6];
            args[idx] = bit | 0o755;
            out.push((format!("{name} setting {what}"), Call { nr, args }, eperm));
        }
    }
    if cfg!(target_arch = "x86_64") {
        out.push((
            "x32 unshare".into(),
            Call::new(i64::from(X32_SYSCALL_BIT) | libc::SYS_unshare, &[]),
            eperm,
        ));
    }
    out
}

/// Calls every build needs; a policy that denies one is refused.
fn required_allows() -> Vec<(String, Call)> {
    let mut out = vec![
        ("read".to_string(), Call::new(libc::SYS_read, &[])),
        ("write".to_string(), Call::new(libc::SYS_write, &[])),
        ("execve".to_string(), Call::new(libc::SYS_execve, &[])),
        (
            "exit_group".to_string(),
            Call::new(libc::SYS_exit_group, &[]),
        ),
        (
            "clone for fork".to_string(),
            Call::new(libc::SYS_clone, &[libc::SIGCHLD as u64]),
        ),
        (
            "clone for a thread".to_string(),
            Call::new(
                libc::SYS_clone,
                &[(libc::CLONE_VM
                    | libc::CLONE_FS
                    | libc::CLONE_FILES
                    | libc::CLONE_SIGHAND
                    | libc::CLONE_THREAD
                    | libc::CLONE_SYSVSEM
                    | libc::CLONE_SETTLS
                    | libc::CLONE_PARENT_SETTID
                    | libc::CLONE_CHILD_CLEARTID) as u64],
            ),
        ),
        (
            "ioctl TCGETS".to_string(),
            Call::new(libc::SYS_ioctl, &[0, libc::TCGETS]),
        ),
    ];
    for (name, idx) in chmod_calls() {
        let nr = syscall_number(name).expect("known syscall");
        let mut args = [0u64; 6];
        args[idx] = 0o1777;
        out.push((format!("{name} 01777"), Call { nr, args }));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// The shipped default policy's text.
    pub(crate) const DEFAULT_POLICY: &str = super::EMBEDDED[0].1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn default_policy() -> SeccompPolicy {
        SeccompPolicy::load("default").expect("default policy loads")
    }

    #[test]
    fn default_policy_denies_every_promised_call() {
        let p = default_policy();
        for (what, call, expected) in promised_denials() {
            assert_eq!(p.evaluate(&call), expected, "{what}");
        }
    }

    #[test]
    fn default_policy_allows_ordinary_calls() {
        let p = default_policy();
        for (what, call) in required_allows() {
            assert_eq!(p.evaluate(&call), Verdict::Allow, "{what}");
        }
        // plain chmod without set-id bits, a high-bit ioctl that is not TIOCSTI
        let chmod = Call::new(libc::SYS_fchmod, &[3, 0o755]);
        assert_eq!(p.evaluate(&chmod), Verdict::Allow);
        let ioctl = Call::new(libc::SYS_ioctl, &[0, 0xffff_ffff_0000_5401]);
        assert_eq!(p.evaluate(&ioctl), Verdict::Allow);
    }

    #[test]
    fn policies_load_by_path_and_names_are_not_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.json");
        std::fs::write(&path, EMBEDDED[0].1).unwrap();
        let p = SeccompPolicy::load(path.to_str().unwrap()).unwrap();
        assert_eq!(p.name(), "mine");
        assert_eq!(p.digest(), default_policy().digest());
        assert!(matches!(
            SeccompPolicy::load("../no/such.json"),
            Err(PolicyError::Read { .. })
        ));
        for name in ["no-such-policy", ".hidden", ""] {
            let err = SeccompPolicy::load(name).unwrap_err();
            assert!(
                matches!(err, PolicyError::NotFound(ref n) if n == name),
                "{name:?}: {err}"
            );
        }
    }

    #[test]
    fn every_rule_in_the_default_policy_has_a_comment() {
        let text = EMBEDDED[0].1;
        let v: Value = serde_json::from_str(text).unwrap();
        for (filter, body) in v.as_object().unwrap() {
            for rule in body["filter"].as_array().unwrap() {
                let comment = rule.get("comment").and_then(Value::as_str).unwrap_or("");
                assert!(!comment.is_empty(), "{filter}: rule {rule} has no comment");
            }
        }
    }

    #[test]
    fn a_policy_missing_a_denial_is_refused() {
        let text = EMBEDDED[0].1;
        let mut v: Value = serde_json::from_str(text).unwrap();
        let rules = v["deny_eperm"]["filter"].as_array_mut().unwrap();
        rules.retain(|r| r["syscall"] != "ptrace");
        let err = SeccompPolicy::parse("weak", &v.to_string()).unwrap_err();
        assert!(
            matches!(err, PolicyError::Allows(ref s) if s == "ptrace"),
            "{err}"
        );
    }

    #[test]
    fn a_policy_denying_exec_is_refused() {
        let mut v: Value = serde_json::from_str(EMBEDDED[0].1).unwrap();
        v["deny_eperm"]["filter"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"syscall": "execve", "comment": "no"}));
        let err = SeccompPolicy::parse("strict", &v.to_string()).unwrap_err();
        assert!(matches!(err, PolicyError::Denies(_)), "{err}");
    }

    #[test]
    fn a_policy_mixing_plain_and_argument_rules_for_one_call_is_refused() {
        let mut v: Value = serde_json::from_str(EMBEDDED[0].1).unwrap();
        v["deny_eperm"]["filter"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"syscall": "ioctl", "comment": "all ioctls"}));
        let err = SeccompPolicy::parse("mixed", &v.to_string()).unwrap_err();
        assert!(
            matches!(err, PolicyError::MixedRules { ref syscall, .. } if syscall == "ioctl"),
            "{err}"
        );
    }

    #[test]
    fn digest_is_stable_across_formatting() {
        let a = SeccompPolicy::parse("a", EMBEDDED[0].1).unwrap();
        let v: Value = serde_json::from_str(EMBEDDED[0].1).unwrap();
        let b = SeccompPolicy::parse("b", &v.to_string()).unwrap();
        assert_eq!(a.digest(), b.digest());
        assert!(a.digest().starts_with("sha256:") && a.digest().len() == 71);
    }

    #[test]
    fn programs_are_checked_however_they_were_obtained() {
        // what a precomputed entry goes through: no filter at all is refused
        let err = SeccompPolicy::checked("empty", "sha256:x".into(), vec![]).unwrap_err();
        assert!(matches!(err, PolicyError::Allows(_)), "{err}");
        let p = default_policy();
        let ok = SeccompPolicy::checked("again", p.digest().into(), p.programs().to_vec());
        assert!(ok.is_ok());
    }

    #[test]
    fn the_x32_guard_denies_x32_numbers_only() {
        let guard = derive::x32_guard(TargetArch::x86_64).unwrap();
        let x86_64 = derive::audit_arch(TargetArch::x86_64);
        let x32 = Call::new(0x4000_0000 | 39, &[]);
        assert_eq!(bpf::evaluate(&guard, &x32, x86_64), RET_ERRNO | 1);
        assert_eq!(
            bpf::evaluate(&guard, &Call::new(39, &[]), x86_64),
            RET_ALLOW
        );
        assert!(derive::x32_guard(TargetArch::aarch64).is_none());
    }

    #[test]
    fn the_default_policy_is_installed_as_one_merged_program() {
        let arch = target_arch().unwrap();
        let (_, stack) = derive::compile_stack(EMBEDDED[0].1, arch).unwrap();
        let p = default_policy();
        assert_eq!(p.programs().len(), 1, "not merged");
        let merged = &p.programs()[0];
        let stack_len: usize = stack.iter().map(Vec::len).sum();
        assert!(merged.len() < stack_len, "{} >= {stack_len}", merged.len());
        assert_eq!(bpf::first_difference(&stack, merged, audit_arch()), None);
    }
}
