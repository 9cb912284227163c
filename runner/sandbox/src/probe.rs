//! System-call probes for the escape suite (`cloister-probe`) and the
//! benchmark: each denied call is made with arguments the kernel rejects
//! (bad fds, bad pointers the kernel checks before using, invalid flags), so
//! a call the filter lets through fails with EBADF, EFAULT, EINVAL, ESRCH
//! and the like, while a filtered one fails with EPERM (ENOSYS for clone3).
//! A few calls check a capability before their arguments; for those EPERM
//! inside the sandbox also follows from having no capabilities, and the
//! policy check in `seccomp` is what proves the filter denies them.
//!
//! Every argument list here is harmless even when run unsandboxed as root
//! (the suite does exactly that as a control): no call can succeed.

use crate::seccomp::syscall_number;

/// One probe: the call's name, the errno a filtered call gets, the raw
/// number and arguments.
#[derive(Debug, Clone)]
pub struct SyscallProbe {
    pub name: String,
    pub filtered_errno: i32,
    pub nr: i64,
    pub args: [u64; 6],
}

/// A pointer value the kernel rejects with EFAULT (the first page is never
/// mapped, and it is never dereferenced in user space).
const BAD_PTR: u64 = 1;
const BAD_FD: u64 = u64::MAX; // -1
const BAD_FLAGS: u64 = 0xffff_ffff;

fn p(name: &str, nr: i64, args: &[u64]) -> SyscallProbe {
    let mut a = [0u64; 6];
    a[..args.len()].copy_from_slice(args);
    SyscallProbe {
        name: name.to_string(),
        filtered_errno: libc::EPERM,
        nr,
        args: a,
    }
}

fn n(name: &str) -> i64 {
    syscall_number(name).expect("probe names a known syscall")
}

