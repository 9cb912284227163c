//! Thin wrappers over the system calls nix does not cover (clone with
//! namespace flags, pidfd_open, close_range, bringing loopback up, the
//! x32-syscall guard program). Every `unsafe` block of the crate that is not a
//! plain nix call lives here, each with its `// SAFETY:` argument.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// What `clone` returned in the calling process.
pub(crate) enum Forked {
    /// We are the parent; the child's pid (in our pid namespace).
    Parent(libc::pid_t),
    /// We are the child.
    Child,
}

/// `clone(flags | SIGCHLD)` without a new stack: fork semantics plus new
/// namespaces. The caller must be single-threaded (checked by `run`).
pub(crate) fn clone_fork(flags: libc::c_int) -> io::Result<Forked> {
    // SAFETY: the raw clone syscall with a null stack pointer behaves like
    // fork(2): the child gets a copy-on-write copy of the address space and
    // continues on a copy of the current stack. The process is single-threaded
    // (checked before any fork), so no lock can be held by a thread that does
    // not exist in the child. The remaining arguments (parent/child tid
    // pointers, tls) are unused because no CLONE_*TID/SETTLS flag is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as libc::pid_t)),
    }
}

/// `pidfd_open(pid, 0)`: a pollable handle that becomes readable when the
/// child exits.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// Closes every fd in `[first, last]`.
pub(crate) fn close_range(first: u32, last: u32) -> io::Result<()> {
    if first > last {
        return Ok(());
    }
    // SAFETY: close_range only closes descriptors; the caller guarantees that
    // no Rust object still owns one of them (they are leaked fds or fds whose
    // owners are about to be replaced by exec).
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `FD_CLOEXEC` on fd.
pub(crate) fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl F_SETFD on an integer fd has no memory effects.
    let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `dup2(old, new)`; clears `FD_CLOEXEC` on `new`.
pub(crate) fn dup2(old: RawFd, new: RawFd) -> io::Result<()> {
    // SAFETY: dup2 only manipulates the fd table; `new` (0, 1 or 2) is owned
    // by no Rust object in the sandbox child.
    let ret = unsafe { libc::dup2(old, new) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Restricts the calling thread (and what it execs) with a Landlock domain
/// that handles no access right but scopes abstract unix sockets: it can no
/// longer connect or send to one created outside the domain. Needs
/// `no_new_privs` set and Landlock ABI 6 (Linux 6.12).
pub(crate) fn landlock_scope_abstract_unix() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    /// `struct landlock_ruleset_attr` (ABI 6 and later).
    #[repr(C)]
    struct RulesetAttr {
        handled_access_fs: u64,
        handled_access_net: u64,
        scoped: u64,
    }
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_long = 1;
    const LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1;
    // SAFETY: with a null attribute, size 0 and the VERSION flag the kernel
    // only returns the ABI version (or -1).
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if abi < 0 {
        return Err(io::Error::last_os_error());
    }
    if abi < 6 {
        return Err(io::Error::other(format!(
            "Landlock ABI {abi} has no abstract unix socket scope (needs 6)"
        )));
    }
    let attr = RulesetAttr {
        handled_access_fs: 0,
        handled_access_net: 0,
        scoped: LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET,
    };
    // SAFETY: `attr` is a valid ruleset attribute of the size passed; the
    // kernel reads it and returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            std::mem::size_of::<RulesetAttr>(),
            0u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd was just created and is owned by nothing else.
    let ruleset = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // SAFETY: landlock_restrict_self takes the ruleset fd and flags (0).
    let ret = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Brings the loopback interface of the current network namespace up.
pub(crate) fn loopback_up() -> io::Result<()> {
    // SAFETY: socket() takes integers and returns a new fd or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd was just created and is owned by nothing else.
    let _sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is a plain C struct for which all-zero bytes is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the interface name from `req` and writes the
    // flags into its union; `req` is a valid, writable ifreq.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled ifru_flags above; reading it is reading an
    // initialized c_short.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads name and flags from the valid ifreq.
    if unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `_exit(code)`: leaves the forked child without running atexit handlers or
/// flushing stdio buffers that belong to the parent.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// `execve(path, argv, envp)`; returns only on failure.
pub(crate) fn execve(
    path: &std::ffi::CStr,
    argv: &[std::ffi::CString],
    envp: &[std::ffi::CString],
) -> io::Error {
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    // SAFETY: path, every argv and envp entry are NUL-terminated C strings
    // that outlive the call, and both pointer arrays are NULL-terminated.
    unsafe { libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr()) };
    io::Error::last_os_error()
}

/// Resource usage of the waited-for children of this process (`children`)
/// or of the process itself.
pub(crate) fn rusage(children: bool) -> libc::rusage {
    let who = if children {
        libc::RUSAGE_CHILDREN
    } else {
        libc::RUSAGE_SELF
    };
    // SAFETY: rusage is a plain C struct; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the valid, writable struct.
    unsafe { libc::getrusage(who, &mut usage) };
    usage
}

/// Waits up to `timeout` for either fd to become readable (or hang up);
/// `(false, false)` on timeout or interruption by a signal.
pub(crate) fn poll_two(
    a: RawFd,
    b: RawFd,
    timeout: std::time::Duration,
) -> io::Result<(bool, bool)> {
    let mut pfds = [
        libc::pollfd {
            fd: a,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: poll reads and writes exactly the two valid pollfds.
    let ret = unsafe { libc::poll(pfds.as_mut_ptr(), 2, ms) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINTR) {
            return Ok((false, false));
        }
        return Err(err);
    }
    Ok((pfds[0].revents != 0, pfds[1].revents != 0))
}

/// Waits up to `timeout` for any of `fds` to become readable (or hang up;
/// negative fds are skipped); which did. All `false` on timeout or
/// interruption by a signal.
pub(crate) fn poll_fds(fds: &[RawFd], timeout: std::time::Duration) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: poll reads and writes exactly the pollfds of the vector.
    let ret = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINTR) {
            return Ok(vec![false; fds.len()]);
        }
        return Err(err);
    }
    Ok(pfds.iter().map(|p| p.revents != 0).collect())
}

fn sigchld_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialize and fill the local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        set
    }
}

