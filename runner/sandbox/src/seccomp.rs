//! Seccomp policies as reviewed data: `sandbox-profiles/seccomp/<name>.json`
//! in seccompiler's JSON format, a `comment` beside each rule saying why it
//! exists (and an `arch` list on a rule that exists on some architectures
//! only). A policy is compiled with seccompiler for the running architecture
//! (x86_64 or aarch64; any other is refused, see [`Arch`]), then checked by
//! evaluating the compiled BPF here (see [`SeccompPolicy::evaluate`])
//! against every call the sandbox promises to deny, with that
//! architecture's system-call numbers: a policy that lets one of them
//! through is refused, never installed. The promises include every socket
//! address family but the four builds need (see [`ALLOWED_SOCKET_FAMILIES`]
//! and the audit beside the policy).
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
use crate::lookup::{LookupError, find_named};
use crate::precomputed;
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
    #[error(
        "no seccomp policy for architecture {0} (the sandbox runs on x86_64 and aarch64 only; it never runs without seccomp)"
    )]
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
    arch: Arch,
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
    /// policy for the running architecture, which must be one with a policy
    /// ([`Arch`]). A built-in policy's text (the same bytes) takes the
    /// digest and programs the build derived from it (`precomputed`); the
    /// programs are evaluated against every promised denial either way.
    pub fn parse(name: &str, json: &str) -> Result<SeccompPolicy, PolicyError> {
        let arch = Arch::current().ok_or(PolicyError::Arch(std::env::consts::ARCH))?;
        if let Some(p) = precomputed::policy(json) {
            let programs = p.programs.iter().map(|prog| prog.to_vec()).collect();
            return Self::checked(name, p.digest.to_string(), arch, programs);
        }
        Self::parse_for(name, json, arch)
    }

    /// Parses, compiles and checks a policy for `arch` (which need not be
    /// the running one: the tests check the aarch64 policy on x86_64).
    pub fn parse_for(name: &str, json: &str, arch: Arch) -> Result<SeccompPolicy, PolicyError> {
        let (digest, programs) = derive::compile_policy(json, arch.target())?;
        Self::checked(name, digest, arch, programs)
    }

    /// The policy with these programs, if they deny every promised call and
    /// allow what every build needs on `arch` (every path of
    /// [`SeccompPolicy::parse`] ends here).
    fn checked(
        name: &str,
        digest: String,
        arch: Arch,
        programs: Vec<BpfProgram>,
    ) -> Result<SeccompPolicy, PolicyError> {
        let policy = SeccompPolicy {
            name: name.to_string(),
            digest,
            arch,
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
        verdict(bpf::evaluate_stack(
            &self.programs,
            call,
            self.arch.audit_arch(),
        ))
    }

    /// The architecture the policy was compiled for.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    fn check(&self) -> Result<(), PolicyError> {
        for (what, call, expected) in promised_denials(self.arch) {
            if self.evaluate(&call) != expected {
                return Err(PolicyError::Allows(what.to_string()));
            }
        }
        for (what, call) in required_allows(self.arch) {
            if self.evaluate(&call) != Verdict::Allow {
                return Err(PolicyError::Denies(what.to_string()));
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

/// An architecture the sandbox has a seccomp policy for: the policy compiles
/// for it and every promised denial is checked against its system-call
/// numbers. Any other architecture is refused when a policy loads (so no
/// sandbox starts there without seccomp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// Every architecture with a policy.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The running architecture, when it has a policy.
    pub fn current() -> Option<Arch> {
        Arch::from_name(std::env::consts::ARCH)
    }

    /// By its Rust name (`std::env::consts::ARCH`).
    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The Rust name, as a policy rule's `arch` list spells it.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    pub(crate) fn target(self) -> TargetArch {
        match self {
            Arch::X86_64 => TargetArch::x86_64,
            Arch::Aarch64 => TargetArch::aarch64,
        }
    }

    /// The AUDIT_ARCH value seccomp reports.
    pub fn audit_arch(self) -> u32 {
        derive::audit_arch(self.target())
    }

    /// The number of a system call the sandbox names (promised denials,
    /// calls every build needs, probes) on this architecture; `None` when
    /// the call does not exist there (`chmod` on aarch64) or is not one of
    /// those.
    pub fn syscall_number(self, name: &str) -> Option<i64> {
        let (_, x86_64, aarch64) = SYSCALLS.iter().find(|(n, _, _)| *n == name)?;
        let nr = match self {
            Arch::X86_64 => *x86_64,
            Arch::Aarch64 => *aarch64,
        };
        (nr >= 0).then_some(nr)
    }
}

/// The system calls the sandbox names, with their numbers on x86_64 and
/// aarch64 (-1: not on that architecture), from the kernel's tables
/// (`arch/x86/entry/syscalls/syscall_64.tbl`, `include/uapi/asm-generic/
/// unistd.h`). Tests hold them against libc's constants (on x86_64) and
/// against seccompiler's own tables (both architectures).
const SYSCALLS: &[(&str, i64, i64)] = &[
    ("read", 0, 63),
    ("write", 1, 64),
    ("ioctl", 16, 29),
    ("getpid", 39, 172),
    ("socket", 41, 198),
    ("socketpair", 53, 199),
    ("clone", 56, 220),
    ("execve", 59, 221),
    ("chmod", 90, -1),
    ("fchmod", 91, 52),
    ("ptrace", 101, 117),
    ("syslog", 103, 116),
    ("pivot_root", 155, 41),
    ("chroot", 161, 51),
    ("acct", 163, 89),
    ("mount", 165, 40),
    ("umount2", 166, 39),
    ("swapon", 167, 224),
    ("swapoff", 168, 225),
    ("reboot", 169, 142),
    ("init_module", 175, 105),
    ("delete_module", 176, 106),
    ("exit_group", 231, 94),
    ("kexec_load", 246, 104),
    ("add_key", 248, 217),
    ("request_key", 249, 218),
    ("keyctl", 250, 219),
    ("fchmodat", 268, 53),
    ("unshare", 272, 97),
    ("perf_event_open", 298, 241),
    ("setns", 308, 268),
    ("process_vm_readv", 310, 270),
    ("process_vm_writev", 311, 271),
    ("finit_module", 313, 273),
    ("kexec_file_load", 320, 294),
    ("bpf", 321, 280),
    ("userfaultfd", 323, 282),
    ("io_uring_setup", 425, 425),
    ("io_uring_enter", 426, 426),
    ("io_uring_register", 427, 427),
    ("open_tree", 428, 428),
    ("move_mount", 429, 429),
    ("fsopen", 430, 430),
    ("fsconfig", 431, 431),
    ("fsmount", 432, 432),
    ("fspick", 433, 433),
    ("clone3", 435, 435),
    ("mount_setattr", 442, 442),
    ("fchmodat2", 452, 452),
];

/// Flags `clone` must not get (its first argument on every architecture we
/// support).
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

/// The socket address families the kernel defines, by number (`AF_MAX` is
/// the length). The audit of each, with the reason for its decision, is
/// `sandbox-profiles/seccomp/socket-families.audit.json`.
pub const SOCKET_FAMILIES: [&str; 46] = [
    "AF_UNSPEC",
    "AF_UNIX",
    "AF_INET",
    "AF_AX25",
    "AF_IPX",
    "AF_APPLETALK",
    "AF_NETROM",
    "AF_BRIDGE",
    "AF_ATMPVC",
    "AF_X25",
    "AF_INET6",
    "AF_ROSE",
    "AF_DECnet",
    "AF_NETBEUI",
    "AF_SECURITY",
    "AF_KEY",
    "AF_NETLINK",
    "AF_PACKET",
    "AF_ASH",
    "AF_ECONET",
    "AF_ATMSVC",
    "AF_RDS",
    "AF_SNA",
    "AF_IRDA",
    "AF_PPPOX",
    "AF_WANPIPE",
    "AF_LLC",
    "AF_IB",
    "AF_MPLS",
    "AF_CAN",
    "AF_TIPC",
    "AF_BLUETOOTH",
    "AF_IUCV",
    "AF_RXRPC",
    "AF_ISDN",
    "AF_PHONET",
    "AF_IEEE802154",
    "AF_CAIF",
    "AF_ALG",
    "AF_NFC",
    "AF_VSOCK",
    "AF_KCM",
    "AF_QIPCRTR",
    "AF_SMC",
    "AF_XDP",
    "AF_MCTP",
];

/// The families a build may open sockets of (`socket`, `socketpair`): what
/// builds need and a network namespace confines. Every other family, up to
/// `AF_MAX` and beyond, fails with EAFNOSUPPORT, as on a kernel without it.
pub const ALLOWED_SOCKET_FAMILIES: [u64; 4] = [
    libc::AF_UNIX as u64,
    libc::AF_INET as u64,
    libc::AF_INET6 as u64,
    libc::AF_NETLINK as u64,
];

/// The name of socket family `family` (`AF_VSOCK`), or its number.
pub fn socket_family_name(family: u64) -> String {
    usize::try_from(family)
        .ok()
        .and_then(|i| SOCKET_FAMILIES.get(i))
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("family {family}"))
}