/// Every probe, in a stable order.
pub fn syscall_probes() -> Vec<SyscallProbe> {
    let mut out = vec![
        // ptrace(bad request, pid -1): ESRCH when not filtered
        p("ptrace", n("ptrace"), &[0xffff, BAD_FD, 0, 0]),
        p(
            "process_vm_readv",
            n("process_vm_readv"),
            &[0, 0, 0, 0, 0, 1],
        ),
        p(
            "process_vm_writev",
            n("process_vm_writev"),
            &[0, 0, 0, 0, 0, 1],
        ),
        p("mount", n("mount"), &[BAD_PTR, BAD_PTR, BAD_PTR, 0, 0]),
        p("umount2", n("umount2"), &[BAD_PTR, BAD_FLAGS]),
        p("pivot_root", n("pivot_root"), &[BAD_PTR, BAD_PTR]),
        p("chroot", n("chroot"), &[BAD_PTR]),
        p("fsopen", n("fsopen"), &[BAD_PTR, 0]),
        p("fsconfig", n("fsconfig"), &[BAD_FD, 0xff, 0, 0, 0]),
        p("fsmount", n("fsmount"), &[BAD_FD, 0, 0]),
        p("fspick", n("fspick"), &[BAD_FD, BAD_PTR, BAD_FLAGS]),
        p(
            "move_mount",
            n("move_mount"),
            &[BAD_FD, BAD_PTR, BAD_FD, BAD_PTR, BAD_FLAGS],
        ),
        p("open_tree", n("open_tree"), &[BAD_FD, BAD_PTR, BAD_FLAGS]),
        p(
            "mount_setattr",
            n("mount_setattr"),
            &[BAD_FD, BAD_PTR, BAD_FLAGS, 0, 0],
        ),
        // unshare(CSIGNAL bit): EINVAL when not filtered
        p("unshare", n("unshare"), &[1]),
        p("setns", n("setns"), &[BAD_FD, 0]),
    ];
    for (flag, bit) in crate::seccomp::CLONE_NAMESPACE_FLAGS {
        // CLONE_THREAD without CLONE_SIGHAND: EINVAL before anything happens
        out.push(p(
            &format!("clone({flag})"),
            n("clone"),
            &[bit | libc::CLONE_THREAD as u64, 0, 0, 0, 0],
        ));
    }
    let mut clone3 = p("clone3", n("clone3"), &[0, 0]);
    clone3.filtered_errno = libc::ENOSYS;
    out.push(clone3);
    out.extend([
        p("keyctl", n("keyctl"), &[0xffff, 0, 0, 0, 0]),
        p("add_key", n("add_key"), &[BAD_PTR, BAD_PTR, 0, 0, 0]),
        p("request_key", n("request_key"), &[BAD_PTR, BAD_PTR, 0, 0]),
        p("bpf", n("bpf"), &[0xffff, 0, 0]),
        p(
            "perf_event_open",
            n("perf_event_open"),
            &[0, 0, BAD_FD, BAD_FD, 0],
        ),
        // UFFD_USER_MODE_ONLY | O_RDWR: EINVAL when not filtered
        p("userfaultfd", n("userfaultfd"), &[1 | 2]),
        p("io_uring_setup", n("io_uring_setup"), &[1, 0]),
        p(
            "io_uring_enter",
            n("io_uring_enter"),
            &[BAD_FD, 0, 0, 0, 0, 0],
        ),
        p(
            "io_uring_register",
            n("io_uring_register"),
            &[BAD_FD, 0, 0, 0],
        ),
        p("kexec_load", n("kexec_load"), &[0, 0, 0, BAD_FLAGS]),
        p(
            "kexec_file_load",
            n("kexec_file_load"),
            &[BAD_FD, BAD_FD, 0, 0, BAD_FLAGS],
        ),
        // a zero-length image: ENOEXEC when not filtered
        p("init_module", n("init_module"), &[0, 0, 0]),
        p("finit_module", n("finit_module"), &[BAD_FD, 0, 0]),
        p("delete_module", n("delete_module"), &[BAD_PTR, 0]),
        p("syslog", n("syslog"), &[0xff, 0, 0]),
        p("acct", n("acct"), &[BAD_PTR]),
        p("swapon", n("swapon"), &[BAD_PTR, BAD_FLAGS]),
        p("swapoff", n("swapoff"), &[BAD_PTR]),
        // wrong magic numbers: EINVAL when not filtered
        p("reboot", n("reboot"), &[0, 0, 0, 0]),
        p("ioctl(TIOCSTI)", n("ioctl"), &[BAD_FD, 0x5412, BAD_PTR]),
        p(
            "ioctl(TIOCSTI|high bits)",
            n("ioctl"),
            &[BAD_FD, 0x1_0000_5412, BAD_PTR],
        ),
        p("ioctl(TIOCLINUX)", n("ioctl"), &[BAD_FD, 0x541c, BAD_PTR]),
        p(
            "ioctl(TIOCLINUX|high bits)",
            n("ioctl"),
            &[BAD_FD, 0xffff_ffff_0000_541c, BAD_PTR],
        ),
    ]);
    for (name, idx) in crate::seccomp::chmod_calls() {
        for (bit, what) in [(0o4000u64, "setuid"), (0o2000, "setgid")] {
            let mut args = [BAD_FD, BAD_PTR, 0, 0, 0, 0];
            if name == "chmod" {
                args[0] = BAD_PTR;
            }
            args[idx] = bit | 0o755;
            out.push(SyscallProbe {
                name: format!("{name}({what})"),
                filtered_errno: libc::EPERM,
                nr: n(name),
                args,
            });
        }
    }
    if cfg!(target_arch = "x86_64") {
        // the x32 ABI's number for getpid: ENOSYS (x32 off) or a pid when
        // not filtered
        out.push(p("x32 syscall", 0x4000_0000 | libc::SYS_getpid, &[]));
    }
    out
}

/// Probes of calls the sandbox must leave alone (their errno must not be
/// EPERM): a control that the filter is not simply denying everything.
pub fn allowed_probes() -> Vec<SyscallProbe> {
    let mut out = vec![
        p("fchmod(0755)", libc::SYS_fchmod, &[BAD_FD, 0o755]),
        p(
            "ioctl(TCGETS)",
            libc::SYS_ioctl,
            &[BAD_FD, libc::TCGETS, BAD_PTR],
        ),
        p(
            "clone(fork flags, bad)",
            libc::SYS_clone,
            &[libc::CLONE_THREAD as u64, 0, 0, 0, 0],
        ),
    ];
    for probe in &mut out {
        probe.filtered_errno = 0;
    }
    out
}