/// Blocks SIGCHLD for the calling thread (the init, before it forks the
/// command), so [`wait_sigchld`] can wait for it with a timeout.
pub(crate) fn block_sigchld() -> io::Result<()> {
    let set = sigchld_set();
    // SAFETY: changes the calling thread's mask with a valid set.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// Empties the calling thread's signal mask (the command's process, before
/// its exec: a mask survives exec).
pub(crate) fn unblock_all_signals() -> io::Result<()> {
    // SAFETY: an empty set, initialized by sigemptyset, becomes the mask.
    let ret = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut())
    };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// Waits up to `timeout` for a (blocked) SIGCHLD and consumes it; returns
/// at once if one is pending.
pub(crate) fn wait_sigchld(timeout: std::time::Duration) {
    let set = sigchld_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: a valid set and timespec; no siginfo is asked for.
    unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
}

/// `waitpid(pid, WNOHANG)`: whether `pid` has exited and was reaped now.
pub(crate) fn try_reap(pid: libc::pid_t) -> bool {
    let mut status = 0;
    // SAFETY: waitpid writes one int into `status`.
    let ret = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    ret == pid
}

/// Drops `cap` from the bounding set (`PR_CAPBSET_DROP`).
pub(crate) fn capbset_drop(cap: u32) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the securebits that stop uid 0 from regaining capabilities on exec
/// and lock that choice.
pub(crate) fn lock_securebits() -> io::Result<()> {
    const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
    const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
    const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
    const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
    const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;
    const SECBIT_NO_CAP_AMBIENT_RAISE: libc::c_ulong = 1 << 6;
    const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: libc::c_ulong = 1 << 7;
    let bits = SECBIT_NOROOT
        | SECBIT_NOROOT_LOCKED
        | SECBIT_NO_SETUID_FIXUP
        | SECBIT_NO_SETUID_FIXUP_LOCKED
        | SECBIT_KEEP_CAPS_LOCKED
        | SECBIT_NO_CAP_AMBIENT_RAISE
        | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits, 0, 0, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Installs one classic-BPF seccomp program (requires no_new_privs).
pub(crate) fn seccomp_install(prog: &[seccompiler::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as libc::c_ushort,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: seccompiler::sock_filter has the same repr(C) layout as the
    // kernel's struct sock_filter (u16, u8, u8, u32); the kernel copies the
    // program out of `fprog`, which points at `prog` for its whole length and
    // outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `sig` to `pid`.
pub(crate) fn kill(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes integers only.
    if unsafe { libc::kill(pid, sig) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the umask.
pub(crate) fn umask(mask: libc::mode_t) {
    // SAFETY: umask takes an integer and cannot fail.
    unsafe { libc::umask(mask) };
}

/// `getrlimit(resource)` as (soft, hard).
pub(crate) fn getrlimit(resource: i32) -> io::Result<(u64, u64)> {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct into `cur`, which is valid
    // and writable.
    if unsafe { libc::getrlimit(resource as libc::__rlimit_resource_t, &mut cur) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cur.rlim_cur, cur.rlim_max))
}

/// `setrlimit(resource, soft, hard)`.
pub(crate) fn setrlimit(resource: i32, soft: u64, hard: u64) -> io::Result<()> {
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the valid struct.
    if unsafe { libc::setrlimit(resource as libc::__rlimit_resource_t, &new) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Restores the default disposition of `sig` (the sandbox init must not keep
/// the runner's handlers: a pid-namespace init only receives signals it
/// handles, so with the defaults the build cannot signal it at all).
pub(crate) fn default_signal(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: installing SIG_DFL involves no handler code at all.
    let old = unsafe { libc::signal(sig, libc::SIG_DFL) };
    if old == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, min)`: a close-on-exec copy of `fd` numbered
/// `min` or above.
pub(crate) fn dup_above(fd: RawFd, min: RawFd) -> io::Result<RawFd> {
    // SAFETY: fcntl F_DUPFD_CLOEXEC only adds an fd table entry.
    let ret = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// `MOUNT_ATTR_*` bits of `mount_setattr(2)` (uapi `linux/mount.h`).
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// `struct mount_attr` (uapi `linux/mount.h`, size version 0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW [| AT_RECURSIVE], {attr_set})`:
/// adds the `MOUNT_ATTR_*` bits in `set` to the mount at `path` (and, when
/// `recursive`, to every mount below it, all or none), clearing nothing. Unlike
/// a `MS_REMOUNT|MS_BIND` remount it leaves every other flag alone, so locked
/// flags (atime) of mounts inherited from the host need no special care.
pub(crate) fn mount_setattr(path: &std::path::Path, set: u64, recursive: bool) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = libc::AT_SYMLINK_NOFOLLOW as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: the path is a NUL-terminated string and `attr` a valid
    // mount_attr of the size passed; the kernel only reads both.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c_path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts `child` in a new process that shares this process's memory, on a
/// stack of its own, and suspends this process until the child has exec'd
/// or exited (`clone(CLONE_VM | CLONE_VFORK)`, the way `posix_spawn` starts
/// a process): no page tables are copied and nothing is faulted in again,
/// which a fork of the sandbox init would cost. `child` must end in
/// `execve` or `_exit` (it cannot return: `Infallible`); it may allocate (this process is
/// suspended and single-threaded, so the shared heap sees one user at a
/// time) and must leave this process's state alone otherwise (it runs in
/// the same memory).
pub(crate) fn vfork_exec(
    child: &mut dyn FnMut() -> std::convert::Infallible,
) -> io::Result<libc::pid_t> {
    const STACK: usize = 1 << 20;
    const GUARD: usize = 1 << 12;
    // (the call below never returns, so its result is unreachable)
    #[allow(unreachable_code)]
    extern "C" fn trampoline(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `&mut &mut dyn FnMut` passed to clone
        // below, alive until the child has exec'd or exited (the parent is
        // suspended until then).
        let f = unsafe { &mut *(arg as *mut &mut dyn FnMut() -> std::convert::Infallible) };
        match f() {}
    }
    // SAFETY: an anonymous private mapping; no memory is aliased.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            STACK + GUARD,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // A guard page below the stack: an overflow faults instead of writing
    // into whatever lies below.
    // SAFETY: the first page of the mapping just made.
    if unsafe { libc::mprotect(base, GUARD, libc::PROT_NONE) } != 0 {
        let err = io::Error::last_os_error();
        // SAFETY: unmapping the mapping made above, used by nothing.
        unsafe { libc::munmap(base, STACK + GUARD) };
        return Err(err);
    }
    let mut f: &mut dyn FnMut() -> std::convert::Infallible = child;
    // SAFETY: the stack top is the end of the mapping (page-aligned, so
    // 16-byte aligned as the ABI wants); the child runs `trampoline` on it
    // with a pointer to `f`, which outlives it (CLONE_VFORK: clone returns
    // only once the child has exec'd or exited). The caller is
    // single-threaded (checked by `run`), so no lock is held by another
    // thread the child could need.
    let pid = unsafe {
        libc::clone(
            trampoline,
            (base as *mut u8).add(STACK + GUARD) as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &mut f as *mut &mut dyn FnMut() -> std::convert::Infallible as *mut libc::c_void,
        )
    };
    let err = io::Error::last_os_error();
    // SAFETY: the child no longer runs on this stack (it exec'd or exited).
    unsafe { libc::munmap(base, STACK + GUARD) };
    if pid < 0 {
        return Err(err);
    }
    Ok(pid)
}

/// `PR_CAPBSET_READ`: whether `cap` is in the bounding set; `EINVAL` when the
/// kernel has no capability `cap`.
pub(crate) fn capbset_read(cap: u32) -> io::Result<bool> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret == 1)
}

/// `PR_CAP_AMBIENT_IS_SET`: whether `cap` is in the ambient set.
pub(crate) fn ambient_is_set(cap: u32) -> io::Result<bool> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_IS_SET as libc::c_ulong,
            cap as libc::c_ulong,
            0,
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret == 1)
}

/// The calling thread's effective, permitted and inheritable sets
/// (`capget`, version 3: 64 bits each).
pub(crate) fn capget() -> io::Result<[u64; 3]> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget reads the header and writes two Data structs (version
    // 3), both valid and writable for the call.
    let ret = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok([
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
        join(data[0].inheritable, data[1].inheritable),
    ])
}

/// The kernel's highest capability number (what
/// `/proc/sys/kernel/cap_last_cap` says), found by asking `PR_CAPBSET_READ`,
/// which refuses numbers above it: a few system calls instead of opening a
/// sysctl file.
pub(crate) fn cap_last_cap() -> io::Result<u32> {
    if capbset_read(0).is_err() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let (mut lo, mut hi) = (0u32, 64u32); // lo valid, hi invalid
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        match capbset_read(mid) {
            Ok(_) => lo = mid,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => hi = mid,
            Err(e) => return Err(e),
        }
    }
    Ok(lo)
}

/// Number of threads of this process: `/proc/self/task` has two links plus
/// one per thread (one `stat`, nothing to read or parse).
pub(crate) fn thread_count() -> io::Result<u64> {
    let st = nix::sys::stat::stat("/proc/self/task").map_err(io::Error::from)?;
    Ok((st.st_nlink as u64).saturating_sub(2))
}

/// A connected `SOCK_SEQPACKET` pair, close-on-exec (the runner's go
/// channel to the sandbox init).
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

/// Sends `bytes` and, when there are any, `fds` (SCM_RIGHTS) as one message
/// on a connected `SOCK_SEQPACKET` socket. No SIGPIPE: a peer that is gone
/// gives EPIPE.
pub(crate) fn send_with_fds(sock: RawFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let iov = [io::IoSlice::new(bytes)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    sendmsg::<()>(sock, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// Receives one message sent by [`send_with_fds`] into `buf`: its length
/// (0: the peer closed the socket) and the fds it carried, close-on-exec.
/// Retries on EINTR; a truncated message or fd list is an error.
pub(crate) fn recv_with_fds(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut space = nix::cmsg_space!([RawFd; 16]);
    loop {
        let mut iov = [io::IoSliceMut::new(buf)];
        let msg = match recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        {
            Err(nix::errno::Errno::EINTR) => continue,
            other => other?,
        };
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                // SAFETY: the kernel just installed these fds in our table for
                // this message; nothing else owns them.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        if msg
            .flags
            .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC)
        {
            return Err(io::Error::other("message truncated"));
        }
        return Ok((msg.bytes, fds));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fds_pass_over_a_seqpacket_pair_and_a_closed_peer_reads_as_zero() {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        let (a, b) = seqpacket_pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        send_with_fds(a.as_raw_fd(), &[b'j', 1], &[file.as_raw_fd(), 1]).unwrap();
        send_with_fds(a.as_raw_fd(), b"n", &[]).unwrap();
        let mut buf = [0u8; 2];
        let (n, fds) = recv_with_fds(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"j\x01"[..], 2));
        // the first is the same open file, close-on-exec
        let mut got = std::fs::File::from(fds.into_iter().next().unwrap());
        let flags = nix::fcntl::fcntl(&got, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
        got.write_all(b"through the socket").unwrap();
        let mut text = String::new();
        let mut file = file;
        file.rewind().unwrap();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(text, "through the socket");
        // one message at a time: the second carries no fds
        let (n, fds) = recv_with_fds(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"n"[..], 0));
        drop(a);
        let (n, fds) = recv_with_fds(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!((n, fds.len()), (0, 0));
        // and a peer that is gone gives EPIPE, not SIGPIPE
        let err = send_with_fds(b.as_raw_fd(), b"g", &[]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
    }

    #[test]
    fn cap_last_cap_agrees_with_the_sysctl() {
        let want: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(cap_last_cap().unwrap(), want);
        assert!(capbset_read(want).is_ok());
        let err = capbset_read(want + 1).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn thread_count_agrees_with_proc_status() {
        // The test harness starts and ends threads meanwhile: agree once.
        let from_status = || -> u64 {
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let agreed = (0..100).any(|_| {
            let a = from_status();
            let b = thread_count().unwrap();
            a == b && from_status() == b
        });
        assert!(agreed);
        assert!(thread_count().unwrap() >= 1);
    }

    #[test]
    fn capget_reads_this_process_sets() {
        let [eff, prm, _inh] = capget().unwrap();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let field = |k: &str| {
            let v = status.lines().find_map(|l| l.strip_prefix(k)).unwrap();
            u64::from_str_radix(v.trim(), 16).unwrap()
        };
        assert_eq!(eff, field("CapEff:"));
        assert_eq!(prm, field("CapPrm:"));
    }
}