/// Every family value the sandbox promises to refuse: each family the
/// kernel defines but the allowed ones, the first numbers past `AF_MAX`,
/// and values only the low 32 bits of which the kernel reads (it takes an
/// `int`), as a filter comparing all 64 would miss them.
pub fn denied_socket_families() -> Vec<u64> {
    let mut out: Vec<u64> = (0..SOCKET_FAMILIES.len() as u64 + 2)
        .filter(|f| !ALLOWED_SOCKET_FAMILIES.contains(f))
        .collect();
    out.extend([
        255,
        0x7fff_ffff,
        0xffff_ffff,                        // -1 as an int
        0xffff_ffff_ffff_ffff,              // -1 as a long
        (1 << 32) | libc::AF_VSOCK as u64,  // AF_VSOCK with high bits set
        (1 << 63) | libc::AF_PACKET as u64, // AF_PACKET with the top bit set
    ]);
    out
}

/// The running architecture's number for `name` (see [`Arch::syscall_number`]).
pub fn syscall_number(name: &str) -> Option<i64> {
    Arch::current()?.syscall_number(name)
}

/// The chmod family on the running architecture and the index of the mode
/// argument.
pub fn chmod_calls() -> Vec<(&'static str, usize)> {
    Arch::current().map(chmod_calls_on).unwrap_or_default()
}