/// `socket(family, ty, 0)` as the filter sees it (the family passed as a
/// full 64-bit register, so values with high bits reach the kernel and the
/// filter unchanged): 0 when a socket was made (and closed again), else the
/// errno.
pub fn socket_errno(family: u64, ty: u64) -> i32 {
    let Some(nr) = syscall_number("socket") else {
        return libc::ENOSYS;
    };
    // SAFETY: socket takes integers only; a descriptor it returns is ours
    // and closed right away.
    let fd = unsafe { libc::syscall(nr, family, ty, 0u64) };
    if fd < 0 {
        return std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    }
    // SAFETY: closes the descriptor just created, which nothing else holds.
    unsafe { libc::close(fd as i32) };
    0
}

/// `socketpair(family, ty, 0, fds)` the same way: 0 when a pair was made
/// (and closed again), else the errno.
pub fn socketpair_errno(family: u64, ty: u64) -> i32 {
    let Some(nr) = syscall_number("socketpair") else {
        return libc::ENOSYS;
    };
    let mut fds = [-1i32; 2];
    // SAFETY: `fds` is a live array of two ints the kernel writes the pair
    // into; both descriptors are ours and closed right away.
    let ret = unsafe { libc::syscall(nr, family, ty, 0u64, fds.as_mut_ptr()) };
    if ret < 0 {
        return std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    }
    for fd in fds {
        // SAFETY: closes a descriptor of the pair just created.
        unsafe { libc::close(fd) };
    }
    0
}

impl SyscallProbe {
    /// Makes the call; returns the errno (0 if it unexpectedly succeeded).
    pub fn run(&self) -> i32 {
        let a = self.args;
        // SAFETY: every argument list in this module is one the kernel
        // rejects before acting (invalid fds, flags or magic numbers, or
        // pointers into the never-mapped first page, which the kernel reads
        // through copy_from_user and answers with EFAULT); user space never
        // dereferences them, and no call can create, map or free anything
        // the Rust program owns.
        let ret = unsafe { libc::syscall(self.nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
        if ret < 0 {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::{Call, SeccompPolicy, Verdict};

    #[test]
    fn every_probe_is_denied_by_the_default_policy_with_its_errno() {
        let policy = SeccompPolicy::load("default").unwrap();
        for probe in syscall_probes() {
            let call = Call {
                nr: probe.nr,
                args: probe.args,
            };
            assert_eq!(
                policy.evaluate(&call),
                Verdict::Errno(probe.filtered_errno as u32),
                "{}",
                probe.name
            );
        }
        for probe in allowed_probes() {
            let call = Call {
                nr: probe.nr,
                args: probe.args,
            };
            assert_eq!(policy.evaluate(&call), Verdict::Allow, "{}", probe.name);
        }
    }

    /// The socket probes make real calls: outside any sandbox, AF_UNIX
    /// pairs and sockets work and a number past AF_MAX is refused.
    #[test]
    fn socket_probes_report_the_kernels_answer() {
        assert_eq!(
            socketpair_errno(libc::AF_UNIX as u64, libc::SOCK_STREAM as u64),
            0
        );
        assert_eq!(
            socket_errno(libc::AF_UNIX as u64, libc::SOCK_DGRAM as u64),
            0
        );
        assert_eq!(
            socket_errno(250, libc::SOCK_STREAM as u64),
            libc::EAFNOSUPPORT
        );
    }

    #[test]
    fn every_promised_syscall_has_a_probe() {
        let names: Vec<String> = syscall_probes().into_iter().map(|p| p.name).collect();
        for s in crate::seccomp::DENIED_SYSCALLS {
            assert!(names.iter().any(|n| n == s), "no probe for {s}");
        }
    }
}