fn chmod_calls_on(arch: Arch) -> Vec<(&'static str, usize)> {
    [
        ("chmod", 1),
        ("fchmod", 1),
        ("fchmodat", 2),
        ("fchmodat2", 2),
    ]
    .into_iter()
    .filter(|(name, _)| arch.syscall_number(name).is_some())
    .collect()
}

const TIOCSTI: u64 = 0x5412;
const TIOCLINUX: u64 = 0x541c;

/// What a promised denial or a needed call is, said only when a check
/// fails (building the words for every call at every load cost more than
/// evaluating them).
#[derive(Debug, Clone, Copy)]
enum What {
    Call(&'static str),
    CloneFlag(&'static str),
    Ioctl(&'static str, bool),
    Chmod(&'static str, &'static str),
    Socket(&'static str, u64, i32),
    X32Unshare,
    Mode(&'static str, u32),
    Clone(&'static str),
}

impl std::fmt::Display for What {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            What::Call(name) => f.write_str(name),
            What::CloneFlag(flag) => write!(f, "clone with {flag}"),
            What::Ioctl(name, false) => write!(f, "ioctl {name}"),
            What::Ioctl(name, true) => write!(f, "ioctl {name} with high bits set"),
            What::Chmod(name, bit) => write!(f, "{name} setting {bit}"),
            What::Socket(call, family, ty) => write!(
                f,
                "{call} of {} ({family:#x}, type {ty})",
                socket_family_name(family & 0xffff_ffff)
            ),
            What::X32Unshare => f.write_str("x32 unshare"),
            What::Mode(name, mode) => write!(f, "{name} {mode:o}"),
            What::Clone(what) => write!(f, "clone for {what}"),
        }
    }
}

/// Every call the sandbox promises to deny on `arch`, with the verdict it
/// must get.
fn promised_denials(arch: Arch) -> Vec<(What, Call, Verdict)> {
    let nr = |name: &str| {
        arch.syscall_number(name)
            .expect("a call on every architecture")
    };
    let eperm = Verdict::Errno(libc::EPERM as u32);
    let mut out = Vec::with_capacity(256);
    for name in DENIED_SYSCALLS {
        out.push((What::Call(name), Call::new(nr(name), &[]), eperm));
    }
    for (flag, bit) in CLONE_NAMESPACE_FLAGS {
        out.push((
            What::CloneFlag(flag),
            Call::new(nr("clone"), &[bit | libc::SIGCHLD as u64]),
            eperm,
        ));
    }
    out.push((
        What::Call("clone3"),
        Call::new(nr("clone3"), &[]),
        Verdict::Errno(libc::ENOSYS as u32),
    ));
    for (name, cmd) in [("TIOCSTI", TIOCSTI), ("TIOCLINUX", TIOCLINUX)] {
        out.push((
            What::Ioctl(name, false),
            Call::new(nr("ioctl"), &[0, cmd]),
            eperm,
        ));
        out.push((
            What::Ioctl(name, true),
            Call::new(nr("ioctl"), &[0, cmd | 0xffff_ffff_0000_0000]),
            eperm,
        ));
    }
    for (name, idx) in chmod_calls_on(arch) {
        for (bit, what) in [(0o4000u64, "setuid"), (0o2000, "setgid")] {
            let mut args = [0u64; 6];
            args[idx] = bit | 0o755;
            out.push((What::Chmod(name, what), Call { nr: nr(name), args }, eperm));
        }
    }
    let eafnosupport = Verdict::Errno(libc::EAFNOSUPPORT as u32);
    let (socket, socketpair) = (nr("socket"), nr("socketpair"));
    for family in denied_socket_families() {
        for (call, nr, ty) in [
            ("socket", socket, libc::SOCK_STREAM),
            ("socket", socket, libc::SOCK_DGRAM),
            ("socketpair", socketpair, libc::SOCK_STREAM),
        ] {
            out.push((
                What::Socket(call, family, ty),
                Call::new(nr, &[family, ty as u64, 0]),
                eafnosupport,
            ));
        }
    }
    if arch == Arch::X86_64 {
        out.push((
            What::X32Unshare,
            Call::new(i64::from(X32_SYSCALL_BIT) | nr("unshare"), &[]),
            eperm,
        ));
    }
    out
}

/// Calls every build needs on `arch`; a policy that denies one is refused.
fn required_allows(arch: Arch) -> Vec<(What, Call)> {
    let nr = |name: &str| {
        arch.syscall_number(name)
            .expect("a call on every architecture")
    };
    let mut out = vec![
        (What::Call("read"), Call::new(nr("read"), &[])),
        (What::Call("write"), Call::new(nr("write"), &[])),
        (What::Call("execve"), Call::new(nr("execve"), &[])),
        (What::Call("exit_group"), Call::new(nr("exit_group"), &[])),
        (
            What::Clone("fork"),
            Call::new(nr("clone"), &[libc::SIGCHLD as u64]),
        ),
        (
            What::Clone("a thread"),
            Call::new(
                nr("clone"),
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
            What::Ioctl("TCGETS", false),
            Call::new(nr("ioctl"), &[0, libc::TCGETS]),
        ),
        (
            What::Socket("socketpair", libc::AF_UNIX as u64, libc::SOCK_STREAM),
            Call::new(
                nr("socketpair"),
                &[libc::AF_UNIX as u64, libc::SOCK_STREAM as u64, 0],
            ),
        ),
    ];
    for family in ALLOWED_SOCKET_FAMILIES {
        for ty in [libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_RAW] {
            out.push((
                What::Socket("socket", family, ty),
                Call::new(nr("socket"), &[family, ty as u64, 0]),
            ));
        }
    }
    for (name, idx) in chmod_calls_on(arch) {
        let mut args = [0u64; 6];
        args[idx] = 0o1777;
        out.push((What::Mode(name, 0o1777), Call { nr: nr(name), args }));
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
        let promised = promised_denials(p.arch());
        assert!(promised.len() > 150, "{} promises", promised.len());
        for (what, call, expected) in promised {
            assert_eq!(p.evaluate(&call), expected, "{what}");
        }
    }

    /// The same policy compiled for every architecture with a policy
    /// (aarch64 on this x86_64 machine), checked with that architecture's
    /// numbers: every promise holds, every needed call is allowed, and the
    /// x86_64-only rules are not there (their numbers mean other calls on
    /// aarch64).
    #[test]
    fn the_policy_compiles_and_keeps_every_promise_on_every_architecture() {
        for arch in Arch::ALL {
            let p = SeccompPolicy::parse_for("default", EMBEDDED[0].1, arch)
                .unwrap_or_else(|e| panic!("{arch:?}: {e}"));
            assert_eq!(p.arch(), arch);
            assert_eq!(p.programs().len(), 1, "{arch:?}: not merged");
            for (what, call, expected) in promised_denials(arch) {
                assert_eq!(p.evaluate(&call), expected, "{arch:?}: {what}");
            }
            for (what, call) in required_allows(arch) {
                assert_eq!(p.evaluate(&call), Verdict::Allow, "{arch:?}: {what}");
            }
            // The digest names the reviewed text, whatever it compiles to.
            assert_eq!(p.digest(), default_policy().digest());
        }
        let arm = SeccompPolicy::parse_for("default", EMBEDDED[0].1, Arch::Aarch64).unwrap();
        // x86_64's chmod (90) is aarch64's fstatfs: it must stay allowed there.
        assert_eq!(arm.evaluate(&Call::new(90, &[0, 0o4755])), Verdict::Allow);
        // A call on the other architecture's ABI is killed (seccompiler's
        // architecture check), never evaluated with the wrong numbers.
        let x86 = SeccompPolicy::parse_for("default", EMBEDDED[0].1, Arch::X86_64).unwrap();
        let call = Call::new(Arch::X86_64.syscall_number("ptrace").unwrap(), &[]);
        assert_eq!(
            verdict(bpf::evaluate_stack(
                x86.programs(),
                &call,
                Arch::Aarch64.audit_arch()
            )),
            Verdict::Kill
        );
    }

    /// Our syscall table against two sources we did not write: libc's
    /// constants for the architecture this test runs on, and seccompiler's
    /// own table for both (a one-rule policy compiled for each name).
    #[test]
    fn the_syscall_table_agrees_with_libc_and_seccompiler() {
        #[cfg(target_arch = "x86_64")]
        {
            let libc_numbers = [
                ("read", libc::SYS_read),
                ("ioctl", libc::SYS_ioctl),
                ("getpid", libc::SYS_getpid),
                ("socket", libc::SYS_socket),
                ("socketpair", libc::SYS_socketpair),
                ("clone", libc::SYS_clone),
                ("chmod", libc::SYS_chmod),
                ("ptrace", libc::SYS_ptrace),
                ("mount", libc::SYS_mount),
                ("unshare", libc::SYS_unshare),
                ("keyctl", libc::SYS_keyctl),
                ("bpf", libc::SYS_bpf),
                ("io_uring_setup", libc::SYS_io_uring_setup),
                ("clone3", libc::SYS_clone3),
                ("mount_setattr", libc::SYS_mount_setattr),
                ("exit_group", libc::SYS_exit_group),
                ("process_vm_writev", libc::SYS_process_vm_writev),
                ("kexec_file_load", libc::SYS_kexec_file_load),
            ];
            for (name, nr) in libc_numbers {
                assert_eq!(Arch::X86_64.syscall_number(name), Some(nr), "{name}");
            }
        }
        for arch in Arch::ALL {
            for (name, _, _) in SYSCALLS {
                let Some(nr) = arch.syscall_number(name) else {
                    continue;
                };
                let policy = format!(
                    r#"{{"f": {{"mismatch_action": "allow", "match_action": {{"errno": 7}}, "filter": [{{"syscall": "{name}"}}]}}}}"#
                );
                let (_, stack) = derive::compile_stack(&policy, arch.target())
                    .unwrap_or_else(|e| panic!("{arch:?} {name}: {e:?}"));
                let ret = bpf::evaluate_stack(&stack, &Call::new(nr, &[]), arch.audit_arch());
                assert_eq!(
                    verdict(ret),
                    Verdict::Errno(7),
                    "{arch:?}: {name} is not {nr}"
                );
            }
        }
        assert_eq!(Arch::Aarch64.syscall_number("chmod"), None);
        assert_eq!(Arch::from_name("riscv64"), None);
    }

    /// Every socket family the kernel defines, and the numbers past it,
    /// gets EAFNOSUPPORT from socket() and socketpair() but the four builds
    /// need; high bits the kernel ignores change nothing.
    #[test]
    fn socket_families_are_an_allow_list() {
        let p = default_policy();
        let nr = |n: &str| p.arch().syscall_number(n).unwrap();
        let eafnosupport = Verdict::Errno(libc::EAFNOSUPPORT as u32);
        for family in 0..=255u64 {
            for call in ["socket", "socketpair"] {
                let got = p.evaluate(&Call::new(nr(call), &[family, 1, 0]));
                if ALLOWED_SOCKET_FAMILIES.contains(&family) {
                    assert_eq!(got, Verdict::Allow, "{call} {family}");
                } else {
                    assert_eq!(got, eafnosupport, "{call} {family}");
                }
            }
        }
        // the kernel reads an int: AF_UNIX with high bits is AF_UNIX
        let unix_high = Call::new(nr("socket"), &[(1 << 32) | 1, 1, 0]);
        assert_eq!(p.evaluate(&unix_high), Verdict::Allow);
        assert!(denied_socket_families().contains(&((1 << 32) | 40)));
        assert_eq!(socket_family_name(40), "AF_VSOCK");
        assert_eq!(socket_family_name(46), "family 46");
    }

    /// The audit beside the policy: one entry per family up to AF_MAX with
    /// its reason, allowed exactly where the policy allows, and allowed only
    /// where a namespace confines the family and builds need it.
    #[test]
    fn the_socket_family_audit_matches_the_policy() {
        let audit: Value = serde_json::from_str(include_str!(
            "../../../sandbox-profiles/seccomp/socket-families.audit.json"
        ))
        .unwrap();
        assert_eq!(audit["afMax"], SOCKET_FAMILIES.len());
        let families = audit["families"].as_array().unwrap();
        assert_eq!(families.len(), SOCKET_FAMILIES.len());
        let p = default_policy();
        let socket = p.arch().syscall_number("socket").unwrap();
        for (i, f) in families.iter().enumerate() {
            let name = SOCKET_FAMILIES[i];
            assert_eq!(f["family"], i, "{name}: out of order");
            assert_eq!(f["name"], name);
            let why = f["why"].as_str().unwrap_or_default();
            assert!(why.len() > 20, "{name}: no reason given");
            let netns = f["netns"].as_str().unwrap();
            assert!(
                [
                    "confined",
                    "initial-only",
                    "not-confined",
                    "no-sockets",
                    "removed"
                ]
                .contains(&netns),
                "{name}: netns {netns:?}"
            );
            let allow = match f["decision"].as_str() {
                Some("allow") => true,
                Some("deny") => false,
                other => panic!("{name}: decision {other:?}"),
            };
            if allow {
                assert_eq!(netns, "confined", "{name}: allowed but not confined");
                assert_eq!(f["buildsNeed"], true, "{name}: allowed but not needed");
            }
            assert_eq!(
                ALLOWED_SOCKET_FAMILIES.contains(&(i as u64)),
                allow,
                "{name}: the audit and ALLOWED_SOCKET_FAMILIES disagree"
            );
            let got = p.evaluate(&Call::new(socket, &[i as u64, 1, 0]));
            assert_eq!(got == Verdict::Allow, allow, "{name}: the policy disagrees");
        }
    }

    #[test]
    fn an_arch_list_naming_an_unknown_architecture_is_refused() {
        let mut v: Value = serde_json::from_str(EMBEDDED[0].1).unwrap();
        v["deny_eperm"]["filter"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"syscall": "uselib", "arch": ["x86-64"], "comment": "typo"}));
        let err = SeccompPolicy::parse("typo", &v.to_string()).unwrap_err();
        assert!(
            matches!(err, PolicyError::Json(ref m) if m.contains("arch list")),
            "{err}"
        );
    }

    #[test]
    fn default_policy_allows_ordinary_calls() {
        let p = default_policy();
        for (what, call) in required_allows(p.arch()) {
            assert_eq!(p.evaluate(&call), Verdict::Allow, "{what}");
        }
        // plain chmod without set-id bits, a high-bit ioctl that is not TIOCSTI
        let nr = |n: &str| p.arch().syscall_number(n).unwrap();
        let chmod = Call::new(nr("fchmod"), &[3, 0o755]);
        assert_eq!(p.evaluate(&chmod), Verdict::Allow);
        let ioctl = Call::new(nr("ioctl"), &[0, 0xffff_ffff_0000_5401]);
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
        let arch = Arch::current().unwrap();
        let err = SeccompPolicy::checked("empty", "sha256:x".into(), arch, vec![]).unwrap_err();
        assert!(matches!(err, PolicyError::Allows(_)), "{err}");
        let p = default_policy();
        let ok = SeccompPolicy::checked("again", p.digest().into(), arch, p.programs().to_vec());
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
        let arch = Arch::current().unwrap();
        let (_, stack) = derive::compile_stack(EMBEDDED[0].1, arch.target()).unwrap();
        let p = default_policy();
        assert_eq!(p.programs().len(), 1, "not merged");
        let merged = &p.programs()[0];
        let stack_len: usize = stack.iter().map(Vec::len).sum();
        assert!(merged.len() < stack_len, "{} >= {stack_len}", merged.len());
        assert_eq!(
            bpf::first_difference(&stack, merged, arch.audit_arch()),
            None
        );
    }
}
